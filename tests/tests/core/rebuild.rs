//! Rebuild: replaying a projection into fresh tables and swapping them in yields the same
//! rows and checkpoint, and the live runner carries on afterwards.

use std::sync::Arc;
use std::time::Duration;
use syncledger_projections::audit::verify;
use syncledger_projections::rebuild::{rebuild, rebuild_all};
use syncledger_projections::Projection;
use syncledger_store::Store;
use syncledger_testkit::fixtures::{
    seed_conflicts, seed_sync_activity, seed_workspace, EVENTS_PER_WORKSPACE,
};
use syncledger_testkit::projections::{
    assert_exactly_once, assert_status_rows, runner, snapshot, TABLES,
};
use syncledger_testkit::{feed_settled, wait_until, with_postgres, with_sqlite};
use tokio::sync::{watch, Notify};

/// How many indexes the table has, so a swap that loses one is caught.
async fn index_count(store: &Store, table: &str) -> anyhow::Result<i64> {
    let sql = if store.is_postgres() {
        "SELECT COUNT(*) FROM pg_indexes WHERE tablename = $1"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = $1"
    };
    Ok(sqlx::query_scalar(sql)
        .bind(table)
        .fetch_one(&store.any)
        .await?)
}

async fn index_counts(store: &Store) -> anyhow::Result<Vec<i64>> {
    let mut counts = Vec::new();
    for (table, _) in TABLES {
        counts.push(index_count(store, table).await?);
    }
    Ok(counts)
}

/// Every projection rebuilt one after the other, each reading the whole log.
async fn rebuild_each(store: &Store) -> anyhow::Result<()> {
    let count = store.feed().count().await?;
    for p in syncledger_projections::all() {
        let applied = rebuild(store, &*p, 4, &|_| {}).await?;
        assert_eq!(applied, count, "{} replayed every event", p.name());
    }
    Ok(())
}

/// Every projection rebuilt from one read of the log (`syncledger replay`), in batches of
/// `batch`; returns how many events each applied.
async fn rebuild_together(store: &Store, batch: i64) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let all = syncledger_projections::all();
    let selected: Vec<&dyn Projection> = all.iter().map(|p| p.as_ref()).collect();
    let applied = rebuild_all(store, &selected, batch, &|_| {}).await?;
    let mut names: Vec<&str> = applied.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let mut expected = syncledger_projections::names();
    expected.sort_unstable();
    assert_eq!(names, expected, "every projection rebuilt once");
    Ok(applied)
}

async fn rebuild_is_invisible(store: Store) -> anyhow::Result<()> {
    let mut workspaces = vec![
        seed_workspace(&store, "Acme").await?,
        seed_workspace(&store, "Globex").await?,
    ];
    // Runs, records and conflicts too, so their read models are rebuilt and compared as well.
    let acme = &workspaces[0];
    seed_sync_activity(&store, &acme.id, &acme.integrations[0].id).await?;
    seed_conflicts(&store, &acme.id, &acme.integrations[0].id).await?;
    feed_settled(&store).await;
    let live = runner(&store, 5);
    live.catch_up().await?;
    let conflicts: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM conflicts")
        .fetch_one(&store.any)
        .await?;
    assert_eq!(conflicts, 6, "the conflict queue has something to rebuild");
    let before = snapshot(&store).await?;
    let indexes = index_counts(&store).await?;

    rebuild_each(&store).await?;
    assert_eq!(
        snapshot(&store).await?,
        before,
        "rebuilt tables and checkpoints differ"
    );
    assert_eq!(
        index_counts(&store).await?,
        indexes,
        "the swap kept every index"
    );

    // The live runner keeps going on the swapped-in tables, and the chain continues.
    workspaces.push(seed_workspace(&store, "Initech").await?);
    feed_settled(&store).await;
    let projections = syncledger_projections::all().len();
    assert_eq!(
        live.catch_up().await?,
        projections * EVENTS_PER_WORKSPACE as usize
    );
    assert_exactly_once(&store).await?;
    assert_status_rows(&store, &workspaces).await?;
    assert_eq!(verify(&store, None).await?.broken, None);

    // A second rebuild, every projection from one read of the log (shadow names now
    // collide with what the first swap left behind).
    let before = snapshot(&store).await?;
    let count = store.feed().count().await?;
    for (name, applied) in rebuild_together(&store, 4).await? {
        assert_eq!(applied, count, "{name} replayed every event");
    }
    assert_eq!(snapshot(&store).await?, before, "second rebuild differs");
    assert_eq!(index_counts(&store).await?, indexes);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rebuild_swaps_in_identical_tables() -> anyhow::Result<()> {
    with_sqlite(rebuild_is_invisible).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuild_swaps_in_identical_tables() -> anyhow::Result<()> {
    with_postgres(rebuild_is_invisible).await
}

async fn audit_rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&store.any)
        .await
        .unwrap_or(-1)
}

/// Rebuild while the live runner follows the feed and new events keep arriving: the swap
/// loses and repeats nothing, and the result equals a rebuild from a quiet store.
async fn rebuild_under_load(store: Store) -> anyhow::Result<()> {
    let mut workspaces = vec![seed_workspace(&store, "Acme").await?];
    let (stop, shutdown) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let live = tokio::spawn({
        let (live, wake) = (runner(&store, 3), wake.clone());
        async move { live.run(shutdown, wake).await }
    });
    let writer = tokio::spawn({
        let (store, wake) = (store.clone(), wake.clone());
        async move {
            let mut seeded = Vec::new();
            for name in ["Globex", "Initech", "Umbrella"] {
                seeded.push(seed_workspace(&store, name).await?);
                wake.notify_one();
            }
            anyhow::Ok(seeded)
        }
    });
    // Every projection from one read of the log, while events keep arriving: each swap
    // applies the tail it finds.
    rebuild_together(&store, 2).await?;
    workspaces.extend(writer.await??);
    feed_settled(&store).await;
    wake.notify_one();
    let expected = EVENTS_PER_WORKSPACE * workspaces.len() as i64;
    // Every projection, not only the audit log: a runner asked to stop leaves its backlog
    // to the next start (it used to drain it first).
    wait_until(
        Duration::from_secs(30),
        "the live runner has applied every event",
        || async {
            let caught_up = syncledger_projections::lag::lags(&store)
                .await
                .is_ok_and(|lags| lags.iter().all(|l| l.oldest_unapplied.is_none()));
            caught_up && audit_rows(&store).await == expected
        },
    )
    .await;
    stop.send(true)?;
    tokio::time::timeout(Duration::from_secs(30), live).await??;

    assert_exactly_once(&store).await?;
    assert_status_rows(&store, &workspaces).await?;
    assert_eq!(verify(&store, None).await?.broken, None);
    let settled = snapshot(&store).await?;
    rebuild_each(&store).await?;
    assert_eq!(snapshot(&store).await?, settled, "a quiet rebuild differs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rebuild_while_the_runner_follows_new_events() -> anyhow::Result<()> {
    with_sqlite(rebuild_under_load).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rebuild_while_the_runner_follows_new_events() -> anyhow::Result<()> {
    with_postgres(rebuild_under_load).await
}
