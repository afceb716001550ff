//! The records a niche sandbox holds, its counters, and its control API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Dialect, NicheSandboxConfig};
use crate::faults::{Action, FaultHost, FaultQueue};
use crate::grants::TokenPair;
use tokio::sync::watch;

/// How the instance answers its companies routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompaniesMode {
    /// Enterprise with the feature on: paged as upstream does now.
    #[default]
    Enabled,
    /// A Community-edition instance: the routes do not exist (Rails' 404 page).
    Absent,
    /// A newer Enterprise instance with the account's `companies` feature off: 403.
    Disabled,
    /// The version whose index ignores `page` and lists every company.
    Unpaginated,
}

pub struct NicheState {
    pub config: NicheSandboxConfig,
    inner: Mutex<Inner>,
    /// Flips when the sandbox stops (ends a held `timeout` fault).
    pub stopped: watch::Receiver<bool>,
}

#[derive(Default)]
pub struct Inner {
    /// By id.
    pub records: BTreeMap<String, Map<String, Value>>,
    next_id: u64,
    /// Chatwoot's companies, by id.
    pub companies: BTreeMap<String, Map<String, Value>>,
    next_company_id: u64,
    pub companies_mode: CompaniesMode,
    pub counters: BTreeMap<String, u64>,
    pub faults: FaultQueue,
}

/// Where seeded timestamps start: 2024-01-01T00:00:00Z.
const SEED_EPOCH: i64 = 1_704_067_200;
/// Seconds between seeded timestamp groups: an hour, so that a client's overlap of
/// a few minutes reaches only the group it is in.
const SEED_SPACING: i64 = 3_600;

impl NicheState {
    pub fn new(config: NicheSandboxConfig, stopped: watch::Receiver<bool>) -> Self {
        let mut inner = Inner {
            companies_mode: config.companies_mode,
            ..Inner::default()
        };
        let group = i64::try_from(config.same_timestamp_group.max(1)).unwrap_or(1);
        let at = |i: usize| SEED_EPOCH + i64::try_from(i).unwrap_or(0) / group * SEED_SPACING;
        for i in 0..config.records {
            let record = match config.dialect {
                Dialect::Chatwoot => json!({
                    "name": format!("Contact {i}"), "email": format!("contact{i}@example.org"),
                    "phone_number": null, "identifier": null, "blocked": false,
                    "additional_attributes": {"city": "Lyon"}, "custom_attributes": {},
                    "created_at": at(i), "last_activity_at": null,
                }),
                Dialect::Tave => json!({
                    "kind": "person", "firstName": format!("First{i}"),
                    "lastName": format!("Last{i}"), "email": format!("person{i}@example.org"),
                    "cellPhone": null, "hidden": false, "brandId": "brand-1",
                    "created": stamp(at(i)), "modified": stamp(at(i)),
                }),
            };
            inner.insert(config.dialect, record);
        }
        if config.dialect == Dialect::Tave {
            for i in 0..config.records / 2 {
                let record = json!({
                    "kind": "company", "name": format!("Company {i}"),
                    "email": format!("office{i}@company.example"), "phone": null,
                    "hidden": false, "created": stamp(at(i)), "modified": stamp(at(i)),
                });
                inner.insert(config.dialect, record);
            }
        }
        if config.dialect == Dialect::Chatwoot {
            for i in 0..config.companies {
                let record = json!({
                    "name": format!("Company {i}"), "domain": format!("company{i}.example"),
                    "description": null, "avatar_url": "", "contacts_count": i % 4,
                    "created_at": stamp(at(i)), "updated_at": stamp(at(i)),
                });
                inner.insert_company(record);
            }
        }
        Self {
            config,
            inner: Mutex::new(inner),
            stopped,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request under `key` and says whether it carries the key in `header`.
    pub fn admit(&self, key: &str, headers: &axum::http::HeaderMap, header: &str) -> bool {
        *self.lock().counters.entry(key.to_owned()).or_default() += 1;
        headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.config.api_key)
    }
}

/// Tave's timestamp: UTC, whole seconds, `Z`.
pub fn stamp(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Inner {
    /// Stores `record` (a JSON object), giving it an id and timestamps where it has
    /// none; returns it.
    pub fn insert(&mut self, dialect: Dialect, record: Value) -> Map<String, Value> {
        let mut record = match record {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let now = Utc::now().timestamp();
        let id = match record.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                self.next_id += 1;
                match dialect {
                    Dialect::Chatwoot => self.next_id.to_string(),
                    Dialect::Tave => format!("01hq{:022}", self.next_id),
                }
            }
        };
        if let Ok(n) = id.parse::<u64>() {
            self.next_id = self.next_id.max(n);
        }
        match dialect {
            Dialect::Chatwoot => {
                let numeric = id.parse::<u64>().map_or(json!(id), |n| json!(n));
                record.insert("id".into(), numeric);
                record.entry("created_at").or_insert(json!(now));
            }
            Dialect::Tave => {
                record.insert("id".into(), json!(id));
                record.entry("created").or_insert(json!(stamp(now)));
                record.entry("modified").or_insert(json!(stamp(now)));
            }
        }
        self.records.insert(id, record.clone());
        record
    }
}

impl Inner {
    /// Stores a Chatwoot company (a JSON object), giving it a numeric id and ISO 8601
    /// timestamps where it has none; returns it.
    pub fn insert_company(&mut self, record: Value) -> Map<String, Value> {
        let mut record = match record {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let id = match record.get("id").and_then(Value::as_u64) {
            Some(id) => id,
            None => self.next_company_id + 1,
        };
        self.next_company_id = self.next_company_id.max(id);
        let now = json!(stamp(Utc::now().timestamp()));
        record.insert("id".into(), json!(id));
        for member in ["created_at", "updated_at"] {
            record.entry(member).or_insert(now.clone());
        }
        record.entry("contacts_count").or_insert(json!(0));
        self.companies.insert(id.to_string(), record.clone());
        record
    }
}

/// The counter a request is counted under (what its handler's `admit` uses): `GET
/// contacts`, `PUT contact`, `PATCH company`, `GET address-book/{id}`, ...
fn counter_key(method: &Method, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (noun, one) = match segments.as_slice() {
        ["api", "v1", "accounts", _, noun] => (*noun, false),
        ["api", "v1", "accounts", _, noun, _] => (*noun, true),
        ["api", "v2", "address-book"] => return Some(format!("{method} address-book")),
        ["api", "v2", "address-book", _] => return Some(format!("{method} address-book/{{id}}")),
        _ => return None,
    };
    let verb = match (noun, method.as_str()) {
        ("contacts", "PATCH") => "PUT",
        ("companies", "PUT") => "PATCH",
        (_, verb) => verb,
    };
    let noun = match (noun, one) {
        ("contacts", true) => "contact",
        ("companies", true) => "company",
        (noun, _) => noun,
    };
    Some(format!("{verb} {noun}"))
}

/// Faults are taken per path. Requests reaching a handler are counted there (`admit`);
/// a faulted one is counted here, under the same name, as the other sandboxes do.
impl FaultHost for NicheState {
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut inner = self.lock();
        let action = inner.faults.take(path)?;
        if let Some(key) = counter_key(method, path) {
            *inner.counters.entry(key).or_default() += 1;
        }
        Some(action)
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        let mut response = match self.config.dialect {
            Dialect::Chatwoot => (status, Json(json!({"error": "injected fault"}))).into_response(),
            Dialect::Tave => {
                let body = json!({"type": "unknown", "title": "injected fault",
                    "detail": null, "status": status.as_u16()});
                (status, Json(body)).into_response()
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        }
        response
    }

