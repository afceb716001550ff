//! The global-order feed: every committed event exactly once, in commit order.
//!
//! PostgreSQL: events are ordered by `(transaction_id, global_position)` and a reader only
//! takes events whose transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`,
//! i.e. below every transaction still in flight. A transaction that took its identity
//! value early but commits late is therefore never skipped: the reader waits for it.
//!
//! SQLite: one writer at a time, so the position assigned at insert is commit order.

use crate::EventPool;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

/// A point in the feed. On SQLite `tx` is always 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub tx: i64,
    pub pos: i64,
}

impl Position {
    pub const START: Position = Position { tx: 0, pos: 0 };
}

/// One event as stored, with its place in the global order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn workspace_id(&self) -> &str {
        self.metadata
            .get("workspace_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn chained(&self) -> syncledger_domain::audit::ChainedEvent<'_> {
        syncledger_domain::audit::ChainedEvent {
            position: self.position.pos,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Feed {
    pool: EventPool,
}

const PG_READ: &str = "
SELECT transaction_id::text AS tx, global_position, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload::text AS payload, metadata::text AS metadata, recorded_at
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY transaction_id, global_position
 LIMIT $3";

const PG_READ_UNTIL: &str = "
SELECT transaction_id::text AS tx, global_position, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload::text AS payload, metadata::text AS metadata, recorded_at
  FROM events
 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
   AND recorded_at <= $4
 ORDER BY transaction_id, global_position
 LIMIT $3";

const LITE_READ: &str = "
SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version,
       payload, metadata, recorded_at
  FROM events
 WHERE global_position > $1
 ORDER BY global_position
 LIMIT $2";

impl Feed {
    pub(crate) fn new(pool: EventPool) -> Self {
        Feed { pool }
    }

    /// Up to `limit` events after `after`, in global order.
    pub async fn read(&self, after: Position, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
        self.read_until(after, limit, None).await
    }

    /// As [`Feed::read`], but stops at events recorded after `until`.
    pub async fn read_until(
        &self,
        after: Position,
        limit: i64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                let q = match until {
                    Some(t) => sqlx::query(PG_READ_UNTIL)
                        .bind(after.tx.to_string())
                        .bind(after.pos)
                        .bind(limit)
                        .bind(t),
                    None => sqlx::query(PG_READ)
                        .bind(after.tx.to_string())
                        .bind(after.pos)
                        .bind(limit),
                };
                let rows = q.fetch_all(pool).await?;
                rows.into_iter().map(pg_row).collect()
            }
            EventPool::Sqlite(pool) => {
                let rows = sqlx::query(LITE_READ)
                    .bind(after.pos)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                let events: Result<Vec<_>, _> = rows.into_iter().map(lite_row).collect();
                let mut events = events?;
                if let Some(t) = until {
                    if let Some(cut) = events.iter().position(|e| e.recorded_at > t) {
                        events.truncate(cut);
                    }
                }
                Ok(events)
            }
        }
    }

    /// The position to read after to see the events recorded at or after `t` (and, on
    /// PostgreSQL, whatever the global order puts after the first of them): the feed's
    /// head when nothing was recorded since `t`. What a replay "since `t`" starts from.
    pub async fn position_before(&self, t: DateTime<Utc>) -> Result<Position, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT transaction_id::text AS tx, global_position FROM events
                      WHERE recorded_at >= $1
                      ORDER BY transaction_id, global_position LIMIT 1",
                )
                .bind(t)
                .fetch_optional(pool)
                .await?;
                match row {
                    Some(r) => Ok(Position {
                        tx: parse_tx(r.try_get("tx")?)?,
                        pos: r.try_get::<i64, _>("global_position")? - 1,
                    }),
                    None => self.head().await,
                }
            }
            EventPool::Sqlite(pool) => {
                // Stored as `%Y-%m-%dT%H:%M:%fZ`, which sorts as the instants do.
                let at = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
                let pos: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(global_position) FROM events WHERE recorded_at >= $1",
                )
                .bind(at)
                .fetch_one(pool)
                .await?;
                match pos {
                    Some(pos) => Ok(Position {
                        tx: 0,
                        pos: pos - 1,
                    }),
                    None => self.head().await,
                }
            }
        }
    }

    /// The position of the newest event a reader could see now.
    pub async fn head(&self) -> Result<Position, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT transaction_id::text AS tx, global_position FROM events
                      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                      ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await?;
                match row {
                    Some(r) => Ok(Position {
                        tx: parse_tx(r.try_get("tx")?)?,
                        pos: r.try_get("global_position")?,
                    }),
                    None => Ok(Position::START),
                }
            }
            EventPool::Sqlite(pool) => {
                let pos: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(global_position) FROM events")
                        .fetch_one(pool)
                        .await?;
                Ok(Position {
                    tx: 0,
                    pos: pos.unwrap_or(0),
                })
            }
        }
    }

    /// How many events are stored (for progress bars).
    /// The instant the newest stored event counts from (`None` for an empty log): an
    /// `until` that holds everything written so far and nothing written after.
    pub async fn latest_recorded_at(&self) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                sqlx::query_scalar("SELECT MAX(recorded_at) FROM events")
                    .fetch_one(pool)
                    .await
            }
            EventPool::Sqlite(pool) => {
                let latest: Option<String> =
                    sqlx::query_scalar("SELECT MAX(recorded_at) FROM events")
                        .fetch_one(pool)
                        .await?;
                latest
                    .map(|t| {
                        DateTime::parse_from_rfc3339(&t)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|e| sqlx::Error::Decode(format!("recorded_at: {e}").into()))
                    })
                    .transpose()
            }
        }
    }

    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(pool)
                    .await
            }
            EventPool::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM events")
                    .fetch_one(pool)
                    .await
            }
        }
    }
}

