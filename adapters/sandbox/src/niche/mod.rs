//! Small simulators of two niche CRMs' APIs, as far as their published facts go
//! (`PROTOCOLS-NICHE.md`): Chatwoot's Application API (contacts) and VSCO Workspace's
//! (formerly Tave) address book. They serve what the shipped templates use — listing,
//! reading one record, creating, updating — with each vendor's paging, envelopes,
//! timestamps, authentication and error bodies.
//!
//! | dialect    | auth                       | list                                              |
//! |------------|----------------------------|---------------------------------------------------|
//! | `chatwoot` | `api_access_token` header  | `GET /api/v1/accounts/{account}/contacts?page=N`, 15 a page, `{"meta","payload"}`, Unix seconds, no modification time |
//! | `tave`     | `X-API-KEY` header         | `GET /api/v2/address-book?page=&pageSize=&sortBy=modified desc`, `{"type","meta","items"}`, RFC 3339 `modified` |
//!
//! Chatwoot's companies (Enterprise): `GET|POST /api/v1/accounts/{account}/companies`,
//! 25 a page, `sort`, and `GET|PUT|PATCH|DELETE …/companies/{id}`; see [`companies`].
//!
//! Control API (no auth): `POST /_sandbox/records` with a record (its `id` kept when
//! given, else assigned; Tave's `modified` kept when given, else now) creates or
//! replaces it; `GET`/`DELETE /_sandbox/records/{id}`; `GET /_sandbox/counters`;
//! `POST /_sandbox/faults` (the shared fault JSON) and `DELETE` to clear them.
//! Chatwoot's companies: `POST /_sandbox/companies`, `GET`/`DELETE
//! /_sandbox/companies/{id}`, and `POST /_sandbox/companies/mode` with `{"mode":
//! "enabled" | "absent" | "disabled" | "unpaginated"}` (see [`CompaniesMode`]).

mod chatwoot;
mod companies;
mod state;
mod tave;

pub use state::CompaniesMode;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::Sandbox;
use state::NicheState;

/// Which vendor the sandbox speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Chatwoot,
    Tave,
}

/// How a niche sandbox is seeded and which key it accepts.
#[derive(Clone)]
pub struct NicheSandboxConfig {
    pub addr: SocketAddr,
    pub dialect: Dialect,
    /// Accepted in the dialect's header.
    pub api_key: String,
    /// Chatwoot's account in the paths; another account answers 404.
    pub account_id: u64,
    /// Seeded contacts (Tave: people; plus half as many companies).
    pub records: usize,
    /// Consecutive seeded Tave records sharing one `modified` time.
    pub same_timestamp_group: usize,
    /// The largest Tave page served, whatever `pageSize` asks (the vendor's is 100).
    pub max_page_size: usize,
    /// Seeded Chatwoot companies.
    pub companies: usize,
    /// How the Chatwoot instance answers its companies routes at the start.
    pub companies_mode: CompaniesMode,
}

impl NicheSandboxConfig {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dialect,
            api_key: "niche-sandbox-key".into(),
            account_id: 7,
            records: 20,
            same_timestamp_group: 3,
            max_page_size: 100,
            companies: 0,
            companies_mode: CompaniesMode::Enabled,
        }
    }
}

// The key stays out of logs.
impl std::fmt::Debug for NicheSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NicheSandboxConfig")
            .field("dialect", &self.dialect)
            .field("account_id", &self.account_id)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `config.addr`, seeds the records and serves the dialect's API.
    pub async fn start_niche(config: NicheSandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let dialect = config.dialect;
        let state = Arc::new(NicheState::new(config, stopped.clone()));
        let api = match dialect {
            Dialect::Chatwoot => chatwoot::router().merge(companies::router()),
            Dialect::Tave => tave::router(),
        };
        let app = Router::new()
            .merge(api)
            .route("/_sandbox/companies", post(companies::control_upsert))
            .route(
                "/_sandbox/companies/{id}",
                get(companies::control_get).delete(companies::control_delete),
            )
            .route("/_sandbox/companies/mode", post(companies::control_mode))
            .route(
                "/_sandbox/faults",
                post(state::control_faults).delete(state::control_clear_faults),
            )
            .route("/_sandbox/records", post(state::control_upsert))
            .route(
                "/_sandbox/records/{id}",
                get(state::control_get).delete(state::control_delete),
            )
            .route("/_sandbox/counters", get(state::control_counters))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::faults::track::<NicheState>,
            ))
            .with_state(state.clone());
        Ok(Sandbox::serve(
            listener, base_url, app, state, stop, stopped,
        ))
    }
}
