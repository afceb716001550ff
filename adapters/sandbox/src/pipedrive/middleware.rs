//! Pipedrive-shaped errors, request counting with injected faults, and the
//! authentication and rate-limit guard in front of the API.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::Shared;
use super::App;
use crate::faults::{Action, FaultHost};
use crate::ratelimit::{Budget, Decision};
use tokio::sync::watch;

/// Pipedrive's error body: `{success:false, error, error_info, data:null, additional_data:null}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let info = if status == StatusCode::TOO_MANY_REQUESTS {
        "Please slow down your requests."
    } else {
        "Please check developers.pipedrive.com for more information about Pipedrive API."
    };
    let body = json!({
        "success": false,
        "error": message.into(),
        "error_info": info,
        "data": null,
        "additional_data": null,
    });
    (status, Json(body)).into_response()
}

/// A refusal in Pipedrive's error shape, small enough to travel in a `Result`.
#[derive(Debug)]
pub struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    pub fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn missing(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

pub fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

pub fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, message)
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized access")
}

/// `GET /api/v2/persons/{id}`-style keys: numeric segments become `{id}`.
pub fn endpoint_key(method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

impl FaultHost for Shared {
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut inner = self.lock();
        *inner
            .counters
            .entry(endpoint_key(method, path))
            .or_default() += 1;
        inner.faults.take(path)
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return error(status, "Request over limit");
        }
        error(status, "Injected fault")
    }

    const TRUNCATED_BODY: &'static str = r#"{"success":true,"data":[{"id":1,"#;
}

/// The credential of an API call: the API token (query `api_token` or header
/// `x-api-token`) or an OAuth bearer token.
fn credential(req: &Request) -> Option<(String, bool)> {
    if let Some(value) = req.headers().get("x-api-token") {
        return Some((value.to_str().ok()?.trim().to_owned(), true));
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    if let Some((_, token)) = pairs.into_iter().find(|(k, _)| k == "api_token") {
        return Some((token, true));
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| (token.trim().to_owned(), false))
}

fn apply_budget(budget: &Budget, response: &mut Response) {
    let headers = response.headers_mut();
    let reset = budget.interval_ms.div_ceil(1000);
    let pairs = [
        ("x-ratelimit-limit", u64::from(budget.max)),
        ("x-ratelimit-remaining", u64::from(budget.remaining)),
        ("x-ratelimit-reset", reset),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// Authenticates and rate-limits every API call, per token.
pub async fn guard(State(s): State<App>, req: Request, next: Next) -> Response {
    let Some((token, is_api_token)) = credential(&req) else {
        return unauthorized();
    };
    let decision = {
        let mut inner = s.lock();
        let now = Instant::now();
        let valid = if is_api_token {
            token == s.config.api_token
        } else {
            inner.auth.is_valid(&token, now)
        };
        if !valid {
            return unauthorized();
        }
        inner.limits.check(&token, false, now)
    };
    match decision {
        Decision::Off => next.run(req).await,
        Decision::Allowed(budget) => {
            let mut response = next.run(req).await;
            apply_budget(&budget, &mut response);
            response
        }
        Decision::Denied(budget, _) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Request over limit");
            apply_budget(&budget, &mut response);
            let retry = HeaderValue::from(budget.interval_ms.div_ceil(1000));
            response.headers_mut().insert(header::RETRY_AFTER, retry);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_hide_ids() {
        assert_eq!(
            endpoint_key(&Method::PATCH, "/api/v2/persons/42"),
            "PATCH /api/v2/persons/{id}"
        );
        assert_eq!(
            endpoint_key(&Method::GET, "/api/v2/persons/search"),
            "GET /api/v2/persons/search"
        );
    }
}
