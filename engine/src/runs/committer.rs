//! The committer: appends decided pages, each page's record events followed by the
//! run's `PageCommitted` (with the cursor to resume from), in groups of whatever was
//! decided while the previous commit was in flight. A group whose append conflicts is
//! committed again page by page, and a page that conflicts alone is decided again record
//! by record.

use chrono::Utc;
use syncledger_domain::sync_run::{
    Phase, RecordFailure, RunStats, RunStatus, SyncRun, SyncRunCommand, SyncRunError,
};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::{AppendError, NewEvent};

use super::decider::Decider;
use super::execution::{encode, store_err, Execution, Flow};
use super::feeder::DecidedPage;
use crate::crashpoint;
use crate::EngineError;

/// The outcome of appending a page.
pub(super) enum Commit {
    Done,
    Stopped,
    /// A record's sequence was taken: decide the page again on fresh state.
    Conflict,
}

impl Execution<'_> {
    /// Commits decided pages as they come, each commit taking all that are waiting.
    pub(super) async fn commit_pages(
        &mut self,
        entity: Entity,
        decider: &Decider<'_>,
        mut decided: tokio::sync::mpsc::UnboundedReceiver<DecidedPage>,
    ) -> Result<Flow, EngineError> {
        while let Some(first) = decided.recv().await {
            let mut group = vec![first];
            while let Ok(page) = decided.try_recv() {
                group.push(page);
            }
            let pages = group.len();
            if self.commit_group(entity, decider, group).await? == Flow::Stopped {
                return Ok(Flow::Stopped);
            }
            for _ in 0..pages {
                crashpoint::reach("pull:committed");
            }
        }
        Ok(Flow::Continue)
    }

    /// Commits decided pages in one transaction: each page's record events, then its
    /// page event, as separate commits would have written them. When the append
    /// conflicts (a record in two of the pages, or a state gone stale), the pages are
    /// committed again one at a time.
    async fn commit_group(
        &mut self,
        entity: Entity,
        decider: &Decider<'_>,
        mut group: Vec<DecidedPage>,
    ) -> Result<Flow, EngineError> {
        if group.len() == 1 {
            if let Some(page) = group.pop() {
                return self.commit_pulled(entity, decider, page).await;
            }
        }
        let mut page_rows = Vec::with_capacity(group.len());
        for page in &group {
            let command = page_command(
                entity,
                Phase::Pull,
                page.cursor.clone(),
                page.done,
                page.decision.stats,
                page.decision.failures.clone(),
            )
            .with_total(page.total);
            match self.stage(command)? {
                Some(rows) => page_rows.push(rows),
                None => return Ok(Flow::Stopped),
            }
        }
        let batches: Vec<&[NewEvent]> = group
            .iter()
            .zip(&page_rows)
            .flat_map(|(page, rows)| [page.decision.events.as_slice(), rows.as_slice()])
            .collect();
        match self.append_staged(&batches).await? {
            Commit::Done => Ok(Flow::Continue),
            Commit::Stopped => Ok(Flow::Stopped),
            Commit::Conflict => {
                for page in group {
                    if self.commit_pulled(entity, decider, page).await? == Flow::Stopped {
                        return Ok(Flow::Stopped);
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    /// Commits a decided page: its record events and the run's page event in one
    /// transaction, or, when the append conflicts, the page again record by record.
    async fn commit_pulled(
        &mut self,
        entity: Entity,
        decider: &Decider<'_>,
        page: DecidedPage,
    ) -> Result<Flow, EngineError> {
        self.page_total = page.total;
        let commit = self
            .commit(
                entity,
                Phase::Pull,
                page.cursor.clone(),
                page.done,
                page.decision.stats,
                page.decision.failures,
                page.decision.events,
            )
            .await?;
        match commit {
            Commit::Done => Ok(Flow::Continue),
            Commit::Stopped => Ok(Flow::Stopped),
            Commit::Conflict => {
                let mut again = decider.ingest_one_by_one(&page.records).await?;
                again
                    .stats
                    .charge(page.used.requests, page.used.rate_limited);
                self.commit_run_only(
                    entity,
                    Phase::Pull,
                    page.cursor,
                    page.done,
                    again.stats,
                    again.failures,
                )
                .await
            }
        }
    }

    /// Appends the page's record events and the run's page event in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit(
        &mut self,
        entity: Entity,
        phase: Phase,
        cursor: serde_json::Value,
        done: bool,
        stats: RunStats,
        failures: Vec<RecordFailure>,
        rows: Vec<NewEvent>,
    ) -> Result<Commit, EngineError> {
        let command = page_command(entity, phase, cursor, done, stats, failures)
            .with_total(self.page_total.take());
        let Some(page) = self.stage(command)? else {
            return Ok(Commit::Stopped);
        };
        self.append_staged(&[&rows, &page]).await
    }

    /// Decides the run's events for `command` and applies them ahead of their append,
    /// returning the rows to append; `None` when the run no longer takes them (it was
    /// ended). Until the append succeeds, the run state here is ahead of the store: a
    /// conflict reloads it ([`Execution::append_staged`]), and any other failure ends the
    /// execution.
    fn stage(&mut self, command: SyncRunCommand) -> Result<Option<Vec<NewEvent>>, EngineError> {
        let events = match self.run.decide(command) {
            Ok(events) => events,
            Err(SyncRunError::InvalidTransition { .. }) => return Ok(None),
            Err(e) => return Err(EngineError::Store(e.to_string())),
        };
        let run_id = self.run_id();
        let mut rows = Vec::with_capacity(events.len());
        for e in &events {
            self.version += 1;
            rows.push(
                NewEvent::of::<SyncRun>(&run_id, self.version, e, &self.meta).map_err(encode)?,
            );
            self.run.apply(e);
        }
        Ok(Some(rows))
    }

    /// Appends staged rows in one transaction. On a conflict the run is loaded afresh:
    /// [`Commit::Stopped`] if this execution no longer owns it, else [`Commit::Conflict`].
    async fn append_staged(&mut self, batches: &[&[NewEvent]]) -> Result<Commit, EngineError> {
        match self
            .writer
            .append_all(&self.services.store.events, batches)
            .await
        {
            Ok(()) => {
                self.services.committed.notify_waiters();
                Ok(Commit::Done)
            }
            Err(AppendError::Conflict) => {
                let (run, version) = self
                    .services
                    .runs
                    .load_versioned(&self.run_id())
                    .await
                    .map_err(store_err)?;
                self.run = run;
                self.version = version;
                let ours = self.run.status == RunStatus::Running
                    && self.run.worker.as_deref() == Some(&self.tag);
                Ok(if ours {
                    Commit::Conflict
                } else {
                    Commit::Stopped
                })
            }
            Err(AppendError::Db(e)) => Err(store_err(e)),
        }
    }

    /// Appends only the run's page event (the records were written one by one).
    pub(super) async fn commit_run_only(
        &mut self,
        entity: Entity,
        phase: Phase,
        cursor: serde_json::Value,
        done: bool,
        stats: RunStats,
        failures: Vec<RecordFailure>,
    ) -> Result<Flow, EngineError> {
        for _ in 0..5 {
            match self
                .commit(
                    entity,
                    phase,
                    cursor.clone(),
                    done,
                    stats,
                    failures.clone(),
                    vec![],
                )
                .await?
            {
                Commit::Done => return Ok(Flow::Continue),
                Commit::Stopped => return Ok(Flow::Stopped),
                Commit::Conflict => continue,
            }
        }
        Err(EngineError::Conflict)
    }
}

/// The run's command for a committed page.
fn page_command(
    entity: Entity,
    phase: Phase,
    cursor: serde_json::Value,
    done: bool,
    stats: RunStats,
    failures: Vec<RecordFailure>,
) -> SyncRunCommand {
    SyncRunCommand::CommitPage {
        entity,
        phase,
        cursor: Some(cursor),
        done,
        stats,
        failures,
        total: None,
        at: Utc::now(),
    }
}
