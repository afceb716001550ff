//! Checks shared by the projection tests (`tests/tests/core`): exactly-once application, the status read
//! model against the commands that were run, and snapshots of every projection table.

use crate::fixtures::SeededWorkspace;
use crate::rows::dump;
use sqlx::Row;
use std::collections::BTreeSet;
use syncledger_domain::Status;
use syncledger_projections::{checkpoint, Runner};
use syncledger_store::{Position, Store, StoredEvent};

/// Every projection's tables and the order that makes their dumps comparable.
pub const TABLES: [(&str, &str); 8] = [
    ("integration_status", "id"),
    ("audit_log", "position"),
    ("audit_record_state", "id"),
    ("audit_run_integration", "run_id"),
    ("sync_runs", "id"),
    ("records", "id"),
    ("record_links", "record_id, integration_id"),
    ("conflicts", "id"),
];

pub fn runner(store: &Store, batch: i64) -> Runner {
    Runner::new(store.clone(), syncledger_projections::all()).with_batch(batch)
}

pub async fn all_events(store: &Store) -> anyhow::Result<Vec<StoredEvent>> {
    let mut events: Vec<StoredEvent> = Vec::new();
    loop {
        let after = events.last().map_or(Position::START, |e| e.position);
        let batch = store.feed().read(after, 1000).await?;
        if batch.is_empty() {
            return Ok(events);
        }
        events.extend(batch);
    }
}

/// Each event has exactly one audit row, and every checkpoint counts each event once and
/// stands at the head of the feed.
pub async fn assert_exactly_once(store: &Store) -> anyhow::Result<()> {
    let events = all_events(store).await?;
    let count = store.feed().count().await?;
    assert_eq!(events.len() as i64, count);
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM audit_log ORDER BY position")
            .fetch_all(&store.any)
            .await?;
    assert_eq!(positions.len() as i64, count, "one audit row per event");
    let distinct: BTreeSet<i64> = positions.iter().copied().collect();
    let expected: BTreeSet<i64> = events.iter().map(|e| e.position.pos).collect();
    assert_eq!(
        distinct, expected,
        "audit rows cover exactly the stored events"
    );
    let head = store.feed().head().await?;
    for p in syncledger_projections::all() {
        let cp = checkpoint::read(&store.any, p.name())
            .await?
            .unwrap_or_default();
        assert_eq!(
            cp.events,
            count,
            "{} checkpoint counts each event once",
            p.name()
        );
        assert_eq!(cp.position, head, "{} checkpoint is at the head", p.name());
    }
    Ok(())
}

/// Each seeded integration's row shows the status its commands left and the version of
/// its last event.
pub async fn assert_status_rows(
    store: &Store,
    workspaces: &[SeededWorkspace],
) -> anyhow::Result<()> {
    for ws in workspaces {
        for i in &ws.integrations {
            let row = sqlx::query(
                "SELECT workspace_id, name, status, version, next_sync_at FROM integration_status WHERE id = $1",
            )
            .bind(&i.id)
            .fetch_one(&store.any)
            .await?;
            assert_eq!(row.try_get::<String, _>("workspace_id")?, ws.id);
            assert_eq!(row.try_get::<String, _>("name")?, i.name);
            assert_eq!(
                row.try_get::<String, _>("status")?,
                i.status.as_str(),
                "{}",
                i.name
            );
            assert_eq!(row.try_get::<i64, _>("version")?, i.events, "{}", i.name);
            let next: Option<String> = row.try_get("next_sync_at")?;
            let expect_next = i.scheduled && i.status == Status::Connected;
            assert_eq!(next.is_some(), expect_next, "next_sync_at of {}", i.name);
        }
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM integration_status")
        .fetch_one(&store.any)
        .await?;
    let seeded: usize = workspaces.iter().map(|w| w.integrations.len()).sum();
    assert_eq!(rows, seeded as i64);
    Ok(())
}

/// The contents of every projection table and every checkpoint.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub tables: Vec<Vec<Vec<String>>>,
    pub checkpoints: Vec<Option<checkpoint::Checkpoint>>,
}

pub async fn snapshot(store: &Store) -> anyhow::Result<Snapshot> {
    let mut tables = Vec::new();
    for (table, order) in TABLES {
        tables.push(dump(&store.any, table, order).await?);
    }
    let mut checkpoints = Vec::new();
    for p in syncledger_projections::all() {
        checkpoints.push(checkpoint::read(&store.any, p.name()).await?);
    }
    Ok(Snapshot {
        tables,
        checkpoints,
    })
}
