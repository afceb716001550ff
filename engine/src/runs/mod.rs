//! Sync runs: starting one (at most one active per integration), executing it page by
//! page with a committed resume point after each, cancelling and retrying.
//!
//! A run executes in passes, each entity in turn: **pull** (fetch pages, map, merge into
//! records), then **deletions** (only when every pull pass ended without a failed record:
//! a partial run never deletes), then **push** (app-side changes the CRM does not have
//! yet, in the provider's batch size). Every page ends with a `PageCommitted` event on
//! the run, appended in the same transaction as the page's record events, carrying the
//! cursor to resume from. A worker that dies at any point is replaced by one that starts
//! after the last committed page; a page fetched again is deduplicated by the records'
//! own merge (an unchanged record writes nothing).
//!
//! Where each part lives: [`lifecycle`] starts an execution, rides out store outages and
//! records the run's end; [`passes`] orders the passes and wires the pull pipeline,
//! whose stages are the [`feeder`] (fetches pages from the CRM one ahead and has them
//! decided), the [`decider`] (maps a page and merges it into record events) and the
//! [`committer`] (appends decided pages in groups, page by page on a conflict, each with
//! its `PageCommitted` and cursor); [`deletions`] and [`push`] are the other passes;
//! [`cursor`] says where a pass starts and resumes; [`execution`] is the state of one
//! execution that all of them share.

mod committer;
mod cursor;
pub(crate) mod decider;
mod deletions;
mod duplicates;
mod execution;
mod feeder;
mod import;
mod lifecycle;
pub(crate) mod lookup;
mod passes;
mod push;
mod reread;
mod rollback;

use std::sync::Arc;

use chrono::Utc;
use syncledger_domain::record::Record;
use syncledger_domain::sync_config::Direction;
use syncledger_domain::sync_config::FieldError;
use syncledger_domain::sync_run::{
    RunKind, RunOptions, RunStatus, SyncRun, SyncRunCommand, SyncRunError, Trigger,
};
use syncledger_domain::{Integration, IntegrationCommand, IntegrationError, Status};
use syncledger_projections::runner::Runner;
use syncledger_store::{CommandError, Cqrs, Metadata, Store};

use crate::{Connections, EngineError};
pub(crate) use cursor::{PullCursor, PushCursor};
pub use syncledger_projections::run_reads::ActiveRun;

/// A record of a push batch as sent: its id, its state, the app values sent, the CRM
/// properties sent, and the remote id when it updates a linked CRM record.
pub(super) type Sent = (
    String,
    lookup::Known,
    syncledger_domain::merge::Fields,
    syncledger_domain::merge::Fields,
    Option<String>,
);

/// Why a run could not be started, cancelled or retried.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("integration not found")]
    IntegrationNotFound,
    #[error("sync run not found")]
    RunNotFound,
    /// The integration cannot run now (paused, disconnected, not connected): 400.
    #[error("{0}")]
    Unusable(String),
    /// Another run is active on the integration: 409.
    #[error("sync run {run_id} is already active on this integration")]
    Active { run_id: String },
    /// The run is in a state that does not allow this: 409.
    #[error(transparent)]
    State(SyncRunError),
    #[error("{0}")]
    NothingToRetry(String),
    /// A run option the integration does not allow (an entity it does not sync, a
    /// direction wider than its own): 400 naming the field.
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Which earlier run a new run retries or reverses.
#[derive(Default)]
pub(crate) struct Lineage {
    retry_of: Option<String>,
    rollback_of: Option<String>,
}

/// Starts, executes, cancels and retries sync runs. Cheap to clone.
#[derive(Clone)]
pub struct SyncRuns {
    services: Arc<Services>,
}

