//! Client-side pacing for providers that meter requests in a rolling window
//! ("at most N requests in any T"), such as HubSpot's ten-secondly limit.
//!
//! `governor`'s GCRA spreads requests evenly; to stay under a rolling window it
//! must run below the limit and without bursts (see [`crate::http::pacer`]), which
//! costs about 10% of the provider's budget. A rolling window can be used whole
//! when the client keeps its own log of when each request could have reached the
//! provider and sends a request only once that log has room:
//!
//! - a request takes a slot when it is sent and keeps it while in flight;
//! - when its response arrives the slot is stamped with that instant, the latest
//!   moment the provider can have counted it, and stays taken for one interval;
//! - so request `k` goes out no sooner than one interval after the response to
//!   request `k - max`, and the provider, counting arrivals, never sees more
//!   than `max` in any interval, whatever the latency.
//!
//! When the provider reports more use than the log knows (another client on the
//! same budget, or a restart mid-window), [`RollingWindow::observe`] counts the
//! difference as sent now.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// At most `max` requests in any rolling `interval`.
#[derive(Debug)]
pub struct RollingWindow {
    state: Mutex<Log>,
    /// Woken when an in-flight request ends.
    ended: Notify,
}

#[derive(Debug)]
struct Log {
    max: usize,
    interval: Duration,
    in_flight: usize,
    /// When each ended request's response arrived, oldest first.
    ended: VecDeque<Instant>,
}

/// What a request must do before it may be sent.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    Go,
    /// The oldest logged request leaves the window at this instant.
    WaitUntil(Instant),
    /// Every slot is held by a request in flight.
    WaitForEnd,
}

impl Log {
    fn forget_expired(&mut self, now: Instant) {
        while self
            .ended
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.interval)
        {
            self.ended.pop_front();
        }
    }

    fn used(&self) -> usize {
        self.in_flight + self.ended.len()
    }

    fn turn(&mut self, now: Instant) -> Turn {
        self.forget_expired(now);
        if self.used() < self.max {
            self.in_flight += 1;
            return Turn::Go;
        }
        match self.ended.front() {
            Some(oldest) => Turn::WaitUntil(*oldest + self.interval),
            None => Turn::WaitForEnd,
        }
    }

    fn end(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.ended.push_back(now);
    }

    fn observe(&mut self, used: usize, now: Instant) {
        self.forget_expired(now);
        let unknown = used.saturating_sub(self.used()).min(self.max);
        // Counted as sent now: the latest they can have been, so the safest.
        self.ended.extend(std::iter::repeat_n(now, unknown));
    }
}

/// A taken slot; dropping it (when the response has arrived, or the request
/// was abandoned) stamps the slot with the current instant.
#[derive(Debug)]
pub struct Slot<'a> {
    window: &'a RollingWindow,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.window.lock().end(Instant::now());
        self.window.ended.notify_waiters();
    }
}

