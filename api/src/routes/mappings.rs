//! Field mappings per integration and entity: read the effective ones (stored, else the
//! provider's defaults), replace them with a filter, propose them from the CRM's field
//! catalogue, preview them on one page of CRM records, and re-apply them to the data
//! already fetched.
//!
//! Transforms and filters are compiled before anything is stored, so a bad expression is
//! refused with the rule it belongs to and writes nothing. Previews and proposals call the
//! provider but never write an event; a reapply never calls the provider.

use std::collections::BTreeMap;

use crate::auth::{Caller, Writer, READERS, WRITERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, Body, List};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use syncledger_domain::integration::{FieldMapping, MappingDirection};
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::Entity;
use syncledger_engine::mappings::{self, PreviewInput};

/// One CRM field ↔ app field rule.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingBody {
    pub crm_field: String,
    pub app_field: String,
    /// pull (CRM → app), push (app → CRM), both or none.
    #[schema(value_type = String, example = "both")]
    pub direction: MappingDirection,
    /// A CEL expression over `value` (the CRM field) and `record` (every CRM field),
    /// applied when pulling, e.g. `value.lowerAscii()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

impl From<&FieldMapping> for MappingBody {
    fn from(m: &FieldMapping) -> Self {
        MappingBody {
            crm_field: m.crm_field.clone(),
            app_field: m.app_field.clone(),
            direction: m.direction,
            transform: m.transform.clone(),
        }
    }
}

impl From<MappingBody> for FieldMapping {
    fn from(m: MappingBody) -> Self {
        FieldMapping {
            crm_field: m.crm_field,
            app_field: m.app_field,
            direction: m.direction,
            transform: m.transform,
        }
    }
}

/// The mappings an entity syncs with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntityMappings {
    /// contacts or companies.
    pub entity: String,
    /// `custom` when set through this API, `default` for the provider's defaults.
    pub source: String,
    /// A CEL predicate over `record`: only CRM records it accepts sync.
    pub filter: Option<String>,
    pub mappings: Vec<MappingBody>,
}

impl From<mappings::EntityMappings> for EntityMappings {
    fn from(m: mappings::EntityMappings) -> Self {
        EntityMappings {
            entity: m.entity.as_str().into(),
            source: m.source.into(),
            filter: m.filter,
            mappings: m.mappings.iter().map(MappingBody::from).collect(),
        }
    }
}

/// The effective mappings of every entity the integration syncs.
#[utoipa::path(get, path = "/v1/integrations/{id}/mappings", operation_id = "listMappings", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = inline(List<EntityMappings>)), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<List<EntityMappings>>> {
    caller.require(READERS)?;
    let all = state
        .engine
        .mappings()
        .list(&caller.workspace_id, &id)
        .await?;
    Ok(Json(List {
        data: all.into_iter().map(EntityMappings::from).collect(),
        next_cursor: None,
    }))
}

/// The effective mappings of one entity.
#[utoipa::path(get, path = "/v1/integrations/{id}/mappings/{entity}", operation_id = "getMappings", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = EntityMappings), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<EntityMappings>> {
    caller.require(READERS)?;
    let found = state
        .engine
        .mappings()
        .get(&caller.workspace_id, &id, &entity)
        .await?;
    Ok(Json(found.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMappings {
    pub mappings: Vec<MappingBody>,
    /// A CEL predicate over `record`, e.g. `record.lifecyclestage == 'customer'`; null or
    /// absent for none.
    #[serde(default)]
    pub filter: Option<String>,
}

/// Replace an entity's mappings and filter. Expressions are checked first; a bad one is
/// refused naming its rule, and nothing changes.
#[utoipa::path(put, path = "/v1/integrations/{id}/mappings/{entity}", operation_id = "replaceMappings", tag = "mappings", security(("bearer" = [])),
    request_body = PutMappings,
    responses((status = 200, body = EntityMappings), (status = 400, response = crate::error_docs::BadRequest),
              (status = 503, response = crate::error_docs::ServiceUnavailable),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn put(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((id, entity)): Path<(String, String)>,
    Body(req): Body<PutMappings>,
) -> ApiResult<Json<EntityMappings>> {
    let mappings: Vec<FieldMapping> = req.mappings.into_iter().map(Into::into).collect();
    let replaced = state
        .engine
        .mappings()
        .replace(&caller.metadata(), &id, &entity, mappings, req.filter)
        .await?;
    Ok(Json(replaced.into()))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AutoMapping {
    /// Proposed mappings (not saved): each app field to the CRM field of the same name.
    pub mappings: Vec<MappingBody>,
    /// Required CRM fields the proposal does not push: creating CRM records would fail.
    pub unmapped_required: Vec<String>,
    /// App fields of the entity the proposal does not fill.
    pub unmapped_app_fields: Vec<String>,
}

/// Propose mappings from the CRM's field catalogue, matching names. Saves nothing.
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/auto", operation_id = "proposeMappings", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = AutoMapping), (status = 400, response = crate::error_docs::BadRequest),
              (status = 403, response = crate::error_docs::Forbidden), (status = 503, response = crate::error_docs::ServiceUnavailable),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
              (status = 502, response = crate::error_docs::BadGateway), (status = 429, response = crate::error_docs::TooManyRequests)))]
pub async fn auto(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<AutoMapping>> {
    // It calls the provider on the workspace's behalf: a writing role only.
    caller.require(WRITERS)?;
    let proposal = state
        .engine
        .mappings()
        .propose(&caller.metadata(), &id, &entity)
        .await?;
    Ok(Json(AutoMapping {
        unmapped_required: proposal.unmapped_required,
        unmapped_app_fields: proposal.unmapped_app_fields,
        mappings: proposal.mappings.iter().map(MappingBody::from).collect(),
    }))
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// Mappings to try; absent: the effective ones.
    #[serde(default)]
    pub mappings: Option<Vec<MappingBody>>,
    /// A filter to try; absent: the effective one; null: none.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>)]
    pub filter: Option<Option<String>>,
    /// How many records to map: 1 to 50, default 10.
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewRecord {
    pub remote_id: String,
    /// The CRM record's properties as fetched.
    pub crm: BTreeMap<String, Option<String>>,
    /// The app fields it maps to; null when filtered out or when mapping failed.
    pub app: Option<BTreeMap<String, Option<String>>>,
    /// The filter leaves this record out.
    pub filtered: bool,
    /// Why mapping this record failed.
    pub error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub records: Vec<PreviewRecord>,
    /// Required CRM fields no mapping pushes: creating CRM records would fail.
    pub unmapped_required: Vec<String>,
    /// App fields of the entity no mapping fills.
    pub unmapped_app_fields: Vec<String>,
}

/// The optional JSON body of a preview.
fn preview_request(headers: &HeaderMap, body: &Bytes) -> ApiResult<PreviewRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PreviewRequest::default());
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    parse_json(body)
}

/// Map a sample of CRM records (the first page, without a cursor) with the effective or
/// given mappings, to see what a sync would bring in. Writes nothing.
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/preview", operation_id = "previewMappings", tag = "mappings", security(("bearer" = [])),
    request_body(content = Option<PreviewRequest>),
    responses((status = 200, body = Preview), (status = 400, response = crate::error_docs::BadRequest),
              (status = 403, response = crate::error_docs::Forbidden), (status = 503, response = crate::error_docs::ServiceUnavailable),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
              (status = 429, response = crate::error_docs::TooManyRequests), (status = 502, response = crate::error_docs::BadGateway)))]
