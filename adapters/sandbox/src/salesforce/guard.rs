//! Middleware: request counting and injected faults around everything, and in
//! front of REST the session check, the daily quota and the rolling budget.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::SfError;
use super::oauth::bearer;
use super::state::AppState;
use super::RollingLimitStatus;
use crate::faults::Action;
use crate::ratelimit::Decision;
use crate::state::wait_stop;

/// The message of the concurrent-request limit.
const CONCURRENT: &str = "ConcurrentRequests (Concurrent API Requests) Limit exceeded.";

/// Counts the request per endpoint, then applies a pending fault if one matches.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sandbox") {
        return next.run(req).await;
    }
    let action = {
        let mut inner = s.lock();
        *inner
            .counters
            .entry(endpoint_key(req.method(), &path))
            .or_default() += 1;
        inner.faults.take(&path)
    };
    match action {
        None => next.run(req).await,
        Some(action) => apply(&s, action, req, next).await,
    }
}

async fn apply(s: &AppState, action: Action, req: Request, next: Next) -> Response {
    match action {
        Action::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (code, message) = match status.as_u16() {
                429 => ("REQUEST_LIMIT_EXCEEDED", CONCURRENT),
                503 => ("SERVER_UNAVAILABLE", "Server temporarily unavailable."),
                _ => (
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred (injected fault).",
                ),
            };
            SfError::new(status, code, message).into_response()
        }
        Action::Timeout(hold_ms) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(hold_ms)) => {}
                _ = wait_stop(s.stopped.clone()) => {}
            }
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Action::Slow(millis) => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            next.run(req).await
        }
        Action::MalformedJson => {
            let (mut parts, _) = next.run(req).await.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Response::from_parts(
                parts,
                Body::from(r#"{"totalSize":1,"done":false,"records":[{"#),
            )
        }
    }
}

/// Session check, daily quota and rolling budget for `/services/data/...`.
pub async fn rest(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return SfError::invalid_session().into_response();
    };
    let (decision, usage) = {
        let mut inner = s.lock();
        if !inner.auth.is_valid(&token) {
            return SfError::invalid_session().into_response();
        }
        if inner.daily_used >= inner.daily_limit {
            let usage = (inner.daily_used, inner.daily_limit);
            return with_usage(SfError::daily_limit().into_response(), usage);
        }
        let decision = inner.limits.check(&token, false, Instant::now());
        if !matches!(decision, Decision::Denied(..)) {
            inner.daily_used += 1;
        }
        (decision, (inner.daily_used, inner.daily_limit))
    };
    let response = match decision {
        Decision::Denied(..) => rolling_denied(s.config.rate_limit_status),
        Decision::Off | Decision::Allowed(_) => next.run(req).await,
    };
    with_usage(response, usage)
}

fn rolling_denied(status: RollingLimitStatus) -> Response {
    let error = match status {
        RollingLimitStatus::ServiceUnavailable => SfError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Too many requests for this session; try again shortly.",
        ),
        RollingLimitStatus::TooManyRequests => SfError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "REQUEST_LIMIT_EXCEEDED",
            CONCURRENT,
        ),
        RollingLimitStatus::ConcurrentForbidden => {
            SfError::new(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", CONCURRENT)
        }
    };
    error.into_response()
}

/// `Sforce-Limit-Info: api-usage=N/LIMIT`, on every REST response.
fn with_usage(mut response: Response, (used, limit): (u32, u32)) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("api-usage={used}/{limit}")) {
        response.headers_mut().insert("Sforce-Limit-Info", value);
    }
    response
}

/// `GET /services/data/v60.0/query/{locator}`-style keys: ids and locators
/// become placeholders, the rest of the path stays.
pub fn endpoint_key(method: &Method, path: &str) -> String {
    let mut segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let data = segments.get(1..3) == Some(&["services", "data"][..]);
    if data {
        match segments.get(4).copied() {
            Some("query") if segments.len() > 5 => segments[5] = "{locator}",
            Some("sobjects")
                if segments.len() > 6
                    && !matches!(segments[6], "describe" | "deleted" | "updated") =>
            {
                segments[6] = "{id}";
            }
            _ => {}
        }
    }
    format!("{method} {}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_hide_ids_and_locators() {
        let key = |m: Method, p: &str| endpoint_key(&m, p);
        assert_eq!(
            key(
                Method::GET,
                "/services/data/v60.0/query/01g5g0000000000001-200"
            ),
            "GET /services/data/v60.0/query/{locator}"
        );
        assert_eq!(
            key(Method::GET, "/services/data/v60.0/query"),
            "GET /services/data/v60.0/query"
        );
        assert_eq!(
            key(
                Method::GET,
                "/services/data/v60.0/sobjects/Account/0015g0000000000001"
            ),
            "GET /services/data/v60.0/sobjects/Account/{id}"
        );
        assert_eq!(
            key(
                Method::GET,
                "/services/data/v60.0/sobjects/Contact/deleted/"
            ),
            "GET /services/data/v60.0/sobjects/Contact/deleted"
        );
        assert_eq!(
            key(
                Method::PATCH,
                "/services/data/v60.0/composite/sobjects/Contact/Email"
            ),
            "PATCH /services/data/v60.0/composite/sobjects/Contact/Email"
        );
    }
}
