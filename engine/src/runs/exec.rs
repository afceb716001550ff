//! Executing one run: the passes, the page loop, committing, ending.

use chrono::Utc;
use serde::de::DeserializeOwned;
use syncledger_crm::{CrmError, Page, RemoteRecord};
use syncledger_domain::merge::MergePolicy;
use syncledger_domain::provider_text::clean;
use syncledger_domain::record::{RecordCommand, RecordError};
use syncledger_domain::sync_config::Direction;
use syncledger_domain::sync_run::{
    Phase, RecordFailure, RunKind, RunStats, RunStatus, SyncRun, SyncRunCommand, SyncRunError,
};
use syncledger_domain::{Aggregate, Entity, Integration};
use syncledger_store::append::{AppendError, NewEvent, Writer};
use syncledger_store::{CommandError, Metadata};

use super::ingest::Ingestion;
use super::lookup;
use super::{Inner, PullCursor};
use crate::crashpoint;
use crate::mapping::{effective_mappings, Mapper};
use crate::{EngineError, Session};

/// How far the previous runs are searched for a high-water mark.
const HISTORY: i64 = 50;

/// Fetched records decided and waiting for a commit, at most: the feed pauses beyond
/// this (a bound on memory; a page larger than this waits for the commits to drain).
/// Committing a few thousand records per transaction already spreads its fixed cost
/// (a round trip, a WAL flush) thin; the database's per-row work is what remains.
const AHEAD: usize = 5_000;

/// Whether the run goes on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// Someone else ended the run (cancelled) or took it over: stop quietly.
    Stopped,
}

/// The outcome of appending a page.
pub(super) enum Commit {
    Done,
    Stopped,
    /// A record's sequence was taken: decide the page again on fresh state.
    Conflict,
}

fn store_err<E: std::fmt::Display>(e: E) -> EngineError {
    EngineError::Store(e.to_string())
}

pub(super) fn encode(e: serde_json::Error) -> EngineError {
    EngineError::Store(format!("could not encode an event: {e}"))
}

pub(super) async fn execute(inner: &Inner, run_id: &str) -> Result<RunStatus, EngineError> {
    let run = inner.runs.load(run_id).await.map_err(store_err)?;
    if run.id.is_none() {
        return Err(EngineError::RunNotFound);
    }
    let meta = Metadata::new(
        format!("worker:{}", inner.worker),
        run.workspace_id.clone(),
        run_id,
    );
    if !run.status.is_active() {
        release(inner, &run, &meta).await?;
        return Ok(run.status);
    }
    // Each execution has its own tag, so a worker that was replaced (its run taken over
    // after it stalled) notices at its next page and stops.
    let tag = format!(
        "{}#{}",
        inner.worker,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let start = inner
        .runs
        .execute(
            run_id,
            SyncRunCommand::Start {
                worker: tag.clone(),
                at: Utc::now(),
            },
            &meta,
        )
        .await;
    match start {
        Ok(()) => {}
        Err(CommandError::Domain(SyncRunError::InvalidTransition { status, .. })) => {
            release(inner, &run, &meta).await?;
            return Ok(status);
        }
        Err(e) => return Err(store_err(e)),
    }
    let outcome = drive_through_outages(inner, run_id, &tag, &meta).await;
    let end = match outcome {
        Ok(Flow::Stopped) => None,
        Ok(Flow::Continue) => {
            crashpoint::reach("run:finishing");
            Some(SyncRunCommand::Finish { at: Utc::now() })
        }
        Err(EngineError::Provider(CrmError::QuotaExhausted(detail))) => {
            Some(SyncRunCommand::ExhaustQuota {
                detail: clean(&detail),
                at: Utc::now(),
            })
        }
        Err(e) => {
            tracing::warn!(run_id, error = %e, "sync run failed");
            Some(SyncRunCommand::Fail {
                reason: e.to_string(),
                at: Utc::now(),
            })
        }
    };
    if let Some(command) = end {
        let mut strikes = 0;
        loop {
            match inner.runs.execute(run_id, command.clone(), &meta).await {
                Ok(()) | Err(CommandError::Domain(SyncRunError::InvalidTransition { .. })) => break,
                Err(CommandError::Store(e)) if strikes < STORE_RETRIES => {
                    tracing::warn!(run_id, error = %e, "could not record the run's end; retrying once the store answers");
                    if wait_for_store(inner).await {
                        strikes += 1;
                    }
                }
                Err(e) => return Err(store_err(e)),
            }
        }
    }
    let run = inner.runs.load(run_id).await.map_err(store_err)?;
    if !run.status.is_active() {
        release(inner, &run, &meta).await?;
    }
    Ok(run.status)
}

/// Store errors tolerated in a row while the store answers, with no page committed in
/// between, before the run fails: an error that persists with the database up is not an
/// outage. Errors while the database does not answer are not counted: the run waits for
/// it, however long, and resumes.
const STORE_RETRIES: u32 = 3;

/// Executes the run, riding out store outages: on a store error the execution waits until
/// the database answers again and resumes from the run's last committed page (a fetched
/// page that was not committed is fetched again; its records merge as no change).
async fn drive_through_outages(
    inner: &Inner,
    run_id: &str,
    tag: &str,
    meta: &Metadata,
) -> Result<Flow, EngineError> {
    let mut strikes = 0;
    let mut committed = None;
    loop {
        let (run, version) = match inner.runs.load_versioned(run_id).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "could not load the run; retrying once the store answers");
                if wait_for_store(inner).await {
                    strikes += 1;
                    if strikes > STORE_RETRIES {
                        return Err(store_err(e));
                    }
                }
                continue;
            }
        };
        // Cancelled or taken over while the store was away: not ours to go on with.
        if run.status != RunStatus::Running || run.worker.as_deref() != Some(tag) {
            return Ok(Flow::Stopped);
        }
        if committed.is_some_and(|v| version > v) {
            strikes = 0;
        }
        committed = Some(version);
        let outcome = match Ctx::open(inner, run, version, tag.to_owned(), meta.clone()).await {
            Ok(mut ctx) => ctx.drive().await,
            Err(e) => Err(e),
        };
        match outcome {
            Err(EngineError::Store(cause)) => {
                tracing::warn!(run_id, error = %cause, "store error during a sync run; resuming from its last committed page once the store answers");
                if wait_for_store(inner).await {
                    strikes += 1;
                    if strikes > STORE_RETRIES {
                        return Err(EngineError::Store(cause));
                    }
                }
            }
            other => return other,
        }
    }
}

