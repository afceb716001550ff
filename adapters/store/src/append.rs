//! Bulk append: many events in few statements, into the same table with the same
//! per-aggregate sequence rule and the same conflict detection as the command path
//! (the primary key on `(aggregate_type, aggregate_id, sequence)`).
//!
//! The command path (cqrs-es) loads history and inserts one row per statement; this path
//! is for ingestion and benchmarks, where the caller already knows the expected sequences.

use crate::meta::Metadata;
use crate::EventPool;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Must be exactly one more than the aggregate's last sequence.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    /// The row the command path would write for `event` of aggregate `A` at `sequence`:
    /// same type, version and payload encoding, so cqrs-es reads it back unchanged.
    pub fn of<A: syncledger_domain::Aggregate>(
        aggregate_id: &str,
        sequence: i64,
        event: &A::Event,
        metadata: &Metadata,
    ) -> Result<NewEvent, serde_json::Error> {
        use syncledger_domain::DomainEvent;
        Ok(NewEvent {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence,
            event_type: event.event_type().to_string(),
            event_version: event.event_version().to_string(),
            payload: serde_json::to_value(event)?,
            metadata: metadata.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("an event with the same aggregate and sequence already exists")]
    Conflict,
    #[error("event store: {0}")]
    Db(#[from] sqlx::Error),
}

fn classify(e: sqlx::Error) -> AppendError {
    if let sqlx::Error::Database(d) = &e {
        if matches!(
            d.code().as_deref(),
            Some("23505") | Some("1555") | Some("2067")
        ) {
            return AppendError::Conflict;
        }
    }
    AppendError::Db(e)
}

/// Append all events in one transaction: all land or none do.
///
/// Their metadata `time` is stamped now, as they are written: a sync run builds its events
/// with the run's metadata, made when the run began, and on SQLite the stamp is the
/// instant the events count from (see [`crate::history`]).
pub async fn append(pool: &EventPool, events: &[NewEvent]) -> Result<(), AppendError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    match pool {
        EventPool::Postgres(p) => append_pg(p, events, now).await.map_err(classify),
        EventPool::Sqlite(p) => append_lite(p, events, now).await.map_err(classify),
    }
}

/// The stored metadata of `e`, stamped with the time of writing.
fn metadata_json(e: &NewEvent, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut metadata = e.metadata.to_map();
    metadata.insert(
        "time".into(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
    serde_json::to_string(&metadata).unwrap_or_else(|_| "{}".into())
}

async fn append_pg(
    pool: &sqlx::PgPool,
    events: &[NewEvent],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for chunk in events.chunks(1000) {
        let mut types = Vec::with_capacity(chunk.len());
        let mut ids = Vec::with_capacity(chunk.len());
        let mut seqs = Vec::with_capacity(chunk.len());
        let mut etypes = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        let mut metas = Vec::with_capacity(chunk.len());
        for e in chunk {
            types.push(e.aggregate_type.as_str());
            ids.push(e.aggregate_id.as_str());
            seqs.push(e.sequence);
            etypes.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(e.payload.to_string());
            metas.push(metadata_json(e, now));
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT t, i, s, et, v, p::json, m::json
               FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
                 AS u(t, i, s, et, v, p, m)",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&seqs)
        .bind(&etypes)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metas)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

async fn append_lite(
    pool: &sqlx::SqlitePool,
    events: &[NewEvent],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for e in events {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.aggregate_type)
        .bind(&e.aggregate_id)
        .bind(e.sequence)
        .bind(&e.event_type)
        .bind(&e.event_version)
        .bind(e.payload.to_string())
        .bind(metadata_json(e, now))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
