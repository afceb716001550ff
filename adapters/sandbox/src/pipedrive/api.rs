//! The Pipedrive API: v2 persons and organizations (list, get, create, patch,
//! delete, search), v1 field catalogues, `/v1/users/me` and `/v1/recents`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::middleware::{bad_request, error, not_found, Reject};
use super::state::{Kind, PipedriveData, Record};
use super::App;
use crate::error::{query_pairs, query_value};

const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 100;

fn kind(raw: &str) -> Result<Kind, Reject> {
    Kind::parse(raw).ok_or_else(|| Reject::missing("Unknown entity type"))
}

fn ok(data: Value, additional: Value) -> Response {
    Json(json!({ "success": true, "data": data, "additional_data": additional })).into_response()
}

fn limit(pairs: &[(String, String)], max: usize) -> Result<usize, Reject> {
    match query_value(pairs, "limit") {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Reject::bad(format!(
                "Validation failed: limit: Must be an integer between 1 and {max}"
            ))),
        },
    }
}

pub async fn users_me(State(s): State<App>) -> Response {
    let data = json!({
        "id": 1,
        "name": "Sandbox User",
        "email": "owner@sandbox.example",
        "company_id": s.config.company_id,
        "company_name": "Sandbox Inc",
        "company_domain": s.config.company_domain,
        "is_admin": true,
        "active_flag": true,
    });
    ok(data, Value::Null)
}

fn v1_page(items: Vec<Value>, start: usize, limit: usize) -> Response {
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let more = start + page.len() < total;
    let mut pagination = json!({
        "start": start,
        "limit": limit,
        "more_items_in_collection": more,
    });
    if more {
        pagination["next_start"] = json!(start + limit);
    }
    ok(Value::Array(page), json!({ "pagination": pagination }))
}

fn v1_start(pairs: &[(String, String)]) -> Result<usize, Reject> {
    query_value(pairs, "start")
        .map_or(Ok(0), str::parse)
        .map_err(|_| Reject::bad("start must be a non-negative integer"))
}

/// `GET /v1/personFields`, `/v1/organizationFields`.
async fn fields(s: App, kind: Kind, q: Option<String>) -> Response {
    let pairs = query_pairs(q.as_deref());
    let (start, limit) = match (v1_start(&pairs), limit(&pairs, MAX_LIMIT)) {
        (Ok(start), Ok(limit)) => (start, limit),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let items = s
        .lock()
        .fields
        .get(&kind)
        .map(|defs| defs.iter().map(|d| d.to_json()).collect())
        .unwrap_or_default();
    v1_page(items, start, limit)
}

pub async fn person_fields(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    fields(s, Kind::Person, q).await
}

pub async fn organization_fields(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    fields(s, Kind::Organization, q).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Id,
    UpdateTime,
    AddTime,
}

fn sort_key(r: &Record, by: SortBy) -> (i64, u64) {
    match by {
        SortBy::Id => (0, r.id),
        SortBy::UpdateTime => (r.update_ms, r.id),
        SortBy::AddTime => (r.add_ms, r.id),
    }
}

fn time_param(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, Reject> {
    let Some(raw) = query_value(pairs, key) else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|_| {
            Reject::bad(format!(
                "Validation failed: {key}: Must be a RFC3339 timestamp"
            ))
        })
}

/// The cursor is opaque to clients: base64 of the last sort key returned.
fn encode_cursor(key: (i64, u64)) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", key.0, key.1))
}