/// Waits until the store answers, with backoff and no limit. Returns whether it answered
/// at once (the error was not an outage, or one already over).
async fn wait_for_store(inner: &Inner) -> bool {
    if inner.store.answers().await {
        return true;
    }
    let mut pause = std::time::Duration::from_millis(100);
    while !inner.store.answers().await {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
    tracing::info!("the store answers again");
    false
}

async fn release(inner: &Inner, run: &SyncRun, meta: &Metadata) -> Result<(), EngineError> {
    let Some(run_id) = run.id.clone() else {
        return Ok(());
    };
    inner
        .integrations
        .execute(
            &run.integration_id,
            syncledger_domain::IntegrationCommand::FinishSyncRun {
                run_id,
                at: Utc::now(),
            },
            meta,
        )
        .await
        .map_err(EngineError::from)
}

/// One execution of a run.
pub(super) struct Ctx<'a> {
    pub inner: &'a Inner,
    pub run: SyncRun,
    pub version: i64,
    pub tag: String,
    pub meta: Metadata,
    pub integration: Integration,
    /// `None` only while a page fetch holds it (see [`Ctx::pull`]).
    pub session: Option<Session>,
    pub policy: MergePolicy,
    /// Provider requests counted so far (the adapter's counter at the last page).
    pub calls_seen: u64,
    /// The connection the run's pages are appended on, kept from page to page.
    pub writer: Writer,
    /// The provider's record count for the pull page being committed one at a time
    /// ([`Ctx::commit_pulled`]), carried on its page event.
    pub page_total: Option<u64>,
}

