//! A worker killed at any point of a run: the next worker resumes from the last committed
//! page, and in the end every CRM record exists once in the app, every app record once at
//! the CRM, and every app edit reached the CRM.
//!
//! Each case: a HubSpot sandbox with 250 contacts and 250 companies (three pages each),
//! app records created before the first run; a full run; then edits of pulled contacts
//! and more app records, and a push run. The run named by the case is executed first by
//! a worker with `SYNCLEDGER_CRASH_AT` (it aborts there), then by a worker without.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use syncledger_sandbox::{Sandbox, SandboxConfig};
use syncledger_testkit::binary::{
    call, connect_hubspot, is_active, records, remote_id, run_view, runs_ended, sandbox_records,
    start_run, wait_run, Worker, QUIET, RUN_TIMEOUT,
};
use syncledger_testkit::binary::{random_hex, Api, TestEnv};
use syncledger_testkit::sandbox;

/// Seeded records per object type: three pages of 100, 100 and 50.
const SEEDED: usize = 250;
const WORKER_ARGS: [&str; 2] = ["--poll-interval-ms", "100"];
const SIGABRT: i32 = 6;

#[tokio::test]
async fn crash_when_the_first_page_is_fetched() {
    crash_and_resume(TestEnv::sqlite(), "pull:fetched", 1).await;
}

#[tokio::test]
async fn crash_when_the_third_page_is_fetched() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    crash_and_resume(env, "pull:fetched", 3).await;
}

#[tokio::test]
async fn crash_after_the_second_page_is_committed() {
    crash_and_resume(TestEnv::sqlite(), "pull:committed", 2).await;
}

#[tokio::test]
async fn crash_after_a_push_reached_the_crm() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    crash_and_resume(env, "push:sent", 1).await;
}

#[tokio::test]
async fn crash_after_a_push_is_committed() {
    crash_and_resume(TestEnv::sqlite(), "push:committed", 1).await;
}

#[tokio::test]
async fn crash_as_the_run_finishes() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    crash_and_resume(env, "run:finishing", 1).await;
}

/// App records created through the API: (record id, email or domain).
type Created = Vec<(String, String)>;

async fn crash_and_resume(env: TestEnv, point: &str, n: u32) {
    let crash = format!("{point}:{n}");
    let in_push = point.starts_with("push:");
    let ws = env.create_workspace("Acme").await;
    let server = env.serve_with(&[], &QUIET).await;
    let api = server.api(&ws.token);
    let sandbox = sandbox::hubspot_with(SandboxConfig {
        records: SEEDED,
        seed: u64::from(n) * 7 + point.len() as u64,
        ..SandboxConfig::default()
    })
    .await;
    let integration = connect_hubspot(&api, &sandbox).await;
    let tag = random_hex()[..8].to_string();

    // The first run pulls everything and creates the app's own records at the CRM.
    let mut created = create_contacts(&api, &format!("before.{tag}"), 3).await;
    created.push(create_company(&api, &format!("before-{tag}.example")).await);
    let full = start_run(&api, &integration, "full").await;
    let full = execute(&env, &api, &full, (!in_push).then_some(crash.as_str())).await;
    assert_eq!(full["status"], "completed", "{full}");
    let pulled = 2 * SEEDED as u64;
    assert_eq!(full["stats"]["created"], pulled + 4, "{full}");
    assert_eq!(full["stats"]["failed"], 0, "{full}");
    assert!(
        full["stats"]["processed"].as_u64() >= Some(pulled + 4),
        "{full}"
    );
    assert_resumed_from_last_page(&full);

    // Then the app edits pulled contacts and creates more; a push run sends both.
    env.settle().await;
    let edited = edit_pulled_contacts(&api, &integration, &created, &tag).await;
    let after = create_contacts(&api, &format!("after.{tag}"), 3).await;
    created.extend(after);
    let push = start_run(&api, &integration, "push").await;
    let push = execute(&env, &api, &push, in_push.then_some(crash.as_str())).await;
    assert_eq!(push["status"], "completed", "{push}");
    assert_eq!(push["stats"]["created"], 3, "{push}");
    assert_eq!(push["stats"]["updated"], edited.len(), "{push}");
    assert_eq!(push["stats"]["failed"], 0, "{push}");

    env.settle().await;
    assert_records_once(&api, &sandbox, &integration).await;
    assert_app_records_at_crm_once(&api, &sandbox, &integration, &created).await;
    for (remote, phone) in &edited {
        let at_crm = sandbox_record(&sandbox, "contacts", remote).await;
        assert_eq!(at_crm["properties"]["phone"], phone.as_str(), "{at_crm}");
    }
    let counters = sandbox.counters();
    for ty in ["contacts", "companies"] {
        for create in [
            format!("POST /crm/v3/objects/{ty}"),
            format!("POST /crm/v3/objects/{ty}/batch/create"),
        ] {
            assert_eq!(counters.get(&create), None, "{create}: {counters:?}");
        }
    }
    server.stop_ok().await;
    sandbox.shutdown().await;
}

