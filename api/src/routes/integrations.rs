//! Integrations: create, list, read, change sync config, pause, resume, set credentials,
//! disconnect. Commands go through the aggregate; reads come from the status projection.

use crate::auth::{Caller, Writer, READERS, WRITERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::routes::as_of::{self, AsOf};
pub use crate::routes::integration_view::{
    FrequencyKind, IntegrationView, LastRunView, SyncConfigBody,
};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::Row;
use syncledger_crm::Credentials;
use syncledger_domain::{
    Aggregate, Integration, IntegrationCommand, Status, SyncConfig, WorkspaceCommand,
};
use syncledger_engine::creation::{create_integration, NewIntegration};
use syncledger_engine::seal_credentials;
use syncledger_store::Metadata;

const PROJECTION: &str = "integration_status";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// A provider id from `GET /v1/providers`.
    pub provider: String,
    /// Unique in the workspace.
    pub name: String,
    pub sync_config: SyncConfigBody,
    /// Override the provider's API base URL (`https://`, or `http://` on loopback).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The declarative spec of a custom or niche provider (`via_custom_spec` in
    /// `GET /v1/providers`): a JSON object, or a string holding the same in TOML.
    /// See docs/custom-provider.md. Required for those providers, refused for others.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
}

/// Parses and validates a provider spec; answers its canonical JSON.
fn provider_spec(
    info: &syncledger_domain::provider::ProviderInfo,
    spec: Option<serde_json::Value>,
) -> ApiResult<Option<String>> {
    use syncledger_crm::CustomSpec;
    let parsed = match (info.via_custom_spec, spec) {
        (false, None) => return Ok(None),
        (false, Some(_)) => {
            return Err(ApiError::invalid_field(
                "spec",
                format!("{} has a built-in adapter and takes no spec", info.id),
            ))
        }
        (true, None) => {
            return Err(ApiError::invalid_field(
                "spec",
                format!(
                    "{} is connected through a declarative spec; see docs/custom-provider.md",
                    info.id
                ),
            ))
        }
        (true, Some(serde_json::Value::String(toml))) => CustomSpec::from_toml(&toml),
        (true, Some(json @ serde_json::Value::Object(_))) => {
            CustomSpec::from_json(&json.to_string())
        }
        (true, Some(_)) => {
            return Err(ApiError::invalid_field(
                "spec",
                "must be a JSON object or a TOML string",
            ))
        }
    };
    // Its URLs are checked against the outbound policy by `create`.
    let spec = parsed.map_err(|e| ApiError::invalid_field("spec", e))?;
    serde_json::to_string(&spec)
        .map(Some)
        .map_err(ApiError::internal)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    pub sync_config: SyncConfigBody,
}

/// Fills in the integration's latest run from the sync-runs read model.
async fn with_last_run(state: &AppState, mut view: IntegrationView) -> ApiResult<IntegrationView> {
    let last = syncledger_projections::sync_runs::last_of(&state.store.any, &view.id)
        .await
        .map_err(ApiError::internal)?;
    view.last_run = last.as_ref().map(LastRunView::from);
    Ok(view)
}

/// RFC 3339 in UTC, to the second, as every API time is.
pub(crate) fn api_time(stored: Option<String>) -> Option<String> {
    stored
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
}

fn view(r: &sqlx::any::AnyRow) -> ApiResult<IntegrationView> {
    let config: String = r.try_get("sync_config")?;
    let config: SyncConfig = serde_json::from_str(&config).map_err(ApiError::internal)?;
    Ok(IntegrationView {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        sync_config: SyncConfigBody::from_domain(&config),
        base_url: r.try_get("base_url")?,
        last_error: r.try_get("last_error")?,
        credential_kind: r.try_get("credential_kind")?,
        credentials_expire_at: api_time(r.try_get("credentials_expire_at")?),
        last_sync_at: api_time(r.try_get("last_sync_at")?),
        next_sync_at: api_time(r.try_get("next_sync_at")?),
        created_at: api_time(r.try_get("created_at")?).unwrap_or_default(),
        updated_at: api_time(r.try_get("updated_at")?).unwrap_or_default(),
        version: r.try_get("version")?,
        last_run: None,
    })
}

const COLUMNS: &str =
    "id, provider, name, status, sync_config, base_url, last_error, credential_kind,
    credentials_expire_at, last_sync_at, next_sync_at, created_at, updated_at, version";

async fn read_row(
    state: &AppState,
    workspace_id: &str,
    id: &str,
) -> ApiResult<Option<IntegrationView>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM integration_status WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace_id)
    .fetch_optional(&state.store.any)
    .await?;
    match row.as_ref().map(view).transpose()? {
        Some(v) => Ok(Some(with_last_run(state, v).await?)),
        None => Ok(None),
    }
}

