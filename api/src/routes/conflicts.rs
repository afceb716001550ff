//! The conflict review queue: conflicts the merges found, a person's resolution of each
//! (keep the app's value, take the CRM's, or set a merged one) or decision to ignore it,
//! and the per-integration "always use" rules that settle a field's conflicts unasked.
//!
//! Conflicts are read from the `conflicts` read model, which commands wait for before
//! answering; decisions go through the record aggregate, rules through the integration.

use crate::auth::{Caller, Writer, READERS, WRITERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::routes::records::FieldView;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use syncledger_domain::merge::Side;
use syncledger_domain::record::Resolution;
use syncledger_engine::conflicts::{ConflictRow, ConflictState, Filter};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conflicts", get(list))
        .route("/conflicts/{id}", get(get_one))
        .route("/conflicts/{id}/resolve", post(resolve))
        .route("/conflicts/{id}/ignore", post(ignore))
        .route("/integrations/{id}/conflict-rules", get(rules))
        .route(
            "/integrations/{id}/conflict-rules/{field}",
            axum::routing::put(set_rule).delete(remove_rule),
        )
}

/// One conflict on one field of a record, with one integration.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub id: String,
    pub record_id: String,
    pub integration_id: String,
    /// contacts or companies.
    pub entity: String,
    pub field: String,
    /// The value both sides last agreed on.
    pub base_value: Option<String>,
    pub app_value: Option<String>,
    pub crm_value: Option<String>,
    /// open, resolved, ignored or superseded (a later sync replaced or settled it).
    pub status: String,
    pub detected_at: String,
    pub resolved_at: Option<String>,
    /// Who resolved or ignored it (`policy` when an automatic rule settled it).
    pub resolved_by: Option<String>,
    /// use_app, use_crm, merged, ignored or auto.
    pub resolution: Option<String>,
    /// The value the field took when it was resolved.
    pub resolved_value: Option<String>,
    /// The record's current value of the field, with its source and time (single reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<FieldView>,
}

impl From<ConflictRow> for ConflictView {
    fn from(r: ConflictRow) -> Self {
        ConflictView {
            id: r.id,
            record_id: r.record_id,
            integration_id: r.integration_id,
            entity: r.entity,
            field: r.field,
            base_value: r.base_value,
            app_value: r.app_value,
            crm_value: r.crm_value,
            status: r.status,
            detected_at: r.detected_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            resolution: r.resolution,
            resolved_value: r.resolved_value,
            current: None,
        }
    }
}