    const TRUNCATED_BODY: &'static str = r#"{"meta":{"count":3},"payload":[{"id":"#;
}

/// `POST /_sandbox/faults`: the shared fault JSON (one fault or a list).
pub async fn control_faults(State(state): State<Arc<NicheState>>, body: Bytes) -> Response {
    match crate::control_body::faults(&body) {
        Ok(specs) => {
            let mut inner = state.lock();
            specs.into_iter().for_each(|spec| inner.faults.push(spec));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub async fn control_clear_faults(State(state): State<Arc<NicheState>>) -> StatusCode {
    state.lock().faults.clear();
    StatusCode::NO_CONTENT
}

impl crate::Simulator for NicheState {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Neither vendor's API uses OAuth: there are no tokens to issue.
    fn issue_tokens(&self) -> TokenPair {
        TokenPair {
            access_token: String::new(),
            refresh_token: String::new(),
            expires_in: 0,
            token_type: String::new(),
            token_use: String::new(),
            hub_id: 0,
        }
    }
}

/// A JSON object body, or `None`.
pub fn object(body: &Bytes) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

pub async fn control_upsert(State(state): State<Arc<NicheState>>, body: Bytes) -> Response {
    match object(&body) {
        Some(record) => {
            let dialect = state.config.dialect;
            Json(state.lock().insert(dialect, Value::Object(record))).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "a JSON object is required").into_response(),
    }
}

pub async fn control_get(State(state): State<Arc<NicheState>>, Path(id): Path<String>) -> Response {
    match state.lock().records.get(&id) {
        Some(record) => Json(record.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn control_delete(
    State(state): State<Arc<NicheState>>,
    Path(id): Path<String>,
) -> StatusCode {
    match state.lock().records.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

pub async fn control_counters(State(state): State<Arc<NicheState>>) -> Json<Value> {
    Json(json!(state.lock().counters.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulted_requests_count_under_their_handlers_names() {
        let key = |m: Method, p: &str| counter_key(&m, p);
        assert_eq!(
            key(Method::GET, "/api/v1/accounts/7/companies").as_deref(),
            Some("GET companies")
        );
        assert_eq!(
            key(Method::PUT, "/api/v1/accounts/7/companies/3").as_deref(),
            Some("PATCH company")
        );
        assert_eq!(
            key(Method::PATCH, "/api/v1/accounts/7/contacts/3").as_deref(),
            Some("PUT contact")
        );
        assert_eq!(
            key(Method::GET, "/api/v2/address-book/01hq").as_deref(),
            Some("GET address-book/{id}")
        );
        assert_eq!(key(Method::GET, "/elsewhere"), None);
    }
}