async fn read(state: &AppState, caller: &Caller, id: &str) -> ApiResult<IntegrationView> {
    read_row(state, &caller.workspace_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("integration"))
}

/// The view right after a command. Normally the read model has caught up (see
/// `AppState::settle`); if it has not (on PostgreSQL a long transaction anywhere on the
/// server holds the feed back), the answer is built from the aggregate, the source of truth.
pub(crate) async fn read_fresh(
    state: &AppState,
    workspace_id: &str,
    id: &str,
) -> ApiResult<IntegrationView> {
    let agg = owned(state, workspace_id, id).await?;
    let row = read_row(state, workspace_id, id).await?;
    if let Some(v) = row.as_ref().filter(|v| v.version >= agg.version) {
        return Ok(v.clone());
    }
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let kind = agg
        .credential_kind
        .and_then(|k| serde_json::to_value(k).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    Ok(IntegrationView {
        id: id.to_string(),
        provider: agg.provider.clone(),
        name: agg.name.clone(),
        status: agg.status.as_str().to_string(),
        sync_config: SyncConfigBody::from_domain(&agg.sync_config),
        base_url: agg.base_url.clone(),
        last_error: agg.last_error.clone(),
        credential_kind: kind,
        credentials_expire_at: agg
            .credentials_expire_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        last_sync_at: row.as_ref().and_then(|r| r.last_sync_at.clone()),
        next_sync_at: None,
        created_at: row
            .as_ref()
            .map_or_else(|| now.clone(), |r| r.created_at.clone()),
        updated_at: now,
        version: agg.version,
        last_run: row.and_then(|r| r.last_run),
    })
}

/// The aggregate, if it exists and belongs to the workspace (else 404).
pub(crate) async fn owned(
    state: &AppState,
    workspace_id: &str,
    id: &str,
) -> ApiResult<Integration> {
    let i = state.integrations.load(id).await?;
    if i.id.is_none() || i.workspace_id != workspace_id {
        return Err(ApiError::not_found("integration"));
    }
    Ok(i)
}

/// Run a command on an integration of the caller's workspace and answer with its new view.
pub(crate) async fn command(
    state: &AppState,
    caller: &Caller,
    id: &str,
    cmd: IntegrationCommand,
) -> ApiResult<IntegrationView> {
    command_as(state, &caller.metadata(), id, cmd).await
}

/// Run a command on an integration of `meta`'s workspace on behalf of `meta`'s actor.
pub(crate) async fn command_as(
    state: &AppState,
    meta: &Metadata,
    id: &str,
    cmd: IntegrationCommand,
) -> ApiResult<IntegrationView> {
    owned(state, &meta.workspace_id, id).await?;
    state.integrations.execute(id, cmd, meta).await?;
    state.settle(PROJECTION, Integration::TYPE, id).await?;
    read_fresh(state, &meta.workspace_id, id).await
}

/// Create an integration (admin, operator). Counts against the workspace's plan.
#[utoipa::path(post, path = "/v1/integrations", tag = "integrations", security(("bearer" = [])), request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, body = crate::error::ErrorBody),
               (status = 402, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
               (status = 503, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Body(req): Body<CreateIntegration>,
) -> ApiResult<(StatusCode, Json<IntegrationView>)> {
    let Some(info) = syncledger_domain::provider::find(&req.provider) else {
        return Err(ApiError::invalid_field(
            "provider",
            format!("unknown provider {:?}; see GET /v1/providers", req.provider),
        ));
    };
    // The base URL and every spec URL are checked by the outbound policy below.
    let spec = provider_spec(info, req.spec)?;
    state
        .connections
        .connector()
        .check_urls(&req.provider, req.base_url.as_deref(), spec.as_deref())
        .await
        .map_err(|e| crate::error::engine_error(e.into()))?;
    let sync_config = req.sync_config.into_domain()?;
    let new = NewIntegration {
        integration_id: uuid::Uuid::now_v7().to_string(),
        workspace_id: caller.workspace_id.clone(),
        provider: req.provider,
        name: req.name,
        sync_config,
        base_url: req.base_url,
        spec,
        at: Utc::now(),
    };
    create_integration(
        &state.store.events,
        &state.workspaces,
        &new,
        &caller.metadata(),
    )
    .await?;
    let id = new.integration_id;
    state.settle(PROJECTION, Integration::TYPE, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(read_fresh(&state, &caller.workspace_id, &id).await?),
    ))
}

/// The workspace's integrations, oldest first.
#[utoipa::path(get, path = "/v1/integrations", tag = "integrations", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<IntegrationView>))))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<IntegrationView>>> {
    caller.require(READERS)?;
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM integration_status WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(&caller.workspace_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.store.any)
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(with_last_run(&state, view(row)?).await?);
    }
    Ok(Json(List::page(views, limit, |v| v.id.clone())))
}

