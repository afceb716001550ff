//! Which integration a sync run belongs to. Only a run's first event names it, so the
//! audit projection remembers it per run and gives it to every row of the run.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::Aggregate;
use syncledger_store::StoredEvent;

use crate::ProjectionError;

pub(crate) const RUNS: &str = "audit_run_integration";

/// Rows looked up per statement.
const LOAD_CHUNK: usize = 500;

/// The integration of every run the batch's events belong to, as far as known; runs
/// queued in this batch are recorded in `table`.
pub(super) async fn run_integrations(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    events: &[StoredEvent],
) -> Result<HashMap<String, String>, ProjectionError> {
    let mut known = HashMap::new();
    let mut queued = Vec::new();
    for e in events.iter().filter(|e| e.aggregate_type == SyncRun::TYPE) {
        if known.contains_key(&e.aggregate_id) {
            continue;
        }
        match e.payload.get("integration_id").and_then(Value::as_str) {
            Some(integration) => {
                known.insert(e.aggregate_id.clone(), integration.to_string());
                queued.push(e.aggregate_id.clone());
            }
            None => {
                known.insert(e.aggregate_id.clone(), String::new());
            }
        }
    }
    let unknown: Vec<&String> = known
        .iter()
        .filter(|(_, i)| i.is_empty())
        .map(|(run, _)| run)
        .collect();
    let mut found = Vec::new();
    for part in unknown.chunks(LOAD_CHUNK) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT run_id, integration_id FROM {table} WHERE run_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for run in part {
            q = q.bind((*run).clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            found.push((r.try_get("run_id")?, r.try_get("integration_id")?));
        }
    }
    known.extend(found);
    for run in queued {
        sqlx::query(&format!(
            "INSERT INTO {table} (run_id, integration_id) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING"
        ))
        .bind(run.clone())
        .bind(known.get(&run).cloned().unwrap_or_default())
        .execute(&mut *conn)
        .await?;
    }
    known.retain(|_, i| !i.is_empty());
    Ok(known)
}
