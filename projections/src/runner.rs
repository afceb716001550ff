//! The projection runner: feed → projections, with the checkpoint in the same transaction.
//!
//! Each projection follows the feed at its own pace (one follower per projection): a
//! slow read model (the audit log hashes every event) no longer holds back a fast one
//! (`records`, which dashboards and runs read), and their transactions overlap. The
//! followers share what they read from the feed ([`Reads`]): a batch is read, and its
//! payloads parsed, once for all of them, and the next batch is read while the current
//! one is applied. By default they take turns to apply (`with_parallelism` lets several
//! apply at once on PostgreSQL).

use crate::checkpoint::{self, Checkpoint};
use crate::statistics::{self, Growth};
use crate::{Projection, ProjectionError, Tables};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use syncledger_store::{Position, Store, StoredEvent};
use tokio::sync::{watch, Notify, OnceCell, Semaphore};

pub const DEFAULT_BATCH: i64 = 500;

/// Batches kept for followers behind the leading one; a follower further behind than
/// this reads the feed for itself.
const KEPT_READS: usize = 16;

type Batch = Arc<Vec<StoredEvent>>;

/// What one step did: the events it applied, and where the checkpoint stands after it
/// (`None` when another transaction held the checkpoint and a yielding step skipped it).
struct Stepped {
    applied: usize,
    at: Option<Position>,
}

impl Stepped {
    const NOTHING: Stepped = Stepped {
        applied: 0,
        at: None,
    };
}

/// What one runner's followers read from the feed, by the position read after. A
/// follower that arrives at a position another has read (or is reading) takes that
/// batch instead of reading again. That is safe because the feed only hands out events
/// no transaction still in progress can precede: any read is a prefix of the final
/// order, and stays right to apply later (a later reader may have found more events
/// there; it applies the shorter batch and reads on from its end). Batches every
/// follower has passed are dropped.
#[derive(Default)]
struct Reads {
    inner: Mutex<ReadsInner>,
}

#[derive(Default)]
struct ReadsInner {
    batches: BTreeMap<Position, Arc<OnceCell<Batch>>>,
    /// Where each follower stood after its last batch.
    at: HashMap<&'static str, Position>,
}

