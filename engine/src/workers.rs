//! Handing runs to workers. Inside `serve` (the embedded default) a pool of tasks takes
//! run ids from an in-process queue; with NATS configured, run ids go through a JetStream
//! work queue that any number of `syncledger worker` processes share. Either way the run
//! itself guarantees at most one active run per integration and resumes from its last
//! committed page, so a run handed out twice is harmless.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

use crate::{EngineError, SyncRuns};

/// Where triggered runs are sent to be executed.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError>;
}

/// Runs executed by tasks of this process.
#[derive(Clone)]
pub struct LocalWorkers {
    tx: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Dispatcher for LocalWorkers {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError> {
        self.tx
            .send(run_id.to_string())
            .map_err(|_| EngineError::Store("the worker pool has stopped".into()))
    }
}

/// The receiving end of the in-process queue, until its workers are spawned.
pub struct LocalQueue {
    rx: mpsc::UnboundedReceiver<String>,
}

/// An in-process run queue: the dispatcher, and the queue its workers drain.
pub fn local_queue() -> (LocalWorkers, LocalQueue) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    (LocalWorkers { tx }, LocalQueue { rx })
}

impl LocalQueue {
    /// Starts `concurrency` worker tasks. They finish the run in hand and stop when
    /// `shutdown` turns true (a run cut short resumes at the next start).
    pub fn spawn(
        self,
        runs: SyncRuns,
        concurrency: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let rx = Arc::new(Mutex::new(self.rx));
        (0..concurrency.max(1))
            .map(|_| {
                let (runs, rx, mut stop) = (runs.clone(), rx.clone(), shutdown.clone());
                tokio::spawn(async move {
                    loop {
                        let next = {
                            let mut rx = rx.lock().await;
                            tokio::select! {
                                id = rx.recv() => id,
                                _ = stop.wait_for(|s| *s) => None,
                            }
                        };
                        let Some(run_id) = next else { break };
                        execute_logged(&runs, &run_id).await;
                    }
                })
            })
            .collect()
    }
}

/// Executes a run, logging (never propagating) its failure: the run records it.
pub async fn execute_logged(runs: &SyncRuns, run_id: &str) {
    match runs.execute(run_id).await {
        Ok(status) => tracing::info!(run_id, status = status.as_str(), "sync run ended"),
        Err(e) => tracing::warn!(run_id, error = %e, "sync run could not be executed"),
    }
}

/// Hands every queued or running run to `dispatcher`: after a restart, the runs a dead
/// worker held resume from their last committed page.
pub async fn resume_unfinished(
    runs: &SyncRuns,
    dispatcher: &dyn Dispatcher,
) -> Result<usize, EngineError> {
    let ids = runs.unfinished().await?;
    for id in &ids {
        dispatcher.dispatch(id).await?;
    }
    Ok(ids.len())
}
