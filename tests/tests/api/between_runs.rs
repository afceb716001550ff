//! What users do between runs, through the API against the HubSpot sandbox: re-apply a
//! mapping and carry on, roll back a run and carry on, roll back while paused or
//! disconnected. Each test reproduces a defect seen on an earlier `main`.

use crate::sync::{connect, edit_remote, records, remote, run, run_started};
use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::Sandbox;
use syncledger_testkit::app::{on_both_backends, send, Backend, Options, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    incremental_runs_go_on_after_a_reapply,
    a_rolled_back_conflict_stays_open_and_nothing_is_pushed_over_the_crm,
    a_rolled_back_pull_stays_diverged_until_an_admin_chooses,
    rollback_works_paused_and_owes_the_crm_when_disconnected,
    a_rollback_whose_crm_write_failed_is_retried,
    a_rollback_leaves_a_later_crm_edit_of_a_push_only_field
);

/// An app and a HubSpot sandbox with `records` contacts and companies, an integration
/// connected to it with this direction and strategy, and a first full run completed.
async fn synced(
    backend: Backend,
    records: usize,
    direction: &str,
    strategy: &str,
) -> anyhow::Result<Option<(TestApp, Sandbox, String)>> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(None);
    };
    let sandbox = sandbox::hubspot(records).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), direction, strategy).await?;
    let full = run(&app, &id, "full").await?;
    anyhow::ensure!(full["status"] == "completed", "the first full run: {full}");
    Ok(Some((app, sandbox, id)))
}

fn remote_of(record: &Value) -> anyhow::Result<String> {
    record["links"][0]["remote_id"]
        .as_str()
        .map(str::to_owned)
        .context("a linked record")
}

fn id_of(record: &Value) -> anyhow::Result<String> {
    record["id"].as_str().map(str::to_owned).context("an id")
}

async fn record(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    Ok(app
        .get(&format!("/v1/records/{id}"), &app.admin)
        .await?
        .expect(StatusCode::OK)
        .clone())
}

async fn phone_in_crm(sandbox: &Sandbox, remote_id: &str) -> anyhow::Result<Value> {
    Ok(remote(sandbox, "contacts", remote_id).await?["properties"]["phone"].clone())
}

async fn edit(app: &TestApp, id: &str, fields: Value) -> anyhow::Result<()> {
    app.patch(
        &format!("/v1/records/{id}"),
        &app.admin,
        json!({ "fields": fields }),
    )
    .await?
    .expect(StatusCode::OK);
    Ok(())
}

async fn rolled_back(app: &TestApp, run_id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post_empty(&format!("/v1/sync-runs/{run_id}/rollback"), &app.admin)
        .await?;
    let id = resp.expect(StatusCode::CREATED)["id"]
        .as_str()
        .context("the rollback run")?
        .to_owned();
    crate::sync::wait_run(app, &id).await
}

fn run_id(run: &Value) -> anyhow::Result<String> {
    run["id"].as_str().map(str::to_owned).context("a run id")
}

/// Defect: after a mapping re-apply every incremental run failed ("stored data is
/// corrupt: a sync run cursor"): it read the reapply's page cursor as a pull cursor.
async fn incremental_runs_go_on_after_a_reapply(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    assert_eq!(run(&app, &id, "full").await?["status"], "completed");
    let reapply = app
        .post_empty(
            &format!("/v1/integrations/{id}/mappings/contacts/reapply"),
            &app.admin,
        )
        .await?;
    assert_eq!(reapply.expect(StatusCode::OK)["status"], "completed");

    // The CRM changes after the reapply: the next incremental run sees it.
    let contact = records(&app, &id, "contacts").await?[0].clone();
    edit_remote(
        &sandbox,
        "contacts",
        &remote_of(&contact)?,
        json!({"phone": "+1 555 0107"}),
    )
    .await?;
    let next = run(&app, &id, "incremental").await?;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(next["stats"]["updated"], 1, "{next}");
    let now = record(&app, &id_of(&contact)?).await?;
    assert_eq!(now["fields"]["phone"]["value"], "+1 555 0107");
    sandbox.shutdown().await;
    app.finish().await
}

