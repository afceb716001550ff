//! Replay for compliance: a projection as it was at a past instant, built into a separate
//! database, without touching the live tables or checkpoints.
//!
//! The live store is only read (its feed, cut at `until`); every write goes to `target`,
//! a database created by the caller with the migrations (so the tables have their real
//! shape). The target also gets the projection's checkpoint row, so it says how far it
//! was built.
//!
//! A projection may look up an aggregate's first event in `events` (the conflict queue
//! does, for a record's workspace and entity). The target's own `events` table stays
//! empty; a temporary table of the same name, on the target connection only, holds the
//! first event of each aggregate replayed so far and shadows it for those look-ups.

use crate::checkpoint::{self, Checkpoint};
use crate::{Projection, ProjectionError, Tables};
use chrono::{DateTime, Utc};
use std::time::Duration;
use syncledger_store::{Position, Store, StoredEvent};

/// How long to wait for events recorded by `until` that are not readable yet (PostgreSQL:
/// a transaction still open somewhere on the server holds the feed back).
const HORIZON_WAIT: Duration = Duration::from_secs(30);

/// What a replay put in its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Events applied: those recorded at or before `until`.
    pub events: i64,
    /// The feed position of the last event applied (`Position::START` if none).
    pub last_position: Position,
}

/// Build `p` into `target` from every event recorded at or before `until`.
/// `progress(applied_so_far)` is called after every batch.
pub async fn replay_until(
    live: &Store,
    p: &dyn Projection,
    until: DateTime<Utc>,
    target: &mut sqlx::AnyConnection,
    batch: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<Replayed, ProjectionError> {
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS events (aggregate_type TEXT NOT NULL,
             aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, payload TEXT NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(&mut *target)
    .await?;
    let tables = Tables::live(p.tables());
    let feed = live.feed();
    let deadline = tokio::time::Instant::now() + HORIZON_WAIT;
    let mut cp = Checkpoint::default();
    loop {
        let events = feed
            .read_until(cp.position, batch.max(1), Some(until))
            .await?;
        if let Some(last) = events.last() {
            cp = apply_batch(target, p, &tables, &events, cp, last.position).await?;
            progress(cp.events);
            continue;
        }
        let missing = unreadable(live, until, cp.events).await?;
        if missing == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ProjectionError::Behind { missing });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Replayed {
        events: cp.events,
        last_position: cp.position,
    })
}

async fn apply_batch(
    target: &mut sqlx::AnyConnection,
    p: &dyn Projection,
    tables: &Tables,
    events: &[StoredEvent],
    cp: Checkpoint,
    last: Position,
) -> Result<Checkpoint, ProjectionError> {
    use sqlx::Connection;
    let mut tx = target.begin().await?;
    checkpoint::lock(&mut tx, p.name()).await?;
    for e in events.iter().filter(|e| e.sequence == 1) {
        sqlx::query(
            "INSERT INTO temp.events (aggregate_type, aggregate_id, sequence, payload)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&e.aggregate_type)
        .bind(&e.aggregate_id)
        .bind(e.sequence)
        .bind(e.payload.to_string())
        .execute(&mut *tx)
        .await?;
    }
    p.apply(&mut tx, tables, events).await?;
    let next = Checkpoint {
        position: last,
        events: cp.events + events.len() as i64,
    };
    checkpoint::save(&mut tx, p.name(), next).await?;
    tx.commit().await?;
    Ok(next)
}

/// Events recorded at or before `until` that the feed has not handed out yet. Only
/// PostgreSQL can have any: SQLite's single writer makes the feed's end the log's end.
async fn unreadable(
    live: &Store,
    until: DateTime<Utc>,
    applied: i64,
) -> Result<i64, ProjectionError> {
    if !live.is_postgres() {
        return Ok(0);
    }
    let recorded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE recorded_at <= CAST($1 AS timestamptz)",
    )
    .bind(crate::rfc3339(until))
    .fetch_one(&live.any)
    .await?;
    Ok((recorded - applied).max(0))
}