impl RollingWindow {
    /// `None` when the limit is zero or the interval empty (no pacing possible).
    pub fn new(max: u32, interval: Duration) -> Option<Self> {
        let max = usize::try_from(max).ok().filter(|m| *m > 0)?;
        if interval.is_zero() {
            return None;
        }
        Some(Self {
            state: Mutex::new(Log {
                max,
                interval,
                in_flight: 0,
                ended: VecDeque::new(),
            }),
            ended: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a request may be sent without passing the limit, and takes a
    /// slot for it. Hold the slot until the response has arrived.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            // Registered before the log is read, so an end between the read and
            // the wait is not missed.
            let ended = self.ended.notified();
            let turn = self.lock().turn(Instant::now());
            match turn {
                Turn::Go => return Slot { window: self },
                Turn::WaitUntil(at) => tokio::time::sleep_until(at).await,
                Turn::WaitForEnd => ended.await,
            }
        }
    }

    /// The provider's own count of requests in its current window, from its
    /// rate-limit headers. Uses the log does not know of are counted as made now.
    pub fn observe(&self, used: u32) {
        let used = usize::try_from(used).unwrap_or(usize::MAX);
        self.lock().observe(used, Instant::now());
    }

    /// Adopts the limit the provider reports (its plan may allow more or less
    /// than the documented default).
    pub fn adopt(&self, max: u32, interval: Duration) {
        let Ok(max) = usize::try_from(max) else {
            return;
        };
        if max == 0 || interval.is_zero() {
            return;
        }
        let mut log = self.lock();
        log.max = max;
        log.interval = interval;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn log(max: usize, interval_ms: u64) -> Log {
        Log {
            max,
            interval: Duration::from_millis(interval_ms),
            in_flight: 0,
            ended: VecDeque::new(),
        }
    }

    #[test]
    fn a_full_window_waits_for_its_oldest_response_plus_the_interval() {
        let t0 = Instant::now();
        let mut l = log(2, 1000);
        assert_eq!(l.turn(t0), Turn::Go);
        assert_eq!(l.turn(t0), Turn::Go);
        assert_eq!(l.turn(t0), Turn::WaitForEnd);
        l.end(t0 + Duration::from_millis(30));
        l.end(t0 + Duration::from_millis(50));
        let at = t0 + Duration::from_millis(1030);
        assert_eq!(l.turn(t0 + Duration::from_millis(60)), Turn::WaitUntil(at));
        assert_eq!(l.turn(at - Duration::from_millis(1)), Turn::WaitUntil(at));
        assert_eq!(l.turn(at), Turn::Go);
        assert_eq!(
            l.turn(at),
            Turn::WaitUntil(t0 + Duration::from_millis(1050))
        );
    }

    #[test]
    fn uses_the_provider_reports_beyond_the_log_take_slots() {
        let t0 = Instant::now();
        let mut l = log(10, 1000);
        assert_eq!(l.turn(t0), Turn::Go);
        l.end(t0);
        // The provider counts 9: 8 made by someone else.
        l.observe(9, t0);
        assert_eq!(l.turn(t0), Turn::Go);
        assert_eq!(l.turn(t0), Turn::WaitUntil(t0 + Duration::from_secs(1)));
        // Reporting less than the log knows never frees a slot.
        l.observe(0, t0);
        assert_eq!(l.turn(t0), Turn::WaitUntil(t0 + Duration::from_secs(1)));
    }

    /// Arrival instants as a provider would count them never exceed the limit in
    /// any window, with concurrent senders and uneven latencies. A discrete-event
    /// simulation of 4 senders × 10 requests driving the log with explicit instants.
    #[test]
    fn concurrent_senders_never_exceed_the_limit_in_any_window() {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        // At one instant, responses are handled before new sends (0 before 1).
        const END: u8 = 0;
        const TRY: u8 = 1;
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut l = log(5, 1000);
        let mut sent = [0u64; 4];
        let mut parked = Vec::new();
        let mut arrivals = Vec::new();
        let mut queue: BinaryHeap<Reverse<(Instant, u8, u64)>> =
            (0..4).map(|s| Reverse((start, TRY, s))).collect();
        let mut last = start;
        while let Some(Reverse((now, kind, sender))) = queue.pop() {
            last = now;
            let i = sent[sender as usize];
            if kind == END {
                l.end(now);
                sent[sender as usize] += 1;
                if i + 1 < 10 {
                    queue.push(Reverse((now, TRY, sender)));
                }
                queue.extend(parked.drain(..).map(|s| Reverse((now, TRY, s))));
                continue;
            }
            match l.turn(now) {
                Turn::Go => {
                    // Some latency before the provider counts it, more on the way back.
                    let arrival = now + ms((sender * 7 + i * 13) % 40);
                    arrivals.push(arrival);
                    queue.push(Reverse((arrival + ms(25), END, sender)));
                }
                Turn::WaitUntil(at) => queue.push(Reverse((at, TRY, sender))),
                Turn::WaitForEnd => parked.push(sender),
            }
        }
        arrivals.sort();
        assert_eq!(arrivals.len(), 40);
        for (i, t) in arrivals.iter().enumerate() {
            let in_window = arrivals[..=i]
                .iter()
                .filter(|s| t.duration_since(**s) < ms(1000))
                .count();
            assert!(in_window <= 5, "{in_window} arrivals within 1 s at {i}");
        }
        // And the budget is used: 40 requests at 5 per second need just over 7 s.
        let took = last - start;
        assert!(took < ms(8500), "took {took:?}");
    }

    /// A request that finds every slot in flight waits for one to end, then for
    /// that slot's interval; `acquire` wakes on the end, not on a clock of its own.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_woken_by_an_ended_request() -> Result<(), String> {
        let window = Arc::new(RollingWindow::new(1, Duration::from_secs(1)).ok_or("a window")?);
        let held = window.acquire().await;
        let waiter = {
            let window = window.clone();
            tokio::spawn(async move {
                drop(window.acquire().await);
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the only slot is in flight");
        let ended = Instant::now();
        drop(held);
        let went = waiter.await.map_err(|e| e.to_string())?;
        assert_eq!(went, ended + Duration::from_secs(1));
        Ok(())
    }
}