impl Reads {
    fn inner(&self) -> MutexGuard<'_, ReadsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The batch after `after`: shared if it was read, else read now (once, however
    /// many followers ask at the same time).
    async fn get<F, R>(&self, after: Position, read: F) -> Result<Batch, ProjectionError>
    where
        F: FnOnce() -> R,
        R: std::future::Future<Output = Result<Vec<StoredEvent>, sqlx::Error>>,
    {
        let cell = {
            let mut inner = self.inner();
            let cell = inner.batches.entry(after).or_default().clone();
            while inner.batches.len() > KEPT_READS {
                inner.batches.pop_first();
            }
            cell
        };
        let batch = cell
            .get_or_try_init(|| async { read().await.map(Arc::new) })
            .await?
            .clone();
        if batch.is_empty() {
            // Nothing there yet: whoever asks next must read the feed again.
            let mut inner = self.inner();
            if inner
                .batches
                .get(&after)
                .is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                inner.batches.remove(&after);
            }
        }
        Ok(batch)
    }

    /// Followers that will read, standing at the start until they say where they are.
    fn following(names: impl IntoIterator<Item = &'static str>) -> Self {
        let reads = Reads::default();
        reads.inner().at = names.into_iter().map(|n| (n, Position::START)).collect();
        reads
    }

    /// `follower` has applied everything up to `to`: drop what no follower still needs.
    fn stands_at(&self, follower: &'static str, to: Position) {
        let mut inner = self.inner();
        inner.at.insert(follower, to);
        let Some(slowest) = inner.at.values().min().copied() else {
            return;
        };
        // Most calls drop nothing: only split (which moves the kept part) when some batch
        // lies behind every follower.
        if inner
            .batches
            .first_key_value()
            .is_some_and(|(k, _)| *k < slowest)
        {
            inner.batches = inner.batches.split_off(&slowest);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> Vec<Position> {
        self.inner().batches.keys().copied().collect()
    }
}

/// What the followers of one pass share: their reads and their turns to apply.
struct Shared {
    reads: Reads,
    slots: Semaphore,
}

impl Shared {
    /// `parallel` batch transactions at once on PostgreSQL. SQLite has one writer: there
    /// the followers always take turns (first come first served), which also keeps them
    /// off SQLite's busy-wait sleeps.
    fn new(store: &Store, projections: &[Arc<dyn Projection>], parallel: usize) -> Arc<Self> {
        let slots = if store.is_postgres() { parallel } else { 1 };
        Arc::new(Shared {
            reads: Reads::following(projections.iter().map(|p| p.name())),
            slots: Semaphore::new(slots),
        })
    }
}

#[derive(Clone)]
pub struct Runner {
    store: Store,
    projections: Vec<Arc<dyn Projection>>,
    batch: i64,
    /// When each projection's tables are next analyzed (`statistics`).
    growth: Arc<Mutex<HashMap<&'static str, Growth>>>,
    first_analyze: i64,
    /// Skip a projection whose checkpoint another transaction holds (see
    /// [`checkpoint::try_lock`]) instead of waiting for it.
    yielding: bool,
    /// Batch transactions the followers may hold at once (PostgreSQL only).
    parallelism: usize,
}

impl Runner {
    pub fn new(store: Store, projections: Vec<Arc<dyn Projection>>) -> Self {
        Runner {
            store,
            projections,
            batch: DEFAULT_BATCH,
            growth: Arc::default(),
            first_analyze: statistics::FIRST,
            yielding: false,
            parallelism: 1,
        }
    }

    /// Analyze a projection's tables first after `events` applied (default
    /// [`statistics::FIRST`]), then at each doubling.
    pub fn with_first_analyze(mut self, events: i64) -> Self {
        self.first_analyze = events;
        self
    }

    /// A projection whose batch another transaction is applying (another runner, in this
    /// process or another) is skipped, as if caught up, instead of waited for: for a
    /// caller that waits for a checkpoint to reach a position by itself (a run before it
    /// reads the records read model), or that will look again when woken (`run`, whose
    /// followers always yield). [`Runner::catch_up`] then returns without having applied
    /// what the other transaction holds.
    pub fn yielding(mut self) -> Self {
        self.yielding = true;
        self
    }

    /// Let up to `n` projections apply a batch at the same time on PostgreSQL (default 1:
    /// they take turns, first come first served). More overlaps their round trips and
    /// uses more cores, and takes that much more of the machine from the runs and
    /// commands beside them; on two cores, 4 slowed an import by 40% and did not bring the
    /// read models up to date sooner.
    pub fn with_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    pub fn with_batch(mut self, batch: i64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Apply at most one batch to one projection, under the checkpoint key `key`, into
    /// `tables`. Returns how many events it applied (0 when caught up).
    pub async fn step_into(
        store: &Store,
        projection: &dyn Projection,
        key: &str,
        tables: &Tables,
        batch: i64,
    ) -> Result<usize, ProjectionError> {
        Self::step_reading(store, projection, key, tables, batch, None, false)
            .await
            .map(|s| s.applied)
    }

    /// [`Runner::step_into`], taking the batch from `reads` when a follower of the same
    /// pass read it, and reading the next one there while this one is applied.
    async fn step_reading(
        store: &Store,
        projection: &dyn Projection,
        key: &str,
        tables: &Tables,
        batch: i64,
        reads: Option<&Reads>,
        yielding: bool,
    ) -> Result<Stepped, ProjectionError> {
        let mut tx = store.any.begin().await?;
        let cp = if yielding {
            match checkpoint::try_lock(&mut tx, key).await? {
                Some(cp) => cp,
                None => {
                    tx.rollback().await?;
                    return Ok(Stepped::NOTHING);
                }
            }
        } else {
            checkpoint::lock(&mut tx, key).await?
        };
        if let Some(reads) = reads {
            reads.stands_at(projection.name(), cp.position);
        }
        let events = match reads {
            Some(reads) => {
                let after = cp.position;
                reads
                    .get(
                        after,
                        || async move { store.feed().read(after, batch).await },
                    )
                    .await?
            }
            None => Arc::new(store.feed().read(cp.position, batch).await?),
        };
        let Some(last) = events.last().map(|e| e.position) else {
            tx.rollback().await?;
            return Ok(Stepped {
                applied: 0,
                at: Some(cp.position),
            });
        };
        let apply = async {
            projection.apply(&mut tx, tables, &events).await?;
            let next = Checkpoint {
                position: last,
                events: cp.events + events.len() as i64,
            };
            checkpoint::save(&mut tx, key, next).await?;
            tx.commit().await?;
            Ok::<_, ProjectionError>(())
        };
        // A full batch says more is there: read it now, for this follower's next step
        // and the others'. A failed read ahead is only a read not saved; the next step
        // reads again and reports.
        let ahead = async {
            if let (Some(reads), true) = (reads, events.len() as i64 >= batch) {
                let read = || async move { store.feed().read(last, batch).await };
                if let Err(e) = reads.get(last, read).await {
                    tracing::debug!(error = %e, "reading the feed ahead failed");
                }
            }
        };
        let (applied, ()) = tokio::join!(apply, ahead);
        applied?;
        if let Some(reads) = reads {
            reads.stands_at(projection.name(), last);
        }
        Ok(Stepped {
            applied: events.len(),
            at: Some(last),
        })
    }

    /// One batch for one projection on its live tables. When this runner has applied
    /// enough events to the projection since it last did, its tables are analyzed after the
    /// batch commits (`statistics`); a failed `ANALYZE` is logged, the batch stands.
    pub async fn step(&self, projection: &dyn Projection) -> Result<usize, ProjectionError> {
        self.step_sharing(projection, None).await.map(|s| s.applied)
    }

    async fn step_sharing(
        &self,
        projection: &dyn Projection,
        shared: Option<&Shared>,
    ) -> Result<Stepped, ProjectionError> {
        let tables = Tables::live(projection.tables());
        let stepped = {
            // The semaphore is never closed: a turn is always granted.
            let _turn = match shared {
                Some(shared) => shared.slots.acquire().await.ok(),
                None => None,
            };
            Self::step_reading(
                &self.store,
                projection,
                projection.name(),
                &tables,
                self.batch,
                shared.map(|s| &s.reads),
                self.yielding,
            )
            .await?
        };
        let applied = stepped.applied;
        if applied > 0 && self.store.is_postgres() && self.due(projection.name(), applied) {
            if let Err(e) = statistics::analyze(&self.store, projection.tables()).await {
                tracing::warn!(projection = projection.name(), error = %e, "ANALYZE of the read model failed");
            }
        }
        Ok(stepped)
    }

    fn due(&self, projection: &'static str, applied: usize) -> bool {
        let mut growth = self.growth.lock().unwrap_or_else(|e| e.into_inner());
        growth
            .entry(projection)
            .or_insert_with(|| Growth::starting_at(self.first_analyze))
            .add(applied)
    }

    /// Apply batches until every projection has applied the feed as far as it reached
    /// when called. Events committed meanwhile may be applied too, but are not waited
    /// for: under a steady stream of commits (imports running) a caller that chased the
    /// head would never return.
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        let head = self.store.feed().head().await?;
        self.catch_up_to(head).await
    }

    /// Apply batches until every projection's checkpoint has reached `target` (or the
    /// feed holds nothing more for it yet). A yielding runner skips a projection another
    /// transaction is applying: its caller looks at the checkpoint itself.
    pub async fn catch_up_to(&self, target: Position) -> Result<usize, ProjectionError> {
        self.catch_up_where(Some(target), || false).await
    }

    /// Apply batches until every projection has caught up, or until `stop()` answers true
    /// between two batches: a backlog of any size never holds up a shutdown for longer
    /// than the batches in progress (the rest is applied by the next process). The
    /// projections catch up side by side, sharing their reads of the feed.
    pub async fn catch_up_unless(&self, stop: impl Fn() -> bool) -> Result<usize, ProjectionError> {
        self.catch_up_where(None, stop).await
    }

    async fn catch_up_where(
        &self,
        target: Option<Position>,
        stop: impl Fn() -> bool,
    ) -> Result<usize, ProjectionError> {
        let shared = Shared::new(&self.store, &self.projections, self.parallelism);
        let each = self
            .projections
            .iter()
            .map(|p| self.drain(p.as_ref(), &shared, target, &stop));
        let mut total = 0;
        for applied in futures::future::join_all(each).await {
            total += applied?;
        }
        Ok(total)
    }

    /// Batches of one projection until it has caught up (with the feed, or to `target`)
    /// or `stop()` answers true.
    async fn drain(
        &self,
        projection: &dyn Projection,
        shared: &Shared,
        target: Option<Position>,
        stop: &impl Fn() -> bool,
    ) -> Result<usize, ProjectionError> {
        let mut total = 0;
        while !stop() {
            let stepped = self.step_sharing(projection, Some(shared)).await?;
            total += stepped.applied;
            let reached = match (target, stepped.at) {
                (Some(target), Some(at)) => at >= target,
                _ => false,
            };
            if stepped.applied == 0 || reached {
                break;
            }
        }
        Ok(total)
    }

    /// Follow the feed until `shutdown` turns true: one task per projection, each
    /// applying batches as soon as it can. A batch in progress always finishes (commits
    /// or rolls back as a whole) before its task exits; the batches after it are left to
    /// the next start.
    pub async fn run(&self, shutdown: watch::Receiver<bool>, wake: Arc<Notify>) {
        let shared = Shared::new(&self.store, &self.projections, self.parallelism);
        // A set, so that dropping this future (a task aborted) stops the followers too,
        // as it stopped the one loop they replace.
        let mut followers = tokio::task::JoinSet::new();
        // A follower finding its projection's batch in another's hands looks again at its
        // next wake-up or poll, instead of waiting in the lock's queue.
        let yielding = self.clone().yielding();
        for p in &self.projections {
            let (runner, p, shared) = (yielding.clone(), p.clone(), shared.clone());
            let (shutdown, wake) = (shutdown.clone(), wake.clone());
            followers
                .spawn(async move { runner.follow(p.as_ref(), &shared, shutdown, wake).await });
        }
        while let Some(ended) = followers.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a projection follower stopped abnormally");
            }
        }
    }

    async fn follow(
        &self,
        projection: &dyn Projection,
        shared: &Shared,
        mut shutdown: watch::Receiver<bool>,
        wake: Arc<Notify>,
    ) {
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let stopping = shutdown.clone();
            let asked = move || *stopping.borrow() || stopping.has_changed().is_err();
            // Listening before the feed is read: a commit that lands between the last
            // read and the wait still wakes the follower.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.drain(projection, shared, None, &asked).await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(projection = projection.name(), error = %e, "projection batch failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = woken => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(pos: i64) -> Position {
        Position { tx: 0, pos }
    }

    fn events(from: i64, n: i64) -> Vec<StoredEvent> {
        (from + 1..=from + n)
            .map(|pos| StoredEvent {
                position: at(pos),
                aggregate_type: "t".into(),
                aggregate_id: "a".into(),
                sequence: pos,
                event_type: "E".into(),
                event_version: "1".into(),
                payload: serde_json::Value::Null,
                metadata: serde_json::Value::Null,
                recorded_at: chrono::Utc::now(),
            })
            .collect()
    }

    /// Reads `n` events after `after`, counting the reads.
    async fn read(reads: &Reads, count: &AtomicUsize, after: i64, n: i64) -> Batch {
        let batch = reads
            .get(at(after), || async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(events(after, n))
            })
            .await;
        batch.unwrap_or_default()
    }

    #[tokio::test]
    async fn followers_at_one_position_share_one_read() {
        let (reads, count) = (Reads::default(), AtomicUsize::new(0));
        let (a, b) = tokio::join!(read(&reads, &count, 0, 3), read(&reads, &count, 0, 3));
        assert_eq!(count.load(Ordering::SeqCst), 1, "asked at the same time");
        assert!(Arc::ptr_eq(&a, &b));
        let c = read(&reads, &count, 0, 3).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "asked later");
        assert!(Arc::ptr_eq(&a, &c));
        read(&reads, &count, 3, 3).await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "another position is read");
    }

    /// An empty read is an answer for now only: the next follower there reads again.
    #[tokio::test]
    async fn an_empty_read_is_not_kept() {
        let (reads, count) = (Reads::default(), AtomicUsize::new(0));
        assert!(read(&reads, &count, 5, 0).await.is_empty());
        assert_eq!(read(&reads, &count, 5, 2).await.len(), 2);
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(reads.kept(), vec![at(5)]);
    }

    /// A batch stays while a follower still stands before it, and goes once all have
    /// passed it.
    #[tokio::test]
    async fn batches_go_when_every_follower_has_passed_them() {
        let (reads, count) = (Reads::following(["fast", "slow"]), AtomicUsize::new(0));
        for after in [0, 2, 4] {
            read(&reads, &count, after, 2).await;
        }
        reads.stands_at("fast", at(4));
        assert_eq!(
            reads.kept(),
            vec![at(0), at(2), at(4)],
            "slow has not begun"
        );
        reads.stands_at("slow", at(2));
        assert_eq!(reads.kept(), vec![at(2), at(4)]);
        reads.stands_at("slow", at(4));
        assert_eq!(reads.kept(), vec![at(4)]);
        reads.stands_at("fast", at(6));
        reads.stands_at("slow", at(6));
        assert!(reads.kept().is_empty());
    }

    /// However far the leader runs ahead, at most `KEPT_READS` batches are kept: the
    /// oldest go first, and a follower that needed one reads it again.
    #[tokio::test]
    async fn the_kept_batches_are_bounded() {
        let (reads, count) = (Reads::following(["slow"]), AtomicUsize::new(0));
        for after in 0..(KEPT_READS as i64 + 4) {
            read(&reads, &count, after, 1).await;
        }
        let kept = reads.kept();
        assert_eq!(kept.len(), KEPT_READS);
        assert_eq!(kept.first(), Some(&at(4)));
        read(&reads, &count, 0, 1).await;
        assert_eq!(count.load(Ordering::SeqCst), KEPT_READS + 5);
    }
}
