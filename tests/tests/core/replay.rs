//! Replay into a separate file: up to now it equals the live read models (each table,
//! row for row, and the checkpoint), up to an earlier instant it holds only what had
//! been recorded by then, and the live tables and checkpoints never change.

use chrono::Utc;
use sqlx::Connection;
use std::path::Path;
use syncledger_api::replay::replay_into;
use syncledger_store::Store;
use syncledger_testkit::fixtures::{seed_conflicts, seed_sync_activity, seed_workspace};
use syncledger_testkit::projections::{runner, snapshot, TABLES};
use syncledger_testkit::rows::dump;
use syncledger_testkit::{feed_settled, with_postgres, with_sqlite};

/// Every table of `p` in the file at `path`, dumped as the live ones are.
async fn dump_file(path: &Path, p: &str) -> anyhow::Result<Vec<Vec<Vec<String>>>> {
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}?mode=ro", path.display())).await?;
    let tables = syncledger_projections::by_name(p)?.tables();
    let mut out = Vec::new();
    for (table, order) in TABLES.iter().filter(|(t, _)| tables.contains(t)) {
        out.push(dump(&pool, table, order).await?);
    }
    pool.close().await;
    Ok(out)
}

async fn dump_live(store: &Store, p: &str) -> anyhow::Result<Vec<Vec<Vec<String>>>> {
    let tables = syncledger_projections::by_name(p)?.tables();
    let mut out = Vec::new();
    for (table, order) in TABLES.iter().filter(|(t, _)| tables.contains(t)) {
        out.push(dump(&store.any, table, order).await?);
    }
    Ok(out)
}

async fn replay_matches_the_live_tables(store: Store) -> anyhow::Result<()> {
    let acme = seed_workspace(&store, "Acme").await?;
    feed_settled(&store).await;
    // The newest event's own instant: everything so far, nothing written after.
    let early = store
        .feed()
        .latest_recorded_at()
        .await?
        .ok_or_else(|| anyhow::anyhow!("events were written"))?;
    let early_events = store.feed().count().await?;
    seed_workspace(&store, "Globex").await?;
    seed_sync_activity(&store, &acme.id, &acme.integrations[0].id).await?;
    seed_conflicts(&store, &acme.id, &acme.integrations[0].id).await?;
    feed_settled(&store).await;
    runner(&store, 7).catch_up().await?;
    let live = snapshot(&store).await?;
    let total = store.feed().count().await?;
    let dir = tempfile::tempdir()?;
    let now = Utc::now();

    for p in syncledger_projections::all() {
        // Batches of 3: a record's later events land in other batches than its first.
        let all = replay_into(&store, p.as_ref(), now, dir.path(), 3, &|_| {}).await?;
        assert_eq!(all.replayed.events, total, "{}", p.name());
        assert_eq!(
            dump_file(&all.database, p.name()).await?,
            dump_live(&store, p.name()).await?,
            "{} replayed up to now equals the live tables",
            p.name()
        );
        let mut conn =
            sqlx::AnyConnection::connect(&format!("sqlite://{}", all.database.display())).await?;
        let events: i64 =
            sqlx::query_scalar("SELECT events FROM projection_checkpoints WHERE projection = $1")
                .bind(p.name())
                .fetch_one(&mut conn)
                .await?;
        conn.close().await?;
        assert_eq!(events, total);

        let past = replay_into(&store, p.as_ref(), early, dir.path(), 500, &|_| {}).await?;
        assert_eq!(past.replayed.events, early_events, "{}", p.name());
        assert_ne!(past.database, all.database);
    }
    // Only Acme's first events are in the audit log as it was.
    let audit = syncledger_projections::by_name("audit_log")?;
    let past = replay_into(
        &store,
        audit.as_ref(),
        early,
        &dir.path().join("again"),
        50,
        &|_| {},
    )
    .await?;
    let rows = dump_file(&past.database, "audit_log").await?;
    assert_eq!(rows[0].len() as i64, early_events);
    assert!(
        rows[0].iter().all(|row| row[0] == acme.id),
        "one workspace then"
    );
    assert_eq!(
        snapshot(&store).await?,
        live,
        "the live tables did not change"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replay_until_now_equals_the_live_tables() -> anyhow::Result<()> {
    with_sqlite(replay_matches_the_live_tables).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_until_now_equals_the_live_tables() -> anyhow::Result<()> {
    with_postgres(replay_matches_the_live_tables).await
}
