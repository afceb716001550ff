//! Provider webhooks. HubSpot deliveries are accepted only with a valid v3 signature
//! made with the app's client secret over the public URL of this endpoint.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Deserialize;
use syncledger_crm::hubspot::webhook::verify_v3;

/// The fields of a HubSpot event syncledger reads; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubSpotEvent {
    portal_id: Option<u64>,
    subscription_type: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Receive a HubSpot webhook batch: 204 when the signature verifies, 401 otherwise.
#[utoipa::path(post, path = "/v1/webhooks/hubspot", tag = "webhooks",
    request_body(content = String, description = "A JSON array of HubSpot events", content_type = "application/json"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn hubspot(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let secret = state
        .connections
        .connector()
        .app("hubspot")
        .map(|a| a.client_secret.expose_secret().to_owned())
        .unwrap_or_default();
    let uri = format!("{}/v1/webhooks/hubspot", state.public_url);
    verify_v3(
        &secret,
        "POST",
        &uri,
        &body,
        header(&headers, "x-hubspot-request-timestamp"),
        header(&headers, "x-hubspot-signature-v3"),
        Utc::now(),
    )
    .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))?;
    let events: Vec<HubSpotEvent> = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("the body must be a JSON array of HubSpot events"))?;
    for event in &events {
        tracing::info!(
            portal_id = event.portal_id,
            subscription = event.subscription_type.as_deref().unwrap_or("unknown"),
            "verified HubSpot webhook event"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
