//! [`Engine`]: every use case of one process over one store, handed to the HTTP API, the
//! dashboard and the CLI alike, so each rule is written once. Each resource has its own
//! module and handle (`engine.integrations()`, `engine.oauth()`, …); a handle borrows the
//! engine and holds no state of its own.

use std::sync::Arc;

use syncledger_domain::record::Record;
use syncledger_domain::{Integration, Workspace};
use syncledger_store::{Cqrs, Store};
use syncledger_vault::Vault;

use crate::freshness::ReadYourWrites;
use crate::workers::Dispatcher;
use crate::{Connections, SyncRuns};
use syncledger_bus::NatsBus;
use syncledger_crm::hubspot::replay::ReplayCache;

/// The use cases' shared parts. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Parts>);

/// What the use cases share: the store and its aggregates, the vault, provider
/// connections, sync runs, and read-your-writes.
pub struct Parts {
    pub store: Store,
    pub vault: Vault,
    pub workspaces: Cqrs<Workspace>,
    pub integrations: Cqrs<Integration>,
    pub records: Cqrs<Record>,
    pub connections: Connections,
    pub runs: SyncRuns,
    pub fresh: ReadYourWrites,
    /// Where started runs go to be executed.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// JetStream, when the process publishes its events there.
    pub nats: Option<NatsBus>,
    /// HubSpot webhook deliveries accepted in the last five minutes (this process).
    pub webhook_replays: ReplayCache,
    /// Which hosts outgoing webhooks may be sent to.
    pub webhook_policy: syncledger_domain::outbound::OutboundPolicy,
    /// Which hosts destination databases may be on.
    pub destination_policy: syncledger_domain::outbound::OutboundPolicy,
}

impl std::ops::Deref for Engine {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        vault: Vault,
        connections: Connections,
        runs: SyncRuns,
        fresh: ReadYourWrites,
        dispatcher: Arc<dyn Dispatcher>,
        nats: Option<NatsBus>,
        webhook_policy: syncledger_domain::outbound::OutboundPolicy,
        destination_policy: syncledger_domain::outbound::OutboundPolicy,
    ) -> Self {
        Engine(Arc::new(Parts {
            workspaces: store.cqrs(),
            integrations: store.cqrs(),
            records: store.cqrs(),
            store,
            vault,
            connections,
            runs,
            fresh,
            dispatcher,
            nats,
            webhook_replays: ReplayCache::default(),
            webhook_policy,
            destination_policy,
        }))
    }
}
