//! The generic sandbox's `/_sandbox/` control API, and the outer middleware that
//! counts requests and applies injected faults. No authentication.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::state::{error, now_secs, GenericState, Kind, Stamp, TokenError};
use crate::control_body;
use crate::faults::{Action, FaultHost};
use tokio::sync::watch;

/// `GET /cursor/contacts/17` → `GET /cursor/contacts/{id}`.
fn endpoint_key(method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

impl FaultHost for GenericState {
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut inner = self.lock();
        *inner
            .counters
            .entry(endpoint_key(method, path))
            .or_default() += 1;
        inner.faults.take(path)
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        let mut response = error(status, "injected_fault", "injected fault");
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        }
        response
    }

    const TRUNCATED_BODY: &'static str = r#"{"data":{"items":[{"id":"#;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordEdit {
    id: Option<u64>,
    #[serde(default)]
    attributes: Map<String, Value>,
}

/// Creates a record, or edits one when `id` is given; no validation, `updated` advances.
pub async fn upsert_record(
    State(s): State<Arc<GenericState>>,
    Path(entity): Path<String>,
    body: Bytes,
) -> Response {
    let Some(kind) = Kind::parse(&entity) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such entity");
    };
    let edit = match control_body::parse::<RecordEdit>(&body) {
        Ok(edit) => edit,
        Err(e) => {
            let message = format!("expected {{\"id\"?, \"attributes\"}}: {e}");
            return error(StatusCode::BAD_REQUEST, "invalid_json", message);
        }
    };
    let attrs: BTreeMap<String, String> = edit
        .attributes
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            Value::Null => (k, String::new()),
            other => (k, other.to_string()),
        })
        .collect();
    let mut inner = s.lock();
    let rec = match edit.id {
        None => Some(inner.create(kind, attrs)),
        Some(id) => inner.update(kind, id, attrs),
    };
    match rec {
        Some(rec) => Json(rec.to_json(Stamp::Rfc3339)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such record"),
    }
}

/// Soft-deletes: the record stays listed with `"deleted": true` and a new `updated`.
pub async fn delete_record(
    State(s): State<Arc<GenericState>>,
    Path((entity, id)): Path<(String, u64)>,
) -> Response {
    let Some(kind) = Kind::parse(&entity) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such entity");
    };
    let mut inner = s.lock();
    match inner.records.get_mut(&kind).and_then(|m| m.get_mut(&id)) {
        Some(rec) => {
            rec.deleted = true;
            rec.updated = now_secs();
            Json(rec.to_json(Stamp::Rfc3339)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such record"),
    }
}

/// Refuses a body with any key (these endpoints take none): 400 naming it.
fn refuse_any(body: &[u8]) -> Option<Response> {
    control_body::nothing(body)
        .err()
        .map(|e| error(StatusCode::BAD_REQUEST, "invalid_json", e))
}

/// One fault, or a list of them (all or nothing).
pub async fn push_fault(State(s): State<Arc<GenericState>>, body: Bytes) -> Response {
    match control_body::faults(&body) {
        Ok(specs) => {
            let mut inner = s.lock();
            specs.into_iter().for_each(|spec| inner.faults.push(spec));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_fault", e),
    }
}

pub async fn clear_faults(State(s): State<Arc<GenericState>>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    s.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

pub async fn counters(State(s): State<Arc<GenericState>>) -> Response {
    Json(s.lock().counters.clone()).into_response()
}

/// Expires every OAuth access token at once (refresh tokens stay valid).
pub async fn expire_tokens(State(s): State<Arc<GenericState>>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let past = Utc::now() - chrono::Duration::seconds(1);
    for expiry in s.lock().access.values_mut() {
        *expiry = past;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Queues an answer for the next token requests: `{"status": 503, "error"?,
/// "retry_after"?, "count"?}`.
pub async fn push_token_error(State(s): State<Arc<GenericState>>, body: Bytes) -> Response {
    match control_body::parse::<TokenError>(&body) {
        Ok(queued) if queued.count > 0 => {
            s.lock().token_errors.push(queued);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "invalid_token_error",
            e.to_string(),
        ),
    }
}

/// Every revocation request received, in order (without the tokens).
pub async fn revocations(State(s): State<Arc<GenericState>>) -> Response {
    Json(s.lock().revocations.clone()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenTypeBody {
    token_type: String,
}

/// Makes token responses name another `token_type` from now on: `{"token_type": "DPoP"}`.
pub async fn set_token_type(State(s): State<Arc<GenericState>>, body: Bytes) -> Response {
    match control_body::parse::<TokenTypeBody>(&body) {
        Ok(body) => {
            s.lock().token_type = body.token_type;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_token_type", e.to_string()),
    }
}
