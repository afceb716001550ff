//! Read model: the conflict queue. One row per conflict a merge found on one field of a
//! record with one integration, from detection to its end: resolved or ignored by a
//! person, superseded by a later merge (or by the CRM record's deletion), or settled by
//! the policy at once (`auto`).
//!
//! Every write carries the sequence of the record event that made it, and an event no
//! newer than a record's rows have seen is skipped, so a batch applied twice changes
//! nothing. Ids are derived from the event, so a rebuild gives each conflict its id again.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::Row;
use syncledger_domain::merge::{FieldConflict, Side};
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::Aggregate;
use syncledger_store::StoredEvent;

use crate::statement::Statement;
use crate::{rfc3339, Projection, ProjectionError, Tables};

pub struct Conflicts;

pub const TABLE: &str = "conflicts";

/// Who settled a conflict the policy decided.
pub const POLICY: &str = "policy";

/// Statuses a row can have.
pub const STATUSES: [&str; 4] = ["open", "resolved", "ignored", "superseded"];

/// Deterministic: SHA-256 of the record, the integration, the field and the sequence of
/// the record event that found the conflict, in hex.
pub fn conflict_id(record_id: &str, integration_id: &str, field: &str, sequence: i64) -> String {
    let mut hash = Sha256::new();
    for part in [record_id, integration_id, field] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(sequence.to_string().as_bytes());
    hex::encode(hash.finalize())
}

/// The record event being applied.
struct Step<'a> {
    table: &'a str,
    record_id: &'a str,
    sequence: i64,
    position: i64,
}

/// What the table already holds for the batch's records, kept current during the batch.
#[derive(Default)]
struct Known {
    /// The newest record event each record's rows have seen.
    version: BTreeMap<String, i64>,
    /// (record, integration) pairs that may have open rows.
    open: BTreeSet<(String, String)>,
    /// Each record's workspace and entity.
    subjects: BTreeMap<String, (String, String)>,
}

/// Only these events change the queue.
fn touches_queue(event: &RecordEvent) -> bool {
    matches!(
        event,
        RecordEvent::RemoteMerged { .. }
            | RecordEvent::ConflictResolved { .. }
            | RecordEvent::ConflictIgnored { .. }
            | RecordEvent::ConflictRaised { .. }
            | RecordEvent::RemoteDeleted { .. }
            | RecordEvent::RemoteRecordDeleted { .. }
            | RecordEvent::RolledBack { .. }
    )
}

fn decode(e: &StoredEvent) -> Result<RecordEvent, ProjectionError> {
    crate::decode(e)
}

/// Bind parameters per query when loading what the table knows (well under every limit).
const CHUNK: usize = 500;

async fn load_known(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    record_ids: &BTreeSet<&str>,
) -> Result<Known, ProjectionError> {
    let mut known = Known::default();
    let ids: Vec<&str> = record_ids.iter().copied().collect();
    for chunk in ids.chunks(CHUNK) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT record_id, integration_id, MAX(record_version) AS version,
                    SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END) AS open
               FROM {table} WHERE record_id IN ({})
              GROUP BY record_id, integration_id",
            params.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let record: String = row.try_get("record_id")?;
            let integration: String = row.try_get("integration_id")?;
            let version: i64 = row.try_get("version")?;
            let open: i64 = row.try_get("open")?;
            let seen = known.version.entry(record.clone()).or_default();
            *seen = (*seen).max(version);
            if open > 0 {
                known.open.insert((record, integration));
            }
        }
    }
    Ok(known)
}

