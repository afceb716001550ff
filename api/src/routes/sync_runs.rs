//! Sync runs through the API: start one (at most one active per integration), list an
//! integration's runs, read one with its counters and failed records, cancel, and retry
//! only the records a run failed on. Runs execute on workers, not in the request: a
//! started run answers 201 while still `queued`.

use crate::auth::{Caller, Writer, ADMINS, READERS, WRITERS};

use crate::error::ApiResult;
use crate::extract::{BodyOrDefault, List, Page, Query};

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use syncledger_domain::sync_run::{RunStats, SyncRun};
use syncledger_engine::run_control::StartRequest;
/// Failed records shown with a run (all of them stay in its events).
const MAX_FAILURES_SHOWN: usize = 100;

fn time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A run's counters.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub processed: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    pub conflicts_detected: u64,
    pub conflicts_resolved: u64,
    pub api_calls: u64,
    /// The provider's 429 answers the run waited out (its `Retry-After`, else the
    /// backoff) before trying again.
    pub rate_limited: u64,
}

impl From<RunStats> for StatsView {
    fn from(s: RunStats) -> Self {
        StatsView {
            processed: s.processed,
            created: s.created,
            updated: s.updated,
            unchanged: s.unchanged,
            skipped: s.skipped,
            failed: s.failed,
            conflicts_detected: s.conflicts_detected,
            conflicts_resolved: s.conflicts_resolved,
            api_calls: s.api_calls,
            rate_limited: s.rate_limited,
        }
    }
}

/// One record a run failed on.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FailureView {
    pub entity: String,
    /// pull, deletions or push.
    pub phase: String,
    pub record_id: Option<String>,
    pub remote_id: Option<String>,
    pub error: String,
}

/// Where one pass (entity and phase) stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PassView {
    /// `<entity>/<phase>`.
    pub pass: String,
    pub pages: u64,
    pub done: bool,
    /// The records the whole pass lists, when the provider said.
    pub total: Option<u64>,
    /// This pass's counters.
    pub stats: StatsView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: String,
    pub integration_id: String,
    /// full, incremental, push, reapply, rollback or import.
    pub kind: String,
    /// manual, scheduled or webhook.
    pub trigger: String,
    /// queued, running, completed, partial, failed, cancelled or quota_exhausted.
    pub status: String,
    pub stats: StatsView,
    pub duration_ms: Option<i64>,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Why it failed, was cancelled or stopped.
    pub reason: Option<String>,
    /// The run whose failed records this run retries.
    pub retry_of: Option<String>,
    /// For a rollback run: the run it reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The entities this run syncs when narrower than the integration's (else null).
    pub entities: Option<Vec<String>>,
    /// The direction this run syncs in when asked for (else null: the integration's).
    pub direction: Option<String>,
    /// false: the run imported no history, only records changed from its start on.
    pub import_historical: bool,
    /// How many records the run's pull passes go through, when the provider says so
    /// (HubSpot's search, i.e. incremental runs; Salesforce's queries); else null.
    pub records_total: Option<u64>,
    /// Records processed by the pull passes against `records_total`, 0 to 100; null
    /// when the total is unknown.
    pub progress_percent: Option<u8>,
    pub passes: Vec<PassView>,
    pub failures: Vec<FailureView>,
    pub failures_total: usize,
}

fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn view(run: &SyncRun) -> RunView {
    RunView {
        id: run.id.clone().unwrap_or_default(),
        integration_id: run.integration_id.clone(),
        kind: run.kind.as_ref().map(label).unwrap_or_default(),
        trigger: run.trigger.as_ref().map(label).unwrap_or_default(),
        status: run.status.as_str().into(),
        stats: run.stats.into(),
        duration_ms: run.duration(Utc::now()).map(|d| d.num_milliseconds()),
        queued_at: time(run.queued_at),
        started_at: time(run.started_at),
        ended_at: time(run.ended_at),
        reason: run.reason.clone(),
        retry_of: run.retry_of.clone(),
        rollback_of: run.rollback_of.clone(),
        entities: run
            .options
            .entities
            .as_ref()
            .map(|e| e.iter().map(|e| e.as_str().to_string()).collect()),
        direction: run.options.direction.as_ref().map(label),
        import_historical: run.options.import_historical,
        records_total: run.records_total(),
        progress_percent: run.progress_percent(),
        passes: run
            .passes
            .iter()
            .map(|(k, p)| PassView {
                pass: k.clone(),
                pages: p.pages,
                done: p.done,
                total: p.total,
                stats: p.stats.into(),
            })
            .collect(),
        failures: run
            .failures
            .iter()
            .take(MAX_FAILURES_SHOWN)
            .map(|f| FailureView {
                entity: f.entity.as_str().into(),
                phase: label(&f.phase),
                record_id: f.record_id.clone(),
                remote_id: f.remote_id.clone(),
                error: f.error.clone(),
            })
            .collect(),
        failures_total: run.failures.len(),
    }
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// full, incremental (default) or push.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only these of the integration's entities (contacts, companies); default all.
    #[serde(default)]
    pub entities: Option<Vec<String>>,
    /// pull, push or bidirectional, no wider than the integration's; default its own.
    #[serde(default)]
    pub direction: Option<String>,
    /// Default true. false: import no history, only records changed from now on (the
    /// run's passes start from a cursor of "now").
    #[serde(default)]
    pub import_historical: Option<bool>,
}