/// What every run and every execution of one works with: the store and the command
/// handlers of the aggregates a run writes, the provider connections, the records read
/// model's catch-up, and this process's worker name. Shared by the [`SyncRuns`] handles.
pub(crate) struct Services {
    pub store: Store,
    pub connections: Connections,
    pub integrations: Cqrs<Integration>,
    pub runs: Cqrs<SyncRun>,
    pub records: Cqrs<Record>,
    /// Names this process in `RunStarted` events.
    pub worker: String,
    /// Brings the records read model up to date before a pass reads it.
    pub catch_up: Runner,
    /// Integrations that got a webhook while a run was active: they owe a follow-up.
    pub webhooks_pending: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The records of the import runs this process received (a CSV file, an inbound
    /// webhook delivery), by run id, until the run ends. An import run is executed by
    /// the process that holds its records; see [`import`].
    pub imports:
        std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<syncledger_crm::RemoteRecord>>>>,
    /// Per integration, held by an inbound webhook delivery's run from its trigger to its
    /// end: the next delivery waits on it rather than polling the run's status.
    pub import_slots:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Notified after each append a run makes (its pages, its end): this process's
    /// followers of the feed (read models, destinations, webhooks) wait on it, so a
    /// run's records reach them as they commit instead of at their next poll.
    pub committed: Arc<tokio::sync::Notify>,
}

fn integration_error(e: CommandError<IntegrationError>) -> RunError {
    match e {
        CommandError::Domain(IntegrationError::RunActive { run_id }) => RunError::Active { run_id },
        CommandError::Domain(IntegrationError::NotFound) => RunError::IntegrationNotFound,
        CommandError::Domain(IntegrationError::InvalidTransition { from, .. }) => {
            RunError::Unusable(format!("the integration is {}", from.as_str()))
        }
        other => RunError::Engine(other.into()),
    }
}

fn run_error(e: CommandError<SyncRunError>) -> RunError {
    match e {
        CommandError::Domain(SyncRunError::NotFound) => RunError::RunNotFound,
        CommandError::Domain(d) => RunError::State(d),
        CommandError::Conflict => RunError::Engine(EngineError::Conflict),
        CommandError::Stale { current } => RunError::Engine(EngineError::Stale { current }),
        CommandError::Store(s) => RunError::Engine(EngineError::Store(s)),
    }
}

/// Whether the integration can take a run of `kind` with `options` now.
fn runnable(
    integration: &Integration,
    kind: RunKind,
    options: &RunOptions,
) -> Result<(), RunError> {
    let provider = &integration.provider;
    let no_api =
        syncledger_domain::provider::publishes_no_api(provider) && integration.spec.is_none();
    match kind {
        RunKind::Import if !no_api => {
            return Err(RunError::Unusable(format!(
                "{provider} has an API: its records come in by sync runs, not imports"
            )))
        }
        RunKind::Full | RunKind::Incremental | RunKind::Push if no_api => {
            return Err(RunError::Unusable(format!(
                "{provider} publishes no API, so a {} run has nothing to read from or write \
                 to; records come in by CSV import (POST /v1/integrations/{{id}}/imports) or \
                 the integration's inbound webhook",
                crate::metrics::kind_label(Some(kind))
            )))
        }
        _ => {}
    }
    match integration.status {
        Status::Connected => {}
        // Rolling back a bad run is what an admin does first, often after pausing the
        // integration; a disconnected one gets the app side back and owes the CRM's.
        _ if kind == RunKind::Rollback => {}
        Status::Paused => {
            return Err(RunError::Unusable(
                "the integration is paused; resume it to sync".into(),
            ))
        }
        Status::PendingAuth => {
            return Err(RunError::Unusable(
                "the integration is not connected yet; connect it first".into(),
            ))
        }
        other => {
            let reason = integration.last_error.clone().unwrap_or_default();
            return Err(RunError::Unusable(if reason.is_empty() {
                format!("the integration is {}", other.as_str())
            } else {
                format!("the integration is {}: {reason}", other.as_str())
            }));
        }
    }
    options
        .validate(&integration.sync_config)
        .map_err(RunError::Invalid)?;
    let direction = options.direction_of(&integration.sync_config);
    if direction != Direction::Push
        && syncledger_domain::provider::leads_only(&integration.provider)
    {
        return Err(RunError::Invalid(FieldError {
            field: "direction",
            message: syncledger_domain::sync_config::leads_only_message(&integration.provider),
        }));
    }
    if kind == RunKind::Push && direction == Direction::Pull {
        return Err(RunError::Unusable(
            "the integration only pulls (direction pull): a push run has nothing to do".into(),
        ));
    }
    Ok(())
}

impl SyncRuns {
    pub fn new(store: &Store, connections: Connections, worker: impl Into<String>) -> Self {
        let catch_up = Runner::new(
            store.clone(),
            vec![
                Arc::new(syncledger_projections::records::Records),
                Arc::new(syncledger_projections::sync_runs::SyncRuns),
            ],
        )
        // Concurrent runs each bring these read models up to their own events; one applies
        // while the others wait for the checkpoint (they used to queue on its lock, in turn).
        .yielding()
        .with_batch(2000);
        SyncRuns {
            services: Arc::new(Services {
                store: store.clone(),
                connections,
                integrations: store.cqrs(),
                runs: store.cqrs(),
                records: store.cqrs(),
                worker: worker.into(),
                catch_up,
                webhooks_pending: Default::default(),
                imports: Default::default(),
                import_slots: Default::default(),
                committed: Default::default(),
            }),
        }
    }

    /// The notifier woken after each append this process's runs make (see
    /// [`Services::committed`]): give it to the feed's followers as their wake-up.
    pub fn committed(&self) -> Arc<tokio::sync::Notify> {
        self.services.committed.clone()
    }

