//! Listing in the four pagination styles, and per-record writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::state::{query, GenericState, Kind, Rec, Stamp};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Cursor,
    Offset,
    Page,
    Link,
}

impl Style {
    fn parse(name: &str) -> Option<Style> {
        match name {
            "cursor" => Some(Style::Cursor),
            "offset" => Some(Style::Offset),
            "page" => Some(Style::Page),
            "link" => Some(Style::Link),
            _ => None,
        }
    }

    fn stamp(self) -> Stamp {
        match self {
            Style::Cursor | Style::Link => Stamp::Rfc3339,
            Style::Offset => Stamp::UnixSeconds,
            Style::Page => Stamp::UnixMillis,
        }
    }
}

/// An error response, small enough to travel in a `Result`.
struct Fail(StatusCode, Value);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// The sandbox's error body: `{"message": .., "code": ..}`.
fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Fail {
    Fail(status, json!({ "message": message.into(), "code": code }))
}

fn not_found() -> Fail {
    fail(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

fn route(style: &str, entity: &str) -> Result<(Style, Kind), Fail> {
    match (Style::parse(style), Kind::parse(entity)) {
        (Some(style), Some(kind)) => Ok((style, kind)),
        _ => Err(not_found()),
    }
}

/// `updated_since` as RFC 3339, or as an integer in the style's own unit.
fn parse_since(style: Style, raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let n: i64 = raw.parse().ok()?;
    match style.stamp() {
        Stamp::UnixMillis => Utc.timestamp_millis_opt(n).single(),
        _ => Utc.timestamp_opt(n, 0).single(),
    }
}

fn number(params: &BTreeMap<String, String>, name: &str, default: usize) -> Result<usize, Fail> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("{name} must be a non-negative integer"),
            )
        }),
    }
}

pub async fn list(
    State(s): State<Arc<GenericState>>,
    Path((style, entity)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    match list_inner(&s, &style, &entity, raw.as_deref()) {
        Ok(response) => response,
        Err(fail) => fail.into_response(),
    }
}

fn list_inner(
    s: &GenericState,
    style: &str,
    entity: &str,
    raw: Option<&str>,
) -> Result<Response, Fail> {
    let (style, kind) = route(style, entity)?;
    let params = query(raw);
    let since = match params.get("updated_since") {
        None => None,
        Some(v) => Some(parse_since(style, v).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "updated_since is not a valid timestamp",
            )
        })?),
    };
    let max = s.config.max_page_size.max(1);
    let all: Vec<Rec> = {
        let inner = s.lock();
        inner
            .records
            .get(&kind)
            .map(|m| {
                m.values()
                    .filter(|r| since.is_none_or(|t| r.updated >= t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let render = |records: &[Rec]| -> Vec<Value> {
        records.iter().map(|r| r.to_json(style.stamp())).collect()
    };
    match style {
        Style::Cursor => {
            let limit = number(&params, "limit", 10)?.clamp(1, max);
            let stuck = params.get("stuck").is_some_and(|v| v == "1");
            let after = match params.get("cursor").map(String::as_str) {
                None | Some("") => 0,
                Some("stuck") if stuck => 0,
                Some(c) => c
                    .strip_prefix("after_")
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        fail(StatusCode::BAD_REQUEST, "invalid_cursor", "unknown cursor")
                    })?,
            };
            let rest: Vec<Rec> = all.into_iter().filter(|r| r.id > after).collect();
            let page: Vec<Rec> = rest.iter().take(limit).cloned().collect();
            let next = if stuck {
                Some("stuck".to_owned())
            } else if rest.len() > page.len() {
                page.last().map(|r| format!("after_{}", r.id))
            } else {
                None
            };
            Ok(Json(json!({
                "data": { "items": render(&page) },
                "meta": { "next": next },
            }))
            .into_response())
        }
        Style::Offset => {
            let offset = number(&params, "offset", 0)?;
            let limit = number(&params, "limit", 10)?.clamp(1, max);
            let page: Vec<Rec> = all.iter().skip(offset).take(limit).cloned().collect();
            Ok(Json(json!({ "results": render(&page), "total": all.len() })).into_response())
        }
        Style::Page => {
            let number_ = number(&params, "page", 1)?.max(1);
            let size = number(&params, "per_page", 10)?.clamp(1, max);
            let skip = (number_ - 1).saturating_mul(size);
            let page: Vec<Rec> = all.iter().skip(skip).take(size).cloned().collect();
            Ok(Json(Value::Array(render(&page))).into_response())
        }
        Style::Link => {
            let number_ = number(&params, "page", 1)?.max(1);
            let size = number(&params, "per_page", 10)?.clamp(1, max);
            let skip = (number_ - 1).saturating_mul(size);
            let page: Vec<Rec> = all.iter().skip(skip).take(size).cloned().collect();
            let body = Json(json!({ "items": render(&page) }));
            if skip.saturating_add(page.len()) >= all.len() {
                return Ok(body.into_response());
            }
            let host = params
                .get("next_host")
                .cloned()
                .unwrap_or_else(|| s.base_url.clone());
            let mut next: Vec<(String, String)> = vec![
                ("page".into(), (number_ + 1).to_string()),
                ("per_page".into(), size.to_string()),
            ];
            // Like many APIs, the link echoes the query-string API key.
            for keep in ["updated_since", "next_host", "api_key"] {
                if let Some(v) = params.get(keep) {
                    next.push((keep.into(), v.clone()));
                }
            }
            let encoded = serde_urlencoded::to_string(&next).unwrap_or_default();
            let link = format!(
                "<{host}/link/{entity}?{encoded}>; rel=\"next\"",
                entity = entity_name(kind)
            );
            Ok(([(header::LINK, link)], body).into_response())
        }
    }
}

fn entity_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Contacts => "contacts",
        Kind::Companies => "companies",
    }
}

