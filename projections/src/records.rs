//! Read model: each record's current values with the source and time of each, its match
//! key, and (in `record_links`) which CRM records it is linked to.

use async_trait::async_trait;
use syncledger_domain::record::{Link, Record};
use syncledger_domain::Entity;
use syncledger_store::StoredEvent;

use crate::fold::{fold, Folded};
use crate::statement::Statement;
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
            // One row per CRM record (a statement may not touch a row twice). A link is
            // keyed by its entity too: a CRM may number contacts and companies each from 1.
            let link_rows: Vec<(&String, &String, &str, &Link, &String)> = chunk
                .iter()
                .flat_map(|(id, row)| {
                    let entity = row.state.entity.map(Entity::as_str).unwrap_or_default();
                    row.state.links.iter().map(move |(integration, link)| {
                        (&row.state.workspace_id, integration, entity, link, id)
                    })
                })
                .map(|row| ((row.0, row.1, row.2, &row.3.remote_id), row))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect();
            for part in link_rows.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO {links} (workspace_id, integration_id, entity, remote_id, record_id, pending_push)
                     VALUES {}
                     ON CONFLICT (workspace_id, integration_id, entity, remote_id)
                     DO UPDATE SET record_id = excluded.record_id, pending_push = excluded.pending_push",
                    values(part.len(), 6)
                );
                let mut q = sqlx::query(&sql);
                for (workspace, integration, entity, link, id) in part {
                    q = q
                        .bind((*workspace).clone())
                        .bind((*integration).clone())
                        .bind(entity.to_string())
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
    /// Only records whose match key starts with this text, taken literally (no
    /// wildcards). Match keys are lower case: give it as [`Entity::match_key`] makes one.
    /// The list is then in match-key order.
    pub match_prefix: Option<String>,
}

/// A listed record: its state, and the key to page on after it (`updated_at|id`, or
/// `match_key|id` when searching by match key).
#[derive(Debug)]
pub struct Listed {
    pub id: String,
    pub state: Record,
    pub cursor: String,
}

/// The least text above every text that starts with `prefix`, in code point order (which
/// is the byte order of UTF-8: how SQLite's `BINARY` and PostgreSQL's `"C"` collation
/// compare): `prefix` with its last character that has a next one moved to that next
/// one. `None` when there is none (every character is `char::MAX`).
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// What [`Query::list`] runs: the page of records matching `filter` after the record at
/// `(after_key, after_id)` (empty strings: from the first), in `(updated_at, id)` order,
/// or `(match_key, id)` order with a match-key prefix. Each order has an index that
/// starts with the workspace and the order's columns (migration 0016), and the page
/// starts with a seek on it: a page costs the same in a workspace of any size.
pub fn list_statement(
    workspace_id: &str,
    filter: &Filter,
    (after_key, after_id): (&str, &str),
    limit: i64,
) -> Statement {
    let mut s = Statement::default();
    let mut sql = format!(
        "SELECT id, state, updated_at, match_key FROM {TABLE} WHERE workspace_id = ${}",
        s.arg(workspace_id)
    );
    // One lower bound on the order's column (the greatest of the search's prefix or
    // `updated_since`, and the keyset), so the seek starts there: given two, SQLite seeks
    // to one of them, and a search's first page walked every key below its prefix.
    // (Rust compares text as SQLite's BINARY and PostgreSQL's "C" do; timestamps are
    // fixed-width.)
    let since = filter.updated_since.as_deref();
    let (order, floor, end) = match &filter.match_prefix {
        Some(prefix) => ("match_key", prefix.as_str(), successor(prefix)),
        None => ("updated_at", since.unwrap_or_default(), None),
    };
    sql.push_str(&format!(" AND {order} >= ${}", s.arg(floor.max(after_key))));
    if let Some(end) = end {
        sql.push_str(&format!(" AND {order} < ${}", s.arg(end)));
    }
    let (key, id) = (s.arg(after_key), s.arg(after_id));
    sql.push_str(&format!(
        " AND ({order} > ${key} OR ({order} = ${key} AND id > ${id}))"
    ));
    if let (Some(since), Some(_)) = (since, &filter.match_prefix) {
        sql.push_str(&format!(" AND updated_at >= ${}", s.arg(since)));
    }
    if !filter.include_archived {
        sql.push_str(" AND archived = FALSE");
    }
    if let Some(entity) = filter.entity {
        sql.push_str(&format!(" AND entity = ${}", s.arg(entity.as_str())));
    }
    // "The integration is among the record's links": checked for each record walked,
    // through the links' index on record_id (a record has a link or two), so the page
    // stays one walk of the order's index instead of gathering all of the integration's
    // links first. Correlated this way, neither planner turns it into a join that would.
    if let Some(integration) = &filter.integration {
        sql.push_str(&format!(
            " AND ${} IN (SELECT l.integration_id FROM {LINKS} l WHERE l.record_id = {TABLE}.id)",
            s.arg(integration.as_str())
        ));
    }
    sql.push_str(&format!(" ORDER BY {order}, id LIMIT ${}", s.arg(limit)));
    s.sql = sql;
    s
}

