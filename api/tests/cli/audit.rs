//! `audit verify` passes on an intact log and names the position of an altered event.

use crate::common::{describe, random_hex, stdout, TestEnv};
use syncledger_store::Store;

async fn payload_text(store: &Store, position: i64) -> String {
    sqlx::query_scalar("SELECT CAST(payload AS TEXT) FROM events WHERE global_position = $1")
        .bind(position)
        .fetch_one(&store.any)
        .await
        .expect("read the event's payload")
}

/// Change one byte of the IntegrationCreated event; its position.
async fn tamper(env: &TestEnv, integration_id: &str) -> i64 {
    let store = env.store().await;
    let position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE event_type = 'IntegrationCreated' AND aggregate_id = $1",
    )
    .bind(integration_id)
    .fetch_one(&store.any)
    .await
    .expect("find the IntegrationCreated event");
    let before = payload_text(&store, position).await;
    let sql = if env.is_postgres() {
        "UPDATE events SET payload = replace(payload::text, 'Main', 'Maim')::json WHERE global_position = $1"
    } else {
        "UPDATE events SET payload = replace(payload, 'Main', 'Maim') WHERE global_position = $1"
    };
    let done = sqlx::query(sql).bind(position).execute(&store.any).await;
    assert_eq!(done.expect("tamper").rows_affected(), 1);
    let after = payload_text(&store, position).await;
    store.close().await;
    let differing = before.bytes().zip(after.bytes()).filter(|(a, b)| a != b);
    assert_eq!(before.len(), after.len());
    assert_eq!(differing.count(), 1, "{before} / {after}");
    position
}

async fn audit_verify_names_the_tampered_event(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = api.create_integration("Main").await;
    api.set_api_key(&id, &format!("sk_live_{}", random_hex()))
        .await;
    // While the server runs: the CLI catches the projections up beside it.
    env.settle().await;
    server.stop_ok().await;

    let position = tamper(env, &id).await;
    let broken = format!("audit chain BROKEN at position {position} ");
    for args in [&[][..], &["--workspace", ws.id.as_str()][..]] {
        let out = env.verify(args).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(stdout(&out).contains(&broken), "{}", describe(&out));
    }
}

#[tokio::test]
async fn audit_verify_names_a_tampered_event_on_sqlite() {
    audit_verify_names_the_tampered_event(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn audit_verify_names_a_tampered_event_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        audit_verify_names_the_tampered_event(&env).await;
    }
}
