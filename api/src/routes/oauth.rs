//! Connecting an integration through the provider's OAuth 2.0 code flow with PKCE, then
//! using the stored tokens: connection test, field catalogue, revocation on disconnect.
//!
//! `connect` binds a random `state` to the workspace and integration and keeps the sealed
//! PKCE verifier in `oauth_states`; the provider sends the browser to `callback`, which
//! claims the state once, exchanges the code and stores the sealed tokens.

use std::sync::Arc;

use crate::auth::{Caller, RequestId, READERS, WRITERS};
use crate::error::{engine_error, provider_error, ApiError, ApiResult};
use crate::extract::{List, Query};
use crate::routes::integrations::{command, command_as, owned, IntegrationView};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use syncledger_crm::oauth::check_issuer;
use syncledger_crm::{Credentials, CrmAdapter, Identity};
use syncledger_domain::provider_text::clean;
use syncledger_domain::{Integration, IntegrationCommand, Status};
use syncledger_engine::{seal_credentials, EngineError};
use syncledger_store::Metadata;
use syncledger_vault::Sealed;
use zeroize::Zeroizing;

/// How long a user has to approve at the provider.
const STATE_TTL_MINUTES: i64 = 10;

/// The actor recorded on events caused by the provider's redirect.
const CALLBACK_ACTOR: &str = "oauth-callback";

/// The account id a provider names is provider text too: it is shown in the test
/// detail and stored in events.
fn clean_identity(mut identity: Identity) -> Identity {
    identity.account_id = clean(&identity.account_id);
    identity
}

fn invalid_state() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "the authorization state is unknown, expired or already used; connect again",
    )
}

/// Fixed-width RFC 3339, so stored times compare correctly as text.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The adapter for an integration's provider, pointed at its base URL override if any.
pub fn adapter_for(state: &AppState, integration: &Integration) -> ApiResult<Arc<dyn CrmAdapter>> {
    state.connections.adapter(integration).map_err(engine_error)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectResponse {
    /// Send the user's browser here to approve access.
    pub authorization_url: String,
}

/// Start connecting an integration: answers the provider URL to send the user to.
#[utoipa::path(post, path = "/v1/integrations/{id}/connect", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = ConnectResponse), (status = 400, body = crate::error::ErrorBody),
               (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectResponse>> {
    caller.require(WRITERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let adapter = adapter_for(&state, &integration)?;
    if !adapter.supports_oauth() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            format!(
                "{} connects with an API key or basic credentials: POST /v1/integrations/{{id}}/credentials",
                integration.provider
            ),
        ));
    }
    if !state.connections.connector().oauth_configured(&integration) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "provider_not_configured",
            format!(
                "the server has no OAuth app for {}; its operator must configure one",
                integration.provider
            ),
        ));
    }
    if integration.status == Status::Disconnected {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_transition",
            "cannot connect an integration that is disconnected",
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let oauth_state = hex::encode(bytes);
    let redirect_uri = format!("{}/v1/oauth/callback", state.public_url);
    let (url, verifier) = adapter
        .authorization_url(&redirect_uri, &oauth_state)
        .map_err(ApiError::internal)?;
    let verifier = Zeroizing::new(verifier);
    let sealed = state
        .vault
        .seal(&caller.workspace_id, verifier.as_bytes())
        .await?;
    let now = Utc::now();
    // Expired states are useless; clearing them here keeps the table small without a
    // background job.
    sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
        .bind(stamp(now))
        .execute(&state.store.any)
        .await?;
    sqlx::query(
        "INSERT INTO oauth_states (state, workspace_id, integration_id, verifier_key_id, verifier_nonce,
            verifier_ciphertext, redirect_uri, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&oauth_state)
    .bind(&caller.workspace_id)
    .bind(&id)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .bind(&redirect_uri)
    .bind(stamp(now))
    .bind(stamp(now + Duration::minutes(STATE_TTL_MINUTES)))
    .execute(&state.store.any)
    .await?;
    Ok(Json(ConnectResponse {
        authorization_url: url,
    }))
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

/// A claimed authorization: what `connect` bound to its state.
struct Claimed {
    workspace_id: String,
    integration_id: String,
    verifier: Sealed,
    redirect_uri: String,
}

/// Mark the state used, once and before it expires; `None` if that is not possible.
async fn claim(state: &AppState, oauth_state: &str) -> ApiResult<Option<Claimed>> {
    let now = stamp(Utc::now());
    let done = sqlx::query(
        "UPDATE oauth_states SET used_at = $1 WHERE state = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(&now)
    .bind(oauth_state)
    .bind(&now)
    .execute(&state.store.any)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT workspace_id, integration_id, verifier_key_id, verifier_nonce, verifier_ciphertext,
            redirect_uri FROM oauth_states WHERE state = $1",
    )
    .bind(oauth_state)
    .fetch_one(&state.store.any)
    .await?;
    Ok(Some(Claimed {
        workspace_id: row.try_get("workspace_id")?,
        integration_id: row.try_get("integration_id")?,
        verifier: Sealed {
            key_id: row.try_get("verifier_key_id")?,
            nonce: row.try_get("verifier_nonce")?,
            ciphertext: row.try_get("verifier_ciphertext")?,
        },
        redirect_uri: row.try_get("redirect_uri")?,
    }))
}

/// Where the provider sends the browser back. No bearer token: the single-use state
/// names the workspace and integration.
#[utoipa::path(get, path = "/v1/oauth/callback", tag = "integrations", params(CallbackParams),
    responses((status = 200, body = CallbackResponse), (status = 400, body = crate::error::ErrorBody),
               (status = 502, body = crate::error::ErrorBody)))]
