//! One execution of a run: the run's state as this worker advances it, the provider
//! session, and the connection its pages are appended on. The passes, the feeder and
//! the committer all work on it.

use serde::de::DeserializeOwned;
use syncledger_crm::Usage;
use syncledger_domain::merge::MergePolicy;
use syncledger_domain::sync_run::{RunKind, RunStats, SyncRun};
use syncledger_domain::{Aggregate, Entity, Integration};
use syncledger_store::append::Writer;
use syncledger_store::Metadata;

use super::decider::Decider;
use super::Services;
use crate::mapping::{effective_mappings, Mapper};
use crate::{EngineError, Session};

/// Whether the run goes on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// Someone else ended the run (cancelled) or took it over: stop quietly.
    Stopped,
}

pub(super) fn store_err<E: std::fmt::Display>(e: E) -> EngineError {
    EngineError::Store(e.to_string())
}

pub(super) fn encode(e: serde_json::Error) -> EngineError {
    EngineError::Store(format!("could not encode an event: {e}"))
}

/// One execution of a run.
pub(super) struct Execution<'a> {
    pub services: &'a Services,
    pub run: SyncRun,
    pub version: i64,
    pub tag: String,
    pub meta: Metadata,
    pub integration: Integration,
    /// `None` only while a page fetch holds it (see [`Execution::pull`]).
    pub session: Option<Session>,
    pub policy: MergePolicy,
    /// The adapter's usage counters at the last page (requests, 429s waited out).
    pub usage_seen: Usage,
    /// The connection the run's pages are appended on, kept from page to page.
    pub writer: Writer,
    /// The provider's record count for the pull page being committed one at a time
    /// ([`Execution::commit_pulled`]), carried on its page event.
    pub page_total: Option<u64>,
    /// The remote ids each complete pull pass of this execution listed, for a provider
    /// that deletes by absence (see [`syncledger_crm::CrmAdapter::deletes_by_absence`]).
    pub scanned: std::collections::HashMap<Entity, std::collections::HashSet<String>>,
}

impl<'a> Execution<'a> {
    pub(super) async fn open(
        services: &'a Services,
        run: SyncRun,
        version: i64,
        tag: String,
        meta: Metadata,
    ) -> Result<Execution<'a>, EngineError> {
        let rollback = run.kind == Some(RunKind::Rollback);
        let session = if run.kind == Some(RunKind::Import) {
            // An import's records were handed over: no provider is called.
            None
        } else {
            match services.connections.session(&run.integration_id).await {
                Ok(session) => Some(session),
                // A rollback without its CRM still puts the app back (the CRM's part is
                // owed); a CRM without an API never had a part (its runs only import).
                Err(
                    EngineError::NotConnected
                    | EngineError::Unusable { .. }
                    | EngineError::Unsupported(_),
                ) if rollback => None,
                Err(e) => return Err(e),
            }
        };
        // The adapter outlives runs: count this run's requests from here.
        let usage_seen = session
            .as_ref()
            .map_or_else(Usage::default, |s| s.adapter().usage());
        let integration = match &session {
            Some(s) => s.integration().clone(),
            None => services
                .integrations
                .load(&run.integration_id)
                .await
                .map_err(store_err)?,
        };
        let policy = integration.merge_policy();
        Ok(Execution {
            services,
            run,
            version,
            tag,
            meta,
            integration,
            session,
            policy,
            usage_seen,
            writer: Writer::default(),
            page_total: None,
            scanned: std::collections::HashMap::new(),
        })
    }

    pub(super) fn run_id(&self) -> String {
        self.run.id.clone().unwrap_or_default()
    }

    pub(super) fn session(&mut self) -> Result<&mut Session, EngineError> {
        self.session
            .as_mut()
            .ok_or(EngineError::Store("the provider session is in use".into()))
    }

    /// Charges `stats` with the provider usage since the last charge.
    pub(super) fn charge(&mut self, stats: &mut RunStats) {
        let used = self.take_usage();
        stats.charge(used.requests, used.rate_limited);
    }

    /// The provider usage (requests, 429s waited out) since the last call of this.
    pub(super) fn take_usage(&mut self) -> Usage {
        let Some(session) = &self.session else {
            return Usage::default();
        };
        let now = session.adapter().usage();
        let delta = now.since(self.usage_seen);
        self.usage_seen = now;
        delta
    }

    pub(super) fn mapper(&self, entity: Entity) -> Result<Mapper, EngineError> {
        let (mappings, filter) = effective_mappings(&self.integration, entity);
        Mapper::compile(&mappings, filter.as_deref())
            .map_err(|e| EngineError::Mapping(e.to_string()))
    }

    /// Brings the records read model up to (at least) this run's last event, so a pass
    /// that reads it sees everything the run wrote so far. On PostgreSQL a commit becomes
    /// visible to feed readers only once older transactions anywhere have ended, so this
    /// may take a moment; after a bounded wait the pass goes on (what it misses is
    /// picked up by the next run, never lost).
    pub(super) async fn catch_up(&self) -> Result<(), EngineError> {
        let feed = self.services.store.feed();
        let target = feed
            .last_position_of(SyncRun::TYPE, &self.run_id())
            .await
            .map_err(store_err)?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut pause = std::time::Duration::from_millis(2);
        let Some(target) = target else { return Ok(()) };
        loop {
            // Up to this run's own events only: applying everything other runs commit
            // meanwhile would chase their imports for as long as they last.
            self.services
                .catch_up
                .catch_up_to(target)
                .await
                .map_err(store_err)?;
            let seen =
                syncledger_projections::checkpoint::read(&self.services.store.any, "records")
                    .await
                    .map_err(store_err)?;
            if seen.is_some_and(|c| c.position >= target) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(run_id = %self.run_id(), "records read model did not catch up; going on");
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }

    /// The decider of this execution's pages of `entity`.
    pub(super) fn decider<'m>(
        &'m self,
        entity: Entity,
        mapper: &'m Mapper,
        run_id: &'m str,
    ) -> Decider<'m> {
        Decider {
            store: &self.services.store,
            records: &self.services.records,
            workspace_id: &self.run.workspace_id,
            integration_id: &self.run.integration_id,
            entity,
            run_id,
            policy: &self.policy,
            mapper,
            meta: &self.meta,
        }
    }
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, EngineError> {
    serde_json::to_value(v).map_err(encode)
}

pub(super) fn from_json<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, EngineError> {
    serde_json::from_value(v.clone()).map_err(|_| EngineError::Corrupt("a sync run cursor"))
}