    /// Notes a webhook that arrived while a run was active on the integration.
    pub fn remember_webhook(&self, integration_id: &str) {
        if let Ok(mut pending) = self.services.webhooks_pending.lock() {
            pending.insert(integration_id.to_string());
        }
    }

    /// Takes the integrations owed a webhook follow-up run.
    pub fn take_pending_webhooks(&self) -> Vec<String> {
        self.services
            .webhooks_pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_iter().collect())
            .unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    pub fn worker(&self) -> &str {
        &self.services.worker
    }

    /// Queues a run: claims the integration's one active-run slot, then records the run.
    /// Returns the new run's id. The caller hands it to a worker.
    pub async fn trigger(
        &self,
        integration_id: &str,
        kind: RunKind,
        trigger: Trigger,
        retry_of: Option<String>,
        meta: &Metadata,
    ) -> Result<String, RunError> {
        let lineage = Lineage {
            retry_of,
            rollback_of: None,
        };
        self.trigger_run(
            integration_id,
            kind,
            trigger,
            lineage,
            meta,
            RunOptions::default(),
        )
        .await
    }

    /// As [`SyncRuns::trigger`], for a run narrower than the integration's sync config
    /// (some entities, one direction, or only changes from now on).
    pub async fn trigger_with(
        &self,
        integration_id: &str,
        kind: RunKind,
        trigger: Trigger,
        options: RunOptions,
        meta: &Metadata,
    ) -> Result<String, RunError> {
        self.trigger_run(
            integration_id,
            kind,
            trigger,
            Lineage::default(),
            meta,
            options,
        )
        .await
    }

    /// As [`SyncRuns::trigger`], for any kind of run (a rollback names the run it reverses).
    pub(crate) async fn trigger_run(
        &self,
        integration_id: &str,
        kind: RunKind,
        trigger: Trigger,
        lineage: Lineage,
        meta: &Metadata,
        options: RunOptions,
    ) -> Result<String, RunError> {
        let Lineage {
            retry_of,
            rollback_of,
        } = lineage;
        let services = &self.services;
        let integration = services
            .integrations
            .load(integration_id)
            .await
            .map_err(integration_error)?;
        if integration.id.is_none() || integration.workspace_id != meta.workspace_id {
            return Err(RunError::IntegrationNotFound);
        }
        runnable(&integration, kind, &options)?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        self.claim_slot(
            integration_id,
            &run_id,
            kind == RunKind::Rollback,
            now,
            meta,
        )
        .await?;
        let queued = services
            .runs
            .execute(
                &run_id,
                SyncRunCommand::Queue {
                    run_id: run_id.clone(),
                    integration_id: integration_id.to_string(),
                    workspace_id: integration.workspace_id.clone(),
                    kind,
                    trigger,
                    retry_of,
                    rollback_of,
                    options,
                    at: now,
                },
                meta,
            )
            .await;
        if let Err(e) = queued {
            // Give the slot back: no run holds it.
            let _ = self.release(integration_id, &run_id, meta).await;
            return Err(run_error(e));
        }
        Ok(run_id)
    }

