//! The `/_sandbox/` control API for the Pipedrive simulator. No authentication.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::middleware::{bad_request, not_found, Reject};
use super::state::{Kind, PipedriveData};
use super::App;
use crate::control_body;
use crate::error::{query_pairs, query_value};
use crate::RateLimit;

fn kind(raw: &str) -> Result<Kind, Reject> {
    Kind::parse(raw).ok_or_else(|| Reject::missing("Unknown entity type"))
}

/// Custom fields may be given by hash key or by field name.
fn resolve_custom(
    inner: &PipedriveData,
    kind: Kind,
    custom: Map<String, Value>,
) -> Map<String, Value> {
    let known = inner.custom_keys(kind);
    custom
        .into_iter()
        .map(|(key, value)| {
            let hash = known
                .iter()
                .find(|(h, name)| *h == key || name.eq_ignore_ascii_case(&key))
                .map_or(key, |(h, _)| h.clone());
            (hash, value)
        })
        .collect()
}

/// Creates a record, or edits one when `id` is given (advancing its
/// `update_time`); `deleted` soft-deletes or restores. No validation.
pub async fn upsert_record(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("body must be a JSON object");
    };
    let id = map.remove("id");
    let deleted = map.remove("deleted").and_then(|d| d.as_bool());
    let custom = match map.remove("custom_fields") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    let mut inner = s.lock();
    let custom = resolve_custom(&inner, kind, custom);
    let record = match id {
        None => inner.insert(kind, map, custom),
        Some(id) => {
            let Some(id) = id
                .as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            else {
                return bad_request("id must be a number");
            };
            match inner.patch(kind, id, map, custom) {
                Some(r) => r,
                None => return not_found(format!("no record {id}")),
            }
        }
    };
    let record = match deleted {
        Some(d) => inner.set_deleted(kind, record.id, d).unwrap_or(record),
        None => record,
    };
    Json(record.to_v2()).into_response()
}

pub async fn get_record(State(s): State<App>, Path((raw, id)): Path<(String, u64)>) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let inner = s.lock();
    match inner.records.get(&kind).and_then(|t| t.get(&id)) {
        Some(r) => Json(r.to_v2()).into_response(),
        None => not_found(format!("no record {id}")),
    }
}

/// Soft-deletes; `?hard=true` removes the record entirely (as after the 30-day purge).
pub async fn delete_record(
    State(s): State<App>,
    Path((raw, id)): Path<(String, u64)>,
    RawQuery(q): RawQuery,
) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    if let Some((key, _)) = pairs.iter().find(|(k, _)| k != "hard") {
        return bad_request(format!("unknown parameter `{key}`, expected `hard`"));
    }
    let hard = query_value(&pairs, "hard") == Some("true");
    let mut inner = s.lock();
    let found = if hard {
        inner.table(kind).remove(&id).is_some()
    } else {
        inner.set_deleted(kind, id, true).is_some()
    };
    if found {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(format!("no record {id}"))
    }
}

/// Refuses a body with any key (these endpoints take none): 400 naming it.
fn refuse_any(body: &[u8]) -> Option<Response> {
    control_body::nothing(body)
        .err()
        .map(|e| bad_request(format!("invalid body: {e}")))
}

pub async fn issue_tokens(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let ttl = s.config.access_token_ttl_secs;
    let (access, refresh) = s.lock().auth.issue(None, ttl);
    Json(super::oauth::token_body(&s, access, refresh)).into_response()
}

pub async fn expire_tokens(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let now = std::time::Instant::now();
    s.lock()
        .auth
        .access
        .values_mut()
        .for_each(|(_, exp)| *exp = now);
    StatusCode::NO_CONTENT.into_response()
}

pub async fn set_rate_limit(State(s): State<App>, body: Bytes) -> Response {
    match control_body::parse::<Option<RateLimit>>(&body) {
        Ok(limit) => {
            s.lock().limits.set(limit);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(format!("invalid rate limit: {e}")),
    }
}

/// `partial_batch` makes every n-th create or patch fail with 400 (Pipedrive
/// has no batch writes); `count` is then the number of writes it applies to.
pub async fn add_faults(State(s): State<App>, body: Bytes) -> Response {
    let specs = match control_body::faults(&body) {
        Ok(specs) => specs,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    let mut inner = s.lock();
    inner.writes = 0;
    specs.into_iter().for_each(|spec| inner.faults.push(spec));
    StatusCode::NO_CONTENT.into_response()
}

pub async fn clear_faults(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let mut inner = s.lock();
    inner.faults.clear();
    inner.writes = 0;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn counters(State(s): State<App>) -> Json<Value> {
    Json(json!(s.lock().counters))
}

pub async fn reset_counters(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    s.lock().counters.clear();
    StatusCode::NO_CONTENT.into_response()
}
