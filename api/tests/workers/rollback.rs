//! `syncledger rollback` from the command line, killed after it wrote a page's old values
//! back to the CRM and before it committed them: a worker resumes the rollback run, every
//! record is compensated exactly once, and the CRM ends with its values from before the
//! reversed run.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use syncledger_testkit::binary::TestEnv;
use syncledger_testkit::binary::{
    call, connect_hubspot, poll_until, records, remote_id, sandbox_records, start_run, wait_run,
    Worker, QUIET,
};
use syncledger_testkit::sandbox;

const SIGABRT: i32 = 6;
/// Contacts edited in the app and pushed: two push batches, two rollback pages.
const EDITED: usize = 120;

fn job_titles(records: &[Value]) -> BTreeMap<String, Value> {
    records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["properties"]["jobtitle"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rollback_cli_killed_after_a_crm_write_is_resumed_by_a_worker() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let server = env.serve_with(&[], &QUIET).await;
    let api = server.api(&ws.token);
    let sandbox = sandbox::hubspot(150).await;
    let integration = connect_hubspot(&api, &sandbox).await;
    // `serve` runs no runs here: a worker executes the sync runs, then stops before the
    // rollback so that only the command line executes it.
    let worker = Worker::start(&env, &["--poll-interval-ms", "100"], &QUIET);
    let full = start_run(&api, &integration, "full").await;
    assert_eq!(wait_run(&api, &full).await["status"], "completed");
    let titles_before = job_titles(&sandbox_records(&sandbox, "contacts", "jobtitle").await);

    // The app edits 120 contacts; a push run sends them.
    let contacts = records(&api, &integration, "contacts").await;
    let mut edited = Vec::new();
    for (i, c) in contacts.iter().take(EDITED).enumerate() {
        let id = c["id"].as_str().expect("id");
        let path = format!("/v1/records/{id}");
        let body = json!({"fields": {"title": format!("Pushed title {i}")}});
        call(&api, Method::PATCH, &path, body, StatusCode::OK).await;
        edited.push(remote_id(c, &integration));
    }
    let push = start_run(&api, &integration, "push").await;
    let pushed = wait_run(&api, &push).await;
    assert_eq!(pushed["stats"]["updated"], EDITED, "{pushed}");
    let titles_pushed = job_titles(&sandbox_records(&sandbox, "contacts", "jobtitle").await);
    assert_ne!(titles_pushed, titles_before);
    worker.stop().await;

    // The preview, from the command line.
    let preview: Value = serde_json::from_str(&env.run_ok(&["rollback", &push, "--dry-run"]).await)
        .expect("the preview is JSON");
    assert_eq!(
        preview["summary"]["records"], EDITED,
        "{}",
        preview["summary"]
    );
    assert_eq!(preview["summary"]["crm_properties"], EDITED);

    // The rollback dies after its second CRM write, before committing that page.
    let crashed = env
        .command(&["rollback", &push])
        .envs(QUIET)
        .env("SYNCLEDGER_CRASH_AT", "rollback:sent:2")
        .output()
        .await
        .expect("run syncledger rollback");
    assert_eq!(
        crashed.status.signal(),
        Some(SIGABRT),
        "the rollback aborted at the crash point: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    // The API's read model shows the rollback run once it has caught up with the CLI's
    // events: the run is listed as soon as its `queued` event is projected, so wait for
    // the CLI's start to be projected too (the run wrote to the CRM, so it started).
    let path = format!("/v1/integrations/{integration}/sync-runs?limit=5");
    let rollback_run = poll_until("the rollback run is listed as started", || async {
        let runs = api.get_json(&path).await;
        runs["data"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["kind"] == "rollback" && r["status"] != "queued")
            })
            .cloned()
            .ok_or_else(|| runs.to_string())
    })
    .await;
    assert_eq!(rollback_run["status"], "running", "{rollback_run}");
    assert_eq!(rollback_run["rollback_of"], push.as_str());
    let rollback_id = rollback_run["id"].as_str().expect("id").to_string();

    // A worker picks the unfinished run up and finishes it.
    let worker = Worker::start(&env, &["--poll-interval-ms", "100"], &QUIET);
    let done = wait_run(&api, &rollback_id).await;
    worker.stop().await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["stats"]["updated"], EDITED,
        "each record compensated once: {done}"
    );
    // The audit trail is in global order: once it holds the rollback run's end, it holds
    // every compensation before it.
    poll_until("the audit trail shows the rollback run's end", || async {
        let ended = api.get_json("/v1/audit?action=RunEnded&limit=500").await;
        let seen = ended["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["aggregate_id"] == rollback_id.as_str()));
        if seen {
            Ok(())
        } else {
            Err(ended.to_string())
        }
    })
    .await;
    let compensations = api.get_json("/v1/audit?action=RolledBack&limit=500").await;
    assert_eq!(
        compensations["data"].as_array().map(Vec::len),
        Some(EDITED),
        "one RolledBack event per record"
    );
    assert_eq!(
        job_titles(&sandbox_records(&sandbox, "contacts", "jobtitle").await),
        titles_before,
        "the CRM holds its job titles from before the push run"
    );
    // The app keeps its edits, which the CRM no longer holds: each is diverged (held until
    // an admin keeps one side), not owed, or the next run would undo the rollback (once
    // the records read model has caught up with the compensations).
    poll_until(
        "every edited record's edit is diverged, not owed",
        || async {
            let mismatched: Vec<Value> = records(&api, &integration, "contacts")
                .await
                .into_iter()
                .filter(|c| {
                    let owed = c["links"][0]["pending_push"].as_array().map(Vec::len);
                    let diverged = c["links"][0]["diverged"].as_array().map_or(0, Vec::len);
                    let expected = usize::from(edited.contains(&remote_id(c, &integration)));
                    owed != Some(0) || diverged != expected
                })
                .collect();
            match mismatched.first() {
                None => Ok(()),
                Some(first) => Err(format!("{} record(s), e.g. {first}", mismatched.len())),
            }
        },
    )
    .await;
    sandbox.shutdown().await;
    server.stop().await;
}
