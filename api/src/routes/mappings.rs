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
use crate::routes::integrations::owned;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use syncledger_crm::{FieldInfo, RemoteRecord};
use syncledger_domain::integration::{FieldMapping, MappingDirection};
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::{Aggregate, Entity, Integration, IntegrationCommand};
use syncledger_engine::mapping::{
    app_fields, auto_map, unmapped_required, Mapped, Mapper, MappingError,
};
use syncledger_engine::reapply::{Reapply, ReapplyError};
use syncledger_engine::transform::{pool, TransformError};
use syncledger_engine::Session;

const MAX_MAPPINGS: usize = 200;
const MAX_NAME: usize = 200;
const DEFAULT_PREVIEW: usize = 10;
const MAX_PREVIEW: usize = 50;

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

/// The entity, if the integration syncs it.
fn synced(integration: &Integration, entity: &str) -> ApiResult<Entity> {
    let entity = crate::extract::entity("entity", Some(entity))?;
    if !integration.sync_config.entities.contains(&entity) {
        return Err(ApiError::invalid_field(
            "entity",
            format!(
                "the integration does not sync {}; add it to sync_config.entities first",
                entity.as_str()
            ),
        ));
    }
    Ok(entity)
}

use syncledger_engine::mapping::effective_mappings as effective;

fn view(integration: &Integration, entity: Entity) -> EntityMappings {
    let (mappings, filter) = effective(integration, entity);
    let source = if integration.mappings_for(entity).is_some() {
        "custom"
    } else {
        "default"
    };
    EntityMappings {
        entity: entity.as_str().into(),
        source: source.into(),
        filter,
        mappings: mappings.iter().map(MappingBody::from).collect(),
    }
}

/// A compile error names the rule: its index and fields, or the filter.
fn mapping_error(e: &MappingError, rules: usize) -> ApiError {
    if e.index >= rules {
        ApiError::invalid_field("filter", &e.error)
    } else {
        ApiError::invalid_field(
            &format!("mappings[{}].transform", e.index),
            format!("{} → {}: {}", e.crm_field, e.app_field, e.error),
        )
    }
}

fn check_sizes(mappings: &[FieldMapping]) -> ApiResult<()> {
    if mappings.len() > MAX_MAPPINGS {
        return Err(ApiError::invalid_field(
            "mappings",
            format!("at most {MAX_MAPPINGS} mappings"),
        ));
    }
    for (i, m) in mappings.iter().enumerate() {
        if m.crm_field.len() > MAX_NAME || m.app_field.len() > MAX_NAME {
            return Err(ApiError::invalid_field(
                &format!("mappings[{i}]"),
                format!("field names are at most {MAX_NAME} bytes"),
            ));
        }
    }
    Ok(())
}

