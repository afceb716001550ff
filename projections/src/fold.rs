//! Read models that hold an aggregate's replayed state: a batch of events is folded
//! into the rows it touches (each row loaded once), skipping events a row has already
//! seen, so applying a batch twice changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::Row;
use syncledger_domain::Aggregate;
use syncledger_store::StoredEvent;

use crate::integration_status::event_time;
use crate::ProjectionError;

/// One aggregate's row: its state and bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Folded<A> {
    pub state: A,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub last_position: i64,
}

/// Rows loaded per statement.
const LOAD_CHUNK: usize = 500;

/// The stored rows of `ids`, in as few statements as the chunking allows.
pub(crate) async fn load_all<A: DeserializeOwned>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    ids: &[&str],
) -> Result<BTreeMap<String, Folded<A>>, ProjectionError> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(LOAD_CHUNK) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, state, version, last_position FROM {table} WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let id: String = r.try_get("id")?;
            let state: String = r.try_get("state")?;
            let state = serde_json::from_str(&state).map_err(|e| ProjectionError::BadEvent {
                position: -1,
                message: format!("stored state in {table}: {e}"),
            })?;
            out.insert(
                id,
                Folded {
                    state,
                    // Stored rows keep their creation time: upserts never overwrite it.
                    created_at: DateTime::<Utc>::MIN_UTC,
                    updated_at: DateTime::<Utc>::MIN_UTC,
                    version: r.try_get("version")?,
                    last_position: r.try_get("last_position")?,
                },
            );
        }
    }
    Ok(out)
}

/// Folds the batch's events of aggregate `A` into their rows; returns the touched rows.
pub(crate) async fn fold<A: Aggregate + Default + DeserializeOwned>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    events: &[StoredEvent],
) -> Result<BTreeMap<String, Folded<A>>, ProjectionError> {
    let mut ids: Vec<&str> = events
        .iter()
        .filter(|e| e.aggregate_type == A::TYPE)
        .map(|e| e.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut stored = load_all::<A>(conn, table, &ids).await?;
    let mut touched: BTreeMap<String, Folded<A>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.aggregate_type == A::TYPE) {
        let event: A::Event = crate::decode(e)?;
        let at = event_time(e);
        let mut row = match touched.remove(&e.aggregate_id) {
            Some(r) => r,
            None => stored.remove(&e.aggregate_id).unwrap_or(Folded {
                state: A::default(),
                created_at: at,
                updated_at: at,
                version: 0,
                last_position: 0,
            }),
        };
        if e.sequence > row.version {
            row.state.apply(&event);
            row.updated_at = at;
            row.version = e.sequence;
            row.last_position = e.position.pos;
        }
        touched.insert(e.aggregate_id.clone(), row);
    }
    Ok(touched)
}
