//! Planner statistics for the read models' tables on PostgreSQL.
//!
//! PostgreSQL chooses a plan from the statistics `ANALYZE` last gathered. A read model's
//! tables grow from nothing as events arrive; if they were last analyzed while nearly
//! empty, a look-up by a list of ids (a run's `record_links` by remote id, `records` by
//! match key) keeps being planned as a walk of the whole workspace, and an import slows
//! quadratically. Autovacuum, where it is on, analyzes a table once a tenth of it has
//! changed; where an operator turned it off, or while a large import outpaces it, nothing
//! does. So whoever writes a projection's tables also keeps their statistics: after the
//! first [`FIRST`] events it applied, and again each time that count has doubled. That is
//! a logarithmic number of `ANALYZE`s, each of bounded cost (it samples, it does not read
//! the whole table), and between two of them a table grows at most by the events applied
//! since the last one.
//!
//! SQLite plans each statement from its indexes' shapes without gathered statistics unless
//! asked, so there is nothing to refresh there.

use crate::ProjectionError;
use syncledger_store::Store;

/// Events applied before a projection's tables are first analyzed.
pub const FIRST: i64 = 2000;

/// When a writer of a projection's tables should analyze them next.
#[derive(Clone, Copy, Debug)]
pub struct Growth {
    applied: i64,
    next: i64,
}

impl Growth {
    /// Analyze first after `first` events (at least one).
    pub fn starting_at(first: i64) -> Self {
        Growth {
            applied: 0,
            next: first.max(1),
        }
    }

    /// Count `n` more applied events; true when the tables are due for `ANALYZE` (then
    /// the next time is when the count has doubled).
    pub fn add(&mut self, n: usize) -> bool {
        self.applied = self.applied.saturating_add(n as i64);
        if self.applied < self.next {
            return false;
        }
        self.next = self.applied.saturating_mul(2);
        true
    }
}

impl Default for Growth {
    fn default() -> Self {
        Growth::starting_at(FIRST)
    }
}

/// `ANALYZE` each of `tables` (physical names) on PostgreSQL; nothing on SQLite. Also drops
/// the server's cached plans of statements on them, so the next run plans afresh.
pub async fn analyze(store: &Store, tables: &[&str]) -> Result<(), ProjectionError> {
    if !store.is_postgres() {
        return Ok(());
    }
    let mut conn = store.any.acquire().await?;
    for table in tables {
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_at_the_threshold_then_at_each_doubling() {
        let mut g = Growth::starting_at(2000);
        assert!(!g.add(1999));
        assert!(g.add(1), "2,000 applied");
        assert!(!g.add(1999), "3,999 applied");
        assert!(g.add(1), "4,000 applied");
        assert!(g.add(100_000), "a batch past the next time counts once");
        assert!(!g.add(1));
    }

    proptest! {
        /// However the events come in batches, the tables are analyzed a logarithmic number
        /// of times, and never left behind by more than the events applied since the last
        /// analyze (the count at most doubles between two).
        #[test]
        fn analyzes_are_logarithmic_and_never_far_behind(
            first in 1i64..5000,
            batches in proptest::collection::vec(0usize..3000, 0..400),
        ) {
            let mut g = Growth::starting_at(first);
            let (mut applied, mut last, mut analyzes) = (0i64, 0i64, 0u32);
            for n in batches {
                applied += n as i64;
                if g.add(n) {
                    analyzes += 1;
                    last = applied;
                } else {
                    prop_assert!(applied < first.max(2 * last), "{applied} applied, last analyzed at {last}");
                }
            }
            let bound = if applied < first { 0 } else { 2 + (applied as f64 / first as f64).log2() as u32 };
            prop_assert!(analyzes <= bound, "{analyzes} analyzes for {applied} events");
        }
    }
}
