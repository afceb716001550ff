//! The projection runner: exactly once across a stop mid-stream, a batch that never
//! commits, and the follow loop under a shutdown signal.

use std::sync::Arc;
use std::time::Duration;
use syncledger_projections::{checkpoint, Tables};
use syncledger_store::Store;
use syncledger_testkit::fixtures::{seed_workspace, EVENTS_PER_WORKSPACE};
use syncledger_testkit::projections::{assert_exactly_once, assert_status_rows, runner, snapshot};
use syncledger_testkit::{feed_settled, wait_until, with_postgres, with_sqlite};
use tokio::sync::{watch, Notify};

/// A runner stopped after a few small batches, then a new runner on the same store:
/// every event lands once, and the read model shows the commanded states.
async fn restart_mid_stream(store: Store) -> anyhow::Result<()> {
    let ws = seed_workspace(&store, "Acme").await?;
    feed_settled(&store).await;
    assert_eq!(ws.event_count(), EVENTS_PER_WORKSPACE);
    {
        let first = runner(&store, 3);
        for p in syncledger_projections::all() {
            assert_eq!(first.step(&*p).await?, 3);
            assert_eq!(first.step(&*p).await?, 3);
        }
    }
    for p in syncledger_projections::all() {
        let cp = checkpoint::read(&store.any, p.name())
            .await?
            .unwrap_or_default();
        assert_eq!(cp.events, 6, "{} stopped after two batches", p.name());
    }
    let second = runner(&store, 3);
    let projections = syncledger_projections::all().len();
    assert_eq!(
        second.catch_up().await?,
        projections * (EVENTS_PER_WORKSPACE as usize - 6)
    );
    assert_exactly_once(&store).await?;
    assert_status_rows(&store, &[ws]).await?;
    assert_eq!(second.catch_up().await?, 0, "nothing left to apply");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runner_restarted_mid_stream_applies_each_event_once() -> anyhow::Result<()> {
    with_sqlite(restart_mid_stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runner_restarted_mid_stream_applies_each_event_once() -> anyhow::Result<()> {
    with_postgres(restart_mid_stream).await
}

/// A crash mid-batch: the runner's transaction applied a batch and was dropped without
/// committing. Nothing may change, and a later catch-up applies every event once.
async fn uncommitted_batch(store: Store) -> anyhow::Result<()> {
    let ws = seed_workspace(&store, "Acme").await?;
    feed_settled(&store).await;
    let live = runner(&store, 4);
    for p in syncledger_projections::all() {
        live.step(&*p).await?;
    }
    let before = snapshot(&store).await?;
    for p in syncledger_projections::all() {
        let mut tx = store.any.begin().await?;
        let cp = checkpoint::lock(&mut tx, p.name()).await?;
        let events = store.feed().read(cp.position, 100).await?;
        assert!(!events.is_empty());
        p.apply(&mut tx, &Tables::live(p.tables()), &events).await?;
        drop(tx);
    }
    assert_eq!(
        snapshot(&store).await?,
        before,
        "an uncommitted batch changed the read models"
    );
    live.catch_up().await?;
    assert_exactly_once(&store).await?;
    assert_status_rows(&store, &[ws]).await?;
    let report = syncledger_projections::audit::verify(&store, None).await?;
    assert_eq!(report.broken, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_uncommitted_batch_changes_nothing() -> anyhow::Result<()> {
    with_sqlite(uncommitted_batch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_uncommitted_batch_changes_nothing() -> anyhow::Result<()> {
    with_postgres(uncommitted_batch).await
}

async fn audit_rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&store.any)
        .await
        .unwrap_or(-1)
}

/// `run` follows new events as they are appended and returns once shutdown is signalled.
async fn follow_until_shutdown(store: Store) -> anyhow::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let live = runner(&store, 5);
    let task = tokio::spawn({
        let wake = wake.clone();
        async move { live.run(shutdown, wake).await }
    });
    let mut workspaces = Vec::new();
    for name in ["Acme", "Globex"] {
        workspaces.push(seed_workspace(&store, name).await?);
        wake.notify_waiters();
        let expected = EVENTS_PER_WORKSPACE * workspaces.len() as i64;
        // Every projection: a runner asked to stop leaves its backlog to the next start.
        wait_until(
            Duration::from_secs(20),
            "the runner has applied every event",
            || async {
                let caught_up = syncledger_projections::lag::lags(&store)
                    .await
                    .is_ok_and(|lags| lags.iter().all(|l| l.oldest_unapplied.is_none()));
                caught_up && audit_rows(&store).await == expected
            },
        )
        .await;
    }
    stop.send(true)?;
    tokio::time::timeout(Duration::from_secs(20), task).await??;
    assert_exactly_once(&store).await?;
    assert_status_rows(&store, &workspaces).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runner_follows_the_feed_until_shutdown() -> anyhow::Result<()> {
    with_sqlite(follow_until_shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runner_follows_the_feed_until_shutdown() -> anyhow::Result<()> {
    with_postgres(follow_until_shutdown).await
}

/// How far each projection trails the log (what `/v1/ready` judges and the metrics
/// show): before any runner, every projection waits on the log's first event, the whole
/// log's positions behind; a projection two batches in waits on the event after them, the
/// positions after its checkpoint behind; after a catch-up none waits on anything.
async fn lag_follows_the_checkpoints(store: Store) -> anyhow::Result<()> {
    use syncledger_projections::lag::lags;
    seed_workspace(&store, "Acme").await?;
    feed_settled(&store).await;
    let events = syncledger_testkit::projections::all_events(&store).await?;
    let first = events.first().map(|e| e.recorded_at);
    let head = events.last().map_or(0, |e| e.position.pos);
    assert!(head > 0);
    let all = lags(&store).await?;
    assert_eq!(all.len(), syncledger_projections::all().len());
    for lag in &all {
        assert_eq!(
            lag.oldest_unapplied, first,
            "{} before any runner",
            lag.projection
        );
        assert_eq!(lag.positions, head, "{} before any runner", lag.projection);
        assert!(lag.behind(chrono::Utc::now()) >= chrono::Duration::zero());
    }

    let partial = runner(&store, 3);
    let records = syncledger_projections::all()
        .into_iter()
        .find(|p| p.name() == "records")
        .ok_or_else(|| anyhow::anyhow!("the records projection"))?;
    partial.step(&*records).await?;
    partial.step(&*records).await?;
    let seventh = events.get(6).map(|e| e.recorded_at);
    let sixth = events.get(5).map_or(0, |e| e.position.pos);
    for lag in lags(&store).await? {
        let (want, positions) = if lag.projection == "records" {
            (seventh, head - sixth)
        } else {
            (first, head)
        };
        assert_eq!(lag.oldest_unapplied, want, "{}", lag.projection);
        assert_eq!(lag.positions, positions, "{}", lag.projection);
    }

    runner(&store, 100).catch_up().await?;
    for lag in lags(&store).await? {
        assert_eq!(lag.oldest_unapplied, None, "{} caught up", lag.projection);
        assert_eq!(lag.positions, 0, "{} caught up", lag.projection);
        assert_eq!(lag.behind(chrono::Utc::now()), chrono::Duration::zero());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lag_follows_the_checkpoints() -> anyhow::Result<()> {
    with_sqlite(lag_follows_the_checkpoints).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lag_follows_the_checkpoints() -> anyhow::Result<()> {
    with_postgres(lag_follows_the_checkpoints).await
}

/// A projection that first does what the test says (`before`), then applies the batch as
/// `inner` does: one asking for shutdown mid-batch, one stuck in its batch, one whose
/// every batch makes the log grow.
struct Before<F> {
    inner: Arc<dyn syncledger_projections::Projection>,
    before: F,
}

#[async_trait::async_trait]
impl<F, Fut> syncledger_projections::Projection for Before<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[syncledger_store::StoredEvent],
    ) -> Result<(), syncledger_projections::ProjectionError> {
        (self.before)().await;
        self.inner.apply(conn, tables, events).await
    }
}

/// Shutdown asked during a batch with a backlog behind it: the batch in progress commits,
/// and the runner returns instead of draining the backlog first (it used to apply every
/// pending event of every projection before looking at the signal again). The other
/// projections follow side by side: each may finish the batch it had in hand, none
/// drains its backlog.
async fn shutdown_stops_after_the_current_batch(store: Store) -> anyhow::Result<()> {
    for name in ["Acme", "Globex", "Initech"] {
        seed_workspace(&store, name).await?;
    }
    feed_settled(&store).await;
    let backlog = 3 * EVENTS_PER_WORKSPACE;
    let (stop, shutdown) = watch::channel(false);
    let mut projections = syncledger_projections::all();
    let first = projections.remove(0);
    let first_name = first.name();
    // The first projection asks for shutdown as it applies its first batch, as a SIGTERM
    // arriving mid-batch would.
    let before = move || {
        stop.send_replace(true);
        std::future::ready(())
    };
    projections.insert(
        0,
        Arc::new(Before {
            inner: first,
            before,
        }),
    );
    let live =
        syncledger_projections::runner::Runner::new(store.clone(), projections).with_batch(2);
    tokio::time::timeout(
        Duration::from_secs(20),
        live.run(shutdown, Arc::new(Notify::new())),
    )
    .await?;
    for p in syncledger_projections::all() {
        let cp = checkpoint::read(&store.any, p.name())
            .await?
            .unwrap_or_default();
        if p.name() == first_name {
            assert_eq!(cp.events, 2, "{} after a shutdown mid-batch", p.name());
        } else {
            assert!(
                cp.events < backlog && cp.events % 2 == 0,
                "{} applied {} of {backlog} events in whole batches",
                p.name(),
                cp.events
            );
        }
    }
    runner(&store, 100).catch_up().await?;
    assert_exactly_once(&store).await?;
    Ok(())
}

/// A projection stuck in a batch holds back only itself: every other one follows the
/// feed to its head meanwhile (the runner used to apply the projections in turn, each
/// round waiting on the slowest), when they may apply side by side (`with_parallelism`).
/// PostgreSQL only: SQLite has one writer, so there a batch in progress holds every other
/// projection's batch until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_stuck_projection_does_not_hold_back_the_others() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        seed_workspace(&store, "Acme").await?;
        feed_settled(&store).await;
        let release = Arc::new(Notify::new());
        let mut projections = syncledger_projections::all();
        let first = projections.remove(0);
        let stuck = first.name();
        projections.insert(
            0,
            Arc::new(Before {
                inner: first,
                before: {
                    let release = release.clone();
                    move || {
                        let release = release.clone();
                        async move { release.notified().await }
                    }
                },
            }),
        );
        // Side by side: with one turn at a time the stuck batch would hold every other.
        let live = syncledger_projections::runner::Runner::new(store.clone(), projections)
            .with_batch(4)
            .with_parallelism(4);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(async move { live.run(shutdown, Arc::new(Notify::new())).await });
        let others: Vec<&str> = syncledger_projections::names()
            .into_iter()
            .filter(|n| *n != stuck)
            .collect();
        wait_until(
            Duration::from_secs(20),
            "every other projection has applied the whole feed",
            || async {
                let mut all = true;
                for name in &others {
                    let cp = checkpoint::read(&store.any, name).await;
                    all &= cp.is_ok_and(|c| c.unwrap_or_default().events == EVENTS_PER_WORKSPACE);
                }
                all
            },
        )
        .await;
        let held = checkpoint::read(&store.any, stuck)
            .await?
            .unwrap_or_default();
        assert_eq!(held.events, 0, "{stuck} is still in its first batch");
        stop.send(true)?;
        release.notify_one();
        tokio::time::timeout(Duration::from_secs(20), task).await??;
        let done = checkpoint::read(&store.any, stuck)
            .await?
            .unwrap_or_default();
        assert_eq!(
            done.events, 4,
            "{stuck} finished the batch in hand, then stopped"
        );
        runner(&store, 100).catch_up().await?;
        assert_exactly_once(&store).await?;
        Ok(())
    })
    .await
}

/// A runner whose task is aborted (as a server's background tasks are at the end of a
/// grace period) stops its followers with it: none goes on applying batches. Each
/// follower holds the wake-up notifier; once all are gone only the test holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_runner_stops_its_followers() -> anyhow::Result<()> {
    with_sqlite(|store| async move {
        seed_workspace(&store, "Acme").await?;
        let wake = Arc::new(Notify::new());
        let (_stop, shutdown) = watch::channel(false);
        let live = runner(&store, 2);
        let task = tokio::spawn({
            let wake = wake.clone();
            async move { live.run(shutdown, wake).await }
        });
        let followers = syncledger_projections::all().len();
        wait_until(
            Duration::from_secs(20),
            "every follower has started",
            || {
                let held = Arc::strong_count(&wake);
                async move { held > followers }
            },
        )
        .await;
        task.abort();
        wait_until(
            Duration::from_secs(20),
            "every follower has stopped",
            || {
                let held = Arc::strong_count(&wake);
                async move { held == 1 }
            },
        )
        .await;
        Ok(())
    })
    .await
}

/// A yielding runner (a run bringing the records read model up to its own events) does
/// not queue behind another transaction applying the same projection: it returns at
/// once, and applies once that transaction has ended. Ten concurrent runs used to queue
/// on the checkpoint's lock one behind the other, each holding back the feed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_yielding_runner_does_not_wait_for_a_held_checkpoint() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        seed_workspace(&store, "Acme").await?;
        feed_settled(&store).await;
        let records = || {
            syncledger_projections::runner::Runner::new(
                store.clone(),
                vec![Arc::new(syncledger_projections::records::Records)],
            )
        };
        // Another applier holds the checkpoint (its row is created by a first batch).
        records()
            .with_batch(1)
            .step(&syncledger_projections::records::Records)
            .await?;
        let mut holder = store.any.begin().await?;
        let held = checkpoint::lock(&mut holder, "records").await?;
        assert_eq!(held.events, 1);
        let applied =
            tokio::time::timeout(Duration::from_secs(10), records().yielding().catch_up())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the yielding runner waited for the held checkpoint")
                })??;
        assert_eq!(applied, 0, "nothing applied while the checkpoint is held");
        // The plain runner waits its turn: it is still waiting when the holder ends.
        let waiting = tokio::spawn({
            let plain = records();
            async move { plain.catch_up().await }
        });
        holder.rollback().await?;
        assert_eq!(waiting.await?? as i64, EVENTS_PER_WORKSPACE - 1);
        assert_eq!(records().yielding().catch_up().await?, 0, "caught up");
        Ok(())
    })
    .await
}

