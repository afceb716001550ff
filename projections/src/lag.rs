//! How far each projection trails the log: the first event it has not applied yet, when
//! that event was recorded, and how many global positions lie between its checkpoint and
//! the head. Plain reads only (never the runner's checkpoint locks), so asking is cheap
//! and never waits on a batch being applied.

use crate::checkpoint;
use crate::ProjectionError;
use chrono::{DateTime, Utc};
use syncledger_store::{Position, Store};

/// Where one projection stands against the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lag {
    pub projection: &'static str,
    /// When the oldest event the projection has not applied was recorded; `None` when it
    /// has applied every event.
    pub oldest_unapplied: Option<DateTime<Utc>>,
    /// Global positions from its checkpoint to the head of the log (0 when caught up).
    /// Positions of rolled-back inserts count too (PostgreSQL's identity leaves gaps), so
    /// this is at least the number of events not applied, never fewer.
    pub positions: i64,
}

impl Lag {
    /// How long the oldest unapplied event has waited at `now` (zero when caught up).
    pub fn behind(&self, now: DateTime<Utc>) -> chrono::Duration {
        self.oldest_unapplied
            .map(|at| (now - at).max(chrono::Duration::zero()))
            .unwrap_or_else(chrono::Duration::zero)
    }
}

/// Where every projection of [`crate::all`] stands.
pub async fn lags(store: &Store) -> Result<Vec<Lag>, ProjectionError> {
    lags_of(store, &crate::names()).await
}

/// Where the readers of the feed named `names` stand, each by its row in the checkpoint
/// table (the projections', and other feed readers' such as the NATS publisher's).
pub async fn lags_of(store: &Store, names: &[&'static str]) -> Result<Vec<Lag>, ProjectionError> {
    let feed = store.feed();
    let head = feed.head().await?;
    let mut out = Vec::new();
    for &projection in names {
        let applied = checkpoint::read(&store.any, projection)
            .await?
            .map(|c| c.position)
            .unwrap_or_else(Position::default);
        let next = feed.read(applied, 1).await?;
        let oldest_unapplied = next.first().map(|e| e.recorded_at);
        let positions = match oldest_unapplied {
            // The head was read first: events committed since may be past it.
            Some(_) => (head.pos - applied.pos).max(1),
            None => 0,
        };
        out.push(Lag {
            projection,
            oldest_unapplied,
            positions,
        });
    }
    Ok(out)
}
