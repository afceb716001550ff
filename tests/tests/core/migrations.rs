//! Migrations are idempotent: opening the same database again succeeds and keeps its data.

use serde_json::json;
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store, StoreConfig};
use syncledger_tests::{postgres_store, sqlite_store};

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
        payload: json!({}),
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
