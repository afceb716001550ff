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

/// Clients on the live event stream when SIGTERM arrives.
const SSE_CLIENTS: usize = 50;

/// Opens a live event stream and hands back its response once the headers arrived.
async fn open_stream(url: String, token: String) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/events/stream"))
        .bearer_auth(token)
        .send()
        .await
        .expect("open the event stream");
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

/// Reads a stream to its end (bounded): everything the server sent.
async fn read_to_end(mut resp: reqwest::Response) -> String {
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = resp.chunk().await.expect("read the event stream") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    assert!(read.await.is_ok(), "the stream did not end; got:\n{text}");
    text
}

/// Projections that have not applied every event of the log.
async fn behind(env: &TestEnv) -> Vec<&'static str> {
    let store = env.store().await;
    let lags = syncledger_projections::lag::lags(&store)
        .await
        .expect("projection lags");
    store.close().await;
    lags.into_iter()
        .filter(|l| l.oldest_unapplied.is_some())
        .map(|l| l.projection)
        .collect()
}

/// SIGTERM with 50 clients on the live stream and a projection backlog of thousands of
/// one-event batches: every stream ends with the final comment, the projection runner
/// stops after the batch in progress instead of draining the backlog first, and the
/// server exits on its own well within its grace period (not because the period ran
/// out). The next start applies the rest.
#[tokio::test]
async fn sigterm_ends_live_streams_and_leaves_the_backlog_to_the_next_start() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    {
        let store = env.store().await;
        for i in 0..150 {
            syncledger_testkit::fixtures::seed_workspace(&store, &format!("Backlog {i}"))
                .await
                .expect("seed a workspace");
        }
        store.close().await;
    }
    let streams = SSE_CLIENTS.to_string();
    let vars = [
        ("SYNCLEDGER_PROJECTION_BATCH", "1"),
        ("SYNCLEDGER_SSE_STREAMS_PER_TOKEN", streams.as_str()),
        ("SYNCLEDGER_SSE_STREAMS_PER_WORKSPACE", streams.as_str()),
        ("SYNCLEDGER_SHUTDOWN_GRACE_SECS", "20"),
    ];
    let server = env.serve_with(&[], &vars).await;
    let clients = futures::future::join_all(
        (0..SSE_CLIENTS).map(|_| open_stream(server.url.clone(), ws.token.clone())),
    )
    .await;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|resp| tokio::spawn(read_to_end(resp)))
        .collect();

    let asked = std::time::Instant::now();
    let stopped = server.stop_ok().await;
    let took = asked.elapsed();
    eprintln!("SIGTERM to exit with {SSE_CLIENTS} live streams and a backlog: {took:?}");
    assert!(
        !stopped.stderr.contains("grace period over"),
        "the server ran out its grace period:\n{}",
        stopped.stderr
    );
    for reader in readers {
        let text = reader.await.expect("stream reader");
        assert!(
            text.contains(": server shutting down; reconnect with Last-Event-ID\n"),
            "no final comment in:\n{text}"
        );
    }
    assert!(
        !behind(&env).await.is_empty(),
        "the runner drained the whole backlog before stopping"
    );

    let server = env.serve().await;
    let caught_up =
        syncledger_testkit::binary::poll_until("the next start applies the backlog", || async {
            let behind = behind(&env).await;
            if behind.is_empty() {
                Ok(())
            } else {
                Err(format!("still behind: {behind:?}"))
            }
        });
    caught_up.await;
    server.stop_ok().await;
    env.assert_verifies().await;
}

/// SIGTERM while a run waits on a provider that does not answer: the run is abandoned at
/// two thirds of the grace period (it resumes from its last committed page at the next
/// start) and the server exits, instead of waiting out the provider (the runs executed by
/// `serve` itself used to be waited for to their end).
#[tokio::test]
async fn sigterm_abandons_a_run_stuck_on_its_provider_within_the_grace_period() {
    use syncledger_testkit::binary::{connect_hubspot, start_run};
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let vars = [
        ("SYNCLEDGER_SHUTDOWN_GRACE_SECS", "3"),
        ("SYNCLEDGER_SCHEDULER_INTERVAL_SECS", "0"),
        ("SYNCLEDGER_PROVIDER_PACING", "false"),
    ];
    let server = env.serve_with(&[], &vars).await;
    let api = server.api(&ws.token);
    let sandbox = syncledger_testkit::sandbox::hubspot(10).await;
    let integration = connect_hubspot(&api, &sandbox).await;
    let fault = serde_json::json!({"kind": "slow", "millis": 600_000, "count": 1,
        "path_prefix": "/crm/v3/objects/contacts"});
    let added = reqwest::Client::new()
        .post(format!("{}/_sandbox/faults", sandbox.base_url()))
        .json(&fault)
        .send()
        .await
        .expect("add the fault");
    assert!(added.status().is_success(), "{}", added.status());
    let run_id = start_run(&api, &integration, "full").await;
    syncledger_testkit::binary::poll_until("the run asks the sandbox for contacts", || async {
        let asked = sandbox
            .counters()
            .iter()
            .filter(|(k, _)| k.starts_with("GET /crm/v3/objects/contacts"))
            .map(|(_, n)| *n)
            .sum::<u64>();
        if asked > 0 {
            Ok(())
        } else {
            Err(format!("{:?}", sandbox.counters()))
        }
    })
    .await;

    let asked = std::time::Instant::now();
    let stopped = server.stop_ok().await;
    let took = asked.elapsed();
    assert!(
        stopped.stderr.contains("sync run abandoned at shutdown"),
        "{}",
        stopped.stderr
    );
    assert!(
        took < Duration::from_secs(20),
        "exited {took:?} after SIGTERM with a 3 s grace period"
    );
    let store = env.store().await;
    let status: String = sqlx::query_scalar("SELECT status FROM sync_runs WHERE id = $1")
        .bind(&run_id)
        .fetch_one(&store.any)
        .await
        .expect("the run's row");
    store.close().await;
    assert_eq!(status, "running", "the abandoned run stays to be resumed");
    sandbox.shutdown().await;
}
