//! A crash between the workspace's reservation of a plan slot and the integration's
//! creation: the process is killed there (`SYNCLEDGER_CRASH_AT=integration:reserved:1`),
//! and after a restart the slot and the name are free.

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use syncledger_testkit::binary::{pull_integration_body, TestEnv};

const SIGABRT: i32 = 6;

#[tokio::test]
async fn a_crash_while_creating_leaks_neither_the_slot_nor_the_name_on_sqlite() {
    crash_while_creating(TestEnv::sqlite()).await;
}

#[tokio::test]
async fn a_crash_while_creating_leaks_neither_the_slot_nor_the_name_on_postgres() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    crash_while_creating(env).await;
}

async fn crash_while_creating(env: TestEnv) {
    // The starter plan allows one integration: a leaked slot would be the whole plan.
    let ws = env.create_workspace("Acme").await;
    let crashing = env
        .serve_with(&[], &[("SYNCLEDGER_CRASH_AT", "integration:reserved:1")])
        .await;
    let sent = crashing
        .api(&ws.token)
        .send(
            Method::POST,
            "/v1/integrations",
            Some(&pull_integration_body("Billing CRM")),
        )
        .await;
    assert!(
        sent.is_err(),
        "the server answered instead of crashing: {sent:?}"
    );
    let stopped = crashing.exited().await;
    assert_eq!(
        stopped.status.signal(),
        Some(SIGABRT),
        "{}: {}",
        stopped.status,
        stopped.stderr
    );
    assert!(stopped
        .stderr
        .contains("crash point integration:reserved reached"));

    let server = env.serve().await;
    let api = server.api(&ws.token);
    let listed = api.get_json("/v1/integrations").await;
    assert_eq!(listed["data"], json!([]), "{listed}");
    // The name is free, and so is the plan's one slot.
    let id = api.create_integration("Billing CRM").await;
    let text = api
        .expect(
            Method::POST,
            "/v1/integrations",
            Some(&pull_integration_body("Another")),
            StatusCode::PAYMENT_REQUIRED,
        )
        .await;
    assert!(text.contains("plan_limit"), "{text}");
    let listed = api.get_json("/v1/integrations").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [id.as_str()], "{listed}");
    server.stop_ok().await;
}