/// A record's workspace and entity, from its first event (which every record has).
async fn subject(
    conn: &mut sqlx::AnyConnection,
    known: &mut Known,
    record_id: &str,
) -> Result<(String, String), ProjectionError> {
    if let Some(s) = known.subjects.get(record_id) {
        return Ok(s.clone());
    }
    let payload: Option<String> = sqlx::query_scalar(
        "SELECT CAST(payload AS TEXT) FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT 1",
    )
    .bind(Record::TYPE)
    .bind(record_id)
    .fetch_optional(&mut *conn)
    .await?;
    let first = payload.and_then(|p| serde_json::from_str::<RecordEvent>(&p).ok());
    let s = match first {
        Some(
            RecordEvent::RecordCreated {
                workspace_id,
                entity,
                ..
            }
            | RecordEvent::RecordImported {
                workspace_id,
                entity,
                ..
            },
        ) => (workspace_id, entity.as_str().to_owned()),
        _ => {
            return Err(ProjectionError::BadEvent {
                position: -1,
                message: format!("record {record_id} has no creation event"),
            })
        }
    };
    known.subjects.insert(record_id.to_owned(), s.clone());
    Ok(s)
}

/// The open row for one field, if its values are exactly `c`'s.
async fn same_open(
    conn: &mut sqlx::AnyConnection,
    step: &Step<'_>,
    integration_id: &str,
    c: &FieldConflict,
) -> Result<Option<String>, ProjectionError> {
    let row = sqlx::query(&format!(
        "SELECT id, base_value, app_value, crm_value FROM {}
          WHERE record_id = $1 AND integration_id = $2 AND field = $3 AND status = 'open'",
        step.table
    ))
    .bind(step.record_id)
    .bind(integration_id)
    .bind(&c.field)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let values: (Option<String>, Option<String>, Option<String>) = (
        row.try_get("base_value")?,
        row.try_get("app_value")?,
        row.try_get("crm_value")?,
    );
    let same = values == (c.base.clone(), c.app.clone(), c.crm.clone());
    Ok(same.then(|| row.try_get("id")).transpose()?)
}

