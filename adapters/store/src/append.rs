//! Bulk append: many events in few statements, into the same table with the same
//! per-aggregate sequence rule and the same conflict detection as the command path
//! (the primary key on `(aggregate_type, aggregate_id, sequence)`).
//!
//! The command path (cqrs-es) loads history and inserts one row per statement; this path
//! is for ingestion and benchmarks, where the caller already knows the expected sequences.

use crate::meta::Metadata;
use crate::EventPool;

#[derive(Clone, Debug)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Must be exactly one more than the aggregate's last sequence.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event as compact JSON text, encoded once when the event is made: an import
    /// appends hundreds of thousands of these, and the store only passes the text on.
    pub payload: String,
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
            payload: serde_json::to_string(event)?,
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
    Writer::default().append(pool, events).await
}

/// A connection kept for a stream of appends (a sync run's pages), so each append costs
/// no pool round trip (taking a pooled connection checks it with a ping first). A failed
/// append other than a conflict lets the connection go; the next takes a fresh one.
#[derive(Default)]
pub struct Writer {
    conn: Option<Held>,
}

enum Held {
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

impl Writer {
    /// Like [`append`], on the kept connection (taken from `pool` when there is none).
    pub async fn append(
        &mut self,
        pool: &EventPool,
        events: &[NewEvent],
    ) -> Result<(), AppendError> {
        self.append_all(pool, &[events]).await
    }

    /// Appends several batches in one transaction, in the order given, as if they were
    /// one (a run committing several pages at once): all land or none do.
    pub async fn append_all(
        &mut self,
        pool: &EventPool,
        batches: &[&[NewEvent]],
    ) -> Result<(), AppendError> {
        if batches.iter().all(|b| b.is_empty()) {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let held = match self.conn.take() {
            Some(held) => held,
            None => match pool {
                EventPool::Postgres(p) => Held::Postgres(p.acquire().await?),
                EventPool::Sqlite(p) => Held::Sqlite(p.acquire().await?),
            },
        };
        let (held, result) = match held {
            Held::Postgres(mut c) => {
                let r = append_pg(&mut c, batches, now).await;
                (Held::Postgres(c), r)
            }
            Held::Sqlite(mut c) => {
                let r = append_lite(&mut c, batches, now).await;
                (Held::Sqlite(c), r)
            }
        };
        match result.map_err(classify) {
            Ok(()) => {
                self.conn = Some(held);
                Ok(())
            }
            Err(AppendError::Conflict) => {
                self.conn = Some(held);
                Err(AppendError::Conflict)
            }
            // The connection may be broken: it goes back to the pool, which checks it.
            Err(e) => Err(e),
        }
    }
}

/// The stored metadata of events, stamped with the time of writing. The events of one
/// append nearly always share their metadata (a run's page, a request's command), so the
/// text of the previous event's metadata is reused when the next one's is the same.
struct MetadataText {
    now: chrono::DateTime<chrono::Utc>,
    last: Option<(Metadata, std::sync::Arc<str>)>,
}

impl MetadataText {
    fn new(now: chrono::DateTime<chrono::Utc>) -> Self {
        MetadataText { now, last: None }
    }

    fn of(&mut self, metadata: &Metadata) -> std::sync::Arc<str> {
        if let Some((m, text)) = &self.last {
            if m == metadata {
                return text.clone();
            }
        }
        let mut map = metadata.to_map();
        map.insert(
            "time".into(),
            self.now
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        let text: std::sync::Arc<str> = serde_json::to_string(&map)
            .unwrap_or_else(|_| "{}".into())
            .into();
        self.last = Some((metadata.clone(), text.clone()));
        text
    }
}

/// Appends with one `COPY … FROM STDIN (FORMAT binary)`: the server's fastest way in (no
/// statement to plan, no arrays to unnest, fields arrive as they are stored). One
/// statement is one transaction, so all rows land or none do, with no `BEGIN`/`COMMIT`
/// round trips. Defaults (global position, transaction id, recorded-at) and every
/// constraint and index apply as for an `INSERT`; a duplicate sequence fails the copy
/// with the same unique violation, so a conflict is told apart the same way.
async fn append_pg(
    conn: &mut sqlx::PgConnection,
    batches: &[&[NewEvent]],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut metadata = MetadataText::new(now);
    let mut buf = CopyBuffer::new(batches.iter().map(|b| b.len()).sum());
    for e in batches.iter().flat_map(|b| b.iter()) {
        buf.row(e, &metadata.of(&e.metadata));
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(buf.finish()).await?;
    copy.finish().await?;
    Ok(())
}

/// Rows in PostgreSQL's binary copy format: a header, then per row the field count and
/// each field as a length and its bytes (text and json travel as their UTF-8 text, a
/// bigint as 8 bytes big-endian), then a trailer.
struct CopyBuffer(Vec<u8>);

impl CopyBuffer {
    const FIELDS: i16 = 7;

    fn new(rows: usize) -> Self {
        let mut b = Vec::with_capacity(19 + rows * 1400 + 2);
        b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        b.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        CopyBuffer(b)
    }

    fn text(&mut self, s: &str) {
        // Fields are far below 2 GiB (PostgreSQL refuses values over 1 GB anyway).
        let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn row(&mut self, e: &NewEvent, metadata: &str) {
        self.0.extend_from_slice(&Self::FIELDS.to_be_bytes());
        self.text(&e.aggregate_type);
        self.text(&e.aggregate_id);
        self.0.extend_from_slice(&8i32.to_be_bytes());
        self.0.extend_from_slice(&e.sequence.to_be_bytes());
        self.text(&e.event_type);
        self.text(&e.event_version);
        self.text(&e.payload);
        self.text(metadata);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

async fn append_lite(
    conn: &mut sqlx::SqliteConnection,
    batches: &[&[NewEvent]],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut metadata = MetadataText::new(now);
    let mut tx = conn.begin().await?;
    for e in batches.iter().flat_map(|b| b.iter()) {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.aggregate_type)
        .bind(&e.aggregate_id)
        .bind(e.sequence)
        .bind(&e.event_type)
        .bind(&e.event_version)
        .bind(e.payload.as_str())
        .bind(&*metadata.of(&e.metadata))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
