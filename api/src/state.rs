//! What every request handler shares.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use syncledger_bus::{LocalBus, NatsBus};
use syncledger_domain::record::Record;
use syncledger_domain::{Integration, Workspace};
use syncledger_engine::freshness::ReadYourWrites;
use syncledger_engine::workers::Dispatcher;
use syncledger_engine::{Connections, Connector, Engine, ProviderApps, SyncRuns};
use syncledger_store::{Cqrs, Store};
use syncledger_vault::Vault;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState(pub Arc<AppParts>);

pub struct AppParts {
    pub store: Store,
    pub vault: Vault,
    pub workspaces: Cqrs<Workspace>,
    pub integrations: Cqrs<Integration>,
    pub records: Cqrs<Record>,
    pub bus: LocalBus,
    pub nats: Option<NatsBus>,
    /// Pokes the projection runner after each command.
    pub projections_wake: Arc<Notify>,
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// The limiter's budget per token and minute (what a 429 tells the caller).
    pub rate_limit_per_minute: u32,
    pub public_url: String,
    /// Provider adapters and the credential lifecycle.
    pub connections: Connections,
    /// Sync runs: trigger, cancel, retry, execute.
    pub runs: SyncRuns,
    /// Where triggered runs go to be executed.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Every use case, over the same store, vault, connections and runs as above.
    pub engine: Engine,
    /// Live event streams open, counted per token and per workspace.
    pub streams: Arc<crate::streams::Streams>,
    /// A dashboard session ends after this long without a page view.
    pub dashboard_idle: chrono::Duration,
    /// The lag of a projection beyond which `GET /v1/ready` answers 503.
    pub ready_max_lag: std::time::Duration,
    /// How long a request may take to its response head before it is answered 408.
    pub request_timeout: std::time::Duration,
    /// This server's request counts and latencies, for `GET /metrics`.
    pub http_metrics: Arc<crate::http_metrics::HttpMetrics>,
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub fn limiter(per_minute: u32) -> DefaultKeyedRateLimiter<String> {
    let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(per_minute))
}

/// Provider connections and sync runs over one store: `holder` names this process in
/// credential-refresh leases, `worker` in the runs it starts.
pub fn sync_engine(
    store: &Store,
    vault: Vault,
    apps: ProviderApps,
    holder: String,
    worker: String,
) -> (Connections, SyncRuns) {
    let connections = Connections::new(store, vault, Connector::new(apps), holder);
    let runs = SyncRuns::new(store, connections.clone(), worker);
    (connections, runs)
}

/// The name `serve` executes runs under: `serve:{instance}`.
pub fn serve_worker(instance: &str) -> String {
    format!("serve:{instance}")
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        vault: Vault,
        bus: LocalBus,
        nats: Option<NatsBus>,
        rate_limit_per_minute: u32,
        public_url: String,
        apps: ProviderApps,
        dispatcher: Arc<dyn Dispatcher>,
        dashboard_idle: chrono::Duration,
        ready_max_lag: std::time::Duration,
        request_timeout: std::time::Duration,
        webhook_policy: syncledger_domain::outbound::OutboundPolicy,
        destination_policy: syncledger_domain::outbound::OutboundPolicy,
        instance: &str,
    ) -> Self {
        let pid = std::process::id();
        // Refresh leases name the process (a restarted one must not think it holds its
        // predecessor's lease); runs name the instance, so that a restart under the same
        // name knows which runs were its own (see `workers::resume_unfinished`).
        let (connections, runs) = sync_engine(
            &store,
            vault.clone(),
            apps,
            format!("api:{pid}"),
            serve_worker(instance),
        );
        // The followers (read models, destinations, webhooks) wake on commands (through
        // `fresh`) and on every commit of this process's runs.
        let wake = runs.committed();
        let fresh = ReadYourWrites::new(store.clone(), wake.clone(), bus.clone());
        let engine = Engine::new(
            store.clone(),
            vault.clone(),
            connections.clone(),
            runs.clone(),
            fresh,
            dispatcher.clone(),
            nats.clone(),
            webhook_policy,
            destination_policy,
        );
        AppState(Arc::new(AppParts {
            workspaces: store.cqrs(),
            integrations: store.cqrs(),
            records: store.cqrs(),
            store,
            vault,
            bus,
            nats,
            projections_wake: wake,
            limiter: limiter(rate_limit_per_minute),
            rate_limit_per_minute: rate_limit_per_minute.max(1),
            public_url,
            connections,
            runs,
            dispatcher,
            engine,
            streams: Arc::new(crate::streams::Streams::default()),
            dashboard_idle,
            ready_max_lag,
            request_timeout,
            http_metrics: Arc::default(),
        }))
    }

    /// After a command: wake the followers, then wait (bounded) until `projection` has
    /// applied the aggregate's latest event, so the response and the next read agree.
    pub async fn settle(
        &self,
        projection: &str,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<(), syncledger_engine::EngineError> {
        self.engine
            .fresh
            .settle(projection, aggregate_type, aggregate_id)
            .await
    }
}