pub async fn callback(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Query(params): Query<CallbackParams>,
) -> ApiResult<Json<CallbackResponse>> {
    let oauth_state = params.state.ok_or_else(invalid_state)?;
    let claimed = claim(&state, &oauth_state)
        .await?
        .ok_or_else(invalid_state)?;
    let integration = owned(&state, &claimed.workspace_id, &claimed.integration_id).await?;
    let adapter = adapter_for(&state, &integration)?;
    // RFC 9207: a response from another authorization server (mix-up) is refused
    // before its code is used; the state is spent either way.
    check_issuer(adapter.issuer().as_ref(), params.iss.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "issuer_mismatch", e.to_string()))?;
    if params.error.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "authorization_denied",
            "the provider did not grant access",
        ));
    }
    let code = params
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid_field("code", "is required"))?;
    let verifier = state
        .vault
        .open(&claimed.workspace_id, &claimed.verifier)
        .await?;
    let verifier = std::str::from_utf8(verifier.expose_secret())
        .map_err(|_| ApiError::internal("stored PKCE verifier is not UTF-8"))?;
    let tokens = adapter
        .exchange_code(&code, verifier, &claimed.redirect_uri)
        .await
        .map_err(|e| provider_error(&e))?;
    let refresh_token = tokens.refresh_token.is_some();
    let credentials = Credentials::OAuth2(tokens);
    // Which provider account these tokens reach: webhooks name it, not the integration.
    // Best effort: a failed test does not undo a granted authorization.
    let identity = adapter
        .test_connection(&credentials)
        .await
        .ok()
        .map(clean_identity);
    let (kind, secret, expires_at) =
        seal_credentials(&state.vault, &claimed.workspace_id, &credentials)
            .await
            .map_err(engine_error)?;
    let at = Utc::now();
    let cmd = if matches!(integration.status, Status::PendingAuth | Status::Error) {
        IntegrationCommand::StoreCredentials {
            kind,
            secret,
            expires_at,
            refresh_token: Some(refresh_token),
            at,
        }
    } else {
        IntegrationCommand::RotateCredentials {
            kind,
            secret,
            expires_at,
            refresh_token: Some(refresh_token),
            at,
        }
    };
    let meta = Metadata::new(CALLBACK_ACTOR, &claimed.workspace_id, request_id.0);
    let mut view = command_as(&state, &meta, &claimed.integration_id, cmd).await?;
    if let Some(identity) = identity {
        let test = IntegrationCommand::RecordConnectionTest {
            ok: true,
            detail: format!(
                "connected to {} account {}",
                integration.provider, identity.account_id
            ),
            account_id: Some(identity.account_id),
            at: Utc::now(),
        };
        view = command_as(&state, &meta, &claimed.integration_id, test).await?;
    }
    Ok(Json(CallbackResponse {
        integration: view,
        refresh_token,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResponse {
    pub ok: bool,
    pub detail: String,
    pub integration: IntegrationView,
}

/// Check the stored OAuth tokens against the provider and record the outcome.
#[utoipa::path(post, path = "/v1/integrations/{id}/test", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = TestResponse), (status = 400, body = crate::error::ErrorBody),
               (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResponse>> {
    caller.require(WRITERS)?;
    let integration = owned(&state, &caller.workspace_id, &id).await?;
    let mut session = state.connections.session(&id).await.map_err(engine_error)?;
    let meta = caller.metadata();
    let (ok, detail, account_id) = match session
        .call(&meta, |adapter, credentials| {
            adapter.test_connection(credentials)
        })
        .await
        .map(clean_identity)
    {
        Ok(identity) => (
            true,
            format!(
                "connected to {} account {}",
                integration.provider, identity.account_id
            ),
            Some(identity.account_id),
        ),
        // The provider's part of the text is cleaned (`CrmError`'s Display): at most
        // 200 visible characters, credentials redacted, one text for transport failures.
        Err(e @ (EngineError::Provider(_) | EngineError::RefreshRejected)) => {
            (false, e.to_string(), None)
        }
        Err(other) => return Err(engine_error(other)),
    };
    let cmd = IntegrationCommand::RecordConnectionTest {
        ok,
        detail: detail.clone(),
        account_id,
        at: Utc::now(),
    };
    let integration = command(&state, &caller, &id, cmd).await?;
    Ok(Json(TestResponse {
        ok,
        detail,
        integration,
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
#[utoipa::path(get, path = "/v1/integrations/{id}/fields", tag = "integrations", security(("bearer" = [])), params(FieldsQuery),
    responses((status = 200, body = inline(List<FieldView>)), (status = 400, body = crate::error::ErrorBody),
               (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
               (status = 502, body = crate::error::ErrorBody)))]
pub async fn fields(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FieldsQuery>,
) -> ApiResult<Json<List<FieldView>>> {
    caller.require(READERS)?;
    let entity = crate::extract::entity("entity", q.entity.as_deref())?;
    owned(&state, &caller.workspace_id, &id).await?;
    let mut session = state.connections.session(&id).await.map_err(engine_error)?;
    let fields = session
        .call(&caller.metadata(), |adapter, credentials| {
            adapter.fields(credentials, entity)
        })
        .await
        .map_err(engine_error)?;
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
