//! A configurable plain JSON API for testing declarative custom-provider specs.
//!
//! Unlike the HubSpot simulator it imitates no real provider: it offers one set of
//! contacts and companies behind every pagination style a spec can describe
//! (`/cursor`, `/offset`, `/page`, `/link`) and accepts every authentication style
//! (API key header or query parameter, HTTP Basic, a static bearer token, OAuth 2.0
//! tokens from its own PKCE-checking authorization server). Each style renders the
//! records' timestamp differently so specs exercise every timestamp format:
//!
//! | style    | envelope                               | `updated`         |
//! |----------|----------------------------------------|-------------------|
//! | `cursor` | `{"data":{"items":[..]},"meta":{"next"}}` | RFC 3339       |
//! | `offset` | `{"results":[..],"total":n}`           | Unix seconds      |
//! | `page`   | a bare JSON array                      | Unix milliseconds |
//! | `link`   | `{"items":[..]}` + `Link: <..>; rel="next"` | RFC 3339     |
//!
//! Its authorization server can be made to misbehave as real ones do: answer token
//! requests with queued errors (`POST /_sandbox/oauth/errors`, e.g. a 503 or
//! `temporarily_unavailable` with `Retry-After`), issue no refresh token, issue
//! tokens of another type than Bearer (`POST /_sandbox/oauth/token_type`), and name an issuer (`iss`, RFC 9207). It
//! revokes tokens at `POST /oauth/revoke` (RFC 7009) and lists what it revoked at
//! `GET /_sandbox/oauth/revocations`.
//!
//! Two query parameters exist only to let tests provoke misbehaving providers:
//! `stuck=1` (cursor style) answers every page with the same cursor, and
//! `next_host=<origin>` (link style) points the `Link` header at another origin.

mod auth;
mod control;
mod list;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::sync::watch;

use crate::Sandbox;

pub(crate) use state::GenericState;

/// How the generic JSON sandbox is seeded and which credentials it accepts.
#[derive(Clone)]
pub struct GenericSandboxConfig {
    pub addr: SocketAddr,
    /// Records seeded per entity (contacts and companies).
    pub records: usize,
    pub seed: u64,
    /// Accepted in the `X-Api-Key` header or the `api_key` query parameter.
    pub api_key: String,
    /// HTTP Basic credentials.
    pub username: String,
    pub password: String,
    /// A static bearer token, never expiring.
    pub bearer_token: String,
    /// The OAuth client the authorization server accepts.
    pub client_id: String,
    pub client_secret: String,
    pub access_token_ttl_secs: u64,
    /// The `token_type` of token responses (`bearer`; a test may make it `mac`).
    pub token_type: String,
    /// Whether token responses carry a refresh token.
    pub refresh_tokens: bool,
    /// When set, every authorization response names this issuer in `iss` (RFC 9207).
    pub issuer: Option<String>,
    /// Consecutive seeded records sharing one `updated` timestamp.
    pub same_timestamp_group: usize,
    /// The largest page any style serves, whatever the client asks for.
    pub max_page_size: usize,
}

impl Default for GenericSandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            records: 50,
            seed: 7,
            api_key: "sandbox-key".into(),
            username: "sandbox-user".into(),
            password: "sandbox-password".into(),
            bearer_token: "sandbox-bearer".into(),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            access_token_ttl_secs: 1800,
            token_type: "bearer".into(),
            refresh_tokens: true,
            issuer: None,
            same_timestamp_group: 5,
            max_page_size: 100,
        }
    }
}

// Credentials stay out of logs.
impl std::fmt::Debug for GenericSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericSandboxConfig")
            .field("addr", &self.addr)
            .field("records", &self.records)
            .field("seed", &self.seed)
            .field("username", &self.username)
            .field("client_id", &self.client_id)
            .field("token_type", &self.token_type)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("issuer", &self.issuer)
            .field("same_timestamp_group", &self.same_timestamp_group)
            .field("max_page_size", &self.max_page_size)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `config.addr`, seeds contacts and companies and serves the generic
    /// JSON API until shutdown.
    pub async fn start_generic(config: GenericSandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(GenericState::new(config, base_url.clone(), stopped.clone()));
        let app = router(state.clone());
        Ok(Sandbox::serve(
            listener, base_url, app, state, stop, stopped,
        ))
    }
}

fn router(state: Arc<GenericState>) -> Router {
    let api = Router::new()
        .route("/{style}/{entity}", get(list::list).post(list::create))
        .route(
            "/{style}/{entity}/{id}",
            get(list::get_one).put(list::update).patch(list::update),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::guard));
    Router::new()
        .merge(api)
        .route("/oauth/authorize", get(auth::authorize))
        .route("/oauth/token", post(auth::token))
        .route("/oauth/revoke", post(auth::revoke))
        .route("/_sandbox/oauth/errors", post(control::push_token_error))
        .route("/_sandbox/oauth/revocations", get(control::revocations))
        .route("/_sandbox/oauth/token_type", post(control::set_token_type))
        .route("/_sandbox/records/{entity}", post(control::upsert_record))
        .route(
            "/_sandbox/records/{entity}/{id}",
            delete(control::delete_record),
        )
        .route(
            "/_sandbox/faults",
            post(control::push_fault).delete(control::clear_faults),
        )
        .route("/_sandbox/counters", get(control::counters))
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .layer(from_fn_with_state(
            state.clone(),
            crate::faults::track::<GenericState>,
        ))
        .with_state(state)
}
