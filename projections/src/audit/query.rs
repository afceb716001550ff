//! Typed reads of the `audit_log` read model: filtered keyset pages in chain order, and
//! the head of a workspace's chain.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use syncledger_domain::audit::FieldChange;

use crate::statement::Statement;
use crate::ProjectionError;

/// Which rows of one workspace's trail. Times are fixed-width RFC 3339 UTC text, the
/// form they are stored in, so text order is time order.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub workspace_id: String,
    pub integration: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Inclusive.
    pub from: Option<String>,
    /// Exclusive.
    pub to: Option<String>,
}

/// One entry of the trail as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub position: i64,
    pub chain_seq: i64,
    /// When it was recorded (RFC 3339, microseconds, UTC).
    pub time: String,
    pub workspace_id: String,
    pub integration_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub action: String,
    pub summary: String,
    pub changes: Vec<FieldChange>,
    pub prev_hash: String,
    pub hash: String,
    pub request_id: Option<String>,
    pub acting_for: Option<String>,
}

impl AuditRow {
    fn read(r: &AnyRow) -> Result<AuditRow, ProjectionError> {
        let time: String = r.try_get("recorded_at")?;
        let changes: Option<String> = r.try_get("changes")?;
        let changes = match changes {
            Some(text) => {
                serde_json::from_str(&text).map_err(|_| ProjectionError::Corrupt(super::TABLE))?
            }
            None => Vec::new(),
        };
        Ok(AuditRow {
            position: r.try_get("position")?,
            chain_seq: r.try_get("chain_seq")?,
            time: DateTime::parse_from_rfc3339(&time)
                .map(|t| {
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::Micros, true)
                })
                .unwrap_or(time),
            workspace_id: r.try_get("workspace_id")?,
            integration_id: r.try_get("integration_id")?,
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            actor: r.try_get("actor")?,
            correlation_id: r.try_get("correlation_id")?,
            causation_id: r.try_get("causation_id")?,
            action: r.try_get("action")?,
            summary: r.try_get("summary")?,
            changes,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
            request_id: r.try_get("request_id")?,
            acting_for: r.try_get("acting_for")?,
        })
    }
}

/// What [`Query::page`] runs: in chain order, served by the primary key
/// `(workspace_id, chain_seq)`, or with an integration, actor or action by the index of
/// `(workspace_id, that column, chain_seq)`: a filter that matches only late or rare
/// entries does not walk the whole trail to find them. Only the filters that are set are
/// in the text, so each planner sees which index applies.
pub fn page_statement(f: &Filter, after: i64, until: i64, limit: i64) -> Statement {
    let mut s = Statement::default();
    let mut sql = format!(
        "SELECT * FROM audit_log WHERE workspace_id = ${} AND chain_seq > ${} AND chain_seq <= ${}",
        s.arg(f.workspace_id.as_str()),
        s.arg(after),
        s.arg(until)
    );
    let filters = [
        ("integration_id =", &f.integration),
        ("actor =", &f.actor),
        ("action =", &f.action),
        ("recorded_at >=", &f.from),
        ("recorded_at <", &f.to),
    ];
    for (test, value) in filters {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {test} ${}", s.arg(value.as_str())));
        }
    }
    sql.push_str(&format!(" ORDER BY chain_seq LIMIT ${}", s.arg(limit)));
    s.sql = sql;
    s
}

pub struct Query<'a>(pub &'a sqlx::AnyPool);

impl Query<'_> {
    /// Up to `limit` entries matching `f` with `after < chain_seq <= until`, in chain
    /// order.
    pub async fn page(
        &self,
        f: &Filter,
        after: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, ProjectionError> {
        let statement = page_statement(f, after, until, limit);
        let rows = statement.query().fetch_all(self.0).await?;
        rows.iter().map(AuditRow::read).collect()
    }

    /// The last chain sequence of the workspace's trail (0 when it is empty).
    pub async fn head(&self, workspace_id: &str) -> Result<i64, ProjectionError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(chain_seq) FROM audit_log WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_one(self.0)
                .await?;
        Ok(seq.unwrap_or(0))
    }
}
