//! Chatwoot's Application API, contacts (companies: [`super::companies`]): `api_access_token`, pages of 15 in
//! `{"meta": {"count", "current_page"}, "payload": [..]}`, Unix-second `created_at`
//! and no modification time; `custom_attributes` and `additional_attributes` merged
//! on update; errors `{"error": ..}` (401, 404) and `{"message", "attributes"}` (422).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::state::{object, NicheState};
use super::Dialect;

/// Chatwoot's fixed page size (`RESULTS_PER_PAGE`).
const PER_PAGE: usize = 15;

pub fn router() -> Router<Arc<NicheState>> {
    Router::new()
        .route(
            "/api/v1/accounts/{account}/contacts",
            get(list).post(create),
        )
        .route(
            "/api/v1/accounts/{account}/contacts/{id}",
            get(show).put(update).patch(update),
        )
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The request's key and account, or the answer refusing it.
pub(super) fn check(
    state: &NicheState,
    key: &str,
    headers: &HeaderMap,
    account: &str,
) -> Option<Response> {
    if !state.admit(key, headers, "api_access_token") {
        return Some(error(StatusCode::UNAUTHORIZED, "Invalid Access Token"));
    }
    (account != state.config.account_id.to_string())
        .then(|| error(StatusCode::NOT_FOUND, "Resource could not be found"))
}

fn created_at(record: &Map<String, Value>) -> i64 {
    record
        .get("created_at")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn numeric_id(record: &Map<String, Value>) -> u64 {
    record.get("id").and_then(Value::as_u64).unwrap_or(0)
}

async fn list(
    State(state): State<Arc<NicheState>>,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check(&state, "GET contacts", &headers, &account) {
        return refused;
    }
    let query: BTreeMap<String, String> = raw
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let inner = state.lock();
    let mut records: Vec<&Map<String, Value>> = inner.records.values().collect();
    // Sorted as asked (`created_at` or `-created_at`); else most recent activity
    // first, as Chatwoot lists by default.
    match query.get("sort").map(String::as_str) {
        Some("created_at") => records.sort_by_key(|r| (created_at(r), numeric_id(r))),
        _ => records.sort_by_key(|r| std::cmp::Reverse((created_at(r), numeric_id(r)))),
    }
    let count = records.len();
    let payload: Vec<&Map<String, Value>> = records
        .into_iter()
        .skip((page - 1).saturating_mul(PER_PAGE))
        .take(PER_PAGE)
        .collect();
    Json(json!({"meta": {"count": count, "current_page": page}, "payload": payload}))
        .into_response()
}

async fn show(
    State(state): State<Arc<NicheState>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check(&state, "GET contact", &headers, &account) {
        return refused;
    }
    match state.lock().records.get(&id) {
        Some(record) => Json(json!({ "payload": record })).into_response(),
        None => error(StatusCode::NOT_FOUND, "Resource could not be found"),
    }
}

/// The writable members of a body, checked as Chatwoot's model validates them.
fn contact_fields(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    let invalid = |message: &str, attribute: &str| {
        let body = json!({"message": message, "attributes": [attribute]});
        (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
    };
    let Some(fields) = object(body) else {
        return Err(Box::new(invalid("Invalid body", "body")));
    };
    if let Some(Value::String(email)) = fields.get("email") {
        if !email.contains('@') {
            return Err(Box::new(invalid("Email Invalid", "email")));
        }
    }
    let writable = [
        "name",
        "email",
        "phone_number",
        "identifier",
        "blocked",
        "additional_attributes",
        "custom_attributes",
    ];
    Ok(fields
        .into_iter()
        .filter(|(k, _)| writable.contains(&k.as_str()))
        .collect())
}

async fn create(
    State(state): State<Arc<NicheState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check(&state, "POST contacts", &headers, &account) {
        return refused;
    }
    let fields = match contact_fields(&body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let contact = state
        .lock()
        .insert(Dialect::Chatwoot, Value::Object(fields));
    Json(json!({"payload": {"contact": contact, "contact_inbox": {}}})).into_response()
}

async fn update(
    State(state): State<Arc<NicheState>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check(&state, "PUT contact", &headers, &account) {
        return refused;
    }
    let fields = match contact_fields(&body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let mut inner = state.lock();
    let Some(record) = inner.records.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Resource could not be found");
    };
    for (name, value) in fields {
        // The attribute hashes are merged into the stored ones, not replaced.
        match (record.get_mut(&name), value) {
            (Some(Value::Object(stored)), Value::Object(given)) => stored.extend(given),
            (_, value) => {
                record.insert(name, value);
            }
        }
    }
    Json(json!({ "payload": record.clone() })).into_response()
}
