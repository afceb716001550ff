//! How far each projection trails the log: the first event it has not applied yet and
//! when that event was recorded. Plain reads only (never the runner's checkpoint locks),
//! so asking is cheap and never waits on a batch being applied.

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
    let feed = store.feed();
    let mut out = Vec::new();
    for projection in crate::names() {
        let applied = checkpoint::read(&store.any, projection)
            .await?
            .map(|c| c.position)
            .unwrap_or_else(Position::default);
        let next = feed.read(applied, 1).await?;
        out.push(Lag {
            projection,
            oldest_unapplied: next.first().map(|e| e.recorded_at),
        });
    }
    Ok(out)
}
