//! The `/_sandbox/` control API tests use to steer the simulator. No authentication.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{parse_json, SfError};
use super::oauth::token_body;
use super::schema::SObject;
use super::sobjects::object;
use super::state::{parse_time, AppState, Record};
use crate::control_body;
use crate::RateLimit;

/// A control body, refused with a 400 naming the unknown or malformed key.
fn control<T>(parsed: Result<T, String>) -> Result<T, SfError> {
    parsed.map_err(|e| SfError::bad_request("JSON_PARSER_ERROR", format!("Invalid JSON: {e}")))
}

/// Every declared field of the record, plus `Id` and the system fields.
fn full(s: &AppState, object: SObject, record: &Record) -> Value {
    let names: Vec<String> = object.fields().iter().map(|f| f.name.to_string()).collect();
    record.to_json(object, &names, &s.data_path())
}

fn scalar(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Creates a record, or edits the one named by `Id`; no validation, and the
/// `SystemModstamp` advances either way.
pub async fn upsert_record(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let mut fields: Map<String, Value> = parse_json(&body)?;
    let id = fields
        .remove("Id")
        .or_else(|| fields.remove("id"))
        .map(scalar);
    let changes: BTreeMap<String, String> = fields
        .into_iter()
        .map(|(k, v)| {
            let canonical = object.field(&k).map_or(k, |f| f.name.to_string());
            (canonical, scalar(v))
        })
        .collect();
    let mut inner = s.lock();
    let record = match id {
        None => inner.create(object, changes),
        Some(id) => inner
            .update(object, &id, changes)
            .ok_or_else(|| SfError::not_found(format!("no record {id}")))?,
    };
    Ok(Json(full(&s, object, &record)))
}

pub async fn get_record(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let inner = s.lock();
    let record = inner
        .get(object, &id)
        .ok_or_else(|| SfError::not_found(format!("no record {id}")))?;
    Ok(Json(full(&s, object, record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// Backdates the deletion, to test the 15-day memory of `getDeleted`.
    deleted_at: Option<String>,
}

/// Moves the record to the recycle bin (`IsDeleted`); it leaves `/query` and
/// shows in `getDeleted`.
pub async fn delete_record(
    State(s): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, SfError> {
    let object = object(&name)?;
    let params: DeleteParams = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| SfError::bad_request("INVALID_FIELD", e.to_string()))?;
    let at = match params.deleted_at.as_deref() {
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            SfError::bad_request("INVALID_FIELD", "deleted_at must be a date time")
        })?),
        None => None,
    };
    let mut inner = s.lock();
    if !inner.delete(object, &id) {
        return Err(SfError::not_found(format!("no live record {id}")));
    }
    if let (Some(at), Some(record)) = (at, inner.table(object).get_mut(&id)) {
        record.deleted_ms = Some(at);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a session and refresh token, answered like the token endpoint.
pub async fn issue_tokens(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, SfError> {
    control(control_body::nothing(&body))?;
    let issued = s.lock().auth.issue(true);
    Ok(Json(token_body(
        &s,
        issued.access_token,
        issued.refresh_token,
    )))
}

pub async fn expire_tokens(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, SfError> {
    control(control_body::nothing(&body))?;
    s.lock().auth.expire_all();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_rate_limit(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, SfError> {
    let limit: Option<RateLimit> = control(control_body::parse(&body))?;
    s.lock().limits.set(limit);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DailyLimit {
    limit: u32,
    used: Option<u32>,
}

pub async fn set_daily_limit(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<StatusCode, SfError> {
    let daily: DailyLimit = control(control_body::parse(&body))?;
    let mut inner = s.lock();
    inner.daily_limit = daily.limit;
    if let Some(used) = daily.used {
        inner.daily_used = used;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_faults(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, SfError> {
    let specs = control(control_body::faults(&body))?;
    let mut inner = s.lock();
    specs.into_iter().for_each(|spec| inner.faults.push(spec));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn clear_faults(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, SfError> {
    control(control_body::nothing(&body))?;
    s.lock().faults.clear();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn counters(State(s): State<AppState>) -> Json<Value> {
    let inner = s.lock();
    Json(json!(inner.counters))
}

pub async fn reset_counters(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, SfError> {
    control(control_body::nothing(&body))?;
    s.lock().counters.clear();
    Ok(StatusCode::NO_CONTENT)
}
