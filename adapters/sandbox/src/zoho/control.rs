//! The `/_sandbox/` control API for the Zoho simulator. No authentication.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::state::{Credits, Module};
use super::{error, App, Refusal};
use crate::control_body;
use crate::error::{query_pairs, query_value};
use crate::RateLimit;

fn bad(message: impl Into<String>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_DATA",
        &message.into(),
        json!({}),
    )
}

fn missing(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "INVALID_DATA",
        &format!("no record {id}"),
        json!({}),
    )
}

fn module(raw: &str) -> Result<Module, Refusal> {
    Module::parse(raw).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "the module is Contacts or Accounts",
            json!({}),
        )
    })
}

/// Creates a record, or edits the one `id` names; `modified_at` (RFC 3339, whole
/// seconds) sets its `Modified_Time` instead of now. No validation.
pub async fn upsert_record(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else {
        return bad("body must be a JSON object");
    };
    let id = fields.remove("id");
    let at = match fields.remove("modified_at") {
        None => None,
        Some(Value::String(t)) => match chrono::DateTime::parse_from_rfc3339(&t) {
            Ok(t) => Some(t.timestamp()),
            Err(_) => return bad("modified_at must be RFC 3339"),
        },
        Some(_) => return bad("modified_at must be RFC 3339"),
    };
    let mut data = s.lock();
    let record = match id {
        None => data.insert(module, fields, at),
        Some(id) => {
            let Some(id) = id
                .as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            else {
                return bad("id must be a number");
            };
            match data.patch(module, id, fields, at) {
                Some(r) => r,
                None => return missing(&id.to_string()),
            }
        }
    };
    Json(record.to_json(None)).into_response()
}

pub async fn get_record(State(s): State<App>, Path((raw, id)): Path<(String, u64)>) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let mut data = s.lock();
    match data.table(module).get(&id) {
        Some(r) => Json(r.to_json(None)).into_response(),
        None => missing(&id.to_string()),
    }
}

/// Moves the record to the recycle bin; `?permanent=true` deletes it for good.
pub async fn delete_record(
    State(s): State<App>,
    Path((raw, id)): Path<(String, u64)>,
    RawQuery(q): RawQuery,
) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    if let Some((key, _)) = pairs.iter().find(|(k, _)| k != "permanent") {
        return bad(format!("unknown parameter `{key}`, expected `permanent`"));
    }
    let permanent = query_value(&pairs, "permanent") == Some("true");
    if s.lock().delete(module, id, permanent) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        missing(&id.to_string())
    }
}

fn refuse_any(body: &[u8]) -> Option<Response> {
    control_body::nothing(body)
        .err()
        .map(|e| bad(format!("invalid body: {e}")))
}

pub async fn issue_tokens(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let ttl = s.config.access_token_ttl_secs;
    let mut data = s.lock();
    let (access, refresh) = data.auth.grant(ttl);
    Json(json!({
        "access_token": access, "refresh_token": refresh, "api_domain": data.api_domain,
        "token_type": "Bearer", "expires_in": ttl,
    }))
    .into_response()
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
        Err(e) => bad(format!("invalid rate limit: {e}")),
    }
}

pub async fn set_credits(State(s): State<App>, body: Bytes) -> Response {
    match control_body::parse::<Credits>(&body) {
        Ok(credits) => {
            s.lock().credits = credits;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(format!("invalid credits: {e}")),
    }
}

/// What the authorize redirect names as `accounts-server` and token responses as
/// `api_domain`; an absent key leaves that one as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hosts {
    accounts_server: Option<String>,
    api_domain: Option<String>,
}

pub async fn set_hosts(State(s): State<App>, body: Bytes) -> Response {
    match control_body::parse::<Hosts>(&body) {
        Ok(hosts) => {
            let mut data = s.lock();
            if let Some(url) = hosts.accounts_server {
                data.accounts_server = url;
            }
            if let Some(url) = hosts.api_domain {
                data.api_domain = url;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(format!("invalid hosts: {e}")),
    }
}

pub async fn add_faults(State(s): State<App>, body: Bytes) -> Response {
    let specs = match control_body::faults(&body) {
        Ok(specs) => specs,
        Err(e) => return bad(format!("invalid fault: {e}")),
    };
    let mut data = s.lock();
    data.writes = 0;
    specs.into_iter().for_each(|spec| data.faults.push(spec));
    StatusCode::NO_CONTENT.into_response()
}

pub async fn clear_faults(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    let mut data = s.lock();
    data.faults.clear();
    data.writes = 0;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn counters(State(s): State<App>) -> Json<Map<String, Value>> {
    let data = s.lock();
    Json(
        data.counters
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    )
}

pub async fn reset_counters(State(s): State<App>, body: Bytes) -> Response {
    if let Some(refused) = refuse_any(&body) {
        return refused;
    }
    s.lock().counters.clear();
    StatusCode::NO_CONTENT.into_response()
}
