//! A cross-workspace correlation id: a tenant sends another workspace's sync run id as its
//! `x-request-id`, hoping its own events get taken for that run's. The server mints every
//! correlation id (the client's id is kept apart, as `request_id`), and a rollback only
//! ever looks at its own workspace's events.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::json;
use syncledger_testkit::app::{connect, on_both_backends, send, wait_run, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(another_workspaces_run_id_as_request_id_is_not_rolled_back);

async fn started(resp: syncledger_testkit::app::Resp) -> anyhow::Result<String> {
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

async fn another_workspaces_run_id_as_request_id_is_not_rolled_back(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    // The victim's workspace imports from its CRM.
    let integration = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let run = app
        .post(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let run_id = started(run).await?;
    let run = wait_run(&app, &run_id).await?;
    assert_eq!(run["status"], "completed", "{run}");

    // The attacker, in a workspace of their own, creates a record under the victim's run
    // id as request id.
    let attacker = app
        .new_workspace("Attacker", syncledger_domain::Plan::Enterprise)
        .await?;
    let resp = send(
        app.request(Method::POST, "/v1/records", &attacker.admin)
            .header("x-request-id", &run_id)
            .json(&json!({"entity": "contacts", "fields": {"email": "planted@example.com"}})),
    )
    .await?;
    let planted = resp.expect(StatusCode::CREATED)["id"]
        .as_str()
        .context("record id")?
        .to_string();
    // The client's id is echoed and kept, but the correlation id is the server's.
    assert_eq!(resp.headers["x-request-id"], run_id.as_str());
    let correlation = resp.headers["x-correlation-id"].to_str()?.to_string();
    assert_ne!(correlation, run_id);
    app.caught_up().await;
    let audit = app
        .list_all(
            "/v1/audit",
            &attacker.admin,
            &[("action", "RecordCreated")],
            100,
        )
        .await?;
    let created = audit
        .iter()
        .find(|e| e["aggregate_id"] == planted.as_str())
        .context("the planted record's audit entry")?;
    assert_eq!(created["request_id"], run_id.as_str(), "{created}");
    assert_eq!(created["correlation_id"], correlation.as_str(), "{created}");

    // The victim's preview and rollback see their own records only.
    let preview = app
        .post_empty(
            &format!("/v1/sync-runs/{run_id}/rollback?dry_run=true"),
            &app.admin,
        )
        .await?;
    let preview = preview.expect(StatusCode::OK);
    let previewed: Vec<&str> = preview["records"]
        .as_array()
        .context("records")?
        .iter()
        .filter_map(|r| r["record_id"].as_str())
        .collect();
    assert!(!previewed.is_empty(), "the run touched records: {preview}");
    assert!(!previewed.contains(&planted.as_str()), "{preview}");
    let before = app
        .get(&format!("/v1/records/{planted}"), &attacker.admin)
        .await?;
    let before = before.expect(StatusCode::OK).clone();
    let rollback = app
        .post_empty(&format!("/v1/sync-runs/{run_id}/rollback"), &app.admin)
        .await?;
    let rollback_id = started(rollback).await?;
    let rolled = wait_run(&app, &rollback_id).await?;
    assert_eq!(rolled["status"], "completed", "{rolled}");
    let after = app
        .get(&format!("/v1/records/{planted}"), &attacker.admin)
        .await?;
    assert_eq!(
        *after.expect(StatusCode::OK),
        before,
        "the victim's rollback changed the attacker's record"
    );
    let history = app
        .get(&format!("/v1/records/{planted}/history"), &attacker.admin)
        .await?;
    let history = history.expect(StatusCode::OK).to_string();
    assert!(!history.contains("RolledBack"), "{history}");
    app.finish().await
}