/// Start a sync run now. Without a body: an incremental run of every entity.
#[utoipa::path(post, path = "/v1/integrations/{id}/sync-runs", operation_id = "startSyncRun", tag = "sync runs", security(("bearer" = [])),
    request_body = StartRun,
    responses((status = 201, body = RunView), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn start(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    BodyOrDefault(req): BodyOrDefault<StartRun>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let request = StartRequest {
        kind: req.kind,
        entities: req.entities,
        direction: req.direction,
        import_historical: req.import_historical,
    };
    let run = state
        .engine
        .sync_runs()
        .start(&caller.metadata(), &id, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&run))))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1 to 500, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only runs in this status.
    pub status: Option<String>,
}

/// An integration's runs, newest first.
#[utoipa::path(get, path = "/v1/integrations/{id}/sync-runs", operation_id = "listSyncRuns", tag = "sync runs", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = List<RunView>), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<List<RunView>>> {
    caller.require(READERS)?;
    let page = Page {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let before = page.cursor()?;
    let runs = state
        .engine
        .sync_runs()
        .list(
            &caller.workspace_id,
            &id,
            q.status.as_deref(),
            before.as_deref(),
            limit + 1,
        )
        .await?;
    let views = runs.iter().map(view).collect();
    Ok(Json(List::page(views, limit, |r| r.id.clone())))
}

/// One run, current (read from its events).
#[utoipa::path(get, path = "/v1/sync-runs/{id}", operation_id = "getSyncRun", tag = "sync runs", security(("bearer" = [])),
    responses((status = 200, body = RunView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    caller.require(READERS)?;
    let run = state
        .engine
        .sync_runs()
        .get(&caller.workspace_id, &id)
        .await?;
    Ok(Json(view(&run)))
}

/// Cancel a queued or running run; its worker stops at the next page.
#[utoipa::path(post, path = "/v1/sync-runs/{id}/cancel", operation_id = "cancelSyncRun", tag = "sync runs", security(("bearer" = [])),
    responses((status = 200, body = RunView), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    caller.require(WRITERS)?;
    let run = state
        .engine
        .sync_runs()
        .cancel(&caller.metadata(), &id)
        .await?;
    Ok(Json(view(&run)))
}

/// Start a run that retries only the records this run failed on.
#[utoipa::path(post, path = "/v1/sync-runs/{id}/retry", operation_id = "retrySyncRun", tag = "sync runs", security(("bearer" = [])),
    responses((status = 201, body = RunView), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict)))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    caller.require(WRITERS)?;
    let run = state
        .engine
        .sync_runs()
        .retry(&caller.metadata(), &id)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&run))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RollbackQuery {
    /// Only report what the rollback would do (default false).
    pub dry_run: Option<bool>,
}

/// Roll a sync run back, or preview it with `dry_run=true`.
///
/// The preview lists, per record the run touched, the fields it would restore (value now
/// → value before the run), the fields that changed again since (reported as conflicts,
/// never overwritten), the records the run created (archived) and the CRM links it removed
/// (restored), and the CRM properties written back. Without `dry_run` (admin only) a run of
/// kind `rollback` is started: 201 with that run.
#[utoipa::path(post, path = "/v1/sync-runs/{id}/rollback", operation_id = "rollbackSyncRun", tag = "sync runs", security(("bearer" = [])),
    params(RollbackQuery),
    responses((status = 200, description = "the preview (dry_run=true)", body = Object),
              (status = 201, body = RunView), (status = 403, response = crate::error_docs::Forbidden),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RollbackQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let runs = state.engine.sync_runs();
    if q.dry_run == Some(true) {
        caller.require(WRITERS)?;
        let preview = runs.preview_rollback(&caller.metadata(), &id).await?;
        return Ok(Json(preview).into_response());
    }
    caller.require(ADMINS)?;
    let run = runs.rollback(&caller.metadata(), &id).await?;
    Ok((StatusCode::CREATED, Json(view(&run))).into_response())
}
