//! The audit trail: read with filters and cursor paging, export it whole as JSONL or CSV,
//! and verify the hash chain. Read-only: no route writes to the trail.

use crate::auth::{Caller, AUDIT_READERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{List, Page, Query};
use crate::state::AppState;
use crate::trail::{self, AuditEntry, Export, Filter, Format};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditFilter {
    /// Only entries of this integration (its own events and the record events of its syncs).
    pub integration_id: Option<String>,
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

fn parse_time(field: &str, v: Option<&str>) -> ApiResult<Option<String>> {
    trail::parse_time(v).map_err(|_| ApiError::invalid_field(field, "must be an RFC 3339 time"))
}

/// The caller's workspace trail, narrowed by the filters.
pub(crate) fn filter(
    caller: &Caller,
    integration: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    (from, to): (Option<&str>, Option<&str>),
) -> ApiResult<Filter> {
    Ok(Filter {
        workspace_id: caller.workspace_id.clone(),
        integration,
        actor,
        action,
        from: parse_time("from", from)?,
        to: parse_time("to", to)?,
    })
}

/// The workspace's audit trail, in chain order (admin, auditor).
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAuditEntries", tag = "audit", security(("bearer" = [])), params(AuditFilter),
    responses((status = 200, body = inline(List<AuditEntry>)), (status = 400, response = crate::error_docs::BadRequest),
              (status = 403, response = crate::error_docs::Forbidden)))]
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
    let times = (f.from.as_deref(), f.to.as_deref());
    let filter = filter(&caller, f.integration_id, f.actor, f.action, times)?;
    let rows = state.engine.audit().page(&filter, after, limit + 1).await?;
    let entries = rows.into_iter().map(AuditEntry::from).collect();
    Ok(Json(List::page(entries, limit, |e| {
        e.chain_seq.to_string()
    })))
}

/// `GET /v1/audit/export`: the list's filters, no paging, and the format. Unknown
/// parameters are refused rather than ignored: a mistyped filter must not widen an export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `jsonl` (default) or `csv`.
    #[param(inline)]
    pub format: Option<Format>,
    /// Only entries of this integration.
    pub integration_id: Option<String>,
    pub actor: Option<String>,
    /// The event type, e.g. `IntegrationPaused`.
    pub action: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
}

/// Every entry of the trail matching the filters, in chain order, as JSON lines (the
/// list's entries) or CSV (admin, auditor). Streamed as it is read: entries appended
/// after the export began are left for the next one.
#[utoipa::path(get, path = "/v1/audit/export", operation_id = "exportAuditTrail", tag = "audit", security(("bearer" = [])), params(ExportQuery),
    responses((status = 200, description = "One line per entry: JSON objects, or CSV after a header line",
                content((String = "application/x-ndjson"), (String = "text/csv"))),
              (status = 400, response = crate::error_docs::BadRequest), (status = 403, response = crate::error_docs::Forbidden)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    export_for(&state, &caller, q).await
}

/// The export as a streamed download, for the API and the dashboard alike.
pub async fn export_for(state: &AppState, caller: &Caller, q: ExportQuery) -> ApiResult<Response> {
    caller.require(AUDIT_READERS)?;
    let format = q.format.unwrap_or_default();
    let times = (q.from.as_deref(), q.to.as_deref());
    let filter = filter(caller, q.integration_id, q.actor, q.action, times)?;
    let export = Export::start(state.store.any.clone(), filter, format).await?;
    let chunks = futures::stream::try_unfold(export, |mut export| async move {
        match export.next_chunk().await {
            Ok(chunk) => Ok(chunk.map(|c| (Bytes::from(c), export))),
            Err(e) => {
                // The status line has gone: the client sees the body cut short.
                tracing::error!(error = %e, "audit export failed mid-stream");
                Err(e)
            }
        }
    });
    let filename = format!(
        "attachment; filename=\"audit-{}.{}\"",
        caller.workspace_id,
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, filename),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
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
#[utoipa::path(get, path = "/v1/audit/verify", operation_id = "verifyAuditTrail", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyView), (status = 403, response = crate::error_docs::Forbidden)))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<VerifyView>> {
    caller.require(AUDIT_READERS)?;
    let report = state.engine.audit().verify(&caller.workspace_id).await?;
    Ok(Json(VerifyView {
        ok: report.broken.is_none(),
        checked: report.checked,
        broken_at: report.broken.as_ref().map(|b| b.position),
        reason: report.broken.map(|b| b.reason),
    }))
}
