//! Provider sandboxes: local simulators of CRM HTTP APIs, embeddable in tests.
//!
//! `Sandbox::start_hubspot` binds a listener, seeds records deterministically from the
//! configured seed and serves the HubSpot wire protocol until `shutdown`. A control API
//! under `/_sandbox/` lets a test edit records, expire tokens, change rate limits and
//! inject faults.
//!
//! Lives here: faithful fakes of providers' APIs, for tests and `syncledger sandbox`.
//! Must not: depend on syncledger's own crates, so it cannot agree with a bug by sharing it.

mod batch;
mod control;
mod control_body;
mod error;
mod faults;
mod generic;
mod grants;
mod guard;
mod leads;
mod niche;
pub use guard::RATE_LIMITED;
mod oauth;
mod objects;
mod pipedrive;
mod properties;
mod ratelimit;
mod records;
mod router;
mod salesforce;
mod search;
mod seed;
mod state;
mod webhook;
mod words;
mod zoho;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use generic::GenericSandboxConfig;
pub use grants::{pkce_s256, TokenPair};
pub use leads::{LeadVendor, LeadsSandboxConfig};
pub use niche::{CompaniesMode, Dialect, NicheSandboxConfig};
pub use pipedrive::PipedriveSandboxConfig;
pub use salesforce::{RollingLimitStatus, SalesforceSandboxConfig};
pub use webhook::sign_v3;
pub use zoho::ZohoSandboxConfig;

/// A rolling-window request budget per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub interval_ms: u64,
}

/// How the HubSpot sandbox is seeded and which credentials it accepts.
#[derive(Clone)]
pub struct SandboxConfig {
    pub addr: SocketAddr,
    /// Records seeded per object type.
    pub records: usize,
    pub seed: u64,
    pub client_id: String,
    pub client_secret: String,
    pub access_token_ttl_secs: u64,
    /// `None` turns rate limiting off.
    pub rate_limit: Option<RateLimit>,
    /// Consecutive seeded records sharing one modification timestamp.
    pub same_timestamp_group: usize,
    /// A private-app token accepted on every CRM endpoint, never expiring.
    pub static_token: Option<String>,
    pub hub_id: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            records: 100,
            seed: 42,
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            access_token_ttl_secs: 1800,
            rate_limit: None,
            same_timestamp_group: 25,
            static_token: None,
            hub_id: 62515,
        }
    }
}

// The secret stays out of logs.
impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("addr", &self.addr)
            .field("records", &self.records)
            .field("seed", &self.seed)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("rate_limit", &self.rate_limit)
            .field("same_timestamp_group", &self.same_timestamp_group)
            .finish_non_exhaustive()
    }
}

/// What every simulated provider offers a test besides its HTTP API.
pub trait Simulator: Send + Sync + 'static {
    /// Requests served per endpoint key, e.g. `GET /crm/v3/objects/contacts`.
    fn counters(&self) -> BTreeMap<String, u64>;
    /// Issues a fresh token pair without going through the authorize redirect.
    fn issue_tokens(&self) -> TokenPair;
    /// The secret webhooks are signed with, if the provider sends webhooks.
    fn webhook_secret(&self) -> Option<String> {
        None
    }
}

/// A running sandbox. Dropping it stops the server; `shutdown` also waits for it.
pub struct Sandbox {
    base_url: String,
    simulator: Arc<dyn Simulator>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Binds `config.addr`, seeds the records and serves HubSpot's API until shutdown.
    pub async fn start_hubspot(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(state::Shared::new(
            config,
            base_url.clone(),
            stopped.clone(),
        ));
        let app = router::build(state.clone());
        Ok(Self::serve(listener, base_url, app, state, stop, stopped))
    }

    /// Serves `app` on `listener` until the sandbox is stopped. Each provider's
    /// `start_*` builds its state and router and hands them here.
    pub(crate) fn serve(
        listener: tokio::net::TcpListener,
        base_url: String,
        app: axum::Router,
        simulator: Arc<dyn Simulator>,
        stop: watch::Sender<bool>,
        stopped: watch::Receiver<bool>,
    ) -> Sandbox {
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(faults::wait_stop(stopped));
            // An accept error ends the sandbox; tests then see connection failures.
            let _ = serve.await;
        });
        Sandbox {
            base_url,
            simulator,
            stop,
            task: Some(task),
        }
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Requests served per endpoint key, e.g. `GET /crm/v3/objects/contacts`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.simulator.counters()
    }

    /// Issues a fresh token pair without going through the authorize redirect.
    pub fn issue_tokens(&self) -> TokenPair {
        self.simulator.issue_tokens()
    }

    /// Posts a signed (HubSpot v3) webhook batch to `target_url`; returns the HTTP status.
    pub async fn send_webhook(
        &self,
        target_url: &str,
        events: Vec<serde_json::Value>,
    ) -> Result<u16, reqwest::Error> {
        let secret = self.simulator.webhook_secret().unwrap_or_default();
        webhook::send(&secret, target_url, events).await
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
