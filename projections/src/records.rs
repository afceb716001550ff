//! Read model: each record's current values with the source and time of each, its match
//! key, and (in `record_links`) which CRM records it is linked to.

use async_trait::async_trait;
use syncledger_domain::record::{Link, Record};
use syncledger_domain::Entity;
use syncledger_store::StoredEvent;

use crate::fold::{fold, Folded};
use crate::{rfc3339, Projection, ProjectionError, Tables};

pub struct Records;

pub const TABLE: &str = "records";

/// Rows per multi-row statement (11 parameters each: far below every limit).
const ROWS_PER_STATEMENT: usize = 200;

/// `($1, $2), ($3, $4)`: `rows` groups of `width` placeholders.
fn values(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
pub const LINKS: &str = "record_links";

/// The value CRMs converge on: email for contacts, domain for companies, lower case.
fn match_key(record: &Record) -> Option<String> {
    let field = record.entity?.match_field();
    Entity::match_key(record.fields.get(field).and_then(|f| f.value.as_deref()))
}

#[async_trait]
impl Projection for Records {
    fn name(&self) -> &'static str {
        "records"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE, LINKS]
    }

    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let (table, links) = (tables.get(TABLE), tables.get(LINKS));
        let rows: Vec<(String, Folded<Record>)> = fold::<Record>(conn, table, events)
            .await?
            .into_iter()
            .collect();
        // Multi-row statements: a sync writes thousands of records per batch.
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let marks = values(chunk.len(), 11);
            let sql = format!(
                "INSERT INTO {table} (id, workspace_id, entity, match_key, fields, created_at,
                     updated_at, version, last_position, state, archived)
                 VALUES {marks}
                 ON CONFLICT (id) DO UPDATE SET
                   match_key = excluded.match_key, fields = excluded.fields,
                   updated_at = excluded.updated_at, version = excluded.version,
                   last_position = excluded.last_position, state = excluded.state,
                   archived = excluded.archived"
            );
            let mut q = sqlx::query(&sql);
            for (id, row) in chunk {
                let r = &row.state;
                q = q
                    .bind(id.clone())
                    .bind(r.workspace_id.clone())
                    .bind(r.entity.map(Entity::as_str).unwrap_or_default())
                    .bind(match_key(r))
                    .bind(serde_json::to_string(&r.fields).unwrap_or_else(|_| "{}".into()))
                    .bind(rfc3339(row.created_at))
                    .bind(rfc3339(row.updated_at))
                    .bind(row.version)
                    .bind(row.last_position)
                    .bind(serde_json::to_string(r).unwrap_or_else(|_| "{}".into()))
                    .bind(r.archived);
            }
            q.execute(&mut *conn).await?;
            // The links as they are now: simpler and as cheap as tracking each change.
            let ids = values(chunk.len(), 1).replace(['(', ')'], "");
            let sql = format!("DELETE FROM {links} WHERE record_id IN ({ids})");
            let mut q = sqlx::query(&sql);
            for (id, _) in chunk {
                q = q.bind(id.clone());
            }
            q.execute(&mut *conn).await?;
            // One row per CRM record (a statement may not touch a row twice).
            let link_rows: Vec<(&String, &String, &Link, &String)> = chunk
                .iter()
                .flat_map(|(id, row)| {
                    row.state.links.iter().map(move |(integration, link)| {
                        (&row.state.workspace_id, integration, link, id)
                    })
                })
                .map(|row| ((row.0, row.1, &row.2.remote_id), row))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect();
            for part in link_rows.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO {links} (workspace_id, integration_id, remote_id, record_id, pending_push)
                     VALUES {}
                     ON CONFLICT (workspace_id, integration_id, remote_id)
                     DO UPDATE SET record_id = excluded.record_id, pending_push = excluded.pending_push",
                    values(part.len(), 5)
                );
                let mut q = sqlx::query(&sql);
                for (workspace, integration, link, id) in part {
                    q = q
                        .bind((*workspace).clone())
                        .bind((*integration).clone())
                        .bind(link.remote_id.clone())
                        .bind((*id).clone())
                        // What a push pass would send: nothing to a deleted CRM record,
                        // nothing held by an open conflict.
                        .bind(i64::try_from(link.owed().len()).unwrap_or(i64::MAX));
                }
                q.execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}

/// One row of the read model: a record's id and its state (or why the state is unreadable).
#[derive(Debug)]
pub struct StoredRecord {
    pub id: String,
    pub state: Result<Record, String>,
}

