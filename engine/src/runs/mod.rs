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

mod duplicates;
mod exec;
pub(crate) mod ingest;
pub(crate) mod lookup;
mod push;
mod reread;
mod rollback;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use syncledger_crm::Cursor;
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

/// A pull or deletions pass's resume point, stored in the run's page events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PullCursor {
    /// The provider's cursor of the next page; `None` before the first and after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Cursor>,
    /// Records modified at or after this instant (inclusive: the boundary overlaps and
    /// the merge deduplicates, so records sharing the last timestamp are never skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The latest modification time seen so far: the next incremental run starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<DateTime<Utc>>,
    /// The remote ids of the records modified exactly at `high_water` seen so far;
    /// `None` when unknown or more than [`MAX_AT_HIGH_WATER`]. The next incremental
    /// run asks the provider to leave these out of its inclusive boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_high_water: Option<Vec<String>>,
    /// The ids this pass asked the provider to leave out at `since` (fixed for the
    /// pass: every page of one search must ask the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
}

/// How many records sharing the last modification time a cursor names; more,
/// and the next run's boundary repeats them (deduplicated, at a few calls' cost).
pub(crate) const MAX_AT_HIGH_WATER: usize = 100;

impl PullCursor {
    /// A fresh pass: from the previous run's high-water mark (incremental), or
    /// from the beginning.
    pub(crate) fn starting(previous: Option<(DateTime<Utc>, Option<Vec<String>>)>) -> Self {
        match previous {
            Some((since, at)) => Self {
                page: None,
                since: Some(since),
                high_water: Some(since),
                seen: at.clone().unwrap_or_default(),
                at_high_water: at,
            },
            None => Self {
                at_high_water: Some(Vec::new()),
                ..Self::default()
            },
        }
    }

    /// Moves the high-water mark past a fetched (not archived) record.
    pub(crate) fn note(&mut self, remote_id: &str, modified: DateTime<Utc>) {
        match self.high_water.cmp(&Some(modified)) {
            std::cmp::Ordering::Less => {
                self.high_water = Some(modified);
                self.at_high_water = Some(vec![remote_id.to_owned()]);
            }
            std::cmp::Ordering::Equal => {
                if let Some(ids) = &mut self.at_high_water {
                    if !ids.iter().any(|id| id == remote_id) {
                        if ids.len() >= MAX_AT_HIGH_WATER {
                            self.at_high_water = None;
                        } else {
                            ids.push(remote_id.to_owned());
                        }
                    }
                }
            }
            std::cmp::Ordering::Greater => {}
        }
    }
}

/// A push pass's resume point: records are pushed in id order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PushCursor {
    pub after: String,
}

/// Starts, executes, cancels and retries sync runs. Cheap to clone.
#[derive(Clone)]
pub struct SyncRuns {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
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
        CommandError::Store(s) => RunError::Engine(EngineError::Store(s)),
    }
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
        .with_batch(2000);
        SyncRuns {
            inner: Arc::new(Inner {
                store: store.clone(),
                connections,
                integrations: store.cqrs(),
                runs: store.cqrs(),
                records: store.cqrs(),
                worker: worker.into(),
                catch_up,
                webhooks_pending: Default::default(),
            }),
        }
    }

    /// Notes a webhook that arrived while a run was active on the integration.
    pub fn remember_webhook(&self, integration_id: &str) {
        if let Ok(mut pending) = self.inner.webhooks_pending.lock() {
            pending.insert(integration_id.to_string());
        }
    }

    /// Takes the integrations owed a webhook follow-up run.
    pub fn take_pending_webhooks(&self) -> Vec<String> {
        self.inner
            .webhooks_pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_iter().collect())
            .unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn worker(&self) -> &str {
        &self.inner.worker
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
        let inner = &self.inner;
        let integration = inner
            .integrations
            .load(integration_id)
            .await
            .map_err(integration_error)?;
        if integration.id.is_none() || integration.workspace_id != meta.workspace_id {
            return Err(RunError::IntegrationNotFound);
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
        if kind == RunKind::Push && direction == Direction::Pull {
            return Err(RunError::Unusable(
                "the integration only pulls (direction pull): a push run has nothing to do".into(),
            ));
        }
        let run_id = uuid::Uuid::now_v7().to_string();
        let now = Utc::now();
        let begin = IntegrationCommand::BeginSyncRun {
            run_id: run_id.clone(),
            rollback: kind == RunKind::Rollback,
            at: now,
        };
        match inner
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
                inner
                    .integrations
                    .execute(integration_id, begin, meta)
                    .await
                    .map_err(integration_error)?;
            }
            Err(e) => return Err(e),
        }
        let queued = inner
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

    /// Frees the integration's active-run slot held by `run_id` (a no-op otherwise).
    async fn release(
        &self,
        integration_id: &str,
        run_id: &str,
        meta: &Metadata,
    ) -> Result<(), EngineError> {
        self.inner
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
            .inner
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
        self.inner
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
            .inner
            .integrations
            .load(&run.integration_id)
            .await
            .map_err(integration_error)?;
        let access = syncledger_domain::rollback::CrmAccess::for_status(integration.status);
        let scope = crate::rollback::Scope::new(run.workspace_id, run_id);
        Ok(crate::rollback::preview(&self.inner.store, &scope, access).await?)
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
    pub async fn unfinished(&self) -> Result<Vec<String>, EngineError> {
        self.inner
            .catch_up
            .catch_up()
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        lookup::active_runs(&self.inner.store.any).await
    }

    /// Runs waiting for a worker (per the read model): what a polling worker takes.
    pub async fn queued(&self) -> Result<Vec<String>, EngineError> {
        self.inner
            .catch_up
            .catch_up()
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        lookup::queued_runs(&self.inner.store.any).await
    }

    /// Executes (or resumes) a run to its end. Returns the status it ended in.
    pub async fn execute(&self, run_id: &str) -> Result<RunStatus, EngineError> {
        exec::execute(&self.inner, run_id).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
    }

    #[test]
    fn the_cursor_names_what_it_saw_at_its_high_water_mark() {
        let mut c = PullCursor::starting(None);
        c.note("a", at(5));
        c.note("b", at(9));
        c.note("c", at(9));
        c.note("b", at(9));
        c.note("d", at(7));
        assert_eq!(c.high_water, Some(at(9)));
        assert_eq!(c.at_high_water, Some(vec!["b".to_owned(), "c".to_owned()]));
        // The next pass starts there and asks to leave exactly those out.
        let next = PullCursor::starting(Some((at(9), c.at_high_water.clone())));
        assert_eq!(next.seen, ["b", "c"]);
        assert_eq!(next.since, Some(at(9)));
    }

    #[test]
    fn too_many_at_one_instant_are_forgotten_until_a_later_one() -> serde_json::Result<()> {
        let mut c = PullCursor::starting(None);
        for i in 0..=MAX_AT_HIGH_WATER {
            c.note(&i.to_string(), at(1));
        }
        assert_eq!(c.at_high_water, None, "over the bound: unknown");
        c.note("x", at(1));
        assert_eq!(c.at_high_water, None);
        c.note("later", at(2));
        assert_eq!(c.at_high_water, Some(vec!["later".to_owned()]));
        // An old cursor (before the field existed) knows nothing: nothing is left out.
        let old: PullCursor = serde_json::from_str(r#"{"high_water":"1970-01-01T00:00:00.002Z"}"#)?;
        assert_eq!(old.high_water, Some(at(2)));
        let next = PullCursor::starting(old.high_water.map(|h| (h, old.at_high_water)));
        assert!(next.seen.is_empty());
        Ok(())
    }
}
