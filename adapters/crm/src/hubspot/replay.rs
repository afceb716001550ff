//! Refusing replayed HubSpot webhook deliveries.
//!
//! A signed delivery stays valid for [`MAX_AGE_MS`] after its timestamp, so whoever
//! captures one (a proxy log, a misdirected copy) could send it again and again
//! within that window. [`ReplayCache`] remembers every accepted
//! (signature, timestamp) until the window has passed and refuses a second one.
//!
//! The memory is per process: with several API processes behind a load balancer a
//! replay that reaches another process is not caught (HubSpot signs the public URL,
//! so a shared store would be needed for that). It is bounded: when it holds
//! `capacity` unexpired deliveries it refuses new ones (the sender retries later)
//! rather than forgetting one that could then be replayed. Time is passed in, so
//! the rules are tested without clocks.

use std::collections::HashMap;
use std::sync::Mutex;

use super::webhook::MAX_AGE_MS;

/// How many unexpired deliveries one process remembers by default.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// How often (at most) expired entries are swept when the cache is not full.
const SWEEP_EVERY_MS: i64 = 60_000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("this delivery (signature and timestamp) was already accepted")]
    Replayed,
    #[error("too many recent webhook deliveries to remember; retry later")]
    Full,
}

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// (signature, timestamp in ms) → the last instant (ms) it could still verify.
    until: HashMap<(String, i64), i64>,
    last_sweep: i64,
}

impl Seen {
    fn sweep(&mut self, now_ms: i64) {
        self.until.retain(|_, until| *until >= now_ms);
        self.last_sweep = now_ms;
    }
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Seen::default()),
        }
    }

    /// Records a verified delivery, or refuses it when it was already accepted or
    /// when the cache is full of deliveries that could still be replayed.
    pub fn admit(
        &self,
        signature: &str,
        timestamp_ms: i64,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        let key = (signature.trim().to_owned(), timestamp_ms);
        self.remember(key, timestamp_ms.saturating_add(MAX_AGE_MS), now_ms)
    }

    /// Records a verified delivery known by its id (Chatwoot's `X-Chatwoot-Delivery`,
    /// the same on every retry) until `until_ms`, or refuses it as [`Self::admit`] does.
    /// The ids live beside HubSpot's signatures; callers name their provider in `id`.
    pub fn admit_id(&self, id: &str, until_ms: i64, now_ms: i64) -> Result<(), ReplayError> {
        self.remember((id.to_owned(), i64::MIN), until_ms, now_ms)
    }

    fn remember(&self, key: (String, i64), until_ms: i64, now_ms: i64) -> Result<(), ReplayError> {
        // A poisoned lock only means another request panicked mid-insert; the map is
        // still a valid map.
        let mut seen = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.until.get(&key).is_some_and(|until| *until >= now_ms) {
            return Err(ReplayError::Replayed);
        }
        if seen.until.len() >= self.capacity || now_ms - seen.last_sweep >= SWEEP_EVERY_MS {
            seen.sweep(now_ms);
        }
        if seen.until.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        seen.until.insert(key, until_ms);
        Ok(())
    }

    /// How many deliveries are remembered (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .until
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_second_delivery_of_the_same_signature_and_timestamp_is_refused() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.admit("sig", T0, T0), Ok(()));
        assert_eq!(cache.admit("sig", T0, T0 + 1), Err(ReplayError::Replayed));
        assert_eq!(
            cache.admit(" sig ", T0, T0 + MAX_AGE_MS),
            Err(ReplayError::Replayed)
        );
        // Another timestamp or signature is another delivery.
        assert_eq!(cache.admit("sig", T0 + 1, T0 + 2), Ok(()));
        assert_eq!(cache.admit("other", T0, T0 + 2), Ok(()));
    }

    #[test]
    fn a_delivery_id_is_refused_until_its_deadline_whatever_the_timestamp() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.admit_id("chatwoot:i1:d1", T0 + 600_000, T0), Ok(()));
        assert_eq!(
            cache.admit_id("chatwoot:i1:d1", T0 + 600_000, T0 + 599_000),
            Err(ReplayError::Replayed)
        );
        assert_eq!(cache.admit_id("chatwoot:i2:d1", T0 + 600_000, T0), Ok(()));
        // A HubSpot signature spelled like an id is another entry.
        assert_eq!(cache.admit("chatwoot:i1:d1", T0, T0), Ok(()));
        assert_eq!(
            cache.admit_id("chatwoot:i1:d1", T0 + 900_000, T0 + 600_001),
            Ok(())
        );
    }

    #[test]
    fn entries_are_forgotten_once_the_window_has_passed() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.admit("sig", T0, T0), Ok(()));
        let later = T0 + MAX_AGE_MS + 1;
        // Past the window the signature check refuses it as stale; the cache need not.
        assert_eq!(cache.admit("sig", T0, later), Ok(()));
        assert_eq!(cache.admit("new", later, later + SWEEP_EVERY_MS), Ok(()));
        assert_eq!(cache.len(), 1, "the expired entries were swept");
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting_and_recovers_after_the_window() {
        let cache = ReplayCache::new(3);
        for i in 0..3 {
            assert_eq!(cache.admit(&format!("s{i}"), T0, T0), Ok(()));
        }
        assert_eq!(cache.admit("s3", T0, T0 + 10), Err(ReplayError::Full));
        // Every remembered delivery is still refused.
        assert_eq!(cache.admit("s0", T0, T0 + 10), Err(ReplayError::Replayed));
        let after = T0 + MAX_AGE_MS + 1;
        assert_eq!(cache.admit("s3", after, after), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_timestamp_from_the_future_is_remembered_until_its_own_window_ends() {
        let cache = ReplayCache::new(10);
        let future = T0 + MAX_AGE_MS;
        assert_eq!(cache.admit("sig", future, T0), Ok(()));
        assert_eq!(
            cache.admit("sig", future, T0 + 2 * MAX_AGE_MS),
            Err(ReplayError::Replayed)
        );
    }
}