/// Defect: rolling back the run that queued a `manual_review` conflict superseded it,
/// and the next incremental run pushed the app's value over the CRM's with no conflict.
async fn a_rolled_back_conflict_stays_open_and_nothing_is_pushed_over_the_crm(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, sandbox, id)) = synced(backend, 2, "bidirectional", "manual_review").await?
    else {
        return Ok(());
    };
    let contact = records(&app, &id, "contacts").await?[0].clone();
    let (record_id, remote_id) = (id_of(&contact)?, remote_of(&contact)?);
    edit(&app, &record_id, json!({"phone": "+1 555 0001 (app)"})).await?;
    edit_remote(
        &sandbox,
        "contacts",
        &remote_id,
        json!({"phone": "+1 555 0001 (crm)"}),
    )
    .await?;
    let raised = run(&app, &id, "incremental").await?;
    assert_eq!(raised["stats"]["conflicts_detected"], 1, "{raised}");

    let rollback = rolled_back(&app, &run_id(&raised)?).await?;
    assert_eq!(rollback["status"], "completed", "{rollback}");
    let open = app
        .list_all(
            "/v1/conflicts",
            &app.admin,
            &[("status", "open"), ("record_id", &record_id)],
            50,
        )
        .await?;
    assert_eq!(open.len(), 1, "the conflict is open again: {open:?}");
    assert_eq!(open[0]["field"], "phone");

    let next = run(&app, &id, "incremental").await?;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(
        phone_in_crm(&sandbox, &remote_id).await?,
        "+1 555 0001 (crm)",
        "nobody resolved the conflict: the CRM keeps its value"
    );
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(
        phone_in_crm(&sandbox, &remote_id).await?,
        "+1 555 0001 (crm)"
    );
    let now = record(&app, &record_id).await?;
    assert_eq!(now["fields"]["phone"]["value"], "+1 555 0001 (app)");
    sandbox.shutdown().await;
    app.finish().await
}

