//! The conflict review queue: conflicts the merges found, a person's resolution of each
//! (keep the app's value, take the CRM's, or set a merged one) or decision to ignore it,
//! and the per-integration "always use" rules that settle a field's conflicts unasked.
//!
//! Conflicts are read from the `conflicts` read model, which commands wait for before
//! answering; decisions go through the record aggregate, rules through the integration.

use crate::auth::{Caller, Writer, READERS, WRITERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{encode_cursor, Body, List, Page, Query};
use crate::routes::integrations::owned as owned_integration;
use crate::routes::records::FieldView;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use syncledger_domain::merge::Side;
use syncledger_domain::record::{Record, RecordCommand, Resolution};
use syncledger_domain::{Aggregate, Integration, IntegrationCommand};
use syncledger_projections::conflicts::STATUSES;

const PROJECTION: &str = "conflicts";
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The routes of this module, merged into `/v1`.
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

const COLUMNS: &str = "id, record_id, integration_id, entity, field, base_value, app_value,
    crm_value, status, detected_at, resolved_at, resolved_by, resolution, resolved_value";

fn view(r: &sqlx::any::AnyRow) -> ApiResult<ConflictView> {
    Ok(ConflictView {
        id: r.try_get("id")?,
        record_id: r.try_get("record_id")?,
        integration_id: r.try_get("integration_id")?,
        entity: r.try_get("entity")?,
        field: r.try_get("field")?,
        base_value: r.try_get("base_value")?,
        app_value: r.try_get("app_value")?,
        crm_value: r.try_get("crm_value")?,
        status: r.try_get("status")?,
        detected_at: r.try_get("detected_at")?,
        resolved_at: r.try_get("resolved_at")?,
        resolved_by: r.try_get("resolved_by")?,
        resolution: r.try_get("resolution")?,
        resolved_value: r.try_get("resolved_value")?,
        current: None,
    })
}

/// The conflict, if it belongs to the caller's workspace (else 404, whoever owns it).
async fn find(state: &AppState, workspace_id: &str, id: &str) -> ApiResult<ConflictView> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM conflicts WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace_id)
    .fetch_optional(&state.store.any)
    .await?;
    row.as_ref()
        .map(view)
        .transpose()?
        .ok_or_else(|| ApiError::not_found("conflict"))
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
#[utoipa::path(get, path = "/v1/conflicts", tag = "conflicts", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = inline(List<ConflictView>)), (status = 400, body = crate::error::ErrorBody)))]
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
    let (after_time, after_id) = match page.cursor()? {
        Some(c) => c
            .split_once('|')
            .map(|(t, i)| (t.to_owned(), i.to_owned()))
            .ok_or_else(|| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?,
        None => (String::new(), String::new()),
    };
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid_field(
            "status",
            format!("{s:?} is not one of {}", STATUSES.join(", ")),
        ));
    }
    let entity = q
        .entity
        .as_deref()
        .map(|e| crate::extract::entity("entity", Some(e)))
        .transpose()?;
    let mut binds = vec![caller.workspace_id.clone(), after_time, after_id];
    let mut sql = format!(
        "SELECT {COLUMNS} FROM conflicts WHERE workspace_id = $1
            AND (detected_at > $2 OR (detected_at = $2 AND id > $3))"
    );
    let filters = [
        ("integration_id", q.integration_id.clone()),
        ("status", q.status.clone()),
        ("entity", entity.map(|e| e.as_str().to_owned())),
        ("record_id", q.record_id.clone()),
    ];
    for (column, value) in filters {
        if let Some(value) = value {
            binds.push(value);
            sql.push_str(&format!(" AND {column} = ${}", binds.len()));
        }
    }
    sql.push_str(&format!(
        " ORDER BY detected_at, id LIMIT ${}",
        binds.len() + 1
    ));
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b);
    }
    let rows = query.bind(limit + 1).fetch_all(&state.store.any).await?;
    let mut data = rows.iter().map(view).collect::<ApiResult<Vec<_>>>()?;
    let more = data.len() as i64 > limit;
    data.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| {
            data.last()
                .map(|c| encode_cursor(&format!("{}|{}", c.detected_at, c.id)))
        })
        .flatten();
    Ok(Json(List { data, next_cursor }))
}