/// Typed reads of the `records` read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// Up to `limit` of the workspace's records matching `filter`, least recently updated
    /// first (by match key with a prefix), after the record at `after` (the two parts of
    /// a [`Listed::cursor`]; empty strings: from the first).
    pub async fn list(
        &self,
        workspace_id: &str,
        filter: &Filter,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<Listed>, ProjectionError> {
        use sqlx::Row;
        let statement = list_statement(workspace_id, filter, after, limit);
        let rows = statement.query().fetch_all(self.0).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let state: String = r.try_get("state")?;
                let state =
                    serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt(TABLE))?;
                let key: Option<String> = if filter.match_prefix.is_some() {
                    r.try_get("match_key")?
                } else {
                    r.try_get("updated_at")?
                };
                Ok(Listed {
                    cursor: format!("{}|{id}", key.unwrap_or_default()),
                    id,
                    state,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{list_statement, successor, Filter};
    use crate::statement::Arg;

    /// Each page seeks from one lower bound on its order's column: the greatest of the
    /// keyset and the filter's.
    #[test]
    fn a_page_has_one_lower_bound_on_its_order() {
        let search = Filter {
            match_prefix: Some("contact4".into()),
            updated_since: Some("2026-01-01T00:00:00.000000Z".into()),
            ..Default::default()
        };
        let since = Filter {
            updated_since: Some("2026-01-01T00:00:00.000000Z".into()),
            ..Default::default()
        };
        for (filter, column, after, floor) in [
            (&search, "match_key", "", "contact4"),
            (&search, "match_key", "contact42@x", "contact42@x"),
            (&since, "updated_at", "", "2026-01-01T00:00:00.000000Z"),
            (
                &since,
                "updated_at",
                "2026-02-01T00:00:00.000000Z",
                "2026-02-01T00:00:00.000000Z",
            ),
            (&Filter::default(), "updated_at", "", ""),
        ] {
            let s = list_statement("w", filter, (after, "id"), 51);
            assert_eq!(
                s.sql.matches(&format!("{column} >=")).count(),
                1,
                "{}",
                s.sql
            );
            assert_eq!(s.args[1], Arg::Text(floor.into()), "{}", s.sql);
        }
    }

    #[test]
    fn the_successor_bounds_every_text_with_the_prefix() {
        assert_eq!(successor("ada@").as_deref(), Some("adaA"));
        assert_eq!(successor("a%_").as_deref(), Some("a%`"));
        assert_eq!(successor("z\u{D7FF}").as_deref(), Some("z\u{E000}"));
        assert_eq!(successor("b\u{10FFFF}").as_deref(), Some("c"));
        assert_eq!(successor("\u{10FFFF}"), None);
        let end = successor("ada@").unwrap_or_default();
        for text in ["ada@", "ada@example.com", "ada@\u{10FFFF}x"] {
            assert!(text.starts_with("ada@") && text < end.as_str());
        }
    }
}