/// Defect: rolling back a run that pulled a change left the two sides different; the
/// next incremental run did not notice, and the next full run silently pulled the change
/// again. Now the field is diverged until an admin keeps one side.
async fn a_rolled_back_pull_stays_diverged_until_an_admin_chooses(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, sandbox, id)) = synced(backend, 3, "bidirectional", "crm_wins").await? else {
        return Ok(());
    };
    let contacts = records(&app, &id, "contacts").await?;
    let (a, b) = (&contacts[0], &contacts[1]);
    let (a_id, b_id) = (id_of(a)?, id_of(b)?);
    let (a_remote, b_remote) = (remote_of(a)?, remote_of(b)?);
    let a_phone = record(&app, &a_id).await?["fields"]["phone"]["value"].clone();
    let b_phone = record(&app, &b_id).await?["fields"]["phone"]["value"].clone();
    for remote_id in [&a_remote, &b_remote] {
        edit_remote(
            &sandbox,
            "contacts",
            remote_id,
            json!({"phone": format!("+1 555 {remote_id} (crm)")}),
        )
        .await?;
    }
    let pulled = run(&app, &id, "incremental").await?;
    assert_eq!(pulled["stats"]["updated"], 2, "{pulled}");
    let pulled_id = run_id(&pulled)?;

    // The preview says the two phones will be left diverged.
    let preview = app
        .post_empty(
            &format!("/v1/sync-runs/{pulled_id}/rollback?dry_run=true"),
            &app.admin,
        )
        .await?
        .expect(StatusCode::OK)
        .clone();
    assert_eq!(preview["summary"]["diverged"], 2, "{preview}");
    let rollback = rolled_back(&app, &pulled_id).await?;
    assert_eq!(rollback["status"], "completed", "{rollback}");
    let a_now = record(&app, &a_id).await?;
    assert_eq!(a_now["fields"]["phone"]["value"], a_phone);
    assert_eq!(a_now["links"][0]["diverged"], json!(["phone"]), "{a_now}");
    assert!(a_now["links"][0]["pending_push"]
        .as_array()
        .is_some_and(Vec::is_empty));

    // Neither the next incremental nor the next full run undoes the rollback.
    for kind in ["incremental", "full"] {
        let next = run(&app, &id, kind).await?;
        assert_eq!(next["status"], "completed", "{next}");
        assert_eq!(
            record(&app, &a_id).await?["fields"]["phone"]["value"],
            a_phone,
            "a {kind} run leaves the rolled-back value"
        );
        assert_eq!(
            phone_in_crm(&sandbox, &a_remote).await?,
            format!("+1 555 {a_remote} (crm)"),
            "and pushes nothing over the CRM's"
        );
    }
    let listed = app
        .get(&format!("/v1/integrations/{id}/diverged"), &app.admin)
        .await?
        .expect(StatusCode::OK)
        .clone();
    assert_eq!(
        listed["records"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Refusals change nothing: a viewer, an unknown `keep`, a record with nothing diverged.
    let (_, viewer) = app.issue_token("viewer").await?;
    app.post(
        &format!("/v1/integrations/{id}/diverged"),
        &viewer,
        json!({"keep": "app"}),
    )
    .await?
    .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    app.post(
        &format!("/v1/integrations/{id}/diverged"),
        &app.admin,
        json!({"keep": "both"}),
    )
    .await?
    .expect(StatusCode::BAD_REQUEST);
    let third = id_of(&contacts[2])?;
    app.post(
        &format!("/v1/integrations/{id}/diverged"),
        &app.admin,
        json!({"keep": "app", "record_ids": [a_id, third]}),
    )
    .await?
    .expect_error(StatusCode::CONFLICT, "not_diverged", &third);
    assert_eq!(
        record(&app, &a_id).await?["links"][0]["diverged"],
        json!(["phone"])
    );

    // Keep the CRM's value for one record, the app's for the other.
    let took = app
        .post(
            &format!("/v1/integrations/{id}/diverged"),
            &app.admin,
            json!({"keep": "crm", "record_ids": [a_id]}),
        )
        .await?
        .expect(StatusCode::OK)
        .clone();
    assert_eq!((&took["records"], &took["fields"]), (&json!(1), &json!(1)));
    let kept = app
        .post(
            &format!("/v1/integrations/{id}/diverged"),
            &app.admin,
            json!({"keep": "app"}),
        )
        .await?
        .expect(StatusCode::OK)
        .clone();
    assert_eq!(kept["records"], 1, "{kept}");
    let a_now = record(&app, &a_id).await?;
    assert_eq!(
        a_now["fields"]["phone"]["value"],
        format!("+1 555 {a_remote} (crm)")
    );
    assert_eq!(a_now["fields"]["phone"]["source"], "crm", "{a_now}");
    let pushed = run(&app, &id, "incremental").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");
    assert_eq!(phone_in_crm(&sandbox, &b_remote).await?, b_phone);
    assert_eq!(
        phone_in_crm(&sandbox, &a_remote).await?,
        format!("+1 555 {a_remote} (crm)")
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// Defect: rollback was refused while the integration was paused or disconnected,
/// although pausing is an admin's first reaction to a bad run.
async fn rollback_works_paused_and_owes_the_crm_when_disconnected(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, sandbox, id)) = synced(backend, 2, "bidirectional", "last_write_wins").await?
    else {
        return Ok(());
    };
    let contact = records(&app, &id, "contacts").await?[0].clone();
    let (record_id, remote_id) = (id_of(&contact)?, remote_of(&contact)?);
    let phone_before = phone_in_crm(&sandbox, &remote_id).await?;

    // A push run, then the admin pauses and rolls it back: the CRM gets its value back.
    edit(&app, &record_id, json!({"phone": "+1 555 0900"})).await?;
    let pushed = run(&app, &id, "incremental").await?;
    assert_eq!(phone_in_crm(&sandbox, &remote_id).await?, "+1 555 0900");
    app.post_empty(&format!("/v1/integrations/{id}/pause"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    let rollback = rolled_back(&app, &run_id(&pushed)?).await?;
    assert_eq!(rollback["status"], "completed", "{rollback}");
    assert_eq!(phone_in_crm(&sandbox, &remote_id).await?, phone_before);
    // The app keeps its edit, now diverged from the CRM: the next run must not push it.
    let now = record(&app, &record_id).await?;
    assert_eq!(now["fields"]["phone"]["value"], "+1 555 0900");
    assert_eq!(now["links"][0]["diverged"], json!(["phone"]), "{now}");
    app.post_empty(&format!("/v1/integrations/{id}/resume"), &app.admin)
        .await?
        .expect(StatusCode::OK);

    // Another push run, then the integration is disconnected: the rollback puts the app
    // back and lists the CRM's write-back as owed.
    let other = records(&app, &id, "contacts").await?[1].clone();
    let (other_id, other_remote) = (id_of(&other)?, remote_of(&other)?);
    edit(&app, &other_id, json!({"phone": "+1 555 0901"})).await?;
    let pushed = run(&app, &id, "incremental").await?;
    assert_eq!(phone_in_crm(&sandbox, &other_remote).await?, "+1 555 0901");
    let pushed_id = run_id(&pushed)?;
    app.delete(&format!("/v1/integrations/{id}"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    let preview = app
        .post_empty(
            &format!("/v1/sync-runs/{pushed_id}/rollback?dry_run=true"),
            &app.admin,
        )
        .await?
        .expect(StatusCode::OK)
        .clone();
    assert_eq!(preview["summary"]["crm_properties_owed"], 1, "{preview}");
    assert_eq!(preview["summary"]["crm_properties"], 0, "{preview}");
    let rollback = rolled_back(&app, &pushed_id).await?;
    assert_eq!(rollback["status"], "partial", "{rollback}");
    let failures = rollback["failures"].as_array().context("failures")?;
    assert_eq!(failures.len(), 1, "{rollback}");
    assert_eq!(failures[0]["record_id"], other_id.as_str());
    assert!(failures[0]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("owed to the CRM: writing back phone")));
    assert_eq!(
        phone_in_crm(&sandbox, &other_remote).await?,
        "+1 555 0901",
        "nothing was written to the CRM"
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// Defect: PostgreSQL killed and back within seconds failed the running import ("expected
/// to read 5 bytes, got 0 bytes at EOF"), and `retry` answered `nothing_to_retry`. A run
/// must ride out a store outage and resume from its last committed page. The test kills
/// a PostgreSQL server of its own (never the shared one) in the middle of a full import.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_rides_out_a_database_outage() -> anyhow::Result<()> {
    // Installed before the app starts: the run's log lines say when it meets the outage.
    let logs = syncledger_testkit::app::captured_logs();
    let Some(pg) = syncledger_testkit::own_pg::OwnPg::start()? else {
        return Ok(());
    };
    let opts = Options {
        database_url: Some(pg.url()),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Postgres, opts).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(1500).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    // Every CRM page takes a while, so the import is still going when the database dies.
    send(
        reqwest::Client::new()
            .post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&json!({"kind": "slow", "millis": 150, "count": 10000})),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);
    let run_id = run_started(&app, &id, "full").await?;
    let path = format!("/v1/sync-runs/{run_id}");
    syncledger_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the import commits its first page",
        || async {
            app.get(&path, &app.admin)
                .await
                .is_ok_and(|r| r.body["stats"]["processed"].as_u64().unwrap_or(0) > 0)
        },
    )
    .await;

    pg.kill()?;
    // The database stays down until the run has met the outage (its store error is
    // logged with its id; with no connection left that takes the pool's 30 s acquire
    // timeout), so the run really has to ride it out.
    // Only the lines logged since the last look are read, without holding the log lock
    // while searching (every test of this binary logs into it).
    let mut read = logs.lock().map(|l| l.len()).unwrap_or_default();
    let mut met = false;
    syncledger_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the run meets the outage",
        || {
            let fresh = logs
                .lock()
                .map(|l| {
                    let start = read.min(l.len());
                    let end = l[start..]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(start, |i| start + i + 1);
                    read = end;
                    l[start..end].to_vec()
                })
                .unwrap_or_default();
            met = met
                || String::from_utf8_lossy(&fresh).lines().any(|line| {
                    line.contains("store error during a sync run") && line.contains(&run_id)
                });
            std::future::ready(met)
        },
    )
    .await;
    pg.up()?;

    let ended = crate::sync::wait_run(&app, &run_id).await?;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["stats"]["failed"], 0, "{ended}");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 1500);
    assert_eq!(records(&app, &id, "companies").await?.len(), 1500);
    sandbox.shutdown().await;
    app.finish().await?;
    drop(pg);
    Ok(())
}

