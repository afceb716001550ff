//! A simulator of Zoho CRM: the accounts server (`/oauth/v2/auth`, `/oauth/v2/token`,
//! `/oauth/v2/token/revoke`) and the v8 API (`/crm/v8/{Contacts|Accounts}` with its
//! mandatory `fields`, page/per_page up to 2,000 rows then `page_token`,
//! `If-Modified-Since`, 204 and 304, `/deleted`, `/upsert` and updates with per-record
//! results, field metadata, `/org`), Zoho's error bodies, API credits and a
//! concurrency-style rate limit, faults and counters.
//!
//! One listener plays every data centre's hosts: the authorization redirect names it as
//! `accounts-server` and token responses name it as `api_domain`, unless the control
//! API says otherwise (to play a hostile or misconfigured server).

mod api;
mod control;
mod oauth;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::faults::{Action, FaultHost};
use crate::ratelimit::Decision;
use crate::{RateLimit, Sandbox, Simulator, TokenPair};

type App = Arc<state::Shared>;

/// How the Zoho sandbox is seeded and which credentials it accepts.
#[derive(Clone)]
pub struct ZohoSandboxConfig {
    pub addr: SocketAddr,
    /// Records seeded per module (Contacts and Accounts).
    pub records: usize,
    pub seed: u64,
    pub client_id: String,
    pub client_secret: String,
    /// Zoho's access tokens live an hour.
    pub access_token_ttl_secs: u64,
    /// Per access token; `None` turns it off. Stands for Zoho's concurrency limit:
    /// beyond it, 429 `TOO_MANY_REQUESTS`.
    pub rate_limit: Option<RateLimit>,
    /// API credits per rolling day (one per call); past them, 429 `LIMIT_EXCEEDED`.
    pub daily_credits: u32,
    /// Consecutive seeded records sharing one `Modified_Time`.
    pub same_timestamp_group: usize,
    pub org_id: u64,
}

impl Default for ZohoSandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            records: 100,
            seed: 42,
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            access_token_ttl_secs: 3600,
            rate_limit: None,
            daily_credits: 5_000_000,
            same_timestamp_group: 25,
            org_id: 700_100_200,
        }
    }
}

// The secret stays out of logs.
impl std::fmt::Debug for ZohoSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZohoSandboxConfig")
            .field("addr", &self.addr)
            .field("records", &self.records)
            .field("seed", &self.seed)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("rate_limit", &self.rate_limit)
            .field("daily_credits", &self.daily_credits)
            .field("same_timestamp_group", &self.same_timestamp_group)
            .finish_non_exhaustive()
    }
}

impl Simulator for state::Shared {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Zoho has no hub id; the org id takes its place.
    fn issue_tokens(&self) -> TokenPair {
        let ttl = self.config.access_token_ttl_secs;
        let (access_token, refresh_token) = self.lock().auth.grant(ttl);
        TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl,
            token_type: "Bearer".into(),
            token_use: "access_token".into(),
            hub_id: self.config.org_id,
        }
    }
}

impl Sandbox {
    /// Binds `config.addr`, seeds Contacts and Accounts and serves Zoho's accounts
    /// server and API on one listener until shutdown.
    pub async fn start_zoho(config: ZohoSandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(state::Shared::new(
            config,
            base_url.clone(),
            stopped.clone(),
        ));
        let app = router(state.clone());
        Ok(Self::serve(listener, base_url, app, state, stop, stopped))
    }
}

fn router(state: App) -> Router {
    let api = Router::new()
        .route("/crm/v8/org", get(api::org))
        .route("/crm/v8/settings/fields", get(api::fields))
        .route(
            "/crm/v8/{module}",
            get(api::list).post(api::insert).put(api::update),
        )
        .route("/crm/v8/{module}/upsert", post(api::upsert))
        .route("/crm/v8/{module}/deleted", get(api::deleted))
        .route_layer(from_fn_with_state(state.clone(), guard));
    let accounts = Router::new()
        .route("/oauth/v2/auth", get(oauth::authorize))
        .route("/oauth/v2/token", post(oauth::token))
        .route("/oauth/v2/token/revoke", post(oauth::revoke));
    let control = Router::new()
        .route("/_sandbox/records/{module}", post(control::upsert_record))
        .route(
            "/_sandbox/records/{module}/{id}",
            get(control::get_record).delete(control::delete_record),
        )
        .route("/_sandbox/tokens", post(control::issue_tokens))
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .route("/_sandbox/rate-limit", post(control::set_rate_limit))
        .route("/_sandbox/credits", post(control::set_credits))
        .route("/_sandbox/oauth/hosts", post(control::set_hosts))
        .route(
            "/_sandbox/faults",
            post(control::add_faults).delete(control::clear_faults),
        )
        .route("/_sandbox/counters", get(control::counters))
        .route("/_sandbox/counters/reset", post(control::reset_counters));
    api.merge(accounts)
        .merge(control)
        .fallback(api::fallback)
        .layer(from_fn_with_state(
            state.clone(),
            crate::faults::track::<state::Shared>,
        ))
        .with_state(state)
}

/// Zoho's error body: `{"code", "details", "message", "status": "error"}`.
pub fn error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    let body = json!({"code": code, "details": details, "message": message, "status": "error"});
    (status, Json(body)).into_response()
}

/// A refusal in Zoho's error shape, small enough to travel in a `Result`.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: &str, details: Value) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
            details,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message, self.details)
    }
}

fn invalid_token() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
        "invalid oauth token",
        json!({}),
    )
}

fn too_many() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        "too many requests",
        json!({}),
    )
}

/// `GET /crm/v8/Contacts/deleted`-style keys; record ids would be `{id}`.
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

impl FaultHost for state::Shared {
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut data = self.lock();
        *data.counters.entry(endpoint_key(method, path)).or_default() += 1;
        data.faults.take(path)
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        match status {
            StatusCode::TOO_MANY_REQUESTS => too_many(),
            StatusCode::UNAUTHORIZED => invalid_token(),
            _ => error(status, "INTERNAL_ERROR", "Internal Server Error", json!({})),
        }
    }

    const TRUNCATED_BODY: &'static str = r#"{"data":[{"id":"41508680000"#;
}

/// The access token of `Authorization: Zoho-oauthtoken …` (Bearer is accepted too:
/// a third party reports Zoho takes it).
fn access_token(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme == "Zoho-oauthtoken" || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim().to_owned())
}

/// Authenticates every API call, charges it a credit and applies the rate limit.
async fn guard(State(s): State<App>, req: Request, next: Next) -> Response {
    let Some(token) = access_token(&req) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_FAILURE",
            "Authentication failed",
            json!({}),
        );
    };
    {
        let mut data = s.lock();
        if !data.auth.is_valid(&token, Instant::now()) {
            return invalid_token();
        }
        if data.credits.used >= data.credits.limit {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "LIMIT_EXCEEDED",
                "API credits exhausted for the rolling 24 hours",
                json!({"limit": data.credits.limit}),
            );
        }
        if let Decision::Denied(..) = data.limits.check(&token, false, Instant::now()) {
            return too_many();
        }
        data.credits.used += 1;
    }
    next.run(req).await
}
