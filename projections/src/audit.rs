//! Read model: the audit log, one SHA-256 hash chain per workspace, and its verification.
//!
//! Each row's `hash = SHA-256(prev_hash || canonical bytes of the event)`. Verification
//! recomputes the chain from the event log itself, so an altered event, an altered or
//! deleted audit row, or a row out of place is found and named by its position.

use crate::integration_status::event_time;
use crate::{checkpoint, rfc3339, Projection, ProjectionError, Tables};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use syncledger_domain::audit::{canonical_bytes, chain_hash, FieldChange, GENESIS};
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::sync_run::{SyncRun, SyncRunEvent};
use syncledger_domain::{
    Aggregate, DomainEvent, Integration, IntegrationEvent, Workspace, WorkspaceEvent,
};
use syncledger_store::{Position, Store, StoredEvent};

mod changes;
pub mod query;
mod runs;

pub struct AuditLog;

pub const TABLE: &str = "audit_log";
pub const NAME: &str = "audit_log";

/// A readable line for the event, with secrets left out.
pub fn summarize(e: &StoredEvent) -> String {
    fn typed<E: DomainEvent>(v: &Value) -> Option<String> {
        // Read from the parsed payload in place (`from_value` would want a copy of it).
        <E as serde::Deserialize>::deserialize(v)
            .ok()
            .map(|e| e.summary())
    }
    let summary = match e.aggregate_type.as_str() {
        t if t == Workspace::TYPE => typed::<WorkspaceEvent>(&e.payload),
        t if t == Integration::TYPE => typed::<IntegrationEvent>(&e.payload),
        t if t == SyncRun::TYPE => typed::<SyncRunEvent>(&e.payload),
        t if t == Record::TYPE => typed::<RecordEvent>(&e.payload),
        _ => None,
    };
    summary.unwrap_or_else(|| {
        format!(
            "{} on {} {}",
            e.event_type, e.aggregate_type, e.aggregate_id
        )
    })
}

fn meta_str<'a>(e: &'a StoredEvent, key: &str) -> Option<&'a str> {
    e.metadata.get(key).and_then(Value::as_str)
}

/// The integration a row is about: the integration itself, a sync run's integration, or
/// the integration a record event names (an app edit names none).
fn integration_of(e: &StoredEvent, runs: &HashMap<String, String>) -> Option<String> {
    let named = |v: &Value| {
        v.get("integration_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match e.aggregate_type.as_str() {
        t if t == Integration::TYPE => Some(e.aggregate_id.clone()),
        t if t == SyncRun::TYPE => runs.get(&e.aggregate_id).cloned(),
        t if t == Record::TYPE => {
            named(&e.payload).or_else(|| e.payload.get("source").and_then(named))
        }
        _ => None,
    }
}

async fn chain_head(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    ws: &str,
) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT chain_seq, hash FROM {table} WHERE workspace_id = $1 ORDER BY chain_seq DESC LIMIT 1"
    ))
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok((r.try_get("chain_seq")?, r.try_get("hash")?)),
        None => Ok((0, GENESIS.to_string())),
    }
}

#[async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE, changes::STATES, runs::RUNS]
    }

    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.get(TABLE);
        let mut changes =
            changes::record_changes(conn, tables.get(changes::STATES), events).await?;
        let runs = runs::run_integrations(conn, tables.get(runs::RUNS), events).await?;
        let mut heads: HashMap<String, (i64, String)> = HashMap::new();
        let mut rows: Vec<AuditInsert> = Vec::with_capacity(events.len());
        for e in events {
            let ws = e.workspace_id().to_string();
            let (seq, prev) = match heads.remove(&ws) {
                Some(h) => h,
                None => chain_head(conn, table, &ws).await?,
            };
            let hash = chain_hash(&prev, &canonical_bytes(&e.chained()));
            heads.insert(ws.clone(), (seq + 1, hash.clone()));
            rows.push(AuditInsert {
                workspace_id: ws,
                chain_seq: seq + 1,
                event: e,
                integration_id: integration_of(e, &runs),
                changes: changes.remove(&e.position.pos),
                prev_hash: prev,
                hash,
            });
        }
        // Multi-row statements pay off on PostgreSQL (one round trip per chunk); SQLite is
        // in-process and binds many-parameter statements slowly, so there one row at a time
        // through a cached prepared statement is faster.
        let chunk = if conn.backend_name() == "PostgreSQL" {
            INSERT_CHUNK
        } else {
            1
        };
        for chunk in rows.chunks(chunk) {
            insert_rows(conn, table, chunk).await?;
        }
        Ok(())
    }
}