/// Defect: retrying a rollback run that failed to write some values back to the CRM
/// started a run that did nothing and reported success. A rollback's retry rolls its
/// run back again: what already went back is left alone, what failed goes now.
async fn a_rollback_whose_crm_write_failed_is_retried(backend: Backend) -> anyhow::Result<()> {
    let Some((app, sandbox, id)) = synced(backend, 3, "bidirectional", "last_write_wins").await?
    else {
        return Ok(());
    };
    let contacts = records(&app, &id, "contacts").await?;
    let mut before = Vec::new();
    for (i, c) in contacts.iter().enumerate() {
        let remote_id = remote_of(c)?;
        before.push((remote_id.clone(), phone_in_crm(&sandbox, &remote_id).await?));
        edit(
            &app,
            &id_of(c)?,
            json!({"phone": format!("+1 555 07{i:02}")}),
        )
        .await?;
    }
    let pushed = run(&app, &id, "incremental").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");

    // The rollback's write-back batch: every second input is refused.
    send(
        reqwest::Client::new()
            .post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&json!({"kind": "partial_batch", "fail_every": 2, "count": 1})),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);
    let rollback = rolled_back(&app, &run_id(&pushed)?).await?;
    assert_eq!(rollback["status"], "partial", "{rollback}");
    assert_eq!(rollback["stats"]["failed"], 1, "{rollback}");
    let failed = rollback["failures"][0]["remote_id"]
        .as_str()
        .context("the failed record's CRM id")?
        .to_owned();
    assert_ne!(
        phone_in_crm(&sandbox, &failed).await?,
        before
            .iter()
            .find(|(r, _)| r == &failed)
            .context("known")?
            .1,
        "the refused write-back did not land"
    );

    let resp = app
        .post_empty(
            &format!("/v1/sync-runs/{}/retry", run_id(&rollback)?),
            &app.admin,
        )
        .await?;
    let retry = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(retry["kind"], "rollback", "{retry}");
    assert_eq!(retry["rollback_of"], pushed["id"], "{retry}");
    let retry = crate::sync::wait_run(&app, &run_id(&retry)?).await?;
    assert_eq!(retry["status"], "completed", "{retry}");
    for (remote_id, phone) in &before {
        assert_eq!(
            &phone_in_crm(&sandbox, remote_id).await?,
            phone,
            "{remote_id} holds its phone from before the push run"
        );
    }
    sandbox.shutdown().await;
    app.finish().await
}

