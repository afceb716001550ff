//! Rolling-window rate limits per token, with HubSpot's headers and 429 bodies.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::RateLimit;

/// Search has its own budget: 4 requests per second per token.
const SEARCH: RateLimit = RateLimit {
    max: 4,
    interval_ms: 1000,
};

pub struct RateLimiter {
    config: Option<RateLimit>,
    general: HashMap<String, VecDeque<Instant>>,
    search: HashMap<String, VecDeque<Instant>>,
}

#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub max: u32,
    pub remaining: u32,
    pub interval_ms: u64,
}

pub enum Decision {
    Off,
    Allowed(Budget),
    Denied(Budget, Policy),
}

#[derive(Clone, Copy, Debug)]
pub enum Policy {
    TenSecondly,
    Secondly,
}

fn prune(window: &mut VecDeque<Instant>, limit: RateLimit, now: Instant) {
    let span = Duration::from_millis(limit.interval_ms);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= span)
    {
        window.pop_front();
    }
}

fn used(window: &VecDeque<Instant>) -> u32 {
    u32::try_from(window.len()).unwrap_or(u32::MAX)
}

impl RateLimiter {
    pub fn new(config: Option<RateLimit>) -> Self {
        Self {
            config,
            general: HashMap::new(),
            search: HashMap::new(),
        }
    }

    /// Replaces the limit and forgets past requests.
    pub fn set(&mut self, config: Option<RateLimit>) {
        *self = Self::new(config);
    }

    /// Admits the request and records it, or denies it without recording.
    pub fn check(&mut self, token: &str, is_search: bool, now: Instant) -> Decision {
        let Some(limit) = self.config else {
            return Decision::Off;
        };
        let general = self.general.entry(token.to_string()).or_default();
        prune(general, limit, now);
        let budget = |n: u32| Budget {
            max: limit.max,
            remaining: limit.max.saturating_sub(n),
            interval_ms: limit.interval_ms,
        };
        if used(general) >= limit.max {
            return Decision::Denied(budget(used(general)), Policy::TenSecondly);
        }
        if is_search {
            let search = self.search.entry(token.to_string()).or_default();
            prune(search, SEARCH, now);
            if used(search) >= SEARCH.max {
                return Decision::Denied(budget(used(general)), Policy::Secondly);
            }
            search.push_back(now);
        }
        general.push_back(now);
        Decision::Allowed(budget(used(general)))
    }
}

impl Budget {
    pub fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        let pairs = [
            ("X-HubSpot-RateLimit-Max", u64::from(self.max)),
            ("X-HubSpot-RateLimit-Remaining", u64::from(self.remaining)),
            (
                "X-HubSpot-RateLimit-Interval-Milliseconds",
                self.interval_ms,
            ),
        ];
        for (name, value) in pairs {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// The 429 body HubSpot sends for the given policy.
pub fn too_many(policy: Policy) -> Response {
    let (message, name) = match policy {
        Policy::TenSecondly => (
            "You have reached your ten_secondly_rolling limit.",
            "TEN_SECONDLY_ROLLING",
        ),
        Policy::Secondly => ("You have reached your secondly limit.", "SECONDLY"),
    };
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "policyName": name,
    });
    (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
}
