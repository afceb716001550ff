//! The projection runner: feed → projections, with the checkpoint in the same transaction.

use crate::checkpoint::{self, Checkpoint};
use crate::statistics::{self, Growth};
use crate::{Projection, ProjectionError, Tables};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncledger_store::{Position, Store, StoredEvent};
use tokio::sync::{watch, Notify};

pub const DEFAULT_BATCH: i64 = 500;

/// One batch as read from the feed: the events after `after`, at most `limit` of them.
struct SharedRead {
    after: Position,
    limit: i64,
    events: Arc<Vec<StoredEvent>>,
}

pub struct Runner {
    store: Store,
    projections: Vec<Arc<dyn Projection>>,
    batch: i64,
    /// When each projection's tables are next analyzed (`statistics`).
    growth: Mutex<HashMap<&'static str, Growth>>,
    first_analyze: i64,
}

impl Runner {
    pub fn new(store: Store, projections: Vec<Arc<dyn Projection>>) -> Self {
        Runner {
            store,
            projections,
            batch: DEFAULT_BATCH,
            growth: Mutex::default(),
            first_analyze: statistics::FIRST,
        }
    }

    /// Analyze a projection's tables first after `events` applied (default
    /// [`statistics::FIRST`]), then at each doubling.
    pub fn with_first_analyze(mut self, events: i64) -> Self {
        self.first_analyze = events;
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
        Self::step_reading(store, projection, key, tables, batch, &mut None).await
    }

    /// [`Runner::step_into`], taking the batch from `shared` when it was read from the
    /// feed at this projection's checkpoint (and leaving there what it read itself).
    /// Reusing an earlier read is safe: the feed only hands out events no transaction
    /// still in progress can precede, so any read is a prefix of the final order.
    async fn step_reading(
        store: &Store,
        projection: &dyn Projection,
        key: &str,
        tables: &Tables,
        batch: i64,
        shared: &mut Option<SharedRead>,
    ) -> Result<usize, ProjectionError> {
        let mut tx = store.any.begin().await?;
        let cp = checkpoint::lock(&mut tx, key).await?;
        let events = match shared {
            Some(read) if read.after == cp.position && read.limit == batch => read.events.clone(),
            _ => {
                let events = Arc::new(store.feed().read(cp.position, batch).await?);
                *shared = Some(SharedRead {
                    after: cp.position,
                    limit: batch,
                    events: events.clone(),
                });
                events
            }
        };
        let Some(last) = events.last() else {
            tx.rollback().await?;
            return Ok(0);
        };
        projection.apply(&mut tx, tables, &events).await?;
        let next = Checkpoint {
            position: last.position,
            events: cp.events + events.len() as i64,
        };
        checkpoint::save(&mut tx, key, next).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// One batch for one projection on its live tables. When this runner has applied
    /// enough events to the projection since it last did, its tables are analyzed after the
    /// batch commits (`statistics`); a failed `ANALYZE` is logged, the batch stands.
    pub async fn step(&self, projection: &dyn Projection) -> Result<usize, ProjectionError> {
        self.step_sharing(projection, &mut None).await
    }

    async fn step_sharing(
        &self,
        projection: &dyn Projection,
        shared: &mut Option<SharedRead>,
    ) -> Result<usize, ProjectionError> {
        let tables = Tables::live(projection.tables());
        let applied = Self::step_reading(
            &self.store,
            projection,
            projection.name(),
            &tables,
            self.batch,
            shared,
        )
        .await?;
        if applied > 0 && self.store.is_postgres() && self.due(projection.name(), applied) {
            if let Err(e) = statistics::analyze(&self.store, projection.tables()).await {
                tracing::warn!(projection = projection.name(), error = %e, "ANALYZE of the read model failed");
            }
        }
        Ok(applied)
    }

    fn due(&self, projection: &'static str, applied: usize) -> bool {
        let mut growth = self.growth.lock().unwrap_or_else(|e| e.into_inner());
        growth
            .entry(projection)
            .or_insert_with(|| Growth::starting_at(self.first_analyze))
            .add(applied)
    }

    /// Apply batches until every projection has caught up with the feed.
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        self.catch_up_unless(|| false).await
    }

    /// Apply batches until every projection has caught up, or until `stop()` answers true
    /// between two batches: a backlog of any size never holds up a shutdown for longer
    /// than the batch in progress (the rest is applied by the next process).
    pub async fn catch_up_unless(&self, stop: impl Fn() -> bool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        // The projections usually stand at the same checkpoint: each batch of the feed is
        // read (and its payloads decoded) once per round, not once per projection.
        let mut shared = None;
        loop {
            let mut applied = 0;
            for p in &self.projections {
                if stop() {
                    return Ok(total + applied);
                }
                applied += self.step_sharing(p.as_ref(), &mut shared).await?;
            }
            if applied == 0 {
                return Ok(total);
            }
            total += applied;
        }
    }

    /// Follow the feed until `shutdown` turns true. A batch in progress always finishes
    /// (commits or rolls back as a whole) before the loop exits; the batches after it are
    /// left to the next start.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>, wake: Arc<Notify>) {
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let stopping = shutdown.clone();
            let asked = move || *stopping.borrow() || stopping.has_changed().is_err();
            // Listening before the feed is read: a commit that lands between the last
            // read and the wait still wakes the runner.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.catch_up_unless(asked).await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "projection batch failed; retrying");
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