/// Defect: a rollback wrote back over a later CRM edit of a field mapped push-only,
/// because that field is never read back: the link still believed the CRM held the run's
/// value. The rollback now reads the records it writes back first.
async fn a_rollback_leaves_a_later_crm_edit_of_a_push_only_field(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let id = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "last_write_wins",
    )
    .await?;
    let mappings = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "both"},
        {"crm_field": "firstname", "app_field": "first_name", "direction": "both"},
        {"crm_field": "jobtitle", "app_field": "title", "direction": "push"}
    ]});
    send(
        app.request(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{id}/mappings/contacts"),
            &app.admin,
        )
        .json(&mappings),
    )
    .await?
    .expect(StatusCode::OK);
    assert_eq!(run(&app, &id, "full").await?["status"], "completed");
    let contact = records(&app, &id, "contacts").await?[0].clone();
    let (record_id, remote_id) = (id_of(&contact)?, remote_of(&contact)?);
    let jobtitle = |r: Value| r["properties"]["jobtitle"].clone();
    edit(&app, &record_id, json!({"title": "Head of Sync"})).await?;
    let pushed = run(&app, &id, "incremental").await?;
    assert_eq!(
        jobtitle(remote(&sandbox, "contacts", &remote_id).await?),
        "Head of Sync"
    );
    // Someone retitles the contact in the CRM; the sync never reads jobtitle back.
    edit_remote(
        &sandbox,
        "contacts",
        &remote_id,
        json!({"jobtitle": "Chief Sync Officer"}),
    )
    .await?;
    let rollback = rolled_back(&app, &run_id(&pushed)?).await?;
    assert_eq!(rollback["status"], "completed", "{rollback}");
    assert_eq!(
        jobtitle(remote(&sandbox, "contacts", &remote_id).await?),
        "Chief Sync Officer",
        "the CRM's later edit is not overwritten"
    );
    sandbox.shutdown().await;
    app.finish().await
}