fn parse_tx(s: String) -> Result<i64, sqlx::Error> {
    s.parse::<i64>()
        .map_err(|e| sqlx::Error::Decode(format!("transaction id {s:?}: {e}").into()))
}

fn parse_json(s: &str, column: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(s).map_err(|e| sqlx::Error::Decode(format!("{column}: {e}").into()))
}

pub(crate) fn pg_row(r: sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    let payload: String = r.try_get("payload")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(StoredEvent {
        position: Position {
            tx: parse_tx(r.try_get("tx")?)?,
            pos: r.try_get("global_position")?,
        },
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: parse_json(&payload, "payload")?,
        metadata: parse_json(&metadata, "metadata")?,
        recorded_at: r.try_get("recorded_at")?,
    })
}

pub(crate) fn lite_row(r: sqlx::sqlite::SqliteRow) -> Result<StoredEvent, sqlx::Error> {
    let payload: String = r.try_get("payload")?;
    let metadata: String = r.try_get("metadata")?;
    let recorded: String = r.try_get("recorded_at")?;
    Ok(StoredEvent {
        position: Position {
            tx: 0,
            pos: r.try_get("global_position")?,
        },
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: parse_json(&payload, "payload")?,
        metadata: parse_json(&metadata, "metadata")?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| sqlx::Error::Decode(format!("recorded_at: {e}").into()))?,
    })
}

impl Feed {
    /// Where the aggregate's latest event sits in the feed (`None` if it has none).
    pub async fn last_position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Position>, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT transaction_id::text AS tx, global_position FROM events
                      WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
                )
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(Position {
                        tx: parse_tx(r.try_get("tx")?)?,
                        pos: r.try_get("global_position")?,
                    })
                })
                .transpose()
            }
            EventPool::Sqlite(pool) => {
                let pos: Option<i64> = sqlx::query_scalar(
                    "SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
                      ORDER BY sequence DESC LIMIT 1",
                )
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_optional(pool)
                .await?;
                Ok(pos.map(|pos| Position { tx: 0, pos }))
            }
        }
    }
}

/// What [`Feed::events_of`] runs on PostgreSQL (an aggregate's history, `GET
/// /v1/records/{id}/history`): served by the primary key `(aggregate_type, aggregate_id,
/// sequence)`; the query-plan test checks it beside the read models' lists.
pub const EVENTS_OF_PG: &str =
    "SELECT transaction_id::text AS tx, global_position, aggregate_type, aggregate_id,
            sequence, event_type, event_version, payload::text AS payload,
            metadata::text AS metadata, recorded_at
       FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence";

/// What [`Feed::events_of`] runs on SQLite (see [`EVENTS_OF_PG`]).
pub const EVENTS_OF_SQLITE: &str =
    "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
            event_version, payload, metadata, recorded_at
       FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence";

impl Feed {
    /// Every committed event of one aggregate, in sequence order (its history). Not
    /// bound by the feed horizon: one aggregate's events are ordered by sequence.
    pub async fn events_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        match &self.pool {
            EventPool::Postgres(pool) => {
                let rows = sqlx::query(EVENTS_OF_PG)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter().map(pg_row).collect()
            }
            EventPool::Sqlite(pool) => {
                let rows = sqlx::query(EVENTS_OF_SQLITE)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter().map(lite_row).collect()
            }
        }
    }

    /// Every committed event of several aggregates of one type, each one's in sequence
    /// order (what [`Feed::events_of`] gives, for many at once).
    pub async fn events_of_many(
        &self,
        aggregate_type: &str,
        aggregate_ids: &[&str],
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let mut out = Vec::new();
        for chunk in aggregate_ids.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let filter = format!(
                "FROM events WHERE aggregate_type = $1 AND aggregate_id IN ({})
                  ORDER BY aggregate_id, sequence",
                marks.join(", ")
            );
            match &self.pool {
                EventPool::Postgres(pool) => {
                    let sql = format!(
                        "SELECT transaction_id::text AS tx, global_position, aggregate_type,
                                aggregate_id, sequence, event_type, event_version,
                                payload::text AS payload, metadata::text AS metadata, recorded_at
                           {filter}"
                    );
                    let mut q = sqlx::query(&sql).bind(aggregate_type);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    for row in q.fetch_all(pool).await? {
                        out.push(pg_row(row)?);
                    }
                }
                EventPool::Sqlite(pool) => {
                    let sql = format!(
                        "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                                event_version, payload, metadata, recorded_at
                           {filter}"
                    );
                    let mut q = sqlx::query(&sql).bind(aggregate_type);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    for row in q.fetch_all(pool).await? {
                        out.push(lite_row(row)?);
                    }
                }
            }
        }
        Ok(out)
    }
}
