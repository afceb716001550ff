//! Shutdown and backoff helpers shared by the follower and the publisher.
//!
//! Shutdown is a `watch::Receiver<bool>`: `true` means stop. A dropped sender also means
//! stop, so a loop never outlives the process part that owns it.

use std::time::Duration;
use tokio::sync::watch;

pub(crate) fn is_stopped(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

/// Resolves when shutdown is requested (or the sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Sleep for `d` unless shutdown comes first; true if shutdown came.
pub(crate) async fn sleep_or_stop(d: Duration, rx: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => is_stopped(rx),
        _ = stopped(rx) => true,
    }
}

/// Exponential backoff for retrying after errors: 250 ms doubling up to 10 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert_eq!(delays[7], Duration::from_secs(10));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[tokio::test]
    async fn dropped_sender_means_stop() {
        let (tx, mut rx) = watch::channel(false);
        assert!(!is_stopped(&rx));
        drop(tx);
        assert!(is_stopped(&rx));
        stopped(&mut rx).await;
    }
}
