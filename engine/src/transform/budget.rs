//! What one evaluation may spend: work units (one per AST node visited, one per byte or
//! list slot produced) and wall-clock time. Every allocation an expression causes is
//! charged here *before* it is made, so an expression that would grow a string or a list
//! past the cap stops with an error instead of allocating.

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use super::TransformError;

/// Work units one evaluation may spend: 1 MiB of produced bytes and visited nodes.
pub const MAX_WORK: u64 = 1024 * 1024;

/// Bytes charged for one list slot or map entry, on top of its contents.
pub const SLOT: u64 = 16;

/// The allowance of one evaluation.
#[derive(Debug)]
pub struct Budget {
    left: u64,
    deadline: Instant,
}

impl Budget {
    #[cfg(test)]
    pub fn new(work: u64, time: Duration) -> Budget {
        Budget::until(work, Instant::now() + time)
    }

    pub fn until(work: u64, deadline: Instant) -> Budget {
        Budget {
            left: work,
            deadline,
        }
    }

    /// Spends `units`, or fails when the allowance or the time is used up. Called on
    /// every node, so an evaluation that outlives its deadline stops by itself even if
    /// nobody waits for it any more.
    pub fn charge(&mut self, units: u64) -> Result<(), TransformError> {
        if units > self.left {
            self.left = 0;
            return Err(TransformError::TooCostly);
        }
        self.left -= units;
        if Instant::now() >= self.deadline {
            return Err(TransformError::Timeout);
        }
        Ok(())
    }

    /// Charges for `bytes` bytes about to be allocated.
    pub fn charge_bytes(&mut self, bytes: usize) -> Result<(), TransformError> {
        self.charge(u64::try_from(bytes).unwrap_or(u64::MAX))
    }

    /// Charges for `slots` list slots about to be allocated.
    pub fn charge_slots(&mut self, slots: usize) -> Result<(), TransformError> {
        let slots = u64::try_from(slots).unwrap_or(u64::MAX);
        self.charge(slots.saturating_mul(SLOT))
    }

    #[cfg(test)]
    pub fn left(&self) -> u64 {
        self.left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_until_the_allowance_is_spent() {
        let mut budget = Budget::new(10, Duration::from_secs(60));
        assert_eq!(budget.charge(4), Ok(()));
        assert_eq!(budget.charge_bytes(6), Ok(()));
        assert_eq!(budget.charge(1), Err(TransformError::TooCostly));
        assert_eq!(budget.left(), 0);
    }

    #[test]
    fn stops_after_the_deadline() {
        let mut budget = Budget::until(10, Instant::now());
        assert_eq!(budget.charge(1), Err(TransformError::Timeout));
    }
}
