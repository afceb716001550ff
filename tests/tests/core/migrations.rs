//! Migrations are idempotent: opening the same database again succeeds and keeps its data.

use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store, StoreConfig};
use syncledger_testkit::{postgres_store, sqlite_store};

async fn applied_migrations(store: &Store) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.any)
        .await?)
}

async fn one_event(store: &Store) -> anyhow::Result<()> {
    let event = NewEvent {
        aggregate_type: "migration_test".into(),
        aggregate_id: "a".into(),
        sequence: 1,
        event_type: "Kept".into(),
        event_version: "1".into(),
        payload: "{}".into(),
        metadata: Metadata::new("test", "ws", "corr"),
    };
    append(&store.events, &[event]).await?;
    Ok(())
}

/// Open `config` again over `first` and check nothing was applied twice or lost.
async fn reopen(first: &Store, config: &StoreConfig) -> anyhow::Result<()> {
    one_event(first).await?;
    let applied = applied_migrations(first).await?;
    assert!(applied >= 3);
    let second = Store::open(config).await?;
    assert_eq!(applied_migrations(&second).await?, applied);
    assert_eq!(second.feed().count().await?, 1, "data survives reopening");
    second.migrate().await?;
    second.close().await;
    Ok(())
}

#[tokio::test]
async fn sqlite_store_opens_twice() -> anyhow::Result<()> {
    let (first, dir) = sqlite_store().await;
    reopen(&first, &StoreConfig::sqlite(dir.path())).await?;
    first.close().await;
    Ok(())
}

#[tokio::test]
async fn postgres_store_opens_twice() -> anyhow::Result<()> {
    let Some((first, db)) = postgres_store().await else {
        return Ok(());
    };
    let result = reopen(&first, &StoreConfig::postgres(db.url.clone())).await;
    first.close().await;
    db.cleanup().await;
    result
}

/// A store taken back to before migration 0009 (no field changes, nor request ids, in the audit log), with
/// audit rows as the earlier projection wrote them, is brought forward by opening it: the
/// audit log is rebuilt from the events into the same chain, now with the changes.
async fn upgrade_rebuilds_the_audit_log(store: Store) -> anyhow::Result<()> {
    use syncledger_projections::audit::verify;
    use syncledger_testkit::fixtures::{seed_sync_activity, seed_workspace};
    use syncledger_testkit::projections::runner;
    use syncledger_testkit::rows::dump;

    let ws = seed_workspace(&store, "Acme").await?;
    seed_sync_activity(&store, &ws.id, &ws.integrations[0].id).await?;
    syncledger_testkit::feed_settled(&store).await;
    runner(&store, 7).catch_up().await?;
    let current = dump(&store.any, "audit_log", "position").await?;
    let changed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE changes IS NOT NULL")
            .fetch_one(&store.any)
            .await?;
    assert!(changed > 0, "the seeded record events change values");

    for sql in [
        "ALTER TABLE audit_log DROP COLUMN changes",
        // Before 0009 there was no request id either (0014): its column comes back after
        // `changes`, in the order a new database has them.
        "ALTER TABLE audit_log DROP COLUMN request_id",
        "DELETE FROM _sqlx_migrations WHERE version = 14",
        // Nor the acting-for column (0019), which comes back after both.
        "ALTER TABLE audit_log DROP COLUMN acting_for",
        "DELETE FROM _sqlx_migrations WHERE version = 19",
        "DROP TABLE audit_record_state",
        "DROP TABLE audit_run_integration",
        "UPDATE audit_log SET integration_id = NULL WHERE aggregate_type <> 'integration'",
        "DELETE FROM _sqlx_migrations WHERE version = 9",
    ] {
        sqlx::query(sql).execute(&store.any).await?;
    }
    store.migrate().await?;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&store.any)
        .await?;
    assert_eq!(left, 0, "the old rows are gone, to be rebuilt");
    runner(&store, 5).catch_up().await?;
    assert_eq!(dump(&store.any, "audit_log", "position").await?, current);
    let report = verify(&store, None).await?;
    assert_eq!(report.broken, None);
    assert_eq!(report.checked, store.feed().count().await?);
    Ok(())
}

