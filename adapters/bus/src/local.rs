//! The in-process bus of the embedded deployment.

use crate::shutdown::{is_stopped, stopped, Backoff};
use crate::{BusEvent, BATCH_SIZE, POLL_INTERVAL};
use futures::stream::BoxStream;
use futures::StreamExt;
use std::sync::Arc;
use syncledger_store::{Feed, Position};
use tokio::sync::{broadcast, watch, Notify};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// Events a slow subscriber may fall behind before it starts losing them (it then sees
/// `RecvError::Lagged`).
pub const LOCAL_BUS_CAPACITY: usize = 4096;

/// In-process fan-out of committed events. Cloning shares the same channel.
#[derive(Clone, Debug)]
pub struct LocalBus {
    tx: broadcast::Sender<BusEvent>,
    poke: Arc<Notify>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(LOCAL_BUS_CAPACITY);
        LocalBus {
            tx,
            poke: Arc::new(Notify::new()),
        }
    }

    /// Send an event to every current subscriber; returns how many there were.
    pub fn publish(&self, event: BusEvent) -> usize {
        self.tx.send(event).unwrap_or(0)
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }

    /// The events of one workspace from now on, as a stream (for SSE). A subscriber that
    /// falls more than [`LOCAL_BUS_CAPACITY`] events behind skips the lost ones (logged).
    pub fn subscribe_workspace(&self, workspace_id: &str) -> BoxStream<'static, BusEvent> {
        let ws = workspace_id.to_string();
        BroadcastStream::new(self.tx.subscribe())
            .filter_map(move |item| {
                let out = match item {
                    Ok(ev) if ev.workspace_id == ws => Some(ev),
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(n)) => {
                        tracing::warn!(workspace_id = %ws, skipped = n, "bus subscriber lagged");
                        None
                    }
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Tell the followers that something was committed, so they read the feed now rather
    /// than at the next poll. Cheap; call it after every command.
    pub fn notify(&self) {
        self.poke.notify_waiters();
    }
}

/// Pokes `bus`'s follower each time `commits` is notified (a process's runs notify it
/// after each append), until `shutdown`: a run's events reach live streams as they
/// commit instead of at the follower's next poll. The first wait is registered before
/// this returns, and each next one before the bus is poked, so no notification between
/// two is lost.
pub fn forward_commits(
    commits: Arc<Notify>,
    bus: LocalBus,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut next = Box::pin(commits.clone().notified_owned());
    next.as_mut().enable();
    async move {
        loop {
            tokio::select! {
                _ = &mut next => {}
                _ = stopped(&mut shutdown) => return,
            }
            next = Box::pin(commits.clone().notified_owned());
            next.as_mut().enable();
            bus.notify();
        }
    }
}

/// Publish every event committed from now on (from the feed's head) to `bus`, until
/// `shutdown` turns true (or its sender is dropped). Database errors are logged and retried.
pub async fn run_local_follower(feed: Feed, bus: LocalBus, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    let start = loop {
        if is_stopped(&shutdown) {
            return;
        }
        match feed.head().await {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(error = %e, "local bus: reading the feed head failed; retrying");
                if crate::shutdown::sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                    return;
                }
            }
        }
    };
    run_local_follower_from(feed, bus, start, shutdown).await
}

/// As [`run_local_follower`], starting after `after` instead of at the head.
pub async fn run_local_follower_from(
    feed: Feed,
    bus: LocalBus,
    mut after: Position,
    mut shutdown: watch::Receiver<bool>,
) {
    let poke = bus.poke.clone();
    let mut backoff = Backoff::new();
    tracing::debug!(?after, "local bus follower started");
    loop {
        if is_stopped(&shutdown) {
            return;
        }
        // Register for pokes before reading, so a commit that lands between the read and the
        // wait still wakes us.
        let notified = poke.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match feed.read(after, BATCH_SIZE).await {
            Ok(batch) if batch.is_empty() => {
                backoff.reset();
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = stopped(&mut shutdown) => return,
                }
            }
            Ok(batch) => {
                backoff.reset();
                for ev in &batch {
                    bus.publish(BusEvent::from_stored(ev));
                }
                if let Some(last) = batch.last() {
                    after = last.position;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "local bus: reading the feed failed; retrying");
                if crate::shutdown::sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long a test waits for a poke that must come.
    const BOUND: Duration = Duration::from_secs(60);

    /// A commit notified once the forwarder is made, before it first runs, pokes the
    /// follower; so does each one after a poke.
    #[tokio::test]
    async fn each_commit_pokes_the_follower() {
        let (bus, commits) = (LocalBus::new(), Arc::new(Notify::new()));
        let (stop, shutdown) = watch::channel(false);
        let forwarder = forward_commits(commits.clone(), bus.clone(), shutdown);
        let mut poked = Box::pin(bus.poke.clone().notified_owned());
        poked.as_mut().enable();
        commits.notify_waiters();
        let task = tokio::spawn(forwarder);
        tokio::time::timeout(BOUND, poked)
            .await
            .expect("the commit before the first run was lost");
        for n in 0..3 {
            let mut poked = Box::pin(bus.poke.clone().notified_owned());
            poked.as_mut().enable();
            commits.notify_waiters();
            tokio::time::timeout(BOUND, poked)
                .await
                .unwrap_or_else(|_| panic!("commit {n} after a poke was lost"));
        }
        let _ = stop.send(true);
        task.await.expect("the forwarder ends on shutdown");
    }
}
