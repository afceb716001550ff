//! Fields a rollback left diverged from an integration's CRM: list them, and settle them
//! for the whole integration or some records (`keep: app` pushes the app's values,
//! `keep: crm` takes the CRM's). The rules live in `syncledger_engine::divergence`.

use crate::auth::{Admin, Caller, READERS};
use crate::error::ApiResult;
use crate::extract::Body;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use syncledger_domain::merge::Side;
use syncledger_engine::divergence::DivergedRecord;

pub fn routes() -> Router<AppState> {
    Router::new().route("/integrations/{id}/diverged", get(list).post(settle))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DivergedList {
    /// Per record, its diverged fields: `app` (the app's value), `crm` (what the CRM
    /// holds), `rollback_run_id` (the rollback that left it).
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<DivergedRecord>,
}

/// Records with fields a rollback left diverged from this integration's CRM.
///
/// Such a field holds one value in the app and another in the CRM because a rollback put
/// one side back; it is neither pushed nor pulled until it is settled here (or edited in
/// the app).
#[utoipa::path(get, path = "/v1/integrations/{id}/diverged", operation_id = "listDivergedRecords", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = DivergedList), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DivergedList>> {
    caller.require(READERS)?;
    let records = state
        .engine
        .diverged()
        .list(&caller.workspace_id, &id)
        .await?;
    Ok(Json(DivergedList { records }))
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The app's values go to the CRM on the next run.
    App,
    /// The records take the CRM's values (their source is the CRM).
    Crm,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    pub keep: Keep,
    /// Only these records (each must have diverged fields); all of them when absent.
    #[serde(default)]
    pub record_ids: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SettleResult {
    pub records: u64,
    pub fields: u64,
}

/// Settle diverged fields: keep the app's values (pushed on the next run) or the CRM's.
/// Admin only. Naming a record with nothing diverged is refused (409) and changes nothing.
#[utoipa::path(post, path = "/v1/integrations/{id}/diverged", operation_id = "settleDivergedRecords", tag = "integrations", security(("bearer" = [])),
    request_body = SettleRequest,
    responses((status = 200, body = SettleResult), (status = 400, response = crate::error_docs::BadRequest),
              (status = 403, response = crate::error_docs::Forbidden), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict)))]
pub async fn settle(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Body(req): Body<SettleRequest>,
) -> ApiResult<Json<SettleResult>> {
    let keep = match req.keep {
        Keep::App => Side::App,
        Keep::Crm => Side::Crm,
    };
    let settled = state
        .engine
        .diverged()
        .settle(&caller.metadata(), &id, keep, req.record_ids)
        .await?;
    Ok(Json(SettleResult {
        records: settled.records,
        fields: settled.fields,
    }))
}
