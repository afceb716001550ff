//! A Salesforce simulator: the OAuth 2.0 web-server flow with PKCE, SOQL queries
//! with server-side cursors, describe, getDeleted/getUpdated, sObject
//! Collections, the daily API quota and a `/_sandbox/` control API.

mod collections;
mod control;
mod error;
mod grants;
mod guard;
mod oauth;
mod query;
mod router;
mod schema;
mod seed;
mod sobjects;
mod soql;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::{RateLimit, Sandbox};
use schema::SObject;

/// How the sandbox answers when a token passes its rolling request budget.
///
/// Salesforce documents no short-window rate limit for REST: its limits are
/// the daily `TotalRequests` allocation and the number of concurrent requests
/// running 20 s or longer (25 in production orgs). Both answer with the error
/// code `REQUEST_LIMIT_EXCEEDED` (messages "TotalRequests Limit exceeded." and
/// "ConcurrentRequests (Concurrent API Requests) Limit exceeded."). The
/// rolling budget stands in for the concurrency limit; since a client cannot
/// tell the two apart by status, how it answers is configurable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RollingLimitStatus {
    /// 503 `SERVER_UNAVAILABLE` (default): retried by any HTTP client.
    #[default]
    ServiceUnavailable,
    /// 429 `REQUEST_LIMIT_EXCEEDED`.
    TooManyRequests,
    /// 403 `REQUEST_LIMIT_EXCEEDED` with the concurrency message, as a real
    /// org answers; only the message tells it from the daily quota.
    ConcurrentForbidden,
}

/// How the Salesforce sandbox is seeded and which credentials it accepts.
#[derive(Clone)]
pub struct SalesforceSandboxConfig {
    pub addr: SocketAddr,
    /// Records seeded per object (Account and Contact).
    pub records: usize,
    pub seed: u64,
    pub client_id: String,
    pub client_secret: String,
    /// The 18-character organization id reported by the identity URL and userinfo.
    pub org_id: String,
    /// A rolling per-token request budget; `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// How a request over `rate_limit` is answered.
    pub rate_limit_status: RollingLimitStatus,
    /// API requests allowed per day (`Sforce-Limit-Info: api-usage=N/LIMIT`).
    pub daily_limit: u32,
    /// Consecutive seeded records sharing one `SystemModstamp`.
    pub same_timestamp_group: usize,
    /// The REST version served, e.g. `v60.0`.
    pub api_version: String,
    /// Query page size when the client sends no `Sforce-Query-Options`.
    pub max_batch_size: usize,
}

impl Default for SalesforceSandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            records: 100,
            seed: 42,
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            org_id: "00D5g000004SbxAEAS".into(),
            rate_limit: None,
            rate_limit_status: RollingLimitStatus::default(),
            daily_limit: 15_000,
            same_timestamp_group: 25,
            api_version: "v60.0".into(),
            max_batch_size: 2000,
        }
    }
}

// The secret stays out of logs.
impl std::fmt::Debug for SalesforceSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceSandboxConfig")
            .field("addr", &self.addr)
            .field("records", &self.records)
            .field("seed", &self.seed)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("org_id", &self.org_id)
            .field("rate_limit", &self.rate_limit)
            .field("daily_limit", &self.daily_limit)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `config.addr`, seeds Accounts and Contacts and serves Salesforce's
    /// API until shutdown. The base URL is both the login host and the
    /// `instance_url` handed out with tokens.
    pub async fn start_salesforce(config: SalesforceSandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let mut next_id = 1;
        let accounts = seed::generate(SObject::Account, &config, &mut next_id, &[]);
        let account_ids: Vec<String> = accounts.keys().cloned().collect();
        let contacts = seed::generate(SObject::Contact, &config, &mut next_id, &account_ids);
        let records = BTreeMap::from([(SObject::Account, accounts), (SObject::Contact, contacts)]);
        let state = Arc::new(state::Shared::new(
            config,
            base_url.clone(),
            stopped.clone(),
            (records, next_id),
        ));
        let app = router::build(state.clone());
        Ok(Self::serve(listener, base_url, app, state, stop, stopped))
    }
}
