//! Read model: the workspace's Postgres destinations as their events leave them, without
//! their sealed database URLs (the sink reads those from the aggregate).

use async_trait::async_trait;
use sqlx::Row;
use syncledger_domain::destination::Destination;
use syncledger_store::StoredEvent;

use crate::fold::fold;
use crate::statement::Statement;
use crate::{rfc3339, Projection, ProjectionError, Tables};

pub struct Destinations;

pub const TABLE: &str = "destinations";

#[async_trait]
impl Projection for Destinations {
    fn name(&self) -> &'static str {
        "destinations"
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
        for (id, row) in fold::<Destination>(conn, table, events).await? {
            let mut state = row.state;
            state.url = None;
            let json = serde_json::to_string(&state).unwrap_or_else(|_| "{}".into());
            sqlx::query(&format!(
                "INSERT INTO {table} (id, workspace_id, deleted, state, created_at, updated_at,
                                      version, last_position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET
                   deleted = excluded.deleted, state = excluded.state,
                   updated_at = excluded.updated_at, version = excluded.version,
                   last_position = excluded.last_position"
            ))
            .bind(&id)
            .bind(&state.workspace_id)
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

fn parse(r: &sqlx::any::AnyRow) -> Result<Destination, ProjectionError> {
    let state: String = r.try_get("state")?;
    serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt("destination"))
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
    /// Up to `limit` of the workspace's destinations (not deleted) with ids after `after`.
    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Destination>, ProjectionError> {
        let rows = list_statement(workspace_id, after, limit)
            .query()
            .fetch_all(self.0)
            .await?;
        rows.iter().map(parse).collect()
    }

    /// One destination of the workspace, unless deleted.
    pub async fn get(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<Destination>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT state FROM {TABLE} WHERE workspace_id = $1 AND id = $2 AND deleted = 0"
        ))
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(self.0)
        .await?;
        row.as_ref().map(parse).transpose()
    }

    /// The ids of every destination of every workspace not deleted: what the sink serves.
    pub async fn active(&self) -> Result<Vec<String>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT id FROM {TABLE} WHERE deleted = 0 ORDER BY id"
        ))
        .fetch_all(self.0)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(ProjectionError::from))
            .collect()
    }
}
