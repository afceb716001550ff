//! `replay` rebuilds the projections into what they were, and refuses unknown names.

use serde_json::Value;
use syncledger_testkit::binary::{describe, random_hex, stderr, stdout, TestEnv, Workspace};

/// A workspace served once with one integration named "Main" that has an API key.
async fn populated(env: &TestEnv) -> (Workspace, String) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = api.create_integration("Main").await;
    api.set_api_key(&id, &format!("sk_live_{}", random_hex()))
        .await;
    server.stop_ok().await;
    (ws, id)
}

/// The integration and the audit log as the API shows them.
async fn views(env: &TestEnv, ws: &Workspace, id: &str) -> (Value, Value) {
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let views = (
        api.get_json(&format!("/v1/integrations/{id}")).await,
        api.get_json("/v1/audit").await,
    );
    server.stop_ok().await;
    views
}

async fn replay_rebuilds_the_same_projections(env: &TestEnv) {
    let (ws, id) = populated(env).await;
    // The catch-up in `audit verify` makes the views below complete.
    env.settle().await;
    let before = views(env, &ws, &id).await;
    let events = env.event_count().await;

    let out = env.run_ok(&["replay"]).await;
    let lines: Vec<&str> = out.lines().collect();
    let rebuilt = format!(": rebuilt from {events} event(s) in ");
    let names: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(&rebuilt))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(
        names,
        [
            "integration_status",
            "audit_log",
            "sync_runs",
            "records",
            "conflicts",
            "webhook_endpoints",
            "destinations"
        ],
        "one line per projection, each over every event: {out}"
    );
    let one = env.run_ok(&["replay", "--projection", "audit_log"]).await;
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.starts_with("audit_log: rebuilt from"), "{one}");

    let ok = env.assert_verifies().await;
    assert!(
        ok.contains(&format!("{events} event(s) in 1 workspace(s)")),
        "{ok}"
    );
    assert_eq!(views(env, &ws, &id).await, before);
}

#[tokio::test]
async fn replay_rebuilds_the_same_projections_on_sqlite() {
    replay_rebuilds_the_same_projections(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn replay_rebuilds_the_same_projections_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        replay_rebuilds_the_same_projections(&env).await;
    }
}

#[tokio::test]
async fn replay_rejects_an_unknown_projection() {
    let env = TestEnv::sqlite();
    let out = env.run(&["replay", "--projection", "nope"]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("unknown projection \"nope\""),
        "{}",
        describe(&out)
    );
}