/// The attributes of a write body: under `attributes`, else the top-level object,
/// in either case possibly wrapped in `record`. Strings are kept, null clears,
/// other scalars are stringified.
fn attributes(body: &[u8]) -> Result<BTreeMap<String, String>, Fail> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        fail(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON",
        )
    })?;
    let value = value.get("record").cloned().unwrap_or(value);
    let object = value
        .get("attributes")
        .cloned()
        .unwrap_or(value)
        .as_object()
        .cloned()
        .ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "the body must be a JSON object",
            )
        })?;
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Contacts need a plausible email, companies a name.
fn validate(kind: Kind, attrs: &BTreeMap<String, String>, creating: bool) -> Result<(), Fail> {
    let invalid = |field: &str, message: &str| {
        let body = json!({ "message": message, "code": "validation_failed", "field": field });
        Fail(StatusCode::UNPROCESSABLE_ENTITY, body)
    };
    match kind {
        Kind::Contacts => match attrs.get("email") {
            Some(email) if !email.contains('@') => Err(invalid("email", "email is invalid")),
            None if creating => Err(invalid("email", "email is required")),
            _ => Ok(()),
        },
        Kind::Companies => match attrs.get("name") {
            Some(name) if name.trim().is_empty() => Err(invalid("name", "name is required")),
            None if creating => Err(invalid("name", "name is required")),
            _ => Ok(()),
        },
    }
}

pub async fn create(
    State(s): State<Arc<GenericState>>,
    Path((style, entity)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Response, Fail> {
        let (style, kind) = route(&style, &entity)?;
        let attrs = attributes(&body)?;
        validate(kind, &attrs, true)?;
        let rec = s.lock().create(kind, attrs);
        Ok((StatusCode::CREATED, Json(rec.to_json(style.stamp()))).into_response())
    };
    match run() {
        Ok(r) => r,
        Err(fail) => fail.into_response(),
    }
}

fn parse_id(id: &str) -> Result<u64, Fail> {
    id.parse().map_err(|_| not_found())
}

pub async fn get_one(
    State(s): State<Arc<GenericState>>,
    Path((style, entity, id)): Path<(String, String, String)>,
) -> Response {
    let run = || -> Result<Response, Fail> {
        let (style, kind) = route(&style, &entity)?;
        let id = parse_id(&id)?;
        let rec = s
            .lock()
            .records
            .get(&kind)
            .and_then(|m| m.get(&id).cloned())
            .ok_or_else(not_found)?;
        Ok(Json(rec.to_json(style.stamp())).into_response())
    };
    match run() {
        Ok(r) => r,
        Err(fail) => fail.into_response(),
    }
}

pub async fn update(
    State(s): State<Arc<GenericState>>,
    Path((style, entity, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Response, Fail> {
        let (style, kind) = route(&style, &entity)?;
        let id = parse_id(&id)?;
        let attrs = attributes(&body)?;
        validate(kind, &attrs, false)?;
        let rec = s.lock().update(kind, id, attrs).ok_or_else(not_found)?;
        Ok(Json(rec.to_json(style.stamp())).into_response())
    };
    match run() {
        Ok(r) => r,
        Err(fail) => fail.into_response(),
    }
}
