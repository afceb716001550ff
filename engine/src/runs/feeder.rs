//! The feeder: fetches a pull pass's pages from the CRM one ahead of the decider (the
//! fetch runs on its own task, lent the session) and hands each decided page to the
//! committer, holding back once [`AHEAD`] records wait for a commit.

use syncledger_crm::{Page, RemoteRecord, Usage};
use syncledger_domain::sync_run::Phase;
use syncledger_domain::Entity;
use syncledger_store::Metadata;
use tracing::Instrument;

use super::decider::{Decided, Decider};
use super::execution::to_json;
use super::PullCursor;
use crate::crashpoint;
use crate::{EngineError, Session};

/// Fetched records decided and waiting for a commit, at most: the feed pauses beyond
/// this (a bound on memory; a page larger than this waits for the commits to drain).
/// Committing a few thousand records per transaction already spreads its fixed cost
/// (a round trip, a WAL flush) thin; the database's per-row work is what remains.
pub(super) const AHEAD: usize = 5_000;

/// A fetched page, decided and waiting for its commit.
pub(super) struct DecidedPage {
    pub records: Vec<RemoteRecord>,
    pub cursor: serde_json::Value,
    pub done: bool,
    /// The provider usage fetching it took (requests, 429s waited out).
    pub used: Usage,
    pub decision: Decided,
    /// How many records the whole pass lists, when the provider says.
    pub total: Option<u64>,
    /// Its records' share of [`AHEAD`], given back when the page is dropped (committed).
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// A page fetch running on its own task; it hands the session back with the page.
type FetchTask = tokio::task::JoinHandle<(Session, Result<Page, EngineError>)>;

/// Fetches a pass's pages one ahead and decides them, handing them to the commits.
pub(super) struct Feeder {
    /// `None` while a fetch task holds it.
    session: Option<Session>,
    inflight: Option<FetchTask>,
    /// The adapter's usage counters at the last page.
    usage_seen: Usage,
    meta: Metadata,
    entity: Entity,
    /// Every remote id the pass lists, when the pass reads everything from the
    /// start and its provider deletes by absence.
    pub(super) scanned: Option<std::collections::HashSet<String>>,
}

impl Feeder {
    /// A feeder lent the execution's session; `usage_seen` is the adapter's usage
    /// counters so far.
    pub(super) fn new(
        session: Option<Session>,
        usage_seen: Usage,
        meta: Metadata,
        entity: Entity,
    ) -> Self {
        Feeder {
            session,
            inflight: None,
            usage_seen,
            meta,
            entity,
            scanned: None,
        }
    }

    /// The adapter's usage counters at the last page fetched.
    pub(super) fn usage_seen(&self) -> Usage {
        self.usage_seen
    }

    /// Starts fetching the page `cursor` names, lending the session to the task.
    fn spawn(&mut self, cursor: &PullCursor) -> Result<(), EngineError> {
        let mut session = self
            .session
            .take()
            .ok_or(EngineError::Store("the provider session is in use".into()))?;
        let (meta, cursor, entity) = (self.meta.clone(), cursor.clone(), self.entity);
        // In the run's span, so the provider calls' log lines name the run.
        let span = tracing::Span::current();
        self.inflight = Some(tokio::spawn(
            async move {
                let page = fetch(&mut session, &meta, entity, Phase::Pull, &cursor).await;
                (session, page)
            }
            .instrument(span),
        ));
        Ok(())
    }

    /// The fetched page and the requests it took.
    async fn next(&mut self) -> Result<Option<(Page, Usage)>, EngineError> {
        let Some(task) = self.inflight.take() else {
            return Ok(None);
        };
        let (session, page) = task
            .await
            .map_err(|e| EngineError::Store(format!("page fetch task: {e}")))?;
        let now = session.adapter().usage();
        self.session = Some(session);
        // A failed fetch leaves its requests uncounted here, for the pass's end to charge.
        let page = page?;
        let used = now.since(self.usage_seen);
        self.usage_seen = now;
        Ok(Some((page, used)))
    }

    /// Fetches and decides every page from `cursor` on, sending each to the commits.
    /// Ends quietly when the commits stop taking pages.
    pub(super) async fn feed(
        &mut self,
        decider: &Decider<'_>,
        mut cursor: PullCursor,
        pages: tokio::sync::mpsc::UnboundedSender<DecidedPage>,
    ) -> Result<(), EngineError> {
        let room = std::sync::Arc::new(tokio::sync::Semaphore::new(AHEAD));
        self.spawn(&cursor)?;
        while let Some((page, used)) = self.next().await? {
            crashpoint::reach("pull:fetched");
            for r in page.records.iter().filter(|r| !r.archived) {
                cursor.note(&r.id, r.updated_at);
                if let Some(ids) = &mut self.scanned {
                    ids.insert(r.id.clone());
                }
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
            let mut decision = decider.decide_page(&page.records).await?;
            decision.stats.charge(used.requests, used.rate_limited);
            let decided = DecidedPage {
                records: page.records,
                cursor: to_json(&cursor)?,
                done,
                used,
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
    pub(super) async fn settle(&mut self) -> Option<Session> {
        if let Some(task) = self.inflight.take() {
            if let Ok((session, _)) = task.await {
                self.session = Some(session);
            }
        }
        self.session.take()
    }
}

/// Fetches the page `cursor` names, of a pull or a deletions pass.
pub(super) async fn fetch(
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
