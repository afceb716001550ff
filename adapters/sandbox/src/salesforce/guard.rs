//! Middleware: request counting and injected faults around everything, and in
//! front of REST the session check, the daily quota and the rolling budget.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::SfError;
use super::oauth::bearer;
use super::state::AppState;
use super::RollingLimitStatus;
use crate::faults::{Action, FaultHost};
use crate::ratelimit::Decision;
use tokio::sync::watch;

/// The message of the concurrent-request limit.
const CONCURRENT: &str = "ConcurrentRequests (Concurrent API Requests) Limit exceeded.";

impl FaultHost for super::state::Shared {
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

    const TRUNCATED_BODY: &'static str = r#"{"totalSize":1,"done":false,"records":[{"#;
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
