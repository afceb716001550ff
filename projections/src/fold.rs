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

async fn load<A: DeserializeOwned>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    id: &str,
) -> Result<Option<Folded<A>>, ProjectionError> {
    let row = sqlx::query(&format!(
        "SELECT state, version, last_position FROM {table} WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let state: String = r.try_get("state")?;
    let state = serde_json::from_str(&state).map_err(|e| ProjectionError::BadEvent {
        position: -1,
        message: format!("stored state in {table}: {e}"),
    })?;
    Ok(Some(Folded {
        state,
        // Stored rows keep their creation time: upserts never overwrite it.
        created_at: DateTime::<Utc>::MIN_UTC,
        updated_at: DateTime::<Utc>::MIN_UTC,
        version: r.try_get("version")?,
        last_position: r.try_get("last_position")?,
    }))
}

/// Folds the batch's events of aggregate `A` into their rows; returns the touched rows.
pub(crate) async fn fold<A: Aggregate + Default + DeserializeOwned>(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    events: &[StoredEvent],
) -> Result<BTreeMap<String, Folded<A>>, ProjectionError> {
    let mut touched: BTreeMap<String, Folded<A>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.aggregate_type == A::TYPE) {
        let event: A::Event =
            serde_json::from_value(e.payload.clone()).map_err(|err| ProjectionError::BadEvent {
                position: e.position.pos,
                message: err.to_string(),
            })?;
        let at = event_time(e);
        let mut row = match touched.remove(&e.aggregate_id) {
            Some(r) => r,
            None => load(conn, table, &e.aggregate_id).await?.unwrap_or(Folded {
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