#[tokio::test]
async fn sqlite_upgrade_rebuilds_the_audit_log() -> anyhow::Result<()> {
    syncledger_testkit::with_sqlite(upgrade_rebuilds_the_audit_log).await
}

#[tokio::test]
async fn postgres_upgrade_rebuilds_the_audit_log() -> anyhow::Result<()> {
    syncledger_testkit::with_postgres(upgrade_rebuilds_the_audit_log).await
}

/// A store taken back to before migration 0024 (links keyed by remote id alone, without
/// their entity) is brought forward by opening it: every link keeps its row and gains its
/// record's entity, and the key now includes it.
async fn upgrade_keys_links_by_entity(store: Store) -> anyhow::Result<()> {
    use syncledger_testkit::fixtures::{seed_sync_activity, seed_workspace};
    use syncledger_testkit::projections::runner;
    use syncledger_testkit::rows::dump;

    let ws = seed_workspace(&store, "Acme").await?;
    seed_sync_activity(&store, &ws.id, &ws.integrations[0].id).await?;
    syncledger_testkit::feed_settled(&store).await;
    runner(&store, 7).catch_up().await?;
    let order = "integration_id, entity, remote_id";
    let current = dump(&store.any, "record_links", order).await?;
    let unset: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_links WHERE entity = ''")
        .fetch_one(&store.any)
        .await?;
    let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM record_links")
        .fetch_one(&store.any)
        .await?;
    assert!(
        links > 0 && unset == 0,
        "{links} links, {unset} without entity"
    );

    let back: &[&str] = if store.is_postgres() {
        &[
            "ALTER TABLE record_links DROP CONSTRAINT record_links_pkey",
            "ALTER TABLE record_links DROP COLUMN entity",
            "ALTER TABLE record_links ADD PRIMARY KEY (workspace_id, integration_id, remote_id)",
        ]
    } else {
        &[
            "CREATE TABLE old_links (workspace_id TEXT NOT NULL, integration_id TEXT NOT NULL,
                remote_id TEXT NOT NULL, record_id TEXT NOT NULL,
                pending_push BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (workspace_id, integration_id, remote_id))",
            "INSERT INTO old_links SELECT workspace_id, integration_id, remote_id, record_id,
                pending_push FROM record_links",
            "DROP TABLE record_links",
            "ALTER TABLE old_links RENAME TO record_links",
            "CREATE INDEX record_links_record ON record_links (record_id, integration_id)",
            "CREATE INDEX record_links_pending ON record_links (integration_id, pending_push)",
        ]
    };
    {
        // One connection: another's cached schema may still hold the dropped table.
        let mut conn = store.any.acquire().await?;
        for sql in back
            .iter()
            .chain(&["DELETE FROM _sqlx_migrations WHERE version = 24"])
        {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
    }
    store.migrate().await?;
    assert_eq!(dump(&store.any, "record_links", order).await?, current);
    // Two links of one integration may now share a remote id across entities.
    let dup =
        "INSERT INTO record_links (workspace_id, integration_id, entity, remote_id, record_id)
               VALUES ('w', 'i', 'contacts', '1', 'a'), ('w', 'i', 'companies', '1', 'b')";
    sqlx::query(dup).execute(&store.any).await?;
    Ok(())
}

#[tokio::test]
async fn sqlite_upgrade_keys_links_by_entity() -> anyhow::Result<()> {
    syncledger_testkit::with_sqlite(upgrade_keys_links_by_entity).await
}

#[tokio::test]
async fn postgres_upgrade_keys_links_by_entity() -> anyhow::Result<()> {
    syncledger_testkit::with_postgres(upgrade_keys_links_by_entity).await
}