/// Rows per multi-row INSERT on PostgreSQL (17 parameters each).
const INSERT_CHUNK: usize = 200;

struct AuditInsert<'a> {
    workspace_id: String,
    chain_seq: i64,
    event: &'a StoredEvent,
    integration_id: Option<String>,
    changes: Option<Vec<FieldChange>>,
    prev_hash: String,
    hash: String,
}

async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    rows: &[AuditInsert<'_>],
) -> Result<(), sqlx::Error> {
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            let params: Vec<String> = (1..=18).map(|k| format!("${}", i * 18 + k)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} (workspace_id, chain_seq, position, recorded_at, aggregate_type, aggregate_id,
                              sequence, integration_id, actor, correlation_id, causation_id, action,
                              summary, changes, prev_hash, hash, request_id, acting_for)
         VALUES {}",
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for r in rows {
        let e = r.event;
        let changes = r
            .changes
            .as_ref()
            .and_then(|c| serde_json::to_string(c).ok());
        q = q
            .bind(r.workspace_id.clone())
            .bind(r.chain_seq)
            .bind(e.position.pos)
            .bind(rfc3339(event_time(e)))
            .bind(e.aggregate_type.clone())
            .bind(e.aggregate_id.clone())
            .bind(e.sequence)
            .bind(r.integration_id.clone())
            .bind(meta_str(e, "actor").unwrap_or("unknown").to_string())
            .bind(meta_str(e, "correlation_id").unwrap_or("").to_string())
            .bind(meta_str(e, "causation_id").map(str::to_string))
            .bind(e.event_type.clone())
            .bind(summarize(e))
            .bind(changes)
            .bind(r.prev_hash.clone())
            .bind(r.hash.clone())
            .bind(meta_str(e, "request_id").map(str::to_string))
            .bind(meta_str(e, "acting_for").map(str::to_string));
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Where verification found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Broken {
    pub workspace_id: String,
    pub position: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub checked: i64,
    pub workspaces: usize,
    pub broken: Option<Broken>,
    /// Events stored but not yet covered by the audit projection (only counted when all
    /// workspaces are verified). On PostgreSQL an open transaction anywhere on the server
    /// holds the feed back; such events are verified by a later run.
    pub unverified: Option<i64>,
}

struct AuditRow {
    workspace_id: String,
    chain_seq: i64,
    prev_hash: String,
    hash: String,
}

async fn rows_at(
    pool: &sqlx::AnyPool,
    positions: &[i64],
) -> Result<HashMap<i64, AuditRow>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders: Vec<String> = (1..=positions.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT position, workspace_id, chain_seq, prev_hash, hash FROM {TABLE} WHERE position IN ({})",
        placeholders.join(",")
    );
    let mut q = sqlx::query(&sql);
    for p in positions {
        q = q.bind(*p);
    }
    let mut out = HashMap::new();
    for r in q.fetch_all(pool).await? {
        out.insert(
            r.try_get("position")?,
            AuditRow {
                workspace_id: r.try_get("workspace_id")?,
                chain_seq: r.try_get("chain_seq")?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            },
        );
    }
    Ok(out)
}

/// Recompute every chain (or one workspace's) from the event log, up to the audit
/// projection's checkpoint, and report the first position where a stored row disagrees.
pub async fn verify(
    store: &Store,
    workspace: Option<&str>,
) -> Result<VerifyReport, ProjectionError> {
    let until = checkpoint::read(&store.any, NAME)
        .await?
        .unwrap_or_default()
        .position;
    let feed = store.feed();
    let mut heads: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut after = Position::START;
    let mut checked = 0;
    let broken = |e: &StoredEvent, reason: &str| Broken {
        workspace_id: e.workspace_id().to_string(),
        position: e.position.pos,
        reason: reason.to_string(),
    };
    loop {
        let batch = feed.read(after, 1000).await?;
        let batch: Vec<StoredEvent> = batch
            .into_iter()
            .take_while(|e| e.position <= until)
            .collect();
        let Some(last) = batch.last() else { break };
        after = last.position;
        let wanted: Vec<&StoredEvent> = batch
            .iter()
            .filter(|e| workspace.is_none_or(|w| e.workspace_id() == w))
            .collect();
        let positions: Vec<i64> = wanted.iter().map(|e| e.position.pos).collect();
        let rows = rows_at(&store.any, &positions).await?;
        for e in wanted {
            let ws = e.workspace_id().to_string();
            let (seq, prev) = heads.remove(&ws).unwrap_or((0, GENESIS.to_string()));
            let Some(row) = rows.get(&e.position.pos) else {
                return Ok(report(
                    checked,
                    &heads,
                    Some(broken(e, "no audit row for this event")),
                ));
            };
            let expected = chain_hash(&prev, &canonical_bytes(&e.chained()));
            let problem = if row.workspace_id != ws || row.chain_seq != seq + 1 {
                Some("audit row is out of place in the chain")
            } else if row.prev_hash != prev {
                Some("prev_hash does not match the previous row's hash")
            } else if row.hash != expected {
                Some("hash does not match the event: the event or its audit row was altered")
            } else {
                None
            };
            if let Some(reason) = problem {
                heads.insert(ws, (seq, prev));
                return Ok(report(checked, &heads, Some(broken(e, reason))));
            }
            checked += 1;
            heads.insert(ws, (seq + 1, expected));
        }
    }
    let mut done = report(checked, &heads, None);
    if workspace.is_none() {
        done.unverified = Some((store.feed().count().await? - checked).max(0));
    }
    Ok(done)
}

fn report(
    checked: i64,
    heads: &BTreeMap<String, (i64, String)>,
    broken: Option<Broken>,
) -> VerifyReport {
    VerifyReport {
        checked,
        workspaces: heads.len(),
        broken,
        unverified: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncledger_domain::sync_run::{RunKind, Trigger};

    fn stored(aggregate_type: &str, event_type: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            position: Position { tx: 1, pos: 1 },
            aggregate_type: aggregate_type.into(),
            aggregate_id: "a1".into(),
            sequence: 1,
            event_type: event_type.into(),
            event_version: "1".into(),
            payload,
            metadata: Value::Null,
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn sync_run_and_record_events_read_as_sentences() {
        let queued = SyncRunEvent::RunQueued {
            run_id: "r1".into(),
            integration_id: "i1".into(),
            workspace_id: "w1".into(),
            kind: RunKind::Incremental,
            trigger: Trigger::Webhook,
            retry_of: None,
            rollback_of: None,
            options: Default::default(),
            at: chrono::Utc::now(),
        };
        let payload = serde_json::to_value(&queued).unwrap_or_default();
        assert_eq!(
            summarize(&stored(SyncRun::TYPE, "RunQueued", payload)),
            "incremental sync run queued (webhook trigger)"
        );
        let deleted = RecordEvent::RemoteDeleted {
            integration_id: "i1".into(),
            run_id: "r1".into(),
            outcome: syncledger_domain::OnCrmDelete::ArchiveRecord,
            at: chrono::Utc::now(),
        };
        let payload = serde_json::to_value(&deleted).unwrap_or_default();
        assert_eq!(
            summarize(&stored(Record::TYPE, "RemoteDeleted", payload)),
            "deleted in the CRM: record archived, never pushed there again"
        );
        assert_eq!(
            summarize(&stored("unknown", "Thing", Value::Null)),
            "Thing on unknown a1"
        );
    }
}
