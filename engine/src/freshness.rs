//! Read-your-writes: after a command, wait (bounded) until a read model has applied the
//! aggregate's latest event, so the answer to the command and the caller's next read agree.

use std::sync::Arc;
use std::time::Duration;

use syncledger_bus::LocalBus;
use syncledger_projections::checkpoint;
use syncledger_store::Store;
use tokio::sync::Notify;

use crate::error::EngineError;

/// How long a command waits for the read models to show its effect before answering.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// Wakes the projection runner and the bus publisher, and waits for a projection.
#[derive(Clone)]
pub struct ReadYourWrites {
    store: Store,
    /// Pokes the projection runner after each command.
    wake: Arc<Notify>,
    bus: LocalBus,
}

impl ReadYourWrites {
    pub fn new(store: Store, wake: Arc<Notify>, bus: LocalBus) -> Self {
        ReadYourWrites { store, wake, bus }
    }

    /// The in-process bus this process's followers publish on.
    pub fn bus(&self) -> &LocalBus {
        &self.bus
    }

    /// The notifier the projection runner listens on.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// After a command: wake the followers, then wait (bounded) until `projection` has
    /// applied the aggregate's latest event. A read model that does not catch up in time
    /// is logged, and the caller answers anyway (from the aggregate where it matters).
    pub async fn settle(
        &self,
        projection: &str,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<(), EngineError> {
        self.wake.notify_waiters();
        self.bus.notify();
        let Some(target) = self
            .store
            .feed()
            .last_position_of(aggregate_type, aggregate_id)
            .await?
        else {
            return Ok(());
        };
        self.wait_for(projection, target).await
    }

    /// Before a read that must see what others committed (a run's effects once its status
    /// says it ended): wait (bounded) until `projection` has applied every event
    /// committed before now.
    pub async fn caught_up(&self, projection: &str) -> Result<(), EngineError> {
        self.wake.notify_waiters();
        let target = self.store.feed().head().await?;
        if target == syncledger_store::Position::START {
            return Ok(());
        }
        self.wait_for(projection, target).await
    }

    /// Waits (bounded) until `projection`'s checkpoint reaches `target`.
    async fn wait_for(
        &self,
        projection: &str,
        target: syncledger_store::Position,
    ) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES;
        let mut delay = Duration::from_millis(2);
        while tokio::time::Instant::now() < deadline {
            let cp = checkpoint::read(&self.store.any, projection).await?;
            if cp.is_some_and(|c| c.position >= target) {
                return Ok(());
            }
            self.wake.notify_waiters();
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
        tracing::warn!(
            projection,
            "read model did not catch up in time; answering anyway"
        );
        Ok(())
    }
}
