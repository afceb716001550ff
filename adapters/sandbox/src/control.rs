//! The `/_sandbox/` control API tests use to steer the simulator. No authentication.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::control_body;
use crate::error::{parse_json, query_pairs, query_value, ApiError};
use crate::properties::parse_type;
use crate::state::{AppState, ObjectType, Record};
use crate::RateLimit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordEdit {
    id: Option<Value>,
    #[serde(default)]
    properties: Map<String, Value>,
    /// `false` restores an archived record, `true` archives it.
    archived: Option<bool>,
    /// Sets the record's modification time (epoch ms) instead of now: a change
    /// that reaches the search index late, stamped earlier than changes already seen.
    modified_ms: Option<i64>,
}

fn raw(ty: ObjectType, record: &Record) -> Value {
    let names: Vec<String> = record.properties.keys().cloned().collect();
    record.to_json(ty, Some(&names))
}

fn stringify(props: Map<String, Value>) -> BTreeMap<String, String> {
    let text = |v: Value| match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    };
    props.into_iter().map(|(k, v)| (k, text(v))).collect()
}

/// Creates a record, or edits one when `id` is given; no validation, timestamps advance.
pub async fn upsert_record(
    State(s): State<AppState>,
    Path(ty): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let edit: RecordEdit = parse_json(&body)?;
    let props = stringify(edit.properties);
    let mut inner = s.lock();
    let record = match edit.id {
        None => inner.create(ty, props),
        Some(id) => {
            let id = id
                .as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()));
            let id = id.ok_or_else(|| ApiError::validation("id must be a number"))?;
            inner
                .update(ty, id, props)
                .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?
        }
    };
    let record = match edit.archived {
        Some(archived) => inner
            .set_archived(ty, record.id, archived)
            .unwrap_or(record),
        None => record,
    };
    let record = match edit.modified_ms {
        Some(ms) => match inner.table(ty).get_mut(&record.id) {
            Some(stored) => {
                stored.updated_ms = ms;
                stored.clone()
            }
            None => record,
        },
        None => record,
    };
    Ok(Json(raw(ty, &record)))
}

pub async fn get_record(
    State(s): State<AppState>,
    Path((ty, id)): Path<(String, u64)>,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let inner = s.lock();
    let record = inner
        .get(ty, id)
        .ok_or_else(|| ApiError::not_found(format!("no record {id}")))?;
    Ok(Json(raw(ty, record)))
}

/// Archives the record; `?hard=true` removes it entirely (as after the recycle bin empties).
pub async fn delete_record(
    State(s): State<AppState>,
    Path((ty, id)): Path<(String, u64)>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let ty = parse_type(&ty)?;
    let pairs = query_pairs(q.as_deref());
    if let Some((key, _)) = pairs.iter().find(|(k, _)| k != "hard") {
        let message = format!("unknown parameter `{key}`, expected `hard`");
        return Err(ApiError::validation(message));
    }
    let hard = query_value(&pairs, "hard") == Some("true");
    let mut inner = s.lock();
    let found = if hard {
        inner.table(ty).remove(&id).is_some()
    } else {
        inner.archive(ty, id)
    };
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no record {id}")))
    }
}

/// A control body, refused with a 400 naming the unknown or malformed key.
fn control<T>(parsed: Result<T, String>) -> Result<T, ApiError> {
    parsed.map_err(|e| ApiError::validation(format!("Invalid input JSON: {e}")))
}

pub async fn expire_tokens(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    control(control_body::nothing(&body))?;
    s.lock().auth.expire_all();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn issue_tokens(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    control(control_body::nothing(&body))?;
    let (ttl, hub) = (s.config.access_token_ttl_secs, s.config.hub_id);
    let pair = s
        .lock()
        .auth
        .issue(crate::grants::default_scopes(), ttl, hub);
    Ok(Json(json!(pair)))
}

pub async fn set_rate_limit(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let limit: Option<RateLimit> = parse_json(&body)?;
    s.lock().limits.set(limit);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_faults(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let specs = control(control_body::faults(&body))?;
    let mut inner = s.lock();
    specs.into_iter().for_each(|spec| inner.faults.push(spec));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn clear_faults(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    control(control_body::nothing(&body))?;
    s.lock().faults.clear();
    Ok(StatusCode::NO_CONTENT)
}

pub async fn counters(State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.lock().counters))
}

pub async fn reset_counters(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    control(control_body::nothing(&body))?;
    s.lock().counters.clear();
    Ok(StatusCode::NO_CONTENT)
}
