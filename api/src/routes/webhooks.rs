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
use sqlx::Row;
use syncledger_crm::hubspot::replay::ReplayError;
use syncledger_crm::hubspot::webhook::verify_v3;
use syncledger_domain::sync_run::{RunKind, Trigger};
use syncledger_domain::Integration;
use syncledger_engine::RunError;
use syncledger_store::Metadata;

/// The fields of a HubSpot event syncledger reads; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubSpotEvent {
    portal_id: Option<u64>,
    subscription_type: Option<String>,
}

/// Connected HubSpot integrations whose credentials reach `portal`.
async fn integrations_of_portal(
    state: &AppState,
    portal: &str,
) -> ApiResult<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT id, workspace_id, state FROM integration_status
          WHERE provider = 'hubspot' AND status = 'connected'",
    )
    .fetch_all(&state.store.any)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let stored: String = row.try_get("state")?;
        let Ok(integration) = serde_json::from_str::<Integration>(&stored) else {
            continue;
        };
        if integration.account_id.as_deref() == Some(portal) {
            out.push((row.try_get("id")?, row.try_get("workspace_id")?));
        }
    }
    Ok(out)
}

/// Starts a near-real-time incremental run. When a run is already active the change is
/// remembered, and the scheduler starts the follow-up run once that one has ended.
async fn trigger_webhook_run(state: &AppState, integration_id: &str, workspace_id: &str) {
    let meta = Metadata::new(
        "webhook:hubspot",
        workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    match state
        .runs
        .trigger(
            integration_id,
            RunKind::Incremental,
            Trigger::Webhook,
            None,
            &meta,
        )
        .await
    {
        Ok(run_id) => {
            if let Err(e) = state.dispatcher.dispatch(&run_id).await {
                tracing::warn!(integration_id, error = %e, "webhook run not handed to a worker");
            }
        }
        Err(RunError::Active { .. }) => state.runs.remember_webhook(integration_id),
        Err(e) => tracing::info!(integration_id, error = %e, "webhook did not start a run"),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// After the signature verified: refuses a delivery whose (signature, timestamp) was
/// already accepted within the five-minute window (409), or any new one while the
/// per-process memory is full of unexpired deliveries (503, HubSpot retries later).
fn refuse_replay(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    // Both headers were present and the timestamp parsed, or verification failed.
    let signature = header(headers, "x-hubspot-signature-v3").unwrap_or_default();
    let timestamp = header(headers, "x-hubspot-request-timestamp")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or_default();
    state
        .webhook_replays
        .admit(signature, timestamp, Utc::now().timestamp_millis())
        .map_err(|e| match e {
            ReplayError::Replayed => {
                ApiError::new(StatusCode::CONFLICT, "replayed_delivery", e.to_string())
            }
            ReplayError::Full => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_backlog",
                e.to_string(),
            ),
        })
}

/// Receive a HubSpot webhook batch: 204 when the signature verifies, 401 otherwise,
/// 409 for a delivery already accepted.
#[utoipa::path(post, path = "/v1/webhooks/hubspot", tag = "webhooks",
    request_body(content = String, description = "A JSON array of HubSpot events", content_type = "application/json"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)))]
pub async fn hubspot(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    // Without a configured app secret no signature can be trusted (an empty key
    // would let anyone sign): refuse every delivery.
    let Some(secret) = state
        .connections
        .connector()
        .app("hubspot")
        .map(|a| a.client_secret.expose_secret().to_owned())
    else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "webhooks_not_configured",
            "no HubSpot app secret is configured on this server",
        ));
    };
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
    refuse_replay(&state, &headers)?;
    let events: Vec<HubSpotEvent> = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("the body must be a JSON array of HubSpot events"))?;
    let mut portals: Vec<String> = events
        .iter()
        .filter_map(|e| e.portal_id)
        .map(|p| p.to_string())
        .collect();
    portals.sort();
    portals.dedup();
    for event in &events {
        tracing::debug!(
            portal_id = event.portal_id,
            subscription = event.subscription_type.as_deref().unwrap_or("unknown"),
            "verified HubSpot webhook event"
        );
    }
    for portal in &portals {
        for (integration_id, workspace_id) in integrations_of_portal(&state, portal).await? {
            trigger_webhook_run(&state, &integration_id, &workspace_id).await;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
