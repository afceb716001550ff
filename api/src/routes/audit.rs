//! The audit trail: read with filters and cursor paging, and verify the hash chain.

use crate::auth::{Caller, AUDIT_READERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{List, Page, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    pub integration: Option<String>,
    pub actor: Option<String>,
    /// The event type, e.g. `IntegrationPaused`.
    pub action: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The event's global position.
    pub position: i64,
    /// Place in this workspace's hash chain, from 1.
    pub chain_seq: i64,
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
    pub prev_hash: String,
    pub hash: String,
}

fn parse_time(field: &str, v: &Option<String>) -> ApiResult<Option<String>> {
    v.as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| {
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::Micros, true)
                })
                .map_err(|_| ApiError::invalid_field(field, "must be an RFC 3339 time"))
        })
        .transpose()
}

/// The workspace's audit trail, in chain order (admin, auditor).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditFilter),
    responses((status = 200, body = inline(List<AuditEntry>)), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Json<List<AuditEntry>>> {
    caller.require(AUDIT_READERS)?;
    let page = Page {
        limit: f.limit,
        cursor: f.cursor.clone(),
    };
    let limit = page.limit()?;
    let after: i64 = match page.cursor()? {
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?,
        None => 0,
    };
    let from = parse_time("from", &f.from)?;
    let to = parse_time("to", &f.to)?;
    // Times are stored as fixed-width RFC 3339 UTC text, so text order is time order.
    let rows = sqlx::query(
        "SELECT * FROM audit_log
          WHERE workspace_id = $1 AND chain_seq > $2
            AND ($3 IS NULL OR integration_id = $3)
            AND ($4 IS NULL OR actor = $4)
            AND ($5 IS NULL OR action = $5)
            AND ($6 IS NULL OR recorded_at >= $6)
            AND ($7 IS NULL OR recorded_at < $7)
          ORDER BY chain_seq LIMIT $8",
    )
    .bind(&caller.workspace_id)
    .bind(after)
    .bind(f.integration.clone())
    .bind(f.actor.clone())
    .bind(f.action.clone())
    .bind(from)
    .bind(to)
    .bind(limit + 1)
    .fetch_all(&state.store.any)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows {
        let time: String = r.try_get("recorded_at")?;
        entries.push(AuditEntry {
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
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        });
    }
    Ok(Json(List::page(entries, limit, |e| {
        e.chain_seq.to_string()
    })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyView {
    pub ok: bool,
    pub checked: i64,
    /// The first position where the chain is broken.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Recompute this workspace's hash chain from the event log (admin, auditor).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyView)))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<VerifyView>> {
    caller.require(AUDIT_READERS)?;
    let report =
        syncledger_projections::audit::verify(&state.store, Some(&caller.workspace_id)).await?;
    Ok(Json(VerifyView {
        ok: report.broken.is_none(),
        checked: report.checked,
        broken_at: report.broken.as_ref().map(|b| b.position),
        reason: report.broken.map(|b| b.reason),
    }))
}
