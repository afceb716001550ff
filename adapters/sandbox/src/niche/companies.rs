//! Chatwoot Enterprise's companies (`PROTOCOLS-NICHE.md`, section 2): 25 a page in
//! `{"meta", "payload"}`, sorted by `name`, `domain`, `created_at` or `contacts_count`
//! (`-` first: descending), show wrapped in `{"payload"}`, writes under a `company`
//! root. Timestamps are ISO 8601 here (some Chatwoot versions write Unix seconds; the
//! template reads neither). How an instance without companies answers, and the old
//! unpaginated index, are [`CompaniesMode`]s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::chatwoot::{check, error};
use super::state::{object, stamp, CompaniesMode, NicheState};

/// The companies controller's page size (upstream PR #12840).
const PER_PAGE: usize = 25;

pub fn router() -> Router<Arc<NicheState>> {
    Router::new()
        .route(
            "/api/v1/accounts/{account}/companies",
            get(list).post(create),
        )
        .route(
            "/api/v1/accounts/{account}/companies/{id}",
            get(show).put(update).patch(update).delete(destroy),
        )
}

/// The request's key, account and the instance's mode, or the answer refusing it.
fn admit(state: &NicheState, key: &str, headers: &HeaderMap, account: &str) -> Option<Response> {
    let mode = state.lock().companies_mode;
    match mode {
        // Rails' routing error page: HTML, whatever the client accepts.
        CompaniesMode::Absent => {
            state.admit(key, headers, "api_access_token");
            let page =
                "<html><body><h1>The page you were looking for doesn't exist.</h1></body></html>";
            let html = [(header::CONTENT_TYPE, "text/html; charset=utf-8")];
            return Some((StatusCode::NOT_FOUND, html, page).into_response());
        }
        CompaniesMode::Disabled => {
            if let Some(refused) = check(state, key, headers, account) {
                return Some(refused);
            }
            return Some(error(
                StatusCode::FORBIDDEN,
                "Companies are not enabled for this account",
            ));
        }
        CompaniesMode::Enabled | CompaniesMode::Unpaginated => {}
    }
    check(state, key, headers, account)
}

/// The sort key of a company for `field` (`name`, `domain`, `created_at`,
/// `contacts_count`); text compares case-insensitively.
fn sort_key(record: &Map<String, Value>, field: &str) -> (String, i64) {
    let text = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase()
    };
    let id = record.get("id").and_then(Value::as_i64).unwrap_or(0);
    match field {
        "name" | "domain" | "created_at" => (text(field), id),
        "contacts_count" => {
            let n = record
                .get("contacts_count")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            (format!("{n:020}"), id)
        }
        _ => (String::new(), id),
    }
}

async fn list(
    State(state): State<Arc<NicheState>>,
    Path(account): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&state, "GET companies", &headers, &account) {
        return refused;
    }
    let query: Vec<(String, String)> = raw
        .and_then(|q| serde_urlencoded::from_str(&q).ok())
        .unwrap_or_default();
    let asked = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let page = asked("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    // The facts do not say the default order: newest first here, so a client that
    // does not sort sees pages shift as companies are added.
    let sort = asked("sort").unwrap_or("-created_at");
    let (field, descending) = match sort.strip_prefix('-') {
        Some(field) => (field, true),
        None => (sort, false),
    };
    let inner = state.lock();
    let mut records: Vec<&Map<String, Value>> = inner.companies.values().collect();
    records.sort_by_key(|r| sort_key(r, field));
    if descending {
        records.reverse();
    }
    let count = records.len();
    let payload: Vec<&Map<String, Value>> = match inner.companies_mode {
        CompaniesMode::Unpaginated => records,
        _ => records
            .into_iter()
            .skip((page - 1).saturating_mul(PER_PAGE))
            .take(PER_PAGE)
            .collect(),
    };
    Json(json!({"meta": {"count": count, "current_page": page}, "payload": payload}))
        .into_response()
}

async fn show(
    State(state): State<Arc<NicheState>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&state, "GET company", &headers, &account) {
        return refused;
    }
    match state.lock().companies.get(&id) {
        Some(record) => Json(json!({ "payload": record })).into_response(),
        None => error(StatusCode::NOT_FOUND, "Resource could not be found"),
    }
}

/// The permitted members under the `company` root (`params.require(:company)`).
fn company_params(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    let root = object(body).and_then(|mut b| match b.remove("company") {
        Some(Value::Object(fields)) => Some(fields),
        _ => None,
    });
    let Some(fields) = root else {
        let missing = "param is missing or the value is empty: company";
        return Err(Box::new(error(StatusCode::BAD_REQUEST, missing)));
    };
    // `avatar` is an upload; the rest of the body is not permitted and is dropped.
    Ok(fields
        .into_iter()
        .filter(|(k, _)| matches!(k.as_str(), "name" | "domain" | "description"))
        .collect())
}

fn invalid(message: &str, attribute: &str) -> Response {
    let body = json!({"message": message, "attributes": [attribute]});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

async fn create(
    State(state): State<Arc<NicheState>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&state, "POST companies", &headers, &account) {
        return refused;
    }
    let fields = match company_params(&body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    let named = fields
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.trim().is_empty());
    if !named {
        return invalid("Name can't be blank", "name");
    }
    let company = state.lock().insert_company(Value::Object(fields));
    Json(json!({ "payload": company })).into_response()
}

async fn update(
    State(state): State<Arc<NicheState>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = admit(&state, "PATCH company", &headers, &account) {
        return refused;
    }
    let fields = match company_params(&body) {
        Ok(fields) => fields,
        Err(refused) => return *refused,
    };
    if fields
        .get("name")
        .is_some_and(|n| n.as_str().is_none_or(|n| n.trim().is_empty()))
    {
        return invalid("Name can't be blank", "name");
    }
    let mut inner = state.lock();
    let Some(record) = inner.companies.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Resource could not be found");
    };
    record.extend(fields);
    record.insert("updated_at".into(), json!(stamp(Utc::now().timestamp())));
    Json(json!({ "payload": record.clone() })).into_response()
}

async fn destroy(
    State(state): State<Arc<NicheState>>,
    Path((account, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&state, "DELETE company", &headers, &account) {
        return refused;
    }
    match state.lock().companies.remove(&id) {
        Some(_) => StatusCode::OK.into_response(),
        None => error(StatusCode::NOT_FOUND, "Resource could not be found"),
    }
}

/// `POST /_sandbox/companies`: a company (its `id` kept when given) created or replaced.
pub async fn control_upsert(State(state): State<Arc<NicheState>>, body: Bytes) -> Response {
    match object(&body) {
        Some(record) => Json(state.lock().insert_company(Value::Object(record))).into_response(),
        None => (StatusCode::BAD_REQUEST, "a JSON object is required").into_response(),
    }
}

pub async fn control_get(State(state): State<Arc<NicheState>>, Path(id): Path<String>) -> Response {
    match state.lock().companies.get(&id) {
        Some(record) => Json(record.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn control_delete(
    State(state): State<Arc<NicheState>>,
    Path(id): Path<String>,
) -> StatusCode {
    match state.lock().companies.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    mode: CompaniesMode,
}

/// `POST /_sandbox/companies/mode` `{"mode": "enabled" | "absent" | "disabled" |
/// "unpaginated"}`.
pub async fn control_mode(State(state): State<Arc<NicheState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ModeBody>(&body) {
        Ok(ModeBody { mode }) => {
            state.lock().companies_mode = mode;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