/// One conflict, with the record's current value of its field.
#[utoipa::path(get, path = "/v1/conflicts/{id}", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = ConflictView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConflictView>> {
    caller.require(READERS)?;
    let mut conflict = find(&state, &caller.workspace_id, &id).await?;
    let record = state.records.load(&conflict.record_id).await?;
    conflict.current = record.fields.get(&conflict.field).map(FieldView::from);
    Ok(Json(conflict))
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
    fn into_domain(self) -> ApiResult<Resolution> {
        match (self.resolution, self.value) {
            (ResolutionKind::UseApp, None) => Ok(Resolution::UseApp),
            (ResolutionKind::UseCrm, None) => Ok(Resolution::UseCrm),
            (ResolutionKind::Merged, None) => Err(ApiError::invalid_field(
                "value",
                "is required when resolution is merged (null clears the field)",
            )),
            (ResolutionKind::Merged, Some(Some(v))) if v.len() > MAX_VALUE_BYTES => Err(
                ApiError::invalid_field("value", format!("is at most {MAX_VALUE_BYTES} bytes")),
            ),
            (ResolutionKind::Merged, Some(value)) => Ok(Resolution::Value(value)),
            (_, Some(_)) => Err(ApiError::invalid_field(
                "value",
                "is only allowed when resolution is merged",
            )),
        }
    }
}