/// `catch_up` applies the log as far as it reached when called, and returns, however
/// fast the log grows meanwhile: it used to chase the head, so a run bringing the
/// records read model up to its own start applied every other run's import first (one
/// of ten concurrent imports took 29 s instead of 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_catch_up_does_not_chase_a_growing_log() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        seed_workspace(&store, "Acme").await?;
        feed_settled(&store).await;
        let (more, mut asks) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
        let writer = tokio::spawn({
            let store = store.clone();
            async move {
                // Bounded, so that a runner that chases ends too (and fails the test).
                for n in 0..40 {
                    let Some(done) = asks.recv().await else { break };
                    seed_workspace(&store, &format!("More {n}")).await?;
                    let _ = done.send(());
                }
                anyhow::Ok(())
            }
        });
        let status: Arc<dyn syncledger_projections::Projection> =
            Arc::new(syncledger_projections::integration_status::IntegrationStatus);
        let live = syncledger_projections::runner::Runner::new(
            store.clone(),
            // Each batch makes the writer append a whole workspace more, and waits until it
            // has: the log grows faster than it is applied, as while imports run.
            vec![Arc::new(Before {
                inner: status,
                before: move || {
                    let more = more.clone();
                    async move {
                        let (done, written) = tokio::sync::oneshot::channel();
                        if more.send(done).await.is_ok() {
                            let _ = written.await;
                        }
                    }
                },
            })],
        )
        .with_batch(2);
        let applied = tokio::time::timeout(Duration::from_secs(60), live.catch_up()).await??;
        assert!(
            (EVENTS_PER_WORKSPACE as usize..EVENTS_PER_WORKSPACE as usize + 2).contains(&applied),
            "applied {applied} events: the log as it was, not what was appended meanwhile"
        );
        drop(live);
        writer.await??;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shutdown_stops_after_the_current_batch() -> anyhow::Result<()> {
    with_sqlite(shutdown_stops_after_the_current_batch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shutdown_stops_after_the_current_batch() -> anyhow::Result<()> {
    with_postgres(shutdown_stops_after_the_current_batch).await
}

/// When each of the read models' tables was last analyzed by hand (not by autovacuum).
async fn analyzed_tables(store: &Store) -> anyhow::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for p in syncledger_projections::all() {
        for table in p.tables() {
            let analyzed: bool = sqlx::query_scalar(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
                  WHERE schemaname = current_schema() AND relname = $1",
            )
            .bind(*table)
            .fetch_one(&store.any)
            .await?;
            out.push((table.to_string(), analyzed));
        }
    }
    Ok(out)
}

/// The live runner keeps its tables' planner statistics: a read model last analyzed while
/// nearly empty had a run's look-up of its links by remote id planned as a walk of the
/// integration's links, which made a 100,000-row import quadratic where autovacuum is off
/// (as on this project's machines). Below the threshold nothing is analyzed; past it,
/// every table of every projection is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runner_analyzes_the_tables_it_has_grown() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        seed_workspace(&store, "Acme").await?;
        seed_workspace(&store, "Globex").await?;
        feed_settled(&store).await;
        let events = 2 * EVENTS_PER_WORKSPACE;

        let below = runner(&store, 4).with_first_analyze(events + 1);
        below.catch_up().await?;
        let fresh = analyzed_tables(&store).await?;
        assert!(
            fresh.iter().all(|(_, analyzed)| !analyzed),
            "{events} events applied, fewer than the threshold: {fresh:?}"
        );

        seed_workspace(&store, "Initech").await?;
        feed_settled(&store).await;
        let past = runner(&store, 4).with_first_analyze(EVENTS_PER_WORKSPACE);
        past.catch_up().await?;
        let analyzed = analyzed_tables(&store).await?;
        assert!(
            analyzed.iter().all(|(_, analyzed)| *analyzed),
            "{EVENTS_PER_WORKSPACE} events applied to each projection: {analyzed:?}"
        );
        Ok(())
    })
    .await
}

