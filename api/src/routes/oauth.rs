//! Connecting an integration through the provider's OAuth 2.0 code flow with PKCE, then
//! using the stored credentials: connection test and field catalogue. The flow and its
//! state store are `syncledger_engine::oauth`; these handlers only translate HTTP.

use crate::auth::{Caller, RequestId, READERS, WRITERS};
use crate::error::ApiResult;
use crate::extract::{List, Query};
use crate::routes::integrations::IntegrationView;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use syncledger_engine::oauth::Redirect;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectResponse {
    /// Send the user's browser here to approve access.
    pub authorization_url: String,
}

/// Start connecting an integration: answers the provider URL to send the user to.
#[utoipa::path(post, path = "/v1/integrations/{id}/connect", operation_id = "connectIntegration", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = ConnectResponse), (status = 400, response = crate::error_docs::BadRequest),
               (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectResponse>> {
    caller.require(WRITERS)?;
    let redirect_uri = format!("{}/v1/oauth/callback", state.public_url);
    let authorization_url = state
        .engine
        .oauth()
        .connect(&caller.metadata(), &id, &redirect_uri)
        .await?;
    Ok(Json(ConnectResponse { authorization_url }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The state `connect` issued.
    pub state: Option<String>,
    /// Set by the provider when the user refused.
    pub error: Option<String>,
    /// The authorization server's issuer identifier (RFC 9207), checked against the
    /// provider's known issuer when there is one.
    pub iss: Option<String>,
    /// Zoho: the accounts server of the user's data centre, where the code is
    /// exchanged (accepted only when it is one of Zoho's).
    #[serde(rename = "accounts-server")]
    pub accounts_server: Option<String>,
}

/// The connected integration, and whether the provider issued a refresh token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallbackResponse {
    #[serde(flatten)]
    pub integration: IntegrationView,
    /// `false`: the provider issued no refresh token, so the access token works until
    /// it expires (`credentials_expire_at`) and the integration must then be connected
    /// again. The audit trail's `CredentialsStored` entry says the same.
    pub refresh_token: bool,
}

/// Where the provider sends the browser back. No bearer token: the single-use state
/// names the workspace and integration.
#[utoipa::path(get, path = "/v1/oauth/callback", operation_id = "completeOAuthConnection", tag = "integrations", params(CallbackParams),
    responses((status = 200, body = CallbackResponse), (status = 400, response = crate::error_docs::BadRequest),
               (status = 502, response = crate::error_docs::BadGateway), (status = 500, response = crate::error_docs::InternalError)))]
pub async fn callback(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Query(params): Query<CallbackParams>,
) -> ApiResult<Json<CallbackResponse>> {
    let redirect = Redirect {
        code: params.code,
        state: params.state,
        error: params.error,
        iss: params.iss,
        accounts_server: params.accounts_server,
    };
    let connected = state
        .engine
        .oauth()
        .callback(redirect, &request_id.0)
        .await?;
    Ok(Json(CallbackResponse {
        integration: connected.integration.into(),
        refresh_token: connected.refresh_token,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResponse {
    pub ok: bool,
    pub detail: String,
    pub integration: IntegrationView,
}

/// Check the stored OAuth tokens against the provider and record the outcome.
#[utoipa::path(post, path = "/v1/integrations/{id}/test", operation_id = "testIntegration", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = TestResponse), (status = 400, response = crate::error_docs::BadRequest),
               (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResponse>> {
    caller.require(WRITERS)?;
    let tested = state.engine.oauth().test(&caller.metadata(), &id).await?;
    Ok(Json(TestResponse {
        ok: tested.ok,
        detail: tested.detail,
        integration: tested.integration.into(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FieldsQuery {
    /// contacts or companies.
    pub entity: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldView {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub required: bool,
    pub writable: bool,
}

/// The provider's field catalogue for one entity.
#[utoipa::path(get, path = "/v1/integrations/{id}/fields", operation_id = "listIntegrationFields", tag = "integrations", security(("bearer" = [])), params(FieldsQuery),
    responses((status = 200, body = inline(List<FieldView>)), (status = 400, response = crate::error_docs::BadRequest),
               (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
               (status = 502, response = crate::error_docs::BadGateway), (status = 429, response = crate::error_docs::TooManyRequests)))]
pub async fn fields(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FieldsQuery>,
) -> ApiResult<Json<List<FieldView>>> {
    caller.require(READERS)?;
    let entity = crate::extract::entity("entity", q.entity.as_deref())?;
    let fields = state
        .engine
        .oauth()
        .fields(&caller.metadata(), &id, entity)
        .await?;
    let data = fields
        .into_iter()
        .map(|f| FieldView {
            name: f.name,
            label: f.label,
            field_type: f.field_type,
            required: f.required,
            writable: f.writable,
        })
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}