/// The conflict, if open in the read model and still the one the record holds open.
async fn open_conflict(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ConflictView> {
    let conflict = find(state, &caller.workspace_id, id).await?;
    let not_open = |why: String| ApiError::new(StatusCode::CONFLICT, "conflict_not_open", why);
    if conflict.status != "open" {
        return Err(not_open(format!(
            "the conflict is {}; only open conflicts can be decided",
            conflict.status
        )));
    }
    let record = state.records.load(&conflict.record_id).await?;
    let held = record
        .links
        .get(&conflict.integration_id)
        .and_then(|l| l.conflicts.get(&conflict.field));
    let same = held.is_some_and(|c| {
        (&c.base, &c.app, &c.crm)
            == (
                &conflict.base_value,
                &conflict.app_value,
                &conflict.crm_value,
            )
    });
    if !same {
        return Err(not_open(
            "a later sync replaced or settled this conflict; list the open conflicts again".into(),
        ));
    }
    Ok(conflict)
}

/// After a decision: the conflict as the read model shows it, or as the decision left it
/// if the read model has not caught up in time.
async fn decided(
    state: &AppState,
    caller: &Caller,
    before: ConflictView,
    status: &str,
    resolution: &str,
) -> ApiResult<ConflictView> {
    state
        .settle(PROJECTION, Record::TYPE, &before.record_id)
        .await?;
    let now = find(state, &caller.workspace_id, &before.id).await?;
    if now.status != "open" {
        return Ok(now);
    }
    let record = state.records.load(&before.record_id).await?;
    let value = (status == "resolved")
        .then(|| {
            record
                .fields
                .get(&before.field)
                .and_then(|f| f.value.clone())
        })
        .flatten();
    Ok(ConflictView {
        status: status.into(),
        resolved_at: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        resolved_by: Some(caller.metadata().actor),
        resolution: Some(resolution.into()),
        resolved_value: value,
        ..before
    })
}

/// Resolve an open conflict: the record takes the chosen value, which is pushed to the
/// CRM unless it already holds it.
#[utoipa::path(post, path = "/v1/conflicts/{id}/resolve", tag = "conflicts", security(("bearer" = [])),
    request_body = ResolveConflict,
    responses((status = 200, body = ConflictView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resolve(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<ResolveConflict>,
) -> ApiResult<Json<ConflictView>> {
    let resolution = req.into_domain()?;
    let kind = match &resolution {
        Resolution::UseApp => "use_app",
        Resolution::UseCrm => "use_crm",
        Resolution::Value(_) => "merged",
    };
    let conflict = open_conflict(&state, &caller, &id).await?;
    let meta = caller.metadata();
    let command = RecordCommand::ResolveConflict {
        integration_id: conflict.integration_id.clone(),
        field: conflict.field.clone(),
        resolution,
        actor: meta.actor.clone(),
        at: Utc::now(),
    };
    state
        .records
        .execute(&conflict.record_id, command, &meta)
        .await?;
    let view = decided(&state, &caller, conflict, "resolved", kind).await?;
    Ok(Json(view))
}

/// Ignore an open conflict: both sides keep their values, and the same pair of values is
/// not raised again.
#[utoipa::path(post, path = "/v1/conflicts/{id}/ignore", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = ConflictView), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn ignore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConflictView>> {
    caller.require(WRITERS)?;
    let conflict = open_conflict(&state, &caller, &id).await?;
    let meta = caller.metadata();
    let command = RecordCommand::IgnoreConflict {
        integration_id: conflict.integration_id.clone(),
        field: conflict.field.clone(),
        actor: meta.actor.clone(),
        at: Utc::now(),
    };
    state
        .records
        .execute(&conflict.record_id, command, &meta)
        .await?;
    let view = decided(&state, &caller, conflict, "ignored", "ignored").await?;
    Ok(Json(view))
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

fn rule_list(integration: &Integration) -> List<ConflictRule> {
    List {
        data: integration
            .conflict_rules
            .iter()
            .map(|(field, side)| ConflictRule {
                field: field.clone(),
                side: *side,
            })
            .collect(),
        next_cursor: None,
    }
}

/// The integration's "always use" rules, by field name.
#[utoipa::path(get, path = "/v1/integrations/{id}/conflict-rules", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 404, body = crate::error::ErrorBody)))]
pub async fn rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<List<ConflictRule>>> {
    caller.require(READERS)?;
    let integration = owned_integration(&state, &caller.workspace_id, &id).await?;
    Ok(Json(rule_list(&integration)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConflictRule {
    /// app or crm.
    #[serde(rename = "use")]
    #[schema(value_type = String, example = "crm")]
    pub side: Side,
}

async fn change_rule(
    state: &AppState,
    caller: &Caller,
    id: &str,
    field: String,
    side: Option<Side>,
) -> ApiResult<List<ConflictRule>> {
    let meta = caller.metadata();
    let command = IntegrationCommand::SetConflictRule {
        field,
        side,
        at: Utc::now(),
    };
    state.integrations.execute(id, command, &meta).await?;
    state
        .settle("integration_status", Integration::TYPE, id)
        .await?;
    Ok(rule_list(
        &owned_integration(state, &caller.workspace_id, id).await?,
    ))
}

/// Always settle conflicts on `field` for one side. Answers every rule.
#[utoipa::path(put, path = "/v1/integrations/{id}/conflict-rules/{field}", tag = "conflicts", security(("bearer" = [])),
    request_body = SetConflictRule,
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn set_rule(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((id, field)): Path<(String, String)>,
    Body(req): Body<SetConflictRule>,
) -> ApiResult<Json<List<ConflictRule>>> {
    owned_integration(&state, &caller.workspace_id, &id).await?;
    let rules = change_rule(&state, &caller, &id, field.clone(), Some(req.side)).await?;
    // The conflicts already waiting on the field are settled now, as a merge would.
    state.settle(PROJECTION, Integration::TYPE, &id).await?;
    let meta = caller.metadata();
    syncledger_engine::rules::settle_open_conflicts(&state.store, &id, &field, req.side, &meta)
        .await?;
    Ok(Json(rules))
}

/// Remove the rule for `field`: its conflicts follow the sync strategy again.
#[utoipa::path(delete, path = "/v1/integrations/{id}/conflict-rules/{field}", tag = "conflicts", security(("bearer" = [])),
    responses((status = 200, body = inline(List<ConflictRule>)), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn remove_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, field)): Path<(String, String)>,
) -> ApiResult<Json<List<ConflictRule>>> {
    caller.require(WRITERS)?;
    let integration = owned_integration(&state, &caller.workspace_id, &id).await?;
    if !integration.conflict_rules.contains_key(&field) {
        return Err(ApiError::not_found("conflict rule"));
    }
    let rules = change_rule(&state, &caller, &id, field, None).await?;
    Ok(Json(rules))
}
