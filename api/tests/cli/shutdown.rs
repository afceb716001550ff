//! SIGTERM under load: a clean exit, no acknowledged write lost, a verifiable store.

use reqwest::{Method, StatusCode};
use sqlx::Row;
use std::time::Duration;
use syncledger_testkit::binary::{random_hex, Api, TestEnv};
use tokio::sync::watch;

/// What one hammering client saw.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    conflicts: usize,
    unexpected: Vec<(StatusCode, String)>,
}

/// Pause and resume until the server goes away (or a minute passes).
async fn hammer(api: Api, id: String, progress: watch::Sender<usize>) -> Tally {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut tally = Tally::default();
    for action in ["pause", "resume"].iter().cycle() {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        let path = format!("/v1/integrations/{id}/{action}");
        let Ok((status, body)) = api.send(Method::POST, &path, None).await else {
            break;
        };
        match status {
            StatusCode::OK => tally.ok += 1,
            StatusCode::CONFLICT => tally.conflicts += 1,
            _ => tally.unexpected.push((status, body)),
        }
        progress.send_modify(|n| *n += 1);
    }
    tally
}

/// Integration events after creation, and the aggregate's last sequence number.
async fn pause_resume_events(env: &TestEnv, id: &str) -> (i64, i64) {
    let store = env.store().await;
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(MAX(sequence) AS BIGINT) AS last FROM events
          WHERE aggregate_id = $1 AND event_type IN ('IntegrationPaused', 'IntegrationResumed')",
    )
    .bind(id)
    .fetch_one(&store.any)
    .await
    .expect("count the pause/resume events");
    store.close().await;
    (row.get("n"), row.get("last"))
}

async fn sigterm_under_load_leaves_a_verifiable_store(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = api.create_integration("Main").await;
    api.set_api_key(&id, &format!("sk_live_{}", random_hex()))
        .await;

    let (progress, mut answered) = watch::channel(0usize);
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(hammer(api.clone(), id.clone(), progress.clone())))
        .collect();
    let busy = tokio::time::timeout(Duration::from_secs(60), answered.wait_for(|n| *n >= 40));
    assert!(busy.await.is_ok(), "the clients got no answers");
    let stopped = server.stop_ok().await;

    let mut ok = 0;
    for client in clients {
        let tally = client.await.expect("client task");
        assert!(tally.unexpected.is_empty(), "{tally:?}\n{}", stopped.stderr);
        ok += tally.ok;
    }
    let (events, last_sequence) = pause_resume_events(env, &id).await;
    assert!(ok > 0);
    assert!(events >= ok as i64, "{ok} acknowledged, {events} stored");

    env.settle().await;
    let server = env.serve().await;
    let view = server
        .api(&ws.token)
        .get_json(&format!("/v1/integrations/{id}"))
        .await;
    server.stop_ok().await;
    assert_eq!(view["version"], last_sequence, "{view}");
}

#[tokio::test]
async fn sigterm_under_load_leaves_a_verifiable_store_on_sqlite() {
    sigterm_under_load_leaves_a_verifiable_store(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn sigterm_under_load_leaves_a_verifiable_store_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        sigterm_under_load_leaves_a_verifiable_store(&env).await;
    }
}

#[tokio::test]
async fn sigterm_right_after_the_listening_line_is_graceful() {
    let env = TestEnv::sqlite();
    for _ in 0..10 {
        env.serve().await.stop_ok().await;
    }
}