impl<'a> Ctx<'a> {
    async fn open(
        inner: &'a Inner,
        run: SyncRun,
        version: i64,
        tag: String,
        meta: Metadata,
    ) -> Result<Ctx<'a>, EngineError> {
        let rollback = run.kind == Some(RunKind::Rollback);
        let session = match inner.connections.session(&run.integration_id).await {
            Ok(session) => Some(session),
            // A rollback without its CRM still puts the app back (the CRM's part is owed).
            Err(EngineError::NotConnected | EngineError::Unusable { .. }) if rollback => None,
            Err(e) => return Err(e),
        };
        // The adapter outlives runs: count this run's requests from here.
        let calls_seen = session.as_ref().map_or(0, |s| s.adapter().requests_sent());
        let integration = match &session {
            Some(s) => s.integration().clone(),
            None => inner
                .integrations
                .load(&run.integration_id)
                .await
                .map_err(store_err)?,
        };
        let policy = integration.merge_policy();
        Ok(Ctx {
            inner,
            run,
            version,
            tag,
            meta,
            integration,
            session,
            policy,
            calls_seen,
            writer: Writer::default(),
            page_total: None,
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

    /// Requests sent since the last call of this.
    pub(super) fn take_calls(&mut self) -> u64 {
        let Some(session) = &self.session else {
            return 0;
        };
        let now = session.adapter().requests_sent();
        let delta = now.saturating_sub(self.calls_seen);
        self.calls_seen = now;
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
        let feed = self.inner.store.feed();
        let target = feed
            .last_position_of(syncledger_domain::sync_run::SyncRun::TYPE, &self.run_id())
            .await
            .map_err(store_err)?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            self.inner.catch_up.catch_up().await.map_err(store_err)?;
            let Some(target) = target else { return Ok(()) };
            let seen = syncledger_projections::checkpoint::read(&self.inner.store.any, "records")
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

    async fn drive(&mut self) -> Result<Flow, EngineError> {
        // The run's own options narrow the integration's config (validated when queued).
        let entities = self.run.options.entities_of(&self.integration.sync_config);
        let direction = self.run.options.direction_of(&self.integration.sync_config);
        let kind = self.run.kind.unwrap_or(RunKind::Incremental);
        if kind == RunKind::Rollback {
            return self.rollback().await;
        }
        if let Some(original) = self.run.retry_of.clone() {
            return self.retry(&original).await;
        }
        let pulls = kind != RunKind::Push && direction != Direction::Push;
        let pushes = direction != Direction::Pull;
        if pulls {
            self.catch_up().await?;
            for &entity in &entities {
                if self.pull(entity, kind).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
            // Deletions only after every pull pass ended cleanly: a partial run never
            // deletes (a record that failed to load might look deleted).
            if self.run.stats.failed == 0 {
                for &entity in &entities {
                    if self.deletions(entity).await? == Flow::Stopped {
                        return Ok(Flow::Stopped);
                    }
                }
            }
        }
        if pushes {
            self.catch_up().await?;
            for &entity in &entities {
                if self.push(entity).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Where the last finished run left the pass's high-water mark, and which
    /// records it had seen at that instant.
    async fn previous_high_water(
        &self,
        entity: Entity,
        phase: Phase,
    ) -> Result<Option<(chrono::DateTime<Utc>, Option<Vec<String>>)>, EngineError> {
        let runs =
            lookup::finished_runs(&self.inner.store.any, &self.run.integration_id, HISTORY).await?;
        // A run of an older version has no kind: it pulled.
        let pulled = |run: &SyncRun| run.kind.is_none_or(RunKind::reads_the_crm);
        for run in runs.iter().filter(|r| pulled(r)) {
            if let Some(cursor) = lookup::ended_pass(run, entity, phase) {
                let c: PullCursor = from_json(cursor)?;
                if let Some(high_water) = c.high_water {
                    return Ok(Some((high_water, c.at_high_water)));
                }
            }
        }
        Ok(None)
    }

    /// The pass's saved cursor, or a fresh one.
    async fn pull_cursor(
        &self,
        entity: Entity,
        phase: Phase,
        incremental: bool,
    ) -> Result<Option<PullCursor>, EngineError> {
        match self.run.pass(entity, phase) {
            Some(p) if p.done => Ok(None),
            Some(p) => match &p.cursor {
                Some(c) => Ok(Some(from_json(c)?)),
                None => Ok(Some(PullCursor::default())),
            },
            None => {
                let previous = if !self.run.options.import_historical {
                    // No history: the pass starts at the run's start ("now"), so it reads
                    // only what changes from then on and leaves that as its high water.
                    Some((self.run.queued_at.unwrap_or_else(Utc::now), None))
                } else if incremental {
                    self.previous_high_water(entity, phase).await?
                } else {
                    None
                };
                Ok(Some(PullCursor::starting(previous)))
            }
        }
    }

    async fn fetch(
        &mut self,
        entity: Entity,
        phase: Phase,
        cursor: &PullCursor,
    ) -> Result<Page, EngineError> {
        let meta = self.meta.clone();
        fetch(self.session()?, &meta, entity, phase, cursor).await
    }

    pub(super) fn ingestion<'m>(
        &'m self,
        entity: Entity,
        mapper: &'m Mapper,
        run_id: &'m str,
    ) -> Ingestion<'m> {
        Ingestion {
            store: &self.inner.store,
            records: &self.inner.records,
            workspace_id: &self.run.workspace_id,
            integration_id: &self.run.integration_id,
            entity,
            run_id,
            policy: &self.policy,
            mapper,
            meta: &self.meta,
        }
    }

    /// Pulls every page of the pass, with the provider, this process and the database
    /// all at work at once: the next page is fetched (on its own task) while the last
    /// one is decided, and decided pages are committed on the side. A commit takes every
    /// page decided while the previous commit was in flight (up to [`AHEAD`] records),
    /// so when the database is the slowest stage, its fixed cost per transaction is
    /// shared out.
    ///
    /// Decisions read only the records read model, which commits do not touch, so
    /// deciding a page before the previous ones are committed decides it on the same
    /// states; commits stay in page order, and a decision made stale by a commit makes
    /// its own append conflict (and be decided again record by record), as with any
    /// other writer.
    async fn pull(&mut self, entity: Entity, kind: RunKind) -> Result<Flow, EngineError> {
        let Some(cursor) = self
            .pull_cursor(entity, Phase::Pull, kind == RunKind::Incremental)
            .await?
        else {
            return Ok(Flow::Continue);
        };
        let mapper = self.mapper(entity)?;
        let run_id = self.run_id();
        let (inner, meta, policy) = (self.inner, self.meta.clone(), self.policy.clone());
        let (workspace_id, integration_id) = (
            self.run.workspace_id.clone(),
            self.run.integration_id.clone(),
        );
        let ingestion = Ingestion {
            store: &inner.store,
            records: &inner.records,
            workspace_id: &workspace_id,
            integration_id: &integration_id,
            entity,
            run_id: &run_id,
            policy: &policy,
            mapper: &mapper,
            meta: &meta,
        };
        let mut feeder = Feeder {
            session: self.session.take(),
            inflight: None,
            calls_seen: self.calls_seen,
            meta: meta.clone(),
            entity,
        };
        let (pages, decided) = tokio::sync::mpsc::unbounded_channel();
        let (fed, committed) = tokio::join!(
            feeder.feed(&ingestion, cursor, pages),
            self.commit_pages(entity, &ingestion, decided)
        );
        self.session = feeder.settle().await;
        self.calls_seen = feeder.calls_seen;
        // The commits' outcome first: a stopped run stops the feed, which then ends
        // quietly; a feed that failed lets the commits finish what it had decided.
        if committed? == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
        fed?;
        Ok(Flow::Continue)
    }

    /// Commits decided pages as they come, each commit taking all that are waiting.
    async fn commit_pages(
        &mut self,
        entity: Entity,
        ingestion: &Ingestion<'_>,
        mut decided: tokio::sync::mpsc::UnboundedReceiver<DecidedPage>,
    ) -> Result<Flow, EngineError> {
        while let Some(first) = decided.recv().await {
            let mut group = vec![first];
            while let Ok(page) = decided.try_recv() {
                group.push(page);
            }
            let pages = group.len();
            if self.commit_group(entity, ingestion, group).await? == Flow::Stopped {
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
        ingestion: &Ingestion<'_>,
        mut group: Vec<DecidedPage>,
    ) -> Result<Flow, EngineError> {
        if group.len() == 1 {
            if let Some(page) = group.pop() {
                return self.commit_pulled(entity, ingestion, page).await;
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
                    if self.commit_pulled(entity, ingestion, page).await? == Flow::Stopped {
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
        ingestion: &Ingestion<'_>,
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
                let mut again = ingestion.ingest_one_by_one(&page.records).await?;
                again.stats.api_calls = page.calls;
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

    async fn deletions(&mut self, entity: Entity) -> Result<Flow, EngineError> {
        let Some(mut cursor) = self.pull_cursor(entity, Phase::Deletions, true).await? else {
            return Ok(Flow::Continue);
        };
        let run_id = self.run_id();
        loop {
            let page = self.fetch(entity, Phase::Deletions, &cursor).await?;
            let mut stats = RunStats {
                api_calls: self.take_calls(),
                ..RunStats::default()
            };
            let mut failures = Vec::new();
            let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
            let links = lookup::linked(
                &self.inner.store.any,
                &self.run.workspace_id,
                &self.run.integration_id,
                &ids,
            )
            .await?;
            for r in &page.records {
                stats.processed += 1;
                cursor.note(&r.id, r.updated_at);
                let Some(record_id) = links.get(&r.id) else {
                    stats.skipped += 1;
                    continue;
                };
                let command = RecordCommand::RemoteDelete {
                    integration_id: self.run.integration_id.clone(),
                    run_id: run_id.clone(),
                    on_delete: self.integration.sync_config.on_crm_delete,
                    at: Utc::now(),
                };
                match self
                    .inner
                    .records
                    .execute(record_id, command, &self.meta)
                    .await
                {
                    Ok(()) => stats.updated += 1,
                    // Already unlinked or marked deleted (a page applied again after a
                    // crash, or a deletion the provider keeps listing).
                    Err(CommandError::Domain(RecordError::NotLinked(_))) => stats.unchanged += 1,
                    Err(e) => {
                        stats.failed += 1;
                        failures.push(RecordFailure {
                            entity,
                            phase: Phase::Deletions,
                            record_id: Some(record_id.clone()),
                            remote_id: Some(r.id.clone()),
                            error: e.to_string(),
                            fetched: None,
                        });
                    }
                }
            }
            cursor.page = page.next.clone();
            let done = page.next.is_none();
            let flow = self
                .commit_run_only(
                    entity,
                    Phase::Deletions,
                    to_json(&cursor)?,
                    done,
                    stats,
                    failures,
                )
                .await?;
            if flow == Flow::Stopped || done {
                return Ok(flow);
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
    /// conflict reloads it ([`Ctx::append_staged`]), and any other failure ends the
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
            .append_all(&self.inner.store.events, batches)
            .await
        {
            Ok(()) => Ok(Commit::Done),
            Err(AppendError::Conflict) => {
                let (run, version) = self
                    .inner
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

    /// A retry run: the original run's failed records only. Fetched records that failed
    /// to ingest are ingested again from the copy kept in the failure (no provider call);
    /// records that failed to push are pushed again.
    async fn retry(&mut self, original: &str) -> Result<Flow, EngineError> {
        let orig = self.inner.runs.load(original).await.map_err(store_err)?;
        let run_id = self.run_id();
        let entities = self.integration.sync_config.entities.clone();
        for &entity in &entities {
            if !self.run.pass(entity, Phase::Pull).is_some_and(|p| p.done) {
                let fetched: Vec<RemoteRecord> = orig
                    .failures
                    .iter()
                    .filter(|f| f.entity == entity && f.phase == Phase::Pull)
                    .filter_map(|f| f.fetched.as_ref())
                    .filter_map(|v| serde_json::from_value(v.clone()).ok())
                    .collect();
                let mapper = self.mapper(entity)?;
                let decided = self
                    .ingestion(entity, &mapper, &run_id)
                    .ingest_one_by_one(&fetched)
                    .await?;
                let flow = self
                    .commit_run_only(
                        entity,
                        Phase::Pull,
                        serde_json::json!({}),
                        true,
                        decided.stats,
                        decided.failures,
                    )
                    .await?;
                if flow == Flow::Stopped {
                    return Ok(flow);
                }
            }
            if !self.run.pass(entity, Phase::Push).is_some_and(|p| p.done) {
                self.catch_up().await?;
                let ids: Vec<String> = orig
                    .failures
                    .iter()
                    .filter(|f| f.entity == entity && f.phase == Phase::Push)
                    .filter_map(|f| f.record_id.clone())
                    .collect();
                if self.push_records(entity, ids).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
        }
        Ok(Flow::Continue)
    }
}

/// A fetched page, decided and waiting for its commit.
struct DecidedPage {
    records: Vec<RemoteRecord>,
    cursor: serde_json::Value,
    done: bool,
    calls: u64,
    decision: super::ingest::Decided,
    /// How many records the whole pass lists, when the provider says.
    total: Option<u64>,
    /// Its records' share of [`AHEAD`], given back when the page is dropped (committed).
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// A page fetch running on its own task; it hands the session back with the page.
type FetchTask = tokio::task::JoinHandle<(Session, Result<Page, EngineError>)>;

/// Fetches a pass's pages one ahead and decides them, handing them to the commits.
struct Feeder {
    /// `None` while a fetch task holds it.
    session: Option<Session>,
    inflight: Option<FetchTask>,
    /// The adapter's request counter at the last page.
    calls_seen: u64,
    meta: Metadata,
    entity: Entity,
}

impl Feeder {
    /// Starts fetching the page `cursor` names, lending the session to the task.
    fn spawn(&mut self, cursor: &PullCursor) -> Result<(), EngineError> {
        let mut session = self
            .session
            .take()
            .ok_or(EngineError::Store("the provider session is in use".into()))?;
        let (meta, cursor, entity) = (self.meta.clone(), cursor.clone(), self.entity);
        self.inflight = Some(tokio::spawn(async move {
            let page = fetch(&mut session, &meta, entity, Phase::Pull, &cursor).await;
            (session, page)
        }));
        Ok(())
    }

    /// The fetched page and the requests it took.
    async fn next(&mut self) -> Result<Option<(Page, u64)>, EngineError> {
        let Some(task) = self.inflight.take() else {
            return Ok(None);
        };
        let (session, page) = task
            .await
            .map_err(|e| EngineError::Store(format!("page fetch task: {e}")))?;
        let now = session.adapter().requests_sent();
        let calls = now.saturating_sub(self.calls_seen);
        self.calls_seen = now;
        self.session = Some(session);
        Ok(Some((page?, calls)))
    }

    /// Fetches and decides every page from `cursor` on, sending each to the commits.
    /// Ends quietly when the commits stop taking pages.
    async fn feed(
        &mut self,
        ingestion: &Ingestion<'_>,
        mut cursor: PullCursor,
        pages: tokio::sync::mpsc::UnboundedSender<DecidedPage>,
    ) -> Result<(), EngineError> {
        let room = std::sync::Arc::new(tokio::sync::Semaphore::new(AHEAD));
        self.spawn(&cursor)?;
        while let Some((page, calls)) = self.next().await? {
            crashpoint::reach("pull:fetched");
            for r in page.records.iter().filter(|r| !r.archived) {
                cursor.note(&r.id, r.updated_at);
            }
            cursor.page = page.next.clone();
            let done = page.next.is_none();
            if !done {
                self.spawn(&cursor)?;
            }
            let wanted = u32::try_from(page.records.len().min(AHEAD)).unwrap_or(u32::MAX);
            let Ok(room) = room.clone().acquire_many_owned(wanted).await else {
                break;
            };
            let mut decision = ingestion.decide_page(&page.records).await?;
            decision.stats.api_calls = calls;
            let decided = DecidedPage {
                records: page.records,
                cursor: to_json(&cursor)?,
                done,
                calls,
                decision,
                total: page.total,
                _room: room,
            };
            if pages.send(decided).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The session back, once a fetch still in flight has ended.
    async fn settle(&mut self) -> Option<Session> {
        if let Some(task) = self.inflight.take() {
            if let Ok((session, _)) = task.await {
                self.session = Some(session);
            }
        }
        self.session.take()
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

async fn fetch(
    session: &mut Session,
    meta: &Metadata,
    entity: Entity,
    phase: Phase,
    cursor: &PullCursor,
) -> Result<Page, EngineError> {
    let (page, since, seen) = (cursor.page.clone(), cursor.since, cursor.seen.clone());
    match phase {
        Phase::Deletions => {
            session
                .call(meta, move |a, c| {
                    let page = page.clone();
                    Box::pin(async move { a.deletions(c, entity, page, since).await })
                })
                .await
        }
        _ => {
            session
                .call(meta, move |a, c| {
                    let (page, seen) = (page.clone(), seen.clone());
                    Box::pin(async move { a.pull_page_since(c, entity, page, since, &seen).await })
                })
                .await
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, EngineError> {
    serde_json::to_value(v).map_err(encode)
}

fn from_json<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, EngineError> {
    serde_json::from_value(v.clone()).map_err(|_| EngineError::Corrupt("a sync run cursor"))
}