/// Up to `limit` records of `entity` in the workspace linked to `integration_id`, with ids
/// after `after`, in id order (keyset paging).
pub async fn linked_to(
    pool: &sqlx::AnyPool,
    workspace_id: &str,
    integration_id: &str,
    entity: Entity,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredRecord>, ProjectionError> {
    use sqlx::Row;
    let rows = sqlx::query(&format!(
        "SELECT r.id, r.state FROM {TABLE} r JOIN {LINKS} l ON l.record_id = r.id
          WHERE l.workspace_id = $1 AND l.integration_id = $2 AND r.workspace_id = $1
            AND r.entity = $3 AND r.id > $4
          ORDER BY r.id LIMIT $5"
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(entity.as_str())
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            Ok(StoredRecord {
                id: r.try_get("id")?,
                state: serde_json::from_str(&state).map_err(|e| e.to_string()),
            })
        })
        .collect()
}

/// Up to `limit` records linked to `integration_id` whose state may hold a field a rollback
/// left diverged, after `after` in id order, and the last id looked at (for the next
/// page). A text test on the stored state narrows the scan on both backends; the caller
/// checks each state's link.
pub async fn maybe_diverged(
    pool: &sqlx::AnyPool,
    workspace_id: &str,
    integration_id: &str,
    after: &str,
    limit: i64,
) -> Result<(Vec<StoredRecord>, Option<String>), ProjectionError> {
    use sqlx::Row;
    let rows = sqlx::query(&format!(
        "SELECT r.id, r.state FROM {TABLE} r JOIN {LINKS} l ON l.record_id = r.id
          WHERE l.workspace_id = $1 AND l.integration_id = $2 AND r.workspace_id = $1
            AND r.id > $3
          ORDER BY r.id LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut last = None;
    let mut out = Vec::new();
    for r in &rows {
        let id: String = r.try_get("id")?;
        let state: String = r.try_get("state")?;
        if state.contains("\"diverged\"") {
            out.push(StoredRecord {
                id: id.clone(),
                state: serde_json::from_str(&state).map_err(|e| e.to_string()),
            });
        }
        last = Some(id);
    }
    Ok((out, last))
}

/// Which records to list: every filter that is set must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub entity: Option<Entity>,
    /// Only records linked to this integration.
    pub integration: Option<String>,
    /// Only records updated at or after this instant (RFC 3339, microseconds).
    pub updated_since: Option<String>,
    pub include_archived: bool,
}

/// A listed record: its state, and the key to page on after it (`updated_at|id`).
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub state: Record,
    pub cursor: String,
}

/// Typed reads of the `records` read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// Up to `limit` of the workspace's records matching `filter`, least recently updated
    /// first, after the record at `(after_time, after_id)` (empty strings: from the first).
    pub async fn list(
        &self,
        workspace_id: &str,
        filter: &Filter,
        (after_time, after_id): (&str, &str),
        limit: i64,
    ) -> Result<Vec<Listed>, ProjectionError> {
        use sqlx::Row;
        let mut sql = format!(
            "SELECT id, entity, fields, version, state, updated_at FROM {TABLE}
              WHERE workspace_id = $1 AND updated_at >= $2
                AND (updated_at > $3 OR (updated_at = $3 AND id > $4))"
        );
        if !filter.include_archived {
            sql.push_str(" AND archived = FALSE");
        }
        if filter.entity.is_some() {
            sql.push_str(" AND entity = $6");
        }
        if filter.integration.is_some() {
            let n = if filter.entity.is_some() { 7 } else { 6 };
            sql.push_str(&format!(
                " AND id IN (SELECT record_id FROM {LINKS} WHERE workspace_id = $1 AND integration_id = ${n})"
            ));
        }
        sql.push_str(" ORDER BY updated_at, id LIMIT $5");
        let mut query = sqlx::query(&sql)
            .bind(workspace_id)
            .bind(filter.updated_since.clone().unwrap_or_default())
            .bind(after_time)
            .bind(after_id)
            .bind(limit);
        if let Some(e) = filter.entity {
            query = query.bind(e.as_str());
        }
        if let Some(i) = &filter.integration {
            query = query.bind(i.clone());
        }
        let rows = query.fetch_all(self.0).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let state: String = r.try_get("state")?;
                let state =
                    serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt(TABLE))?;
                let updated_at: String = r.try_get("updated_at")?;
                Ok(Listed {
                    cursor: format!("{updated_at}|{id}"),
                    id,
                    state,
                })
            })
            .collect()
    }
}
