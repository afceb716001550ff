//! Read model: the workspace's webhook endpoints as their events leave them, without
//! their signing secrets (the delivery worker reads those from the aggregate).

use async_trait::async_trait;
use sqlx::Row;
use syncledger_domain::webhook::WebhookEndpoint;
use syncledger_store::StoredEvent;

use crate::fold::fold;
use crate::statement::Statement;
use crate::{rfc3339, Projection, ProjectionError, Tables};

pub struct WebhookEndpoints;

pub const TABLE: &str = "webhook_endpoints";

#[async_trait]
impl Projection for WebhookEndpoints {
    fn name(&self) -> &'static str {
        "webhook_endpoints"
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
        for (id, row) in fold::<WebhookEndpoint>(conn, table, events).await? {
            let mut state = row.state;
            state.secret = None;
            state.previous_secret = None;
            let json = serde_json::to_string(&state).unwrap_or_else(|_| "{}".into());
            sqlx::query(&format!(
                "INSERT INTO {table} (id, workspace_id, enabled, deleted, state, created_at,
                                      updated_at, version, last_position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET
                   enabled = excluded.enabled, deleted = excluded.deleted,
                   state = excluded.state, updated_at = excluded.updated_at,
                   version = excluded.version, last_position = excluded.last_position"
            ))
            .bind(&id)
            .bind(&state.workspace_id)
            .bind(i64::from(state.enabled))
            .bind(i64::from(state.deleted))
            .bind(json)
            .bind(rfc3339(row.created_at))
            .bind(rfc3339(row.updated_at))
            .bind(row.version)
            .bind(row.last_position)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

fn parse(r: &sqlx::any::AnyRow) -> Result<WebhookEndpoint, ProjectionError> {
    let state: String = r.try_get("state")?;
    serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt("webhook endpoint"))
}

/// What [`Query::list`] runs: by id, served by the index on `(workspace_id, id)` (the
/// query-plan test checks it beside the other lists).
pub fn list_statement(workspace_id: &str, after: &str, limit: i64) -> Statement {
    let mut s = Statement::new(format!(
        "SELECT state FROM {TABLE} WHERE workspace_id = $1 AND id > $2 AND deleted = 0
          ORDER BY id LIMIT $3"
    ));
    s.arg(workspace_id);
    s.arg(after);
    s.arg(limit);
    s
}

/// Typed reads of the read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// Up to `limit` of the workspace's endpoints (not deleted) with ids after `after`.
    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<WebhookEndpoint>, ProjectionError> {
        let rows = list_statement(workspace_id, after, limit)
            .query()
            .fetch_all(self.0)
            .await?;
        rows.iter().map(parse).collect()
    }

    /// One endpoint of the workspace, unless deleted.
    pub async fn get(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT state FROM {TABLE} WHERE workspace_id = $1 AND id = $2 AND deleted = 0"
        ))
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(self.0)
        .await?;
        row.as_ref().map(parse).transpose()
    }

    /// Every enabled endpoint of every workspace: what the delivery worker serves.
    pub async fn enabled(&self) -> Result<Vec<WebhookEndpoint>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT state FROM {TABLE} WHERE enabled = 1 AND deleted = 0 ORDER BY id"
        ))
        .fetch_all(self.0)
        .await?;
        rows.iter().map(parse).collect()
    }
}
