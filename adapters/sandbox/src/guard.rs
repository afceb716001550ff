//! Bearer authentication and rate limiting in front of every CRM endpoint.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::ratelimit::{too_many, Decision};
use crate::state::AppState;

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The counter of requests refused with 429 by the rate limits (not faults).
pub const RATE_LIMITED: &str = "/_sandbox/refused/429";

pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return ApiError::unauthorized().into_response();
    };
    let is_search = req.method() == Method::POST && req.uri().path().ends_with("/search");
    let decision = {
        let mut inner = s.lock();
        let now = Instant::now();
        let is_static = s.config.static_token.as_deref() == Some(token.as_str());
        if !is_static && !inner.auth.is_valid(&token, now) {
            return ApiError::unauthorized().into_response();
        }
        let decision = inner.limits.check(&token, is_search, now);
        if matches!(decision, Decision::Denied(..)) {
            *inner.counters.entry(RATE_LIMITED.to_owned()).or_default() += 1;
        }
        decision
    };
    match decision {
        Decision::Off => next.run(req).await,
        Decision::Allowed(budget) => {
            let mut response = next.run(req).await;
            budget.apply(&mut response);
            response
        }
        Decision::Denied(budget, policy) => {
            let mut response = too_many(policy);
            budget.apply(&mut response);
            response
        }
    }
}
