//! A simulator of Pipedrive's API: OAuth (with `api_domain`), API-token auth,
//! v2 persons and organizations with cursor paging, v1 field catalogues with
//! hashed custom-field keys, `/v1/recents` for deletions, per-token rate limits
//! with `x-ratelimit-*` headers, faults and counters.

mod api;
mod control;
mod middleware;
mod oauth;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::{RateLimit, Sandbox, Simulator, TokenPair};

type App = Arc<state::Shared>;

/// How the Pipedrive sandbox is seeded and which credentials it accepts.
#[derive(Clone)]
pub struct PipedriveSandboxConfig {
    pub addr: SocketAddr,
    /// Records seeded per object type (persons and organizations).
    pub records: usize,
    pub seed: u64,
    pub client_id: String,
    pub client_secret: String,
    /// Accepted as query `api_token=` and header `x-api-token`.
    pub api_token: String,
    pub access_token_ttl_secs: u64,
    /// `true`: every refresh consumes the refresh token and issues a new one.
    pub rotate_refresh_tokens: bool,
    /// Per token; Pipedrive's window is 2 s. `None` turns limiting off.
    pub rate_limit: Option<RateLimit>,
    /// Consecutive seeded records sharing one `update_time`.
    pub same_timestamp_group: usize,
    /// Whether `/v1/recents` lists soft-deleted records (with `active_flag:
    /// false`). Assumed from Pipedrive's v1 shapes, not confirmed by its docs.
    pub recents_include_deleted: bool,
    pub company_id: u64,
    pub company_domain: String,
}

impl Default for PipedriveSandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            records: 100,
            seed: 42,
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            api_token: "sandbox-api-token".into(),
            access_token_ttl_secs: 3600,
            rotate_refresh_tokens: true,
            rate_limit: None,
            same_timestamp_group: 25,
            recents_include_deleted: true,
            company_id: 7_700_001,
            company_domain: "sandbox".into(),
        }
    }
}

// Secrets stay out of logs.
impl std::fmt::Debug for PipedriveSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedriveSandboxConfig")
            .field("addr", &self.addr)
            .field("records", &self.records)
            .field("seed", &self.seed)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("api_token", &"[redacted]")
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field("rate_limit", &self.rate_limit)
            .field("same_timestamp_group", &self.same_timestamp_group)
            .field("recents_include_deleted", &self.recents_include_deleted)
            .field("company_id", &self.company_id)
            .field("company_domain", &self.company_domain)
            .finish()
    }
}

impl Simulator for state::Shared {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Pipedrive has no hub id; the company id takes its place.
    fn issue_tokens(&self) -> TokenPair {
        let ttl = self.config.access_token_ttl_secs;
        let (access_token, refresh_token) = self.lock().auth.issue(None, ttl);
        TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl,
            token_type: "Bearer".into(),
            token_use: "access_token".into(),
            hub_id: self.config.company_id,
        }
    }
}

impl Sandbox {
    /// Binds `config.addr`, seeds persons and organizations and serves
    /// Pipedrive's OAuth and API hosts on one listener until shutdown.
    pub async fn start_pipedrive(config: PipedriveSandboxConfig) -> std::io::Result<Sandbox> {
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
        .route("/v1/users/me", get(api::users_me))
        .route("/v1/personFields", get(api::person_fields))
        .route("/v1/organizationFields", get(api::organization_fields))
        .route("/v1/recents", get(api::recents))
        .route("/api/v2/{kind}", get(api::list).post(api::create))
        .route("/api/v2/{kind}/search", get(api::search))
        .route(
            "/api/v2/{kind}/{id}",
            get(api::get_one).patch(api::patch).delete(api::delete),
        )
        .route_layer(from_fn_with_state(state.clone(), middleware::guard));
    let oauth = Router::new()
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke));
    let control = Router::new()
        .route("/_sandbox/records/{kind}", post(control::upsert_record))
        .route(
            "/_sandbox/records/{kind}/{id}",
            get(control::get_record).delete(control::delete_record),
        )
        .route("/_sandbox/tokens", post(control::issue_tokens))
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .route("/_sandbox/rate-limit", post(control::set_rate_limit))
        .route(
            "/_sandbox/faults",
            post(control::add_faults).delete(control::clear_faults),
        )
        .route("/_sandbox/counters", get(control::counters))
        .route("/_sandbox/counters/reset", post(control::reset_counters));
    api.merge(oauth)
        .merge(control)
        .fallback(api::fallback)
        .layer(from_fn_with_state(
            state.clone(),
            crate::faults::track::<state::Shared>,
        ))
        .with_state(state)
}