/// One integration; with `as_of`, as it was at that instant.
#[utoipa::path(get, path = "/v1/integrations/{id}", tag = "integrations", security(("bearer" = [])), params(AsOf),
    responses((status = 200, body = IntegrationView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(READERS)?;
    match q.instant()? {
        Some(t) => Ok(Json(
            as_of::integration(&state, &caller.workspace_id, &id, t).await?,
        )),
        None => Ok(Json(read(&state, &caller, &id).await?)),
    }
}

/// Change the sync configuration.
#[utoipa::path(patch, path = "/v1/integrations/{id}", tag = "integrations", security(("bearer" = [])), request_body = UpdateIntegration,
    responses((status = 200, body = IntegrationView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<UpdateIntegration>,
) -> ApiResult<Json<IntegrationView>> {
    let sync_config = req.sync_config.into_domain()?;
    let cmd = IntegrationCommand::ChangeSyncConfig {
        sync_config,
        at: Utc::now(),
    };
    Ok(Json(command(&state, &caller, &id, cmd).await?))
}

/// Pause scheduled and triggered syncs.
#[utoipa::path(post, path = "/v1/integrations/{id}/pause", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 409, body = crate::error::ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let cmd = IntegrationCommand::Pause { at: Utc::now() };
    Ok(Json(command(&state, &caller, &id, cmd).await?))
}

/// Resume a paused integration.
#[utoipa::path(post, path = "/v1/integrations/{id}/resume", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let cmd = IntegrationCommand::Resume { at: Utc::now() };
    Ok(Json(command(&state, &caller, &id, cmd).await?))
}

/// Disconnect: the integration stops for good and frees its plan slot. OAuth tokens are
/// revoked at the provider first (best effort).
#[utoipa::path(delete, path = "/v1/integrations/{id}", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    if integration.status != Status::Disconnected {
        // Best effort: a provider that cannot be reached never blocks disconnecting.
        state.connections.revoke_best_effort(&integration).await;
    }
    let cmd = IntegrationCommand::Disconnect {
        reason: "disconnected through the API".into(),
        at: Utc::now(),
    };
    let view = command(&state, &caller, &id, cmd).await?;
    // The slot release is caused by the disconnection event.
    let mut meta = caller.metadata();
    if let Some(p) = state
        .store
        .feed()
        .last_position_of(Integration::TYPE, &id)
        .await?
    {
        meta = meta.caused_by(format!("event:{}", p.pos));
    }
    let release = WorkspaceCommand::ReleaseIntegration { integration_id: id };
    state
        .workspaces
        .execute(&caller.workspace_id, release, &meta)
        .await?;
    Ok(Json(view))
}

/// An API key or basic-auth credentials. Stored encrypted; never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialsBody {
    ApiKey {
        #[schema(value_type = String)]
        api_key: SecretString,
    },
    Basic {
        username: String,
        #[schema(value_type = String)]
        password: SecretString,
    },
}

/// Set (or replace) an integration's API key or basic credentials.
#[utoipa::path(post, path = "/v1/integrations/{id}/credentials", tag = "integrations", security(("bearer" = [])), request_body = CredentialsBody,
    responses((status = 200, body = IntegrationView), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<CredentialsBody>,
) -> ApiResult<Json<IntegrationView>> {
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let credentials = match req {
        CredentialsBody::ApiKey { api_key } => {
            if api_key.expose_secret().trim().is_empty() {
                return Err(ApiError::invalid_field("api_key", "must not be empty"));
            }
            Credentials::ApiKey(api_key)
        }
        CredentialsBody::Basic { username, password } => {
            if username.trim().is_empty() {
                return Err(ApiError::invalid_field("username", "must not be empty"));
            }
            Credentials::Basic { username, password }
        }
    };
    if integration.provider == "salesforce" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            "salesforce connects through OAuth only: POST /v1/integrations/{id}/connect",
        ));
    }
    let (kind, secret, _) = seal_credentials(&state.vault, &caller.workspace_id, &credentials)
        .await
        .map_err(crate::error::engine_error)?;
    let at = Utc::now();
    let first = matches!(integration.status, Status::PendingAuth | Status::Error);
    let cmd = if !first {
        IntegrationCommand::RotateCredentials {
            kind,
            secret,
            expires_at: None,
            refresh_token: None,
            at,
        }
    } else {
        IntegrationCommand::StoreCredentials {
            kind,
            secret,
            expires_at: None,
            refresh_token: None,
            at,
        }
    };
    Ok(Json(command(&state, &caller, &id, cmd).await?))
}
