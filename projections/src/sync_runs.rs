//! Read model: sync runs with their status, counters, resume points and times.

use async_trait::async_trait;
use syncledger_domain::sync_run::SyncRun;
use syncledger_store::StoredEvent;

use crate::fold::fold;
use crate::statement::Statement;
use crate::{rfc3339, Projection, ProjectionError, Tables};

pub struct SyncRuns;

pub const TABLE: &str = "sync_runs";

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A serde enum as its bare name (`"full"`).
fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[async_trait]
impl Projection for SyncRuns {
    fn name(&self) -> &'static str {
        "sync_runs"
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
        for (id, row) in fold::<SyncRun>(conn, table, events).await? {
            let s = &row.state;
            sqlx::query(&format!(
                "INSERT INTO {table} (id, workspace_id, integration_id, kind, trigger_kind, status, stats,
                     worker, reason, queued_at, started_at, ended_at, version, last_position, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (id) DO UPDATE SET
                   status = excluded.status, stats = excluded.stats, worker = excluded.worker,
                   reason = excluded.reason, started_at = excluded.started_at,
                   ended_at = excluded.ended_at, version = excluded.version,
                   last_position = excluded.last_position, state = excluded.state"
            ))
            .bind(&id)
            .bind(&s.workspace_id)
            .bind(&s.integration_id)
            .bind(s.kind.as_ref().map(name).unwrap_or_default())
            .bind(s.trigger.as_ref().map(name).unwrap_or_default())
            .bind(s.status.as_str())
            .bind(json(&s.stats))
            .bind(s.worker.clone())
            .bind(s.reason.clone())
            .bind(rfc3339(s.queued_at.unwrap_or(row.created_at)))
            .bind(s.started_at.map(rfc3339))
            .bind(s.ended_at.map(rfc3339))
            .bind(row.version)
            .bind(row.last_position)
            .bind(json(s))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The integration's latest run (by queue time) as the read model holds it.
pub async fn last_of(
    pool: &sqlx::AnyPool,
    integration_id: &str,
) -> Result<Option<SyncRun>, ProjectionError> {
    let state: Option<String> = sqlx::query_scalar(&format!(
        "SELECT state FROM {TABLE} WHERE integration_id = $1
         ORDER BY queued_at DESC, id DESC LIMIT 1"
    ))
    .bind(integration_id)
    .fetch_optional(pool)
    .await?;
    state
        .map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(|_| ProjectionError::Corrupt(TABLE))
}

/// What [`Query::list`] runs: a page of an integration's runs, newest first (ids are
/// UUIDv7, ordered by creation), with ids before `before`, optionally only those in
/// `status`; served by the index on `(workspace_id, integration_id, id)`.
pub fn list_statement(
    workspace_id: &str,
    integration_id: &str,
    status: Option<syncledger_domain::sync_run::RunStatus>,
    before: &str,
    limit: i64,
) -> Statement {
    let mut s = Statement::default();
    let mut sql = format!(
        "SELECT state FROM {TABLE}
          WHERE workspace_id = ${} AND integration_id = ${} AND id < ${}",
        s.arg(workspace_id),
        s.arg(integration_id),
        s.arg(before)
    );
    if let Some(status) = status {
        sql.push_str(&format!(" AND status = ${}", s.arg(status.as_str())));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", s.arg(limit)));
    s.sql = sql;
    s
}

/// Typed reads of the `sync_runs` read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// Up to `limit` of an integration's runs, newest first (ids are UUIDv7, ordered by
    /// creation), with ids before `before`, optionally only those in `status`.
    pub async fn list(
        &self,
        workspace_id: &str,
        integration_id: &str,
        status: Option<syncledger_domain::sync_run::RunStatus>,
        before: &str,
        limit: i64,
    ) -> Result<Vec<SyncRun>, ProjectionError> {
        let statement = list_statement(workspace_id, integration_id, status, before, limit);
        let rows = statement.query().fetch_all(self.0).await?;
        rows.iter()
            .map(|r| {
                let state: String = sqlx::Row::try_get(r, "state")?;
                serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt(TABLE))
            })
            .collect()
    }
}