    /// Makes `run_id` the integration's one active run. A slot still held by a run that
    /// has ended is freed first.
    async fn claim_slot(
        &self,
        integration_id: &str,
        run_id: &str,
        rollback: bool,
        now: chrono::DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<(), RunError> {
        let services = &self.services;
        let begin = IntegrationCommand::BeginSyncRun {
            run_id: run_id.to_owned(),
            rollback,
            at: now,
        };
        match services
            .integrations
            .execute(integration_id, begin.clone(), meta)
            .await
            .map_err(integration_error)
        {
            Ok(()) => {}
            // The slot may still name a run that has already ended: its worker releases
            // the slot just after the run's last event (or died in between). Free it and
            // try once more; a run that is really active keeps its slot.
            Err(RunError::Active { run_id: holder }) => {
                let ended = self
                    .load(&holder)
                    .await?
                    .is_none_or(|r| !r.status.is_active());
                if !ended {
                    return Err(RunError::Active { run_id: holder });
                }
                self.release(integration_id, &holder, meta).await?;
                services
                    .integrations
                    .execute(integration_id, begin, meta)
                    .await
                    .map_err(integration_error)?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Frees the integration's active-run slot held by `run_id` (a no-op otherwise).
    async fn release(
        &self,
        integration_id: &str,
        run_id: &str,
        meta: &Metadata,
    ) -> Result<(), EngineError> {
        self.services
            .integrations
            .execute(
                integration_id,
                IntegrationCommand::FinishSyncRun {
                    run_id: run_id.to_string(),
                    at: Utc::now(),
                },
                meta,
            )
            .await
            .map_err(EngineError::from)
    }

    /// The run's current state, replayed from its events.
    pub async fn load(&self, run_id: &str) -> Result<Option<SyncRun>, EngineError> {
        let run = self
            .services
            .runs
            .load(run_id)
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        Ok(run.id.is_some().then_some(run))
    }

    /// Cancels a queued or running run. A worker executing it stops at its next page.
    pub async fn cancel(
        &self,
        run_id: &str,
        by: &str,
        meta: &Metadata,
    ) -> Result<SyncRun, RunError> {
        let run = self.load(run_id).await?.ok_or(RunError::RunNotFound)?;
        if run.workspace_id != meta.workspace_id {
            return Err(RunError::RunNotFound);
        }
        self.services
            .runs
            .execute(
                run_id,
                SyncRunCommand::Cancel {
                    by: by.to_string(),
                    at: Utc::now(),
                },
                meta,
            )
            .await
            .map_err(run_error)?;
        self.release(&run.integration_id, run_id, meta).await?;
        self.load(run_id).await?.ok_or(RunError::RunNotFound)
    }

    /// Starts a run that retries only the records `run_id` failed on.
    pub async fn retry(
        &self,
        run_id: &str,
        trigger: Trigger,
        meta: &Metadata,
    ) -> Result<String, RunError> {
        let run = self.ended(run_id, meta, "be retried").await?;
        if run.failures.is_empty() {
            return Err(RunError::NothingToRetry(format!(
                "sync run {run_id} has no failed records to retry"
            )));
        }
        let kind = run.kind.unwrap_or(RunKind::Incremental);
        if let (RunKind::Rollback, Some(target)) = (kind, run.rollback_of.clone()) {
            // A rollback is retried by rolling its run back again: what went back already
            // shows as changed since and is left alone; what failed (or was owed) goes now.
            return self
                .trigger_run(
                    &run.integration_id,
                    RunKind::Rollback,
                    trigger,
                    Lineage {
                        retry_of: Some(run_id.to_string()),
                        rollback_of: Some(target),
                    },
                    meta,
                    RunOptions::default(),
                )
                .await;
        }
        self.trigger(
            &run.integration_id,
            kind,
            trigger,
            Some(run_id.to_string()),
            meta,
        )
        .await
    }

    /// The run `run_id` of this workspace, which must have ended to `action` (409 else).
    async fn ended(
        &self,
        run_id: &str,
        meta: &Metadata,
        action: &'static str,
    ) -> Result<SyncRun, RunError> {
        let run = self.load(run_id).await?.ok_or(RunError::RunNotFound)?;
        if run.workspace_id != meta.workspace_id {
            return Err(RunError::RunNotFound);
        }
        if run.status.is_active() {
            return Err(RunError::State(SyncRunError::InvalidTransition {
                status: run.status,
                action,
            }));
        }
        Ok(run)
    }

    /// What rolling back `run_id` would do, record by record; writes nothing.
    pub async fn preview_rollback(
        &self,
        run_id: &str,
        meta: &Metadata,
    ) -> Result<crate::rollback::Preview, RunError> {
        let run = self.ended(run_id, meta, "be rolled back").await?;
        let integration = self
            .services
            .integrations
            .load(&run.integration_id)
            .await
            .map_err(integration_error)?;
        let access = syncledger_domain::rollback::CrmAccess::for_status(integration.status);
        let scope = crate::rollback::Scope::new(run.workspace_id, run_id);
        Ok(crate::rollback::preview(&self.services.store, &scope, access).await?)
    }

    /// Queues a run of kind `rollback` that reverses `run_id` (which must have ended).
    pub async fn rollback(&self, run_id: &str, meta: &Metadata) -> Result<String, RunError> {
        let run = self.ended(run_id, meta, "be rolled back").await?;
        self.trigger_run(
            &run.integration_id,
            RunKind::Rollback,
            Trigger::Manual,
            Lineage {
                retry_of: None,
                rollback_of: Some(run_id.to_string()),
            },
            meta,
            RunOptions::default(),
        )
        .await
    }

    /// Runs that are queued or running (per the read model): what a restarted worker
    /// picks up again.
    pub async fn unfinished(&self) -> Result<Vec<ActiveRun>, EngineError> {
        self.services
            .catch_up
            .catch_up()
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        Ok(lookup::active_runs(&self.services.store.any).await?)
    }

    /// Runs waiting for a worker (per the read model): what a polling worker takes.
    pub async fn queued(&self) -> Result<Vec<String>, EngineError> {
        self.services
            .catch_up
            .catch_up()
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        Ok(lookup::queued_runs(&self.services.store.any).await?)
    }

    /// Executes (or resumes) a run to its end. Returns the status it ended in.
    pub async fn execute(&self, run_id: &str) -> Result<RunStatus, EngineError> {
        lifecycle::execute(&self.services, run_id).await
    }
}
