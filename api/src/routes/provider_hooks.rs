//! Webhooks a provider sends to one integration (Chatwoot's signed ones, Tave's
//! unsigned REST hooks to a URL holding a token), and how their secrets are set (the
//! rules are `syncledger_engine::provider_hooks`).

use crate::auth::Writer;
use crate::error::ApiResult;
use crate::extract::Body;
use crate::routes::integration_view::IntegrationView;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use syncledger_domain::signed_webhook::SignedDelivery;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The secret the CRM signs its webhooks to this integration with. Stored sealed;
/// never returned.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretBody {
    /// The webhook's secret as configured in the CRM (Chatwoot: the webhook's secret),
    /// 1 to 256 characters.
    #[schema(value_type = String)]
    pub secret: SecretString,
}

/// Set (or replace at once) the secret a Chatwoot integration's webhooks are signed
/// with; the answer never contains it.
#[utoipa::path(put, path = "/v1/integrations/{id}/webhook-secret", operation_id = "setWebhookSecret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The integration")), request_body = WebhookSecretBody,
    responses((status = 200, body = IntegrationView), (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, response = crate::error_docs::Unauthorized), (status = 403, response = crate::error_docs::Forbidden),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn set_secret(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(req): Body<WebhookSecretBody>,
) -> ApiResult<Json<IntegrationView>> {
    let set = state
        .engine
        .set_webhook_secret(&caller.metadata(), &id, &req.secret)
        .await?;
    Ok(Json(set.into()))
}

/// Receive a Chatwoot webhook (`contact_created`, `contact_updated`, …) for one
/// integration: 204 when it is signed with the integration's secret, no more than 5
/// minutes from now and not seen before, which starts an incremental run (or joins the
/// one queued); 401 otherwise, and nothing changes.
#[utoipa::path(post, path = "/v1/webhooks/chatwoot/{id}", operation_id = "receiveChatwootWebhook", tag = "webhooks",
    params(("id" = String, Path, description = "The integration"),
           ("X-Chatwoot-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>"),
           ("X-Chatwoot-Timestamp" = String, Header, description = "Unix seconds"),
           ("X-Chatwoot-Delivery" = String, Header, description = "The delivery's id, the same on every retry")),
    request_body(content = String, description = "A Chatwoot webhook event (JSON)", content_type = "application/json"),
    responses((status = 204, description = "The delivery was accepted"),
              (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, description = "Unsigned, badly signed, stale, from the future, replayed, or for an integration without a webhook secret", body = crate::error::ErrorBody),
              (status = 500, response = crate::error_docs::InternalError), (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn chatwoot(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let delivery = SignedDelivery {
        body: &body,
        timestamp: header(&headers, "x-chatwoot-timestamp"),
        signature: header(&headers, "x-chatwoot-signature"),
        delivery_id: header(&headers, "x-chatwoot-delivery"),
    };
    state.engine.receive_chatwoot(&id, delivery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A Tave integration's hook URL, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HookUrlView {
    /// Register it in Tave (`POST /rest-hook` with `{"event": "contact.created", "url":
    /// …}`). It holds the token: treat it as a secret. Shown only in this answer.
    pub url: String,
    pub integration: IntegrationView,
}

/// Make (or replace at once) a Tave integration's hook URL: Tave's REST hooks are
/// unsigned, so the URL carries a random token (256 bits, stored sealed).
#[utoipa::path(post, path = "/v1/integrations/{id}/hook-url", operation_id = "createHookUrl", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "The integration")),
    responses((status = 201, body = HookUrlView), (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, response = crate::error_docs::Unauthorized), (status = 403, response = crate::error_docs::Forbidden),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn create_hook_url(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<HookUrlView>)> {
    let (token, integration) = state.engine.new_hook_token(&caller.metadata(), &id).await?;
    let view = HookUrlView {
        url: format!(
            "{}/v1/webhooks/tave/{id}/{}",
            state.public_url,
            token.expose_secret()
        ),
        integration: IntegrationView::from(integration),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Receive a Tave REST hook (`contact.created`, body `{…, "targetId"}`): 204 when the
/// path's token is the integration's, which starts an incremental run (or joins the
/// one queued); 401 otherwise, and nothing changes. Tave signs nothing: the token is
/// all that authenticates a delivery.
#[utoipa::path(post, path = "/v1/webhooks/tave/{id}/{token}", operation_id = "receiveTaveHook", tag = "webhooks",
    params(("id" = String, Path, description = "The integration"), ("token" = String, Path, description = "The hook URL's token")),
    request_body(content = String, description = "A Tave REST hook event (JSON with the record's targetId)", content_type = "application/json"),
    responses((status = 204, description = "The delivery was accepted"),
              (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, description = "The token is wrong, or the integration has no hook URL", body = crate::error::ErrorBody),
              (status = 500, response = crate::error_docs::InternalError), (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn tave(
    State(state): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    state.engine.receive_tave(&id, &token, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}
