//! Two databases publishing to one NATS stream (an operator running two environments
//! against one NATS server, or a database recreated within the duplicate window): every
//! event of each reaches its SSE clients exactly once, also across a publisher restart.

use std::collections::HashMap;
use syncledger_bus::{load_checkpoint, run_nats_publisher, NATS_PUBLISHER_CHECKPOINT};
use syncledger_store::Position;
use syncledger_testkit::app::{require_nats, Backend, Options, Sse, TestApp, TIMEOUT};
use syncledger_testkit::wait_until;
use tokio::sync::watch;

async fn app_on(nats_url: &str, shared: &(String, String)) -> anyhow::Result<TestApp> {
    let opts = Options {
        nats_url: Some(nats_url.to_string()),
        nats_stream: Some(shared.clone()),
        ..Options::default()
    };
    TestApp::spawn_with(Backend::Sqlite, opts)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite is always available"))
}

/// Create `n` integrations named `<prefix> <i>` and return their ids.
async fn integrations(app: &TestApp, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            app.create_integration(&app.admin, &format!("{prefix} {i}"))
                .await?,
        );
    }
    Ok(ids)
}

/// The last position of the app's database (events after it are the stream's to carry).
async fn head(app: &TestApp) -> anyhow::Result<i64> {
    let stored = app.state.store.feed().read(Position::START, 10_000).await?;
    Ok(stored.last().map_or(0, |e| e.position.pos))
}

/// Read `stream` until the integration `sentinel` is created, then check that it carried
/// every event of the app's workspace after position `opened` exactly once, and nothing
/// of any other workspace.
async fn assert_exactly_once(
    app: &TestApp,
    stream: &mut Sse,
    opened: i64,
    sentinel: &str,
) -> anyhow::Result<()> {
    stream
        .wait_for("the sentinel integration", |e| {
            e.event == "IntegrationCreated" && e.data["aggregate_id"] == sentinel
        })
        .await?;
    let stored = app.state.store.feed().read(Position::START, 10_000).await?;
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for e in &stream.seen {
        assert_eq!(
            e.data["workspace_id"],
            app.workspace_id.as_str(),
            "{}",
            e.raw
        );
        *seen
            .entry(e.data["position"].as_i64().unwrap_or(-1))
            .or_default() += 1;
    }
    for ev in stored
        .iter()
        .filter(|e| e.workspace_id() == app.workspace_id && e.position.pos > opened)
    {
        assert_eq!(
            seen.get(&ev.position.pos).copied().unwrap_or(0),
            1,
            "event at position {} ({}) not seen exactly once",
            ev.position.pos,
            ev.event_type
        );
    }
    Ok(())
}

/// Restart the app's publisher as after a crash that lost its checkpoint: a second
/// publisher starts from the beginning of the feed and runs until it is caught up.
async fn restart_publisher_from_scratch(app: &TestApp) -> anyhow::Result<()> {
    let store = app.state.store.clone();
    let nats = app.state.nats.clone().expect("the app runs with NATS");
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
        .bind(NATS_PUBLISHER_CHECKPOINT)
        .execute(&store.any)
        .await?;
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run_nats_publisher(store.clone(), nats, rx));
    let count = store.feed().count().await?;
    wait_until(TIMEOUT, "the restarted publisher catches up", || {
        let store = store.clone();
        async move {
            load_checkpoint(&store.any, NATS_PUBLISHER_CHECKPOINT)
                .await
                .ok()
                .flatten()
                .is_some_and(|cp| cp.events >= count)
        }
    })
    .await;
    stop.send(true)?;
    task.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_databases_on_one_stream_each_reach_their_clients_exactly_once() -> anyhow::Result<()> {
    let Some(nats_url) = require_nats().await else {
        return Ok(());
    };
    let shared = (
        format!("SLSEC_{}", syncledger_testkit::app::random_hex()),
        format!("slsec.{}", syncledger_testkit::app::random_hex()),
    );
    let first = app_on(&nats_url, &shared).await?;
    let first_opened = head(&first).await?;
    let mut first_stream = Sse::open(&first, &first.admin).await?;
    integrations(&first, "First", 3).await?;

    // A second, fresh database on the same stream: its positions start again from 1.
    let second = app_on(&nats_url, &shared).await?;
    let second_opened = head(&second).await?;
    let mut second_stream = Sse::open(&second, &second.admin).await?;
    integrations(&second, "Second", 3).await?;
    let sentinel = second
        .create_integration(&second.admin, "Second sentinel")
        .await?;
    assert_exactly_once(&second, &mut second_stream, second_opened, &sentinel).await?;

    // Each publisher restarts as if it had lost its checkpoint; nothing is sent twice.
    restart_publisher_from_scratch(&second).await?;
    restart_publisher_from_scratch(&first).await?;
    integrations(&second, "Second after restart", 2).await?;
    integrations(&first, "First after restart", 2).await?;
    let sentinel = second
        .create_integration(&second.admin, "Second last")
        .await?;
    assert_exactly_once(&second, &mut second_stream, second_opened, &sentinel).await?;
    let sentinel = first.create_integration(&first.admin, "First last").await?;
    assert_exactly_once(&first, &mut first_stream, first_opened, &sentinel).await?;

    // Open streams would hold the servers' graceful shutdown.
    drop((first_stream, second_stream));
    first.finish().await?;
    second.finish().await?;
    if let Ok(client) = async_nats::connect(nats_url.as_str()).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&shared.0)
            .await;
    }
    Ok(())
}