/// Projections standing at different checkpoints: a catch-up reads each batch of the feed
/// once for the projections at the same place, and never hands one projection a batch read
/// for another place. Each projection is first moved a different distance (in batches of
/// 2), then a runner with batches of 3 catches all of them up: every event lands once, and
/// the tables equal what a rebuild of each projection from the whole log makes.
async fn uneven_checkpoints(store: Store) -> anyhow::Result<()> {
    seed_workspace(&store, "Acme").await?;
    seed_workspace(&store, "Globex").await?;
    feed_settled(&store).await;
    let early = runner(&store, 2);
    for (i, p) in syncledger_projections::all().iter().enumerate() {
        for _ in 0..i {
            assert_eq!(early.step(p.as_ref()).await?, 2);
        }
    }
    runner(&store, 3).catch_up().await?;
    assert_exactly_once(&store).await?;
    let caught_up = snapshot(&store).await?;
    for p in syncledger_projections::all() {
        syncledger_projections::rebuild::rebuild(&store, p.as_ref(), 1000, &|_| {}).await?;
    }
    assert_eq!(
        snapshot(&store).await?,
        caught_up,
        "a rebuild from the log differs"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_projections_at_uneven_checkpoints_catch_up_exactly_once() -> anyhow::Result<()> {
    with_sqlite(uneven_checkpoints).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projections_at_uneven_checkpoints_catch_up_exactly_once() -> anyhow::Result<()> {
    with_postgres(uneven_checkpoints).await
}