pub async fn preview(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Preview>> {
    // Runs caller-supplied expressions and calls the provider: a writing role only,
    // checked before the body is parsed.
    caller.require(WRITERS)?;
    let req = preview_request(&headers, &body)?;
    let input = PreviewInput {
        mappings: req
            .mappings
            .map(|given| given.into_iter().map(Into::into).collect()),
        filter: req.filter,
        limit: req.limit,
    };
    let preview = state
        .engine
        .mappings()
        .preview(&caller.metadata(), &id, &entity, input)
        .await?;
    Ok(Json(Preview {
        records: preview
            .records
            .into_iter()
            .map(|r| PreviewRecord {
                remote_id: r.record.id,
                crm: r.record.properties,
                app: r.app,
                filtered: r.filtered,
                error: r.error,
            })
            .collect(),
        unmapped_required: preview.unmapped_required,
        unmapped_app_fields: preview.unmapped_app_fields,
    }))
}

/// A run's counters.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunStatsView {
    pub processed: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    pub conflicts_detected: u64,
    pub conflicts_resolved: u64,
    pub api_calls: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FailureView {
    pub record_id: Option<String>,
    pub remote_id: Option<String>,
    pub error: String,
}

/// The outcome of a reapply run.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReapplyRun {
    pub id: String,
    /// Always `reapply`.
    pub kind: String,
    pub entity: String,
    /// completed, or partial when some records could not be mapped.
    pub status: String,
    pub stats: RunStatsView,
    pub failures: Vec<FailureView>,
}

fn run_view(run: &SyncRun, entity: Entity) -> ReapplyRun {
    let s = run.stats;
    ReapplyRun {
        id: run.id.clone().unwrap_or_default(),
        kind: "reapply".into(),
        entity: entity.as_str().into(),
        status: run.status.as_str().into(),
        stats: RunStatsView {
            processed: s.processed,
            created: s.created,
            updated: s.updated,
            unchanged: s.unchanged,
            skipped: s.skipped,
            failed: s.failed,
            conflicts_detected: s.conflicts_detected,
            conflicts_resolved: s.conflicts_resolved,
            api_calls: s.api_calls,
        },
        failures: run
            .failures
            .iter()
            .map(|f| FailureView {
                record_id: f.record_id.clone(),
                remote_id: f.remote_id.clone(),
                error: f.error.clone(),
            })
            .collect(),
    }
}

/// Re-apply the current mappings to the CRM data already fetched for the entity's linked
/// records, without calling the provider, as a sync run of kind `reapply`.
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/reapply", operation_id = "reapplyMappings", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = ReapplyRun), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
              (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn reapply(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<ReapplyRun>> {
    caller.require(WRITERS)?;
    let (run, entity) = state
        .engine
        .mappings()
        .reapply(&caller.metadata(), &id, &entity)
        .await?;
    Ok(Json(run_view(&run, entity)))
}