/// The evaluation pool refused or lost the job: the server is busy, not the request bad.
fn pool_error(e: TransformError) -> ApiError {
    match e {
        TransformError::Busy => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// Compiles transforms and filter on the bounded evaluation pool (the parser recurses
/// and may take a while; requests must not pile up threads).
async fn compile(mappings: &[FieldMapping], filter: Option<&str>) -> ApiResult<Mapper> {
    check_sizes(mappings)?;
    let (owned_mappings, owned_filter) = (mappings.to_vec(), filter.map(str::to_owned));
    let compiled = pool::run(move || Mapper::compile(&owned_mappings, owned_filter.as_deref()))
        .await
        .map_err(pool_error)?;
    compiled.map_err(|e| mapping_error(&e, mappings.len()))
}

/// The effective mappings of every entity the integration syncs.
#[utoipa::path(get, path = "/v1/integrations/{id}/mappings", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = inline(List<EntityMappings>)), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<List<EntityMappings>>> {
    caller.require(READERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let data = integration
        .sync_config
        .entities
        .iter()
        .map(|e| view(&integration, *e))
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}

/// The effective mappings of one entity.
#[utoipa::path(get, path = "/v1/integrations/{id}/mappings/{entity}", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = EntityMappings), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<EntityMappings>> {
    caller.require(READERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let entity = synced(&integration, &entity)?;
    Ok(Json(view(&integration, entity)))
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
#[utoipa::path(put, path = "/v1/integrations/{id}/mappings/{entity}", tag = "mappings", security(("bearer" = [])),
    request_body = PutMappings,
    responses((status = 200, body = EntityMappings), (status = 400, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((id, entity)): Path<(String, String)>,
    Body(req): Body<PutMappings>,
) -> ApiResult<Json<EntityMappings>> {
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let entity = synced(&integration, &entity)?;
    let mappings: Vec<FieldMapping> = req.mappings.into_iter().map(Into::into).collect();
    compile(&mappings, req.filter.as_deref()).await?;
    let command = IntegrationCommand::ChangeFieldMappings {
        entity,
        mappings,
        filter: req.filter,
        at: Utc::now(),
    };
    state
        .integrations
        .execute(&id, command, &caller.metadata())
        .await?;
    state
        .settle("integration_status", Integration::TYPE, &id)
        .await?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    Ok(Json(view(&integration, entity)))
}

/// The CRM's field catalogue for the entity.
async fn catalogue(
    session: &mut Session,
    caller: &Caller,
    entity: Entity,
) -> ApiResult<Vec<FieldInfo>> {
    session
        .call(&caller.metadata(), |adapter, credentials| {
            adapter.fields(credentials, entity)
        })
        .await
        .map_err(ApiError::from)
}

/// App fields of the entity that no pull mapping fills.
fn unfilled(mapper: &Mapper, entity: Entity) -> Vec<String> {
    let filled: Vec<&str> = mapper.pulled_app_fields().collect();
    app_fields(entity)
        .iter()
        .filter(|f| !filled.contains(f))
        .map(|f| (*f).to_owned())
        .collect()
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
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/auto", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = AutoMapping), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 502, body = crate::error::ErrorBody)))]
pub async fn auto(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<AutoMapping>> {
    // It calls the provider on the workspace's behalf: a writing role only.
    caller.require(WRITERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let entity = synced(&integration, &entity)?;
    let mut session = state.connections.session(&id).await?;
    let fields = catalogue(&mut session, &caller, entity).await?;
    let proposal = auto_map(&fields, app_fields(entity));
    let mapper = compile(&proposal, None).await?;
    Ok(Json(AutoMapping {
        unmapped_required: unmapped_required(&fields, &proposal),
        unmapped_app_fields: unfilled(&mapper, entity),
        mappings: proposal.iter().map(MappingBody::from).collect(),
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

fn preview_one(mapper: &Mapper, record: RemoteRecord) -> PreviewRecord {
    let (app, filtered, error) = match mapper.to_app(&record) {
        Ok(Mapped::Fields(fields)) => (Some(fields), false, None),
        Ok(Mapped::Filtered) => (None, true, None),
        Err(e) => (None, false, Some(e.to_string())),
    };
    PreviewRecord {
        remote_id: record.id,
        crm: record.properties,
        app,
        filtered,
        error,
    }
}

/// Map a sample of CRM records (the first page, without a cursor) with the effective or
/// given mappings, to see what a sync would bring in. Writes nothing.
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/preview", tag = "mappings", security(("bearer" = [])),
    request_body(content = Option<PreviewRequest>),
    responses((status = 200, body = Preview), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
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
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let entity = synced(&integration, &entity)?;
    let limit = match req.limit {
        None => DEFAULT_PREVIEW,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PREVIEW).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", format!("must be between 1 and {MAX_PREVIEW}"))
            })?,
    };
    let (stored, stored_filter) = effective(&integration, entity);
    let mappings: Vec<FieldMapping> = match req.mappings {
        Some(given) => given.into_iter().map(Into::into).collect(),
        None => stored,
    };
    let filter = req.filter.unwrap_or(stored_filter);
    let mapper = compile(&mappings, filter.as_deref()).await?;
    let mut session = state.connections.session(&id).await?;
    let fields = catalogue(&mut session, &caller, entity).await?;
    let page = session
        .call(&caller.metadata(), |adapter, credentials| {
            adapter.pull_page(credentials, entity, None, None)
        })
        .await?;
    let sample: Vec<RemoteRecord> = page.records.into_iter().take(limit).collect();
    let sample_mapper = mapper.clone();
    // CEL evaluation blocks: keep it off the async runtime, on the bounded pool.
    let records = pool::run(move || {
        sample
            .into_iter()
            .map(|r| preview_one(&sample_mapper, r))
            .collect()
    })
    .await
    .map_err(pool_error)?;
    Ok(Json(Preview {
        records,
        unmapped_required: unmapped_required(&fields, &mappings),
        unmapped_app_fields: unfilled(&mapper, entity),
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

fn reapply_error(e: ReapplyError) -> ApiError {
    match e {
        ReapplyError::Engine(e) => ApiError::from(e),
        ReapplyError::Mapping(m) => ApiError::new(
            StatusCode::CONFLICT,
            "invalid_mapping",
            format!(
                "{}; replace the mappings with PUT first",
                ReapplyError::Mapping(m)
            ),
        ),
        ReapplyError::ReadModelBehind => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "read_model_behind",
            "the records read model is catching up; retry shortly",
        ),
    }
}

/// Re-apply the current mappings to the CRM data already fetched for the entity's linked
/// records, without calling the provider, as a sync run of kind `reapply`.
#[utoipa::path(post, path = "/v1/integrations/{id}/mappings/{entity}/reapply", tag = "mappings", security(("bearer" = [])),
    responses((status = 200, body = ReapplyRun), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn reapply(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, entity)): Path<(String, String)>,
) -> ApiResult<Json<ReapplyRun>> {
    caller.require(WRITERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let entity = synced(&integration, &entity)?;
    let worker = format!("api:{}", std::process::id());
    let run = Reapply::new(&state.store, worker)
        .waking(state.projections_wake.clone())
        .run(&id, entity, &caller.metadata())
        .await
        .map_err(reapply_error)?;
    let run_id = run.id.clone().unwrap_or_default();
    // The run's end follows every record it wrote: once the read models show it, lists
    // of runs and records agree with this answer.
    state.settle("sync_runs", SyncRun::TYPE, &run_id).await?;
    state.settle("records", Integration::TYPE, &id).await?;
    Ok(Json(run_view(&run, entity)))
}
