//! Integrations: create, list, read, change sync config, pause, resume, set credentials,
//! disconnect. Commands go through the aggregate; reads come from the status projection.

use crate::auth::{Caller, Writer, READERS, WRITERS};
use crate::error::ApiResult;
use crate::extract::{etag, Body, IfMatch, List, Page, Query};
use crate::routes::as_of::AsOf;
pub use crate::routes::integration_view::{
    FrequencyKind, IntegrationView, LastRunView, SyncConfigBody,
};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use syncledger_engine::integrations::{
    CreateIntegration as NewIntegration, StaticCredentials, UpdateIntegration as Edit,
};

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
    /// See docs/custom-provider.md. Refused for built-in providers; optional for those
    /// whose template ships in the binary (`template` in `GET /v1/providers/{id}`),
    /// which it then replaces; required for the other custom and niche providers.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
    /// The connection parameters the spec or template declares, e.g.
    /// `{"account_id": "42"}` for Chatwoot, and ShootQ's required `form_link_code` (kept
    /// sealed as its key: the integration is connected at once) (`parameters` in
    /// `GET /v1/providers/{id}`). Light Blue and ShootQ (`leads_only`) take
    /// `direction: push` only: pull and bidirectional are refused, the vendor having no
    /// read API.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, String>,
}

impl CreateIntegration {
    /// The engine's input, the sync configuration checked (for the API and the wizard).
    pub(crate) fn into_new(self) -> ApiResult<NewIntegration> {
        Ok(NewIntegration {
            provider: self.provider,
            name: self.name,
            sync_config: self.sync_config.into_domain()?,
            base_url: self.base_url,
            spec: self.spec,
            parameters: self.parameters,
        })
    }
}

/// What to change; a field left out stays as it is, and at least one is required.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    /// Unique in the workspace.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sync_config: Option<SyncConfigBody>,
    /// The API base URL override; `null` removes it. A new host is checked against the
    /// outbound policy, and credentials are dropped (connect again) when they would be
    /// sent to a host they were not sent to before.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub base_url: Option<Option<String>>,
    /// A custom or niche provider's new spec, validated as at creation; the same rule
    /// for credentials as `base_url`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
    /// Connection parameters, bound into the new `spec`, or into the provider's shipped
    /// template when no spec is given (which replaces a spec given earlier). ShootQ's
    /// `form_link_code` replaces the integration's.
    #[serde(default)]
    pub parameters: Option<std::collections::BTreeMap<String, String>>,
}

/// A field that is present, even as `null` (`Some(None)`), apart from one left out
/// (`None`, through `#[serde(default)]`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Create an integration (admin, operator). Counts against the workspace's plan.
#[utoipa::path(post, path = "/v1/integrations", operation_id = "createIntegration", tag = "integrations", security(("bearer" = [])), request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, response = crate::error_docs::BadRequest),
               (status = 402, response = crate::error_docs::PaymentRequired), (status = 409, response = crate::error_docs::Conflict),
               (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Body(req): Body<CreateIntegration>,
) -> ApiResult<(StatusCode, Json<IntegrationView>)> {
    let new = req.into_new()?;
    let created = state
        .engine
        .integrations()
        .create(&caller.metadata(), new)
        .await?;
    Ok((StatusCode::CREATED, Json(IntegrationView::from(created))))
}

/// The workspace's integrations, oldest first.
#[utoipa::path(get, path = "/v1/integrations", operation_id = "listIntegrations", tag = "integrations", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<IntegrationView>))))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<IntegrationView>>> {
    caller.require(READERS)?;
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = state
        .engine
        .integrations()
        .list(&caller.workspace_id, &after, limit + 1)
        .await?;
    let views = rows.into_iter().map(IntegrationView::from).collect();
    Ok(Json(List::page(views, limit, |v| v.id.clone())))
}