impl From<ConflictState> for ConflictView {
    fn from(s: ConflictState) -> Self {
        ConflictView {
            current: s.current.as_ref().map(FieldView::from),
            ..s.row.into()
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    pub integration_id: Option<String>,
    /// open, resolved, ignored or superseded (default: all).
    pub status: Option<String>,
    /// contacts or companies.
    pub entity: Option<String>,
    pub record_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The workspace's conflicts, oldest first.
#[utoipa::path(get, path = "/v1/conflicts", operation_id = "listConflicts", tag = "conflicts", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = inline(List<ConflictView>)), (status = 400, response = crate::error_docs::BadRequest)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<List<ConflictView>>> {
    caller.require(READERS)?;
    let page = Page {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let (after_time, after_id) = page.keyset()?;
    let entity = q
        .entity
        .as_deref()
        .map(|e| crate::extract::entity("entity", Some(e)))
        .transpose()?;
    let filter = Filter {
        integration_id: q.integration_id,
        status: q.status,
        entity: entity.map(|e| e.as_str().to_owned()),
        record_id: q.record_id,
    };
    let rows = state
        .engine
        .conflicts()
        .list(
            &caller.workspace_id,
            &filter,
            (&after_time, &after_id),
            limit + 1,
        )
        .await?;
    let page = List::page(rows, limit, |c| format!("{}|{}", c.detected_at, c.id));
    Ok(Json(page.map(ConflictView::from)))
}

/// One conflict, with the record's current value of its field.
#[utoipa::path(get, path = "/v1/conflicts/{id}", operation_id = "getConflict", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = ConflictView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConflictView>> {
    caller.require(READERS)?;
    let conflict = state
        .engine
        .conflicts()
        .get(&caller.workspace_id, &id)
        .await?;
    Ok(Json(conflict.into()))
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionKind {
    UseApp,
    UseCrm,
    Merged,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveConflict {
    /// use_app keeps the app's value, use_crm takes the CRM's, merged sets `value`.
    pub resolution: ResolutionKind,
    /// Required with `merged` (null clears the field); not allowed otherwise.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    pub value: Option<Option<String>>,
}

impl ResolveConflict {
    /// The domain's resolution, or the API's 400 for a value given with the wrong kind.
    pub(crate) fn into_domain(self) -> ApiResult<Resolution> {
        match (self.resolution, self.value) {
            (ResolutionKind::UseApp, None) => Ok(Resolution::UseApp),
            (ResolutionKind::UseCrm, None) => Ok(Resolution::UseCrm),
            (ResolutionKind::Merged, None) => Err(ApiError::invalid_field(
                "value",
                "is required when resolution is merged (null clears the field)",
            )),
            (ResolutionKind::Merged, Some(value)) => Ok(Resolution::Value(value)),
            (_, Some(_)) => Err(ApiError::invalid_field(
                "value",
                "is only allowed when resolution is merged",
            )),
        }
    }
}

/// Resolve an open conflict: the record takes the chosen value, which is pushed to the
/// CRM unless it already holds it.
#[utoipa::path(post, path = "/v1/conflicts/{id}/resolve", operation_id = "resolveConflict", tag = "conflicts", security(("bearer" = [])),
    request_body = ResolveConflict,
    responses((status = 200, body = ConflictView), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn resolve(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<ResolveConflict>,
) -> ApiResult<Json<ConflictView>> {
    let resolution = req.into_domain()?;
    let decided = state
        .engine
        .conflicts()
        .resolve(&caller.metadata(), &id, resolution)
        .await?;
    Ok(Json(decided.into()))
}

/// Ignore an open conflict: both sides keep their values, and the same pair of values is
/// not raised again.
#[utoipa::path(post, path = "/v1/conflicts/{id}/ignore", operation_id = "ignoreConflict", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = ConflictView), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict)))]
pub async fn ignore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConflictView>> {
    caller.require(WRITERS)?;
    let decided = state
        .engine
        .conflicts()
        .ignore(&caller.metadata(), &id)
        .await?;
    Ok(Json(decided.into()))
}

/// An "always use" rule: conflicts on `field` keep that side's value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictRule {
    pub field: String,
    /// app or crm.
    #[serde(rename = "use")]
    #[schema(value_type = String, example = "crm")]
    pub side: Side,
}

fn rule_list(rules: BTreeMap<String, Side>) -> List<ConflictRule> {
    List {
        data: rules
            .into_iter()
            .map(|(field, side)| ConflictRule { field, side })
            .collect(),
        next_cursor: None,
    }
}

/// The integration's "always use" rules, by field name.
#[utoipa::path(get, path = "/v1/integrations/{id}/conflict-rules", operation_id = "listConflictRules", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<List<ConflictRule>>> {
    caller.require(READERS)?;
    let rules = state
        .engine
        .conflicts()
        .rules(&caller.workspace_id, &id)
        .await?;
    Ok(Json(rule_list(rules)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConflictRule {
    /// app or crm.
    #[serde(rename = "use")]
    #[schema(value_type = String, example = "crm")]
    pub side: Side,
}

/// Always settle conflicts on `field` for one side. Answers every rule.
#[utoipa::path(put, path = "/v1/integrations/{id}/conflict-rules/{field}", operation_id = "setConflictRule", tag = "conflicts", security(("bearer" = [])),
    request_body = SetConflictRule,
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn set_rule(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((id, field)): Path<(String, String)>,
    Body(req): Body<SetConflictRule>,
) -> ApiResult<Json<List<ConflictRule>>> {
    let rules = state
        .engine
        .conflicts()
        .set_rule(&caller.metadata(), &id, &field, req.side)
        .await?;
    Ok(Json(rule_list(rules)))
}

/// Remove the rule for `field`: its conflicts follow the sync strategy again.
#[utoipa::path(delete, path = "/v1/integrations/{id}/conflict-rules/{field}", operation_id = "removeConflictRule", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict)))]
pub async fn remove_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, field)): Path<(String, String)>,
) -> ApiResult<Json<List<ConflictRule>>> {
    caller.require(WRITERS)?;
    let rules = state
        .engine
        .conflicts()
        .remove_rule(&caller.metadata(), &id, &field)
        .await?;
    Ok(Json(rule_list(rules)))
}