/// Executes the run to its end: first, with `crash`, by a worker that must abort at that
/// point and leave the run unfinished; then by a worker that completes it.
async fn execute(env: &TestEnv, api: &Api, run_id: &str, crash: Option<&str>) -> Value {
    if let Some(crash) = crash {
        let crashing = Worker::start(env, &WORKER_ARGS, &[("SYNCLEDGER_CRASH_AT", crash)]);
        let (status, logs) = crashing.wait_exit(RUN_TIMEOUT).await;
        assert_eq!(status.signal(), Some(SIGABRT), "{status}; logs:\n{logs}");
        let point = crash.rsplit_once(':').map_or(crash, |(p, _)| p);
        assert!(
            logs.contains(&format!("crash point {point} reached")),
            "{logs}"
        );
        let left = run_view(api, run_id).await;
        assert!(
            is_active(&left),
            "the crash left the run unfinished: {left}"
        );
    }
    let worker = Worker::start(env, &WORKER_ARGS, &[]);
    let run = wait_run(api, run_id).await;
    let logs = worker.stop().await;
    assert!(
        runs_ended(&logs).iter().any(|id| id == run_id),
        "the worker logs the run it ended:\n{logs}"
    );
    run
}

/// Pages are committed once: a resumed pass starts after its last committed page.
fn assert_resumed_from_last_page(run: &Value) {
    let passes: BTreeMap<&str, u64> = run["passes"]
        .as_array()
        .expect("passes")
        .iter()
        .filter_map(|p| Some((p["pass"].as_str()?, p["pages"].as_u64()?)))
        .collect();
    for pass in ["contacts/pull", "companies/pull"] {
        assert_eq!(passes.get(pass), Some(&3), "{pass} pages: {run}");
    }
}

async fn create_contacts(api: &Api, prefix: &str, n: usize) -> Created {
    let mut out = Vec::new();
    for i in 0..n {
        let email = format!("{prefix}.{i}@crash.example");
        let body = json!({"entity": "contacts",
            "fields": {"email": email, "first_name": "Crash", "last_name": format!("Test {i}")}});
        let record = call(api, Method::POST, "/v1/records", body, StatusCode::CREATED).await;
        out.push((record["id"].as_str().expect("id").to_string(), email));
    }
    out
}

async fn create_company(api: &Api, domain: &str) -> (String, String) {
    let body =
        json!({"entity": "companies", "fields": {"name": "Crash Test Inc", "domain": domain}});
    let record = call(api, Method::POST, "/v1/records", body, StatusCode::CREATED).await;
    (
        record["id"].as_str().expect("id").to_string(),
        domain.to_string(),
    )
}

/// Gives three pulled contacts a new phone number; (remote id, phone) of each.
async fn edit_pulled_contacts(
    api: &Api,
    integration: &str,
    created: &Created,
    tag: &str,
) -> Vec<(String, String)> {
    let mine: BTreeSet<&str> = created.iter().map(|(id, _)| id.as_str()).collect();
    let pulled: Vec<Value> = records(api, integration, "contacts")
        .await
        .into_iter()
        .filter(|r| !mine.contains(r["id"].as_str().unwrap_or_default()))
        .take(3)
        .collect();
    assert_eq!(pulled.len(), 3);
    let mut edited = Vec::new();
    for (i, record) in pulled.iter().enumerate() {
        let phone = format!("+1 555 {} {i:04}", &tag[..3]);
        let path = format!("/v1/records/{}", record["id"].as_str().expect("id"));
        let body = json!({"fields": {"phone": phone}});
        call(api, Method::PATCH, &path, body, StatusCode::OK).await;
        edited.push((remote_id(record, integration), phone));
    }
    edited
}

/// One record in the app per CRM record, and no other record linked to the integration.
async fn assert_records_once(api: &Api, sandbox: &Sandbox, integration: &str) {
    for ty in ["contacts", "companies"] {
        let app: Vec<String> = records(api, integration, ty)
            .await
            .iter()
            .map(|r| remote_id(r, integration))
            .collect();
        let unique: BTreeSet<&String> = app.iter().collect();
        assert_eq!(unique.len(), app.len(), "{ty}: a CRM record linked twice");
        let crm: BTreeSet<String> = sandbox_records(sandbox, ty, "email")
            .await
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            unique,
            crm.iter().collect(),
            "{ty}: app and CRM records differ"
        );
    }
}

/// Each app record exists once at the CRM, linked to that very CRM record.
async fn assert_app_records_at_crm_once(
    api: &Api,
    sandbox: &Sandbox,
    integration: &str,
    created: &Created,
) {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (ty, key) in [("contacts", "email"), ("companies", "domain")] {
        for r in sandbox_records(sandbox, ty, key).await {
            if let (Some(k), Some(id)) = (r["properties"][key].as_str(), r["id"].as_str()) {
                by_key
                    .entry(k.to_string())
                    .or_default()
                    .push(id.to_string());
            }
        }
    }
    for (record_id, key) in created {
        let at_crm = by_key.get(key).cloned().unwrap_or_default();
        assert_eq!(at_crm.len(), 1, "{key} at the CRM: {at_crm:?}");
        let record = api.get_json(&format!("/v1/records/{record_id}")).await;
        assert_eq!(remote_id(&record, integration), at_crm[0], "{record}");
    }
}

async fn sandbox_record(sandbox: &Sandbox, ty: &str, id: &str) -> Value {
    let url = format!("{}/_sandbox/records/{ty}/{id}", sandbox.base_url());
    let resp = reqwest::get(&url).await.expect("sandbox record");
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.json().await.expect("sandbox record JSON")
}
