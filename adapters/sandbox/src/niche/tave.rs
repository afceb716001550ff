//! VSCO Workspace's (formerly Tave) address book: `X-API-KEY`, pages of `pageSize`
//! (10 to 100) in `{"type": "addressbook-collection", "meta", "items"}`, `sortBy`
//! (`modified desc` and others), RFC 3339 `created`/`modified`, hidden records left
//! out; `PUT` replaces the whole document; errors
//! `{"type", "title", "detail", "status"}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::state::{object, stamp, NicheState};
use super::Dialect;

pub fn router() -> Router<Arc<NicheState>> {
    Router::new()
        .route("/api/v2/address-book", get(list).post(create))
        .route(
            "/api/v2/address-book/{id}",
            get(show).put(replace).delete(remove),
        )
}

fn error(status: StatusCode, kind: &str, title: &str, detail: Value) -> Response {
    let body = json!({"type": kind, "title": title, "detail": detail, "status": status.as_u16()});
    (status, Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unknown",
        "API key is missing or invalid",
        Value::Null,
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "unknown", "Not found", Value::Null)
}

fn invalid(field: &str, reason: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "validation-error",
        "Validation failed",
        json!({ field: reason }),
    )
}

fn text<'a>(record: &'a Map<String, Value>, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or("")
}

async fn list(
    State(state): State<Arc<NicheState>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !state.admit("GET address-book", &headers, "X-API-KEY") {
        return unauthorized();
    }
    let query: BTreeMap<String, String> = raw
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(&q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let page = match query.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        Some(_) => return invalid("page", "must be an integer of at least 1"),
    };
    let size = match query.get("pageSize").map(|p| p.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (10..=100).contains(&n) => n,
        Some(_) => return invalid("pageSize", "must be between 10 and 100"),
    };
    let size = size.min(state.config.max_page_size.max(1));
    let hidden = query.get("includeHidden").is_some_and(|v| v == "true");
    let inner = state.lock();
    let mut items: Vec<&Map<String, Value>> = inner
        .records
        .values()
        .filter(|r| hidden || !r.get("hidden").and_then(Value::as_bool).unwrap_or(false))
        .collect();
    let key = |r: &&Map<String, Value>| (text(r, "modified").to_owned(), text(r, "id").to_owned());
    match query.get("sortBy").map(String::as_str) {
        None | Some("id" | "id asc") => items.sort_by_key(|r| text(r, "id").to_owned()),
        Some("modified desc") => items.sort_by_key(|r| std::cmp::Reverse(key(r))),
        Some("modified" | "modified asc") => items.sort_by_key(key),
        Some(_) => return invalid("sortBy", "unsupported sort"),
    }
    let total = items.len();
    let rows: Vec<&Map<String, Value>> = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Json(json!({
        "type": "addressbook-collection",
        "meta": {"currentPage": page, "totalPages": total.div_ceil(size),
                 "totalItems": total, "rows": rows.len()},
        "items": rows,
    }))
    .into_response()
}

async fn show(
    State(state): State<Arc<NicheState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.admit("GET address-book/{id}", &headers, "X-API-KEY") {
        return unauthorized();
    }
    match state.lock().records.get(&id) {
        Some(record) => Json(record.clone()).into_response(),
        None => not_found(),
    }
}

/// A person or company document as a write gives it.
fn document(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    let Some(mut doc) = object(body) else {
        return Err(Box::new(invalid("body", "must be a JSON object")));
    };
    if !matches!(text(&doc, "kind"), "person" | "company") {
        return Err(Box::new(invalid("kind", "must be person or company")));
    }
    if let Some(Value::String(email)) = doc.get("email") {
        if !email.contains('@') {
            return Err(Box::new(invalid("email", "is not a valid email address")));
        }
    }
    for server_owned in ["id", "created", "modified"] {
        doc.remove(server_owned);
    }
    Ok(doc)
}

async fn create(State(state): State<Arc<NicheState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.admit("POST address-book", &headers, "X-API-KEY") {
        return unauthorized();
    }
    match document(&body) {
        Ok(doc) => {
            let record = state.lock().insert(Dialect::Tave, Value::Object(doc));
            (StatusCode::CREATED, Json(record)).into_response()
        }
        Err(refused) => *refused,
    }
}

/// `PUT` writes the full document: members left out are gone afterwards.
async fn replace(
    State(state): State<Arc<NicheState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.admit("PUT address-book/{id}", &headers, "X-API-KEY") {
        return unauthorized();
    }
    let mut doc = match document(&body) {
        Ok(doc) => doc,
        Err(refused) => return *refused,
    };
    let mut inner = state.lock();
    let Some(stored) = inner.records.get(&id) else {
        return not_found();
    };
    if text(stored, "kind") != text(&doc, "kind") {
        return invalid("kind", "cannot be changed");
    }
    doc.insert("id".into(), json!(id));
    doc.insert(
        "created".into(),
        stored.get("created").cloned().unwrap_or(Value::Null),
    );
    doc.insert(
        "modified".into(),
        json!(stamp(chrono::Utc::now().timestamp())),
    );
    inner.records.insert(id, doc.clone());
    Json(doc).into_response()
}

async fn remove(
    State(state): State<Arc<NicheState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.admit("DELETE address-book/{id}", &headers, "X-API-KEY") {
        return unauthorized();
    }
    match state.lock().records.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}
