//! An import run's one pass: the records handed over (a CSV file, an inbound webhook
//! delivery) are decided and committed page by page exactly as a pull's pages are (the
//! same mapping, links, three-way merge and conflict strategy), each page with its
//! `PageCommitted` carrying the offset to resume from.
//!
//! The records live in the memory of the process that received them (they are never
//! stored as such: the record events are what is kept), and that process executes the
//! run at once. A run whose records are not here (the process that held them stopped
//! before the run ended) fails with a reason saying so: the pages it committed stay, and
//! importing the same file again updates them instead of duplicating.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use syncledger_crm::RemoteRecord;
use syncledger_domain::sync_run::{Phase, RunKind, RunStatus, SyncRun};
use syncledger_domain::Entity;

use super::committer::Commit;
use super::decider::Decider;
use super::execution::{from_json, to_json, Execution, Flow};
use super::SyncRuns;
use crate::EngineError;

/// Records decided and committed in one page.
pub(crate) const PAGE: usize = 500;

/// Where an import pass resumes: the index of the next record to decide.
#[derive(Serialize, Deserialize, Default)]
struct ImportCursor {
    next: usize,
}

/// How long a queued import run whose records another process holds is left to it: that
/// process starts it at once, so one still queued after this was abandoned (its
/// process stopped), and is taken to be failed.
const HOLDER_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// Whether an execution here should leave the run alone: a fresh import run (not a
/// retry, which needs no records) still queued, whose records this process does not
/// hold, belongs to the process that received them (a polling worker may see it first).
pub(super) fn left_to_its_holder(services: &super::Services, run: &SyncRun) -> bool {
    let fresh_import = run.kind == Some(RunKind::Import) && run.retry_of.is_none();
    let held_here = run.id.as_ref().is_some_and(|id| {
        services
            .imports
            .lock()
            .is_ok_and(|held| held.contains_key(id))
    });
    let recent = run
        .queued_at
        .is_some_and(|at| chrono::Utc::now() - at < HOLDER_GRACE);
    fresh_import && !held_here && run.status == RunStatus::Queued && recent
}

impl SyncRuns {
    /// Holds `records` for the import run `run_id` until [`SyncRuns::release_import`].
    pub(crate) fn hold_import(&self, run_id: &str, records: Vec<RemoteRecord>) {
        if let Ok(mut held) = self.services.imports.lock() {
            held.insert(run_id.to_owned(), Arc::new(records));
        }
    }

    /// The slot of `integration_id`'s inbound webhook runs in this process.
    pub(crate) fn import_slot(&self, integration_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.services.import_slots.lock() {
            Ok(mut slots) => slots.entry(integration_id.to_owned()).or_default().clone(),
            // A poisoned map: a slot of its own waits for nothing, and the trigger's own
            // check (one active run per integration) still holds.
            Err(_) => Arc::default(),
        }
    }

    /// Forgets the records of the import run `run_id` (it ended).
    pub(crate) fn release_import(&self, run_id: &str) {
        if let Ok(mut held) = self.services.imports.lock() {
            held.remove(run_id);
        }
    }
}

impl Execution<'_> {
    pub(super) async fn import(&mut self, entities: &[Entity]) -> Result<Flow, EngineError> {
        let run_id = self.run_id();
        let held = self
            .services
            .imports
            .lock()
            .ok()
            .and_then(|held| held.get(&run_id).cloned());
        let Some(records) = held else {
            return Err(EngineError::Unsupported(
                "the imported records were held by the process that received them, which \
                 stopped before the import ended; the pages committed stay, and importing \
                 the same records again updates them instead of duplicating"
                    .into(),
            ));
        };
        let Some(&entity) = entities.first() else {
            return Ok(Flow::Continue);
        };
        let start = match self.run.pass(entity, Phase::Pull) {
            Some(pass) if pass.done => return Ok(Flow::Continue),
            Some(pass) => match &pass.cursor {
                Some(cursor) => from_json::<ImportCursor>(cursor)?.next,
                None => 0,
            },
            None => 0,
        };
        self.catch_up().await?;
        let mapper = self.mapper(entity)?;
        let (services, meta, policy) = (self.services, self.meta.clone(), self.policy.clone());
        let (workspace_id, integration_id) = (
            self.run.workspace_id.clone(),
            self.run.integration_id.clone(),
        );
        let decider = Decider {
            store: &services.store,
            records: &services.records,
            workspace_id: &workspace_id,
            integration_id: &integration_id,
            entity,
            run_id: &run_id,
            policy: &policy,
            mapper: &mapper,
            meta: &meta,
        };
        let mut next = start.min(records.len());
        loop {
            let end = (next + PAGE).min(records.len());
            let page = &records[next..end];
            let done = end == records.len();
            let cursor = to_json(&ImportCursor { next: end })?;
            if self
                .import_page(entity, &decider, page, cursor, done)
                .await?
                == Flow::Stopped
            {
                return Ok(Flow::Stopped);
            }
            if done {
                return Ok(Flow::Continue);
            }
            next = end;
        }
    }

    /// Decides a page of imported records and commits it as a pull page is committed:
    /// in one transaction with its page event, or record by record after a conflict.
    async fn import_page(
        &mut self,
        entity: Entity,
        decider: &Decider<'_>,
        page: &[RemoteRecord],
        cursor: serde_json::Value,
        done: bool,
    ) -> Result<Flow, EngineError> {
        let decision = decider.decide_page(page).await?;
        let commit = self
            .commit(
                entity,
                Phase::Pull,
                cursor.clone(),
                done,
                decision.stats,
                decision.failures,
                decision.events,
            )
            .await?;
        match commit {
            Commit::Done => Ok(Flow::Continue),
            Commit::Stopped => Ok(Flow::Stopped),
            Commit::Conflict => {
                let again = decider.ingest_one_by_one(page).await?;
                self.commit_run_only(
                    entity,
                    Phase::Pull,
                    cursor,
                    done,
                    again.stats,
                    again.failures,
                )
                .await
            }
        }
    }
}