fn decode_cursor(raw: &str) -> Option<(i64, u64)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `GET /api/v2/{persons|organizations}`: keyset paging over the chosen sort.
pub async fn list(
    State(s): State<App>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    let limit = match limit(&pairs, MAX_LIMIT) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let (since, until) = match (
        time_param(&pairs, "updated_since"),
        time_param(&pairs, "updated_until"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let by = match query_value(&pairs, "sort_by").unwrap_or("id") {
        "id" => SortBy::Id,
        "update_time" => SortBy::UpdateTime,
        "add_time" => SortBy::AddTime,
        _ => {
            return bad_request(
                "Validation failed: sort_by: Must be one of id, update_time, add_time",
            )
        }
    };
    let desc = match query_value(&pairs, "sort_direction").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        _ => return bad_request("Validation failed: sort_direction: Must be asc or desc"),
    };
    let after = match query_value(&pairs, "cursor") {
        None => None,
        Some(raw) => match decode_cursor(raw) {
            Some(key) => Some(key),
            None => return bad_request("Validation failed: cursor: Invalid cursor"),
        },
    };
    let inner = s.lock();
    let mut rows: Vec<&Record> = inner
        .records
        .get(&kind)
        .into_iter()
        .flat_map(|t| t.values())
        .filter(|r| !r.deleted)
        .filter(|r| since.is_none_or(|t| r.update_ms >= t))
        .filter(|r| until.is_none_or(|t| r.update_ms < t))
        .filter(|r| {
            after.is_none_or(|a| {
                let key = sort_key(r, by);
                if desc {
                    key < a
                } else {
                    key > a
                }
            })
        })
        .collect();
    rows.sort_by_key(|r| sort_key(r, by));
    if desc {
        rows.reverse();
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| Value::String(encode_cursor(sort_key(r, by))))
        .unwrap_or(Value::Null);
    let data = rows.iter().map(|r| r.to_v2()).collect();
    ok(Value::Array(data), json!({ "next_cursor": next }))
}

pub async fn get_one(State(s): State<App>, Path((raw, id)): Path<(String, u64)>) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    match s.lock().live(kind, id) {
        Some(r) => ok(r.to_v2(), Value::Null),
        None => not_found(format!("{} not found", capitalised(kind))),
    }
}

fn capitalised(kind: Kind) -> &'static str {
    match kind {
        Kind::Person => "Person",
        Kind::Organization => "Organization",
    }
}

fn check_contacts(value: &Value, what: &str, email: bool) -> Result<(), String> {
    let Value::Array(items) = value else {
        return Err(format!("{what} must be an array"));
    };
    for item in items {
        let v = item.get("value").and_then(Value::as_str);
        match v {
            Some(v) if !email || v.contains('@') => {}
            Some(_) => return Err(format!("Invalid email address in {what}")),
            None => return Err(format!("{what}[].value must be a string")),
        }
    }
    Ok(())
}

/// Standard-field and custom-field changes of one write.
type Changes = (Map<String, Value>, Map<String, Value>);

/// Validates a create or patch body; returns the standard and custom changes.
fn validate(
    inner: &PipedriveData,
    kind: Kind,
    body: &[u8],
    create: bool,
) -> Result<Changes, String> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return Err("Request body must be a JSON object".into());
    };
    let custom = match map.remove("custom_fields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c,
        Some(_) => return Err("custom_fields must be an object".into()),
    };
    let known = inner.custom_keys(kind);
    if let Some(key) = custom.keys().find(|k| !known.iter().any(|(h, _)| h == *k)) {
        return Err(format!("Custom field {key} does not exist"));
    }
    for (key, value) in &map {
        if !kind.writable().contains(&key.as_str()) {
            return Err(format!("Field {key} is not writable or does not exist"));
        }
        match key.as_str() {
            "name" if value.as_str().is_none_or(|n| n.trim().is_empty()) => {
                return Err("Name must be a non-empty string".into());
            }
            "emails" => check_contacts(value, "emails", true)?,
            "phones" => check_contacts(value, "phones", false)?,
            "owner_id" | "org_id" | "visible_to" if !(value.is_null() || value.is_u64()) => {
                return Err(format!("{key} must be an integer"));
            }
            _ => {}
        }
    }
    if create && !map.contains_key("name") {
        return Err("Name must be given".into());
    }
    Ok((map, custom))
}

pub async fn create(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let mut inner = s.lock();
    let (fields, custom) = match validate(&inner, kind, &body, true) {
        Ok(v) => v,
        Err(message) => return bad_request(message),
    };
    if inner.partial_failure() {
        return bad_request("Injected write failure");
    }
    let record = inner.insert(kind, fields, custom);
    ok(record.to_v2(), Value::Null)
}

pub async fn patch(
    State(s): State<App>,
    Path((raw, id)): Path<(String, u64)>,
    body: Bytes,
) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let mut inner = s.lock();
    if inner.live(kind, id).is_none() {
        return not_found(format!("{} not found", capitalised(kind)));
    }
    let (fields, custom) = match validate(&inner, kind, &body, false) {
        Ok(v) => v,
        Err(message) => return bad_request(message),
    };
    if inner.partial_failure() {
        return bad_request("Injected write failure");
    }
    match inner.patch(kind, id, fields, custom) {
        Some(record) => ok(record.to_v2(), Value::Null),
        None => not_found(format!("{} not found", capitalised(kind))),
    }
}

