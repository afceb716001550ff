//! What each record event changed. The audit projection keeps its own copy of every
//! record's replayed state (so it depends on no other read model), applies each record
//! event with the record's own `apply`, and diffs the values before and after: any record
//! event, of any kind, is covered the same way.

use std::collections::{BTreeMap, HashMap};

use syncledger_domain::audit::{field_changes, FieldChange};
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::Aggregate;
use syncledger_store::StoredEvent;

use crate::fold::{load_all, Folded};
use crate::ProjectionError;

pub(crate) const STATES: &str = "audit_record_state";

/// Rows per multi-row upsert on PostgreSQL (4 parameters each).
const SAVE_CHUNK: usize = 250;

/// The field changes of the batch's record events, by position (events that changed no
/// value are left out). The records' new states are saved in `table`.
pub(super) async fn record_changes(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    events: &[StoredEvent],
) -> Result<HashMap<i64, Vec<FieldChange>>, ProjectionError> {
    let records: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.aggregate_type == Record::TYPE)
        .collect();
    if records.is_empty() {
        return Ok(HashMap::new());
    }
    let mut ids: Vec<&str> = records.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut states: BTreeMap<String, Folded<Record>> = load_all(conn, table, &ids).await?;
    let mut changes = HashMap::new();
    // Each record's values after its latest event in the batch: the next event's
    // "before", instead of building them again from the state.
    let mut after_last: HashMap<&str, Fields> = HashMap::new();
    for e in records {
        let event: RecordEvent = crate::decode(e)?;
        let row = states
            .entry(e.aggregate_id.clone())
            .or_insert_with(|| Folded {
                state: Record::default(),
                created_at: e.recorded_at,
                updated_at: e.recorded_at,
                version: 0,
                last_position: 0,
            });
        // An event the state has already seen changes nothing twice.
        if e.sequence <= row.version {
            continue;
        }
        let before = after_last
            .remove(e.aggregate_id.as_str())
            .unwrap_or_else(|| row.state.values());
        row.state.apply(&event);
        row.version = e.sequence;
        row.last_position = e.position.pos;
        let after = row.state.values();
        let changed = field_changes(&before, &after);
        if !changed.is_empty() {
            changes.insert(e.position.pos, changed);
        }
        after_last.insert(e.aggregate_id.as_str(), after);
    }
    save(conn, table, &states).await?;
    Ok(changes)
}

async fn save(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    states: &BTreeMap<String, Folded<Record>>,
) -> Result<(), ProjectionError> {
    let rows: Vec<(&String, &Folded<Record>)> = states.iter().collect();
    // As for the audit rows: multi-row statements on PostgreSQL, one row at a time through
    // a cached statement on SQLite.
    let chunk = if conn.backend_name() == "PostgreSQL" {
        SAVE_CHUNK
    } else {
        1
    };
    for part in rows.chunks(chunk) {
        let marks: Vec<String> = (0..part.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {table} (id, state, version, last_position) VALUES {}
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version,
                 last_position = excluded.last_position",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (id, row) in part {
            let state =
                serde_json::to_string(&row.state).map_err(|e| ProjectionError::BadEvent {
                    position: row.last_position,
                    message: format!("record state could not be encoded: {e}"),
                })?;
            q = q
                .bind((*id).clone())
                .bind(state)
                .bind(row.version)
                .bind(row.last_position);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
