//! The HTTP side of `Idempotency-Key` (the rules are `syncledger_engine::idempotency`): on
//! the operations that create something, a request with the header claims the key before
//! the handler runs; a retry of the same request (same method, path and body) gets the
//! first answer again, marked `Idempotent-Replayed: true`, and creates nothing; the same key
//! with a different request is 422 `idempotency_key_reused`; while the first is still
//! running, 409 `idempotency_key_in_use`. Only a success is kept: a refused or failed
//! request creates nothing, so its key is free for the corrected retry.

use crate::auth::{verify_bearer, visible_ascii};
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use syncledger_engine::idempotency::{self, Claim};

/// The operations that create something, by method and route template.
pub const CREATING: [(&str, &str); 6] = [
    ("POST", "/v1/records"),
    ("POST", "/v1/integrations"),
    ("POST", "/v1/tokens"),
    ("POST", "/v1/integrations/{id}/sync-runs"),
    ("POST", "/v1/sync-runs/{id}/retry"),
    ("POST", "/v1/sync-runs/{id}/rollback"),
];

/// Longest key kept.
pub const MAX_KEY: usize = 255;

/// Largest request or answer body handled here (the API's own body limit).
const MAX_BODY: usize = 1024 * 1024;

fn creating(method: &Method, route: &str) -> bool {
    CREATING
        .iter()
        .any(|(m, r)| method.as_str() == *m && route == *r)
}

/// The key a client sent: 1 to [`MAX_KEY`] visible ASCII characters (a UUID, say).
fn key_of(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    if visible_ascii(text, MAX_KEY) {
        Ok(Some(text.to_string()))
    } else {
        Err(ApiError::invalid_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY} visible ASCII characters, e.g. a UUID"),
        ))
    }
}

/// Middleware on the API's routes: does nothing unless the operation creates and the
/// request carries a key and a valid token (an invalid token is the handler's 401).
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let creates = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| creating(req.method(), p.as_str()));
    if !creates {
        return next.run(req).await;
    }
    let key = match key_of(&req) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let verified = match verify_bearer(&state, req.headers()).await {
        Ok(Some(verified)) => verified,
        // No valid token: the handler answers 401.
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let workspace = verified.found.workspace_id.clone();
    let (mut parts, body) = req.into_parts();
    // The handler's `Caller` takes the token as checked here, not from the store again.
    parts.extensions.insert(verified);
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than 1 MiB",
        )
        .into_response();
    };
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str());
    hash.update(b" ");
    hash.update(parts.uri.path());
    hash.update(b"\n");
    hash.update(&bytes);
    let fingerprint = hex::encode(hash.finalize());
    let now = chrono::Utc::now().timestamp_millis();
    let pool = &state.store.any;
    match idempotency::claim(pool, &workspace, &key, &fingerprint, now).await {
        Ok(Claim::Fresh) => {}
        Ok(Claim::Replay { status, body }) => return replay(status, body),
        Ok(Claim::Mismatch) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key",
            )
            .into_response()
        }
        Ok(Claim::InFlight) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "the first request with this Idempotency-Key is still running; retry shortly",
            )
            .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status();
    if !status.is_success() {
        if let Err(e) = idempotency::release(pool, &workspace, &key).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::internal("an answer too large to keep for Idempotency-Key")
            .into_response();
    };
    let kept = kept_answer(&bytes);
    if let Err(e) = idempotency::complete(pool, &workspace, &key, status.as_u16(), &kept).await {
        tracing::warn!(error = %e, "could not keep an answer for its idempotency key");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// What is kept of an answer to replay it: the JSON without a top-level `token` (a new API
/// token's secret is shown once, and is never stored in the clear; a replay of the token's
/// creation shows the token without it).
fn kept_answer(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.remove("token");
            serde_json::Value::Object(fields).to_string()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