/// One integration; with `as_of`, as it was at that instant.
#[utoipa::path(get, path = "/v1/integrations/{id}", operation_id = "getIntegration", tag = "integrations", security(("bearer" = [])), params(AsOf),
    responses((status = 200, body = IntegrationView, headers(("ETag" = String, description = "The version, for If-Match on PATCH"))), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> ApiResult<impl IntoResponse> {
    caller.require(READERS)?;
    let integrations = state.engine.integrations();
    let found = match q.instant()? {
        Some(t) => integrations.as_of(&caller.workspace_id, &id, t).await?,
        None => integrations.get(&caller.workspace_id, &id).await?,
    };
    let view = IntegrationView::from(found);
    Ok((etag(view.version), Json(view)))
}

/// Change the name, sync configuration, base URL or spec, all or nothing. With
/// `If-Match` (the `ETag` a read gave), only if the integration is still at that
/// version: 412 otherwise, so two editors cannot silently overwrite each other. An
/// endpoint change is refused (409) while a run is active.
#[utoipa::path(patch, path = "/v1/integrations/{id}", operation_id = "updateIntegration", tag = "integrations", security(("bearer" = [])), request_body = UpdateIntegration,
    params(("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = IntegrationView, headers(("ETag" = String, description = "The new version"))), (status = 400, response = crate::error_docs::BadRequest), (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
              (status = 412, response = crate::error_docs::PreconditionFailed)))]
pub async fn update(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Body(req): Body<UpdateIntegration>,
) -> ApiResult<impl IntoResponse> {
    let edit = Edit {
        name: req.name,
        sync_config: req
            .sync_config
            .map(SyncConfigBody::into_domain)
            .transpose()?,
        base_url: req.base_url,
        spec: req.spec,
        parameters: req.parameters,
    };
    let changed = state
        .engine
        .integrations()
        .update(&caller.metadata(), &id, edit, expected)
        .await?;
    let view = IntegrationView::from(changed);
    Ok((etag(view.version), Json(view)))
}

/// Pause scheduled and triggered syncs.
#[utoipa::path(post, path = "/v1/integrations/{id}/pause", operation_id = "pauseIntegration", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 409, response = crate::error_docs::Conflict), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let paused = state
        .engine
        .integrations()
        .pause(&caller.metadata(), &id)
        .await?;
    Ok(Json(paused.into()))
}

/// Resume a paused integration.
#[utoipa::path(post, path = "/v1/integrations/{id}/resume", operation_id = "resumeIntegration", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 409, response = crate::error_docs::Conflict), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let resumed = state
        .engine
        .integrations()
        .resume(&caller.metadata(), &id)
        .await?;
    Ok(Json(resumed.into()))
}

/// Disconnect: the integration stops for good and frees its plan slot. OAuth tokens are
/// revoked at the provider first (best effort).
#[utoipa::path(delete, path = "/v1/integrations/{id}", operation_id = "disconnectIntegration", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = IntegrationView), (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn disconnect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<IntegrationView>> {
    caller.require(WRITERS)?;
    let disconnected = state
        .engine
        .integrations()
        .disconnect(&caller.metadata(), &id)
        .await?;
    Ok(Json(disconnected.into()))
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
#[utoipa::path(post, path = "/v1/integrations/{id}/credentials", operation_id = "setIntegrationCredentials", tag = "integrations", security(("bearer" = [])), request_body = CredentialsBody,
    responses((status = 200, body = IntegrationView), (status = 400, response = crate::error_docs::BadRequest), (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn credentials(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<CredentialsBody>,
) -> ApiResult<Json<IntegrationView>> {
    let given = match req {
        CredentialsBody::ApiKey { api_key } => StaticCredentials::ApiKey(api_key),
        CredentialsBody::Basic { username, password } => {
            StaticCredentials::Basic { username, password }
        }
    };
    let set = state
        .engine
        .integrations()
        .set_credentials(&caller.metadata(), &id, given)
        .await?;
    Ok(Json(set.into()))
}