/// The row saw this event but stays as it was.
async fn touch(
    conn: &mut sqlx::AnyConnection,
    step: &Step<'_>,
    id: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(&format!(
        "UPDATE {} SET record_version = $1, last_position = $2 WHERE id = $3",
        step.table
    ))
    .bind(step.sequence)
    .bind(step.position)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Open rows of the link (of one field, or all the event did not write) are superseded.
async fn supersede(
    conn: &mut sqlx::AnyConnection,
    step: &Step<'_>,
    integration_id: &str,
    field: Option<&str>,
    at: &str,
) -> Result<(), ProjectionError> {
    let only_field = if field.is_some() {
        " AND field = $7"
    } else {
        ""
    };
    let query = format!(
        "UPDATE {} SET status = 'superseded', resolved_at = $1, record_version = $2,
                last_position = $3
          WHERE record_id = $4 AND integration_id = $5 AND status = 'open'
            AND record_version < $6{only_field}",
        step.table
    );
    let mut query = sqlx::query(&query)
        .bind(at)
        .bind(step.sequence)
        .bind(step.position)
        .bind(step.record_id)
        .bind(integration_id)
        .bind(step.sequence);
    if let Some(field) = field {
        query = query.bind(field);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// A new row: open, or already resolved by the policy.
async fn insert(
    conn: &mut sqlx::AnyConnection,
    step: &Step<'_>,
    (workspace_id, entity): &(String, String),
    integration_id: &str,
    c: &FieldConflict,
    at: &str,
) -> Result<(), ProjectionError> {
    let settled = c.winner.map(|side| match side {
        Side::App => c.app.clone(),
        Side::Crm => c.crm.clone(),
    });
    sqlx::query(&format!(
        "INSERT INTO {} (id, workspace_id, integration_id, record_id, entity, field,
             base_value, app_value, crm_value, status, detected_at, resolved_at, resolved_by,
             resolution, resolved_value, record_version, last_position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        step.table
    ))
    .bind(conflict_id(
        step.record_id,
        integration_id,
        &c.field,
        step.sequence,
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(step.record_id)
    .bind(entity)
    .bind(&c.field)
    .bind(c.base.clone())
    .bind(c.app.clone())
    .bind(c.crm.clone())
    .bind(if settled.is_some() {
        "resolved"
    } else {
        "open"
    })
    .bind(at)
    .bind(settled.is_some().then_some(at))
    .bind(settled.is_some().then_some(POLICY))
    .bind(settled.is_some().then_some("auto"))
    .bind(settled.flatten())
    .bind(step.sequence)
    .bind(step.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An app edit held for review: the field's open row takes the app's new value (it
/// keeps its id, so a reviewer's link to it stays good), or a row opens.
async fn raised(
    conn: &mut sqlx::AnyConnection,
    known: &mut Known,
    step: &Step<'_>,
    integration_id: &str,
    c: &FieldConflict,
    at: &str,
) -> Result<(), ProjectionError> {
    let updated = sqlx::query(&format!(
        "UPDATE {} SET app_value = $1, record_version = $2, last_position = $3
          WHERE record_id = $4 AND integration_id = $5 AND field = $6 AND status = 'open'",
        step.table
    ))
    .bind(c.app.clone())
    .bind(step.sequence)
    .bind(step.position)
    .bind(step.record_id)
    .bind(integration_id)
    .bind(&c.field)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        let subject = subject(conn, known, step.record_id).await?;
        insert(conn, step, &subject, integration_id, c, at).await?;
    }
    known
        .open
        .insert((step.record_id.to_owned(), integration_id.to_owned()));
    Ok(())
}

/// How a person closed an open conflict.
struct Closed<'a> {
    integration_id: &'a str,
    field: &'a str,
    status: &'static str,
    resolution: &'static str,
    actor: &'a str,
    value: Option<String>,
    at: String,
}

async fn close(
    conn: &mut sqlx::AnyConnection,
    step: &Step<'_>,
    closed: Closed<'_>,
) -> Result<(), ProjectionError> {
    sqlx::query(&format!(
        "UPDATE {} SET status = $1, resolution = $2, resolved_by = $3, resolved_at = $4,
                resolved_value = $5, record_version = $6, last_position = $7
          WHERE record_id = $8 AND integration_id = $9 AND field = $10 AND status = 'open'",
        step.table
    ))
    .bind(closed.status)
    .bind(closed.resolution)
    .bind(closed.actor)
    .bind(closed.at)
    .bind(closed.value)
    .bind(step.sequence)
    .bind(step.position)
    .bind(step.record_id)
    .bind(closed.integration_id)
    .bind(closed.field)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A merge: each conflict it found gets a row (an identical open one is kept), and every
/// other open conflict of the link was settled by it.
async fn merged(
    conn: &mut sqlx::AnyConnection,
    known: &mut Known,
    step: &Step<'_>,
    integration_id: &str,
    conflicts: &[FieldConflict],
    at: &str,
) -> Result<(), ProjectionError> {
    let link = (step.record_id.to_owned(), integration_id.to_owned());
    let maybe_open = known.open.contains(&link);
    for c in conflicts {
        if maybe_open {
            if c.winner.is_none() {
                if let Some(id) = same_open(conn, step, integration_id, c).await? {
                    touch(conn, step, &id).await?;
                    continue;
                }
            }
            supersede(conn, step, integration_id, Some(&c.field), at).await?;
        }
        let subject = subject(conn, known, step.record_id).await?;
        insert(conn, step, &subject, integration_id, c, at).await?;
    }
    if maybe_open {
        supersede(conn, step, integration_id, None, at).await?;
    }
    if conflicts.iter().any(|c| c.winner.is_none()) {
        known.open.insert(link);
    } else {
        known.open.remove(&link);
    }
    Ok(())
}

async fn apply_one(
    conn: &mut sqlx::AnyConnection,
    known: &mut Known,
    step: &Step<'_>,
    event: &RecordEvent,
) -> Result<(), ProjectionError> {
    match event {
        RecordEvent::RemoteMerged {
            integration_id,
            conflicts,
            at,
            ..
        } => merged(conn, known, step, integration_id, conflicts, &rfc3339(*at)).await,
        RecordEvent::ConflictResolved {
            integration_id,
            field,
            value,
            resolution,
            actor,
            at,
            ..
        } => {
            let closed = Closed {
                integration_id,
                field,
                status: "resolved",
                resolution: resolution.as_str(),
                actor,
                value: value.clone(),
                at: rfc3339(*at),
            };
            close(conn, step, closed).await
        }
        RecordEvent::ConflictIgnored {
            integration_id,
            field,
            actor,
            at,
            ..
        } => {
            let closed = Closed {
                integration_id,
                field,
                status: "ignored",
                resolution: "ignored",
                actor,
                value: None,
                at: rfc3339(*at),
            };
            close(conn, step, closed).await
        }
        RecordEvent::ConflictRaised {
            integration_id,
            conflict,
            at,
        } => raised(conn, known, step, integration_id, conflict, &rfc3339(*at)).await,
        RecordEvent::RemoteDeleted {
            integration_id, at, ..
        }
        | RecordEvent::RemoteRecordDeleted {
            integration_id, at, ..
        } => {
            let link = (step.record_id.to_owned(), integration_id.clone());
            if known.open.remove(&link) {
                supersede(conn, step, integration_id, None, &rfc3339(*at)).await?;
            }
            Ok(())
        }
        RecordEvent::RolledBack { links, at, .. } => {
            // A restored link brings back the conflicts it had open; whatever the
            // reversed run opened is superseded.
            let at = rfc3339(*at);
            for (integration_id, link) in links {
                let key = (step.record_id.to_owned(), integration_id.clone());
                if known.open.remove(&key) {
                    supersede(conn, step, integration_id, None, &at).await?;
                }
                let Some(link) = link else { continue };
                for c in link.conflicts.values() {
                    let subject = subject(conn, known, step.record_id).await?;
                    insert(conn, step, &subject, integration_id, c, &at).await?;
                }
                if !link.conflicts.is_empty() {
                    known.open.insert(key);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Projection for Conflicts {
    fn name(&self) -> &'static str {
        "conflicts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.get(TABLE);
        let mut decoded = Vec::new();
        for e in events.iter().filter(|e| e.aggregate_type == Record::TYPE) {
            decoded.push((e, decode(e)?));
        }
        let ids: BTreeSet<&str> = decoded
            .iter()
            .filter(|(_, event)| touches_queue(event))
            .map(|(e, _)| e.aggregate_id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut known = load_known(conn, table, &ids).await?;
        for (e, event) in &decoded {
            if let RecordEvent::RecordCreated {
                workspace_id,
                entity,
                ..
            }
            | RecordEvent::RecordImported {
                workspace_id,
                entity,
                ..
            } = event
            {
                let subject = (workspace_id.clone(), entity.as_str().to_owned());
                known.subjects.insert(e.aggregate_id.clone(), subject);
            }
            let seen = known.version.get(&e.aggregate_id).copied().unwrap_or(0);
            if !touches_queue(event) || e.sequence <= seen {
                continue;
            }
            let step = Step {
                table,
                record_id: &e.aggregate_id,
                sequence: e.sequence,
                position: e.position.pos,
            };
            apply_one(conn, &mut known, &step, event).await?;
            known.version.insert(e.aggregate_id.clone(), e.sequence);
        }
        Ok(())
    }
}

/// The records with a conflict on `field` with `integration_id` still open, oldest first.
pub async fn open_on_field(
    pool: &sqlx::AnyPool,
    workspace_id: &str,
    integration_id: &str,
    field: &str,
) -> Result<Vec<String>, ProjectionError> {
    let rows = sqlx::query(&format!(
        "SELECT record_id FROM {TABLE}
          WHERE workspace_id = $1 AND integration_id = $2 AND field = $3 AND status = 'open'
          ORDER BY detected_at, id"
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(field)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("record_id"))
        .collect::<Result<_, _>>()?)
}

/// A conflict as the review queue shows it.
#[derive(Clone, Debug)]
pub struct ConflictRow {
    pub id: String,
    pub record_id: String,
    pub integration_id: String,
    pub entity: String,
    pub field: String,
    pub base_value: Option<String>,
    pub app_value: Option<String>,
    pub crm_value: Option<String>,
    /// One of [`STATUSES`].
    pub status: String,
    pub detected_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_value: Option<String>,
}

impl ConflictRow {
    fn read(r: &sqlx::any::AnyRow) -> Result<Self, ProjectionError> {
        Ok(ConflictRow {
            id: r.try_get("id")?,
            record_id: r.try_get("record_id")?,
            integration_id: r.try_get("integration_id")?,
            entity: r.try_get("entity")?,
            field: r.try_get("field")?,
            base_value: r.try_get("base_value")?,
            app_value: r.try_get("app_value")?,
            crm_value: r.try_get("crm_value")?,
            status: r.try_get("status")?,
            detected_at: r.try_get("detected_at")?,
            resolved_at: r.try_get("resolved_at")?,
            resolved_by: r.try_get("resolved_by")?,
            resolution: r.try_get("resolution")?,
            resolved_value: r.try_get("resolved_value")?,
        })
    }
}

const COLUMNS: &str = "id, record_id, integration_id, entity, field, base_value, app_value,
    crm_value, status, detected_at, resolved_at, resolved_by, resolution, resolved_value";

/// Which conflicts to list: every filter that is set must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub integration_id: Option<String>,
    /// One of [`STATUSES`].
    pub status: Option<String>,
    pub entity: Option<String>,
    pub record_id: Option<String>,
}

/// Typed reads of the `conflicts` read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// The conflict, if it exists in the workspace.
    pub async fn get(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<ConflictRow>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {TABLE} WHERE id = $1 AND workspace_id = $2"
        ))
        .bind(id)
        .bind(workspace_id)
        .fetch_optional(self.0)
        .await?;
        row.as_ref().map(ConflictRow::read).transpose()
    }

    /// Up to `limit` of the workspace's conflicts matching `filter`, oldest detected
    /// first, after the conflict at `(after_time, after_id)` (empty strings: from the
    /// first).
    pub async fn list(
        &self,
        workspace_id: &str,
        filter: &Filter,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<ConflictRow>, ProjectionError> {
        let statement = list_statement(workspace_id, filter, after, limit);
        let rows = statement.query().fetch_all(self.0).await?;
        rows.iter().map(ConflictRow::read).collect()
    }
}

/// What [`Query::list`] runs: in `(detected_at, id)` order, served by the index on
/// `(workspace_id, detected_at, id)`, or `(workspace_id, status, detected_at, id)` for the
/// queue of one status; the page starts with a seek to `after_time`.
pub fn list_statement(
    workspace_id: &str,
    filter: &Filter,
    (after_time, after_id): (&str, &str),
    limit: i64,
) -> Statement {
    let mut s = Statement::default();
    let (ws, time, id) = (s.arg(workspace_id), s.arg(after_time), s.arg(after_id));
    let mut sql = format!(
        "SELECT {COLUMNS} FROM {TABLE} WHERE workspace_id = ${ws} AND detected_at >= ${time}
            AND (detected_at > ${time} OR (detected_at = ${time} AND id > ${id}))"
    );
    let filters = [
        ("integration_id", &filter.integration_id),
        ("status", &filter.status),
        ("entity", &filter.entity),
        ("record_id", &filter.record_id),
    ];
    for (column, value) in filters {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ${}", s.arg(value.as_str())));
        }
    }
    sql.push_str(&format!(
        " ORDER BY detected_at, id LIMIT ${}",
        s.arg(limit)
    ));
    s.sql = sql;
    s
}

#[cfg(test)]
mod tests {
    use super::conflict_id;

    #[test]
    fn ids_are_stable_and_tell_their_parts_apart() {
        let id = conflict_id("r1", "i1", "email", 7);
        assert_eq!(id, conflict_id("r1", "i1", "email", 7));
        assert_eq!(id.len(), 64);
        assert_ne!(id, conflict_id("r1", "i1", "email", 8));
        assert_ne!(id, conflict_id("r1", "i1e", "mail", 7));
        assert_ne!(id, conflict_id("r1", "i1", "email7", 0));
    }
}