/// Soft delete: the record leaves the v2 lists and shows in `/v1/recents` as inactive.
pub async fn delete(State(s): State<App>, Path((raw, id)): Path<(String, u64)>) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let mut inner = s.lock();
    if inner.live(kind, id).is_none() {
        return not_found(format!("{} not found", capitalised(kind)));
    }
    inner.set_deleted(kind, id, true);
    ok(json!({ "id": id }), Value::Null)
}

fn field_text(r: &Record, field: &str) -> Vec<String> {
    match r.fields.get(field) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("value").and_then(Value::as_str).map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /api/v2/{persons|organizations}/search?term&fields&exact_match`.
pub async fn search(
    State(s): State<App>,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let kind = match kind(&raw) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    let Some(term) = query_value(&pairs, "term")
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return bad_request("Validation failed: term: Required");
    };
    let exact = query_value(&pairs, "exact_match") == Some("true");
    if !exact && term.chars().count() < 2 {
        return bad_request("Validation failed: term: Must be at least 2 characters");
    }
    let limit = match limit(&pairs, MAX_LIMIT) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let fields: Vec<&str> = match query_value(&pairs, "fields") {
        Some(f) => f.split(',').map(str::trim).collect(),
        None => match kind {
            Kind::Person => vec!["name", "email", "phone"],
            Kind::Organization => vec!["name", "address"],
        },
    };
    let term_lower = term.to_lowercase();
    let matches = |text: &str| {
        let text = text.to_lowercase();
        if exact {
            text == term_lower
        } else {
            text.contains(&term_lower)
        }
    };
    let inner = s.lock();
    let items: Vec<Value> = inner
        .records
        .get(&kind)
        .into_iter()
        .flat_map(|t| t.values())
        .filter(|r| !r.deleted)
        .filter(|r| {
            fields.iter().any(|f| {
                let stored = match *f {
                    "email" => "emails",
                    "phone" => "phones",
                    other => other,
                };
                field_text(r, stored).iter().any(|t| matches(t))
            })
        })
        .take(limit)
        .map(|r| {
            json!({
                "result_score": 1.0,
                "item": {
                    "id": r.id,
                    "type": kind.item(),
                    "name": r.fields.get("name").cloned().unwrap_or(Value::Null),
                    "emails": field_text(r, "emails"),
                    "phones": field_text(r, "phones"),
                },
            })
        })
        .collect();
    ok(json!({ "items": items }), json!({ "next_cursor": null }))
}

/// `GET /v1/recents?since_timestamp=YYYY-MM-DD HH:MM:SS&items=person,organization`:
/// changes after the timestamp, oldest first, deleted records with `active_flag: false`.
pub async fn recents(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let Some(since) = query_value(&pairs, "since_timestamp")
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S").ok())
    else {
        return bad_request("since_timestamp is required (YYYY-MM-DD HH:MM:SS)");
    };
    let since_ms = since.and_utc().timestamp_millis();
    let kinds: Vec<Kind> = match query_value(&pairs, "items") {
        Some(items) => items
            .split(',')
            .filter_map(|i| Kind::parse(i.trim()))
            .collect(),
        None => vec![Kind::Person, Kind::Organization],
    };
    let (start, limit) = match (v1_start(&pairs), limit(&pairs, MAX_LIMIT)) {
        (Ok(start), Ok(limit)) => (start, limit),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let inner = s.lock();
    let mut rows: Vec<(Kind, &Record)> = kinds
        .iter()
        .flat_map(|k| {
            inner
                .records
                .get(k)
                .into_iter()
                .flat_map(move |t| t.values().map(move |r| (*k, r)))
        })
        .filter(|(_, r)| r.update_ms >= since_ms)
        .filter(|(_, r)| s.config.recents_include_deleted || !r.deleted)
        .collect();
    rows.sort_by_key(|(k, r)| (r.update_ms, *k, r.id));
    let items = rows
        .iter()
        .map(|(k, r)| json!({ "item": k.item(), "id": r.id, "data": r.to_v1() }))
        .collect();
    v1_page(items, start, limit)
}

/// Unknown routes answer in Pipedrive's error shape.
pub async fn fallback() -> Response {
    error(StatusCode::NOT_FOUND, "Unknown method")
}
