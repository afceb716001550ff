//! Provider webhooks. HubSpot deliveries are accepted only with a valid v3 signature
//! made with the app's client secret over the public URL of this endpoint (the rules are
//! `syncledger_engine::webhooks`).

use crate::error::ApiResult;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use syncledger_engine::webhooks::HubSpotDelivery;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Receive a HubSpot webhook batch: 204 when the signature verifies, 401 otherwise,
/// 409 for a delivery already accepted.
#[utoipa::path(post, path = "/v1/webhooks/hubspot", operation_id = "receiveHubspotWebhook", tag = "webhooks",
    request_body(content = String, description = "A JSON array of HubSpot events", content_type = "application/json"),
    responses((status = 204, description = "The batch was accepted"), (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, description = "The signature is missing, stale or does not verify", body = crate::error::ErrorBody),
              (status = 409, description = "A delivery already accepted", body = crate::error::ErrorBody),
              (status = 500, response = crate::error_docs::InternalError), (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn hubspot(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let uri = format!("{}/v1/webhooks/hubspot", state.public_url);
    let delivery = HubSpotDelivery {
        uri: &uri,
        body: &body,
        timestamp: header(&headers, "x-hubspot-request-timestamp"),
        signature: header(&headers, "x-hubspot-signature-v3"),
    };
    state.engine.receive_hubspot(delivery).await?;
    Ok(StatusCode::NO_CONTENT)
}
