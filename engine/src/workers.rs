//! Handing runs to workers. Inside `serve` (the embedded default) a pool of tasks takes
//! run ids from an in-process queue; with NATS configured, run ids go through a JetStream
//! work queue that any number of `syncledger worker` processes share. Either way the run
//! itself guarantees at most one active run per integration and resumes from its last
//! committed page, so a run handed out twice is executed correctly (the in-process queue
//! also drops a run it already has in hand, which would only cost provider calls).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use syncledger_domain::sync_run::RunStatus;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};

use crate::{EngineError, SyncRuns};

/// Where triggered runs are sent to be executed.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError>;

    /// Hands out a run whose earlier job may still be held by a process that died: a
    /// queue that drops a second job for the same run must take this one (`execution`
    /// names the dead execution, so the job is new once per execution). Queues that hold
    /// nothing across a process's death just dispatch.
    async fn dispatch_again(&self, run_id: &str, execution: &str) -> Result<(), EngineError> {
        let _ = execution;
        self.dispatch(run_id).await
    }
}

/// Runs executed by tasks of this process.
#[derive(Clone)]
pub struct LocalWorkers {
    tx: mpsc::UnboundedSender<String>,
    in_hand: InHand,
}

/// The runs queued or executing in this process. A run handed out while it is in hand
/// is not queued again: a second execution would take the run over from the first (both
/// calling the CRM for the same pages). That happened when the start-up resume listed
/// a run this very process had just started (same instance name) and handed it out.
#[derive(Clone, Default)]
struct InHand(Arc<std::sync::Mutex<HashSet<String>>>);

impl InHand {
    /// Takes `run_id` in hand; false when it already is.
    fn take(&self, run_id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(run_id.to_owned())
    }

    fn release(&self, run_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(run_id);
    }
}

#[async_trait]
impl Dispatcher for LocalWorkers {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError> {
        if !self.in_hand.take(run_id) {
            tracing::debug!(run_id, "sync run already in hand in this process");
            return Ok(());
        }
        self.tx.send(run_id.to_string()).map_err(|_| {
            self.in_hand.release(run_id);
            EngineError::Store("the worker pool has stopped".into())
        })
    }
}

/// The receiving end of the in-process queue, until its workers are spawned.
pub struct LocalQueue {
    rx: mpsc::UnboundedReceiver<String>,
    in_hand: InHand,
}

/// An in-process run queue: the dispatcher, and the queue its workers drain.
pub fn local_queue() -> (LocalWorkers, LocalQueue) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let in_hand = InHand::default();
    (
        LocalWorkers {
            tx,
            in_hand: in_hand.clone(),
        },
        LocalQueue { rx, in_hand },
    )
}

impl LocalQueue {
    /// Starts `concurrency` worker tasks. They finish the run in hand and stop when
    /// `shutdown` turns true (a run cut short resumes at the next start).
    pub fn spawn(
        self,
        runs: SyncRuns,
        options: PoolOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let rx = Arc::new(Mutex::new(self.rx));
        (0..options.concurrency.max(1))
            .map(|_| {
                let (runs, rx, mut stop) = (runs.clone(), rx.clone(), shutdown.clone());
                let in_hand = self.in_hand.clone();
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
                        let mut asked = stop.clone();
                        let overdue = async move {
                            let _ = asked.wait_for(|s| *s).await;
                            tokio::time::sleep(options.grace).await;
                        };
                        tokio::select! {
                            _ = execute_logged(&runs, &run_id) => in_hand.release(&run_id),
                            _ = overdue => {
                                // Dropped between two awaits, as a crash would stop it: the
                                // run resumes from its last committed page at the next start.
                                tracing::info!(run_id, "sync run abandoned at shutdown; it resumes at the next start");
                                break;
                            }
                        }
                    }
                })
            })
            .collect()
    }
}

/// Executes a run and logs how it went. A run's own failure is recorded on the run; the
/// error returned is one of executing it at all (the store unreachable, no such run).
pub async fn execute_logged(runs: &SyncRuns, run_id: &str) -> Result<RunStatus, EngineError> {
    let result = runs.execute(run_id).await;
    match &result {
        Ok(status) if status.is_active() => {
            tracing::info!(
                run_id,
                "sync run taken over by another execution; left to it"
            )
        }
        Ok(status) => tracing::info!(run_id, status = status.as_str(), "sync run ended"),
        Err(e) => tracing::warn!(run_id, error = %e, "sync run could not be executed"),
    }
    result
}

/// Hands every queued or running run to `dispatcher`: after a restart, the runs a dead
/// worker held resume from their last committed page. A run last started by this very
/// worker (the same instance name: this process's predecessor, killed) is handed out as a
/// new job at once; any other running run keeps its job, which the job queue delivers
/// again once its holder stops extending it.
pub async fn resume_unfinished(
    runs: &SyncRuns,
    dispatcher: &dyn Dispatcher,
) -> Result<usize, EngineError> {
    let unfinished = runs.unfinished().await?;
    for run in &unfinished {
        match &run.execution {
            Some(execution) if run.started_by(runs.worker()) => {
                tracing::info!(run_id = %run.id, execution = %execution, "resuming a sync run this instance held when it stopped");
                dispatcher.dispatch_again(&run.id, execution).await?
            }
            _ => dispatcher.dispatch(&run.id).await?,
        }
    }
    Ok(unfinished.len())
}

/// Runs left in the store for `syncledger worker` processes to poll: what `serve` uses
/// when it executes no runs itself and has no job queue.
pub struct Unassigned;

#[async_trait]
impl Dispatcher for Unassigned {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError> {
        tracing::debug!(run_id, "sync run queued for a polling worker");
        Ok(())
    }
}

/// How a worker process executes runs.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Runs executed at once.
    pub concurrency: usize,
    /// After shutdown is asked, how long the runs in hand may take to end before they are
    /// abandoned (an abandoned run resumes from its last committed page elsewhere).
    pub grace: Duration,
}

/// The runs a worker process has in hand, at most `concurrency` of them.
pub(crate) struct Pool {
    tasks: JoinSet<String>,
    in_hand: HashSet<String>,
    concurrency: usize,
    abandon: watch::Sender<bool>,
}

impl Pool {
    pub(crate) fn new(concurrency: usize) -> Self {
        Pool {
            tasks: JoinSet::new(),
            in_hand: HashSet::new(),
            concurrency: concurrency.max(1),
            abandon: watch::channel(false).0,
        }
    }

    pub(crate) fn holds(&self, run_id: &str) -> bool {
        self.in_hand.contains(run_id)
    }

    fn reap(&mut self, ended: Result<String, tokio::task::JoinError>) {
        match ended {
            Ok(run_id) => {
                self.in_hand.remove(&run_id);
            }
            // A panicked task's run is not known here: it resumes at the next start.
            Err(e) => tracing::error!(error = %e, "a sync run task ended abnormally"),
        }
    }

    /// Waits until at least one slot is free; how many are. `None` once shutdown is asked.
    pub(crate) async fn free_slots(&mut self, stop: &mut watch::Receiver<bool>) -> Option<usize> {
        loop {
            while let Some(ended) = self.tasks.try_join_next() {
                self.reap(ended);
            }
            if stopping(stop) {
                return None;
            }
            let free = self.concurrency.saturating_sub(self.tasks.len());
            if free > 0 {
                return Some(free);
            }
            tokio::select! {
                Some(ended) = self.tasks.join_next() => self.reap(ended),
                _ = raised(stop) => return None,
            }
        }
    }

    /// Executes `work` for `run_id` in a task of its own; the work is handed a signal that
    /// turns true when the run must be abandoned.
    pub(crate) fn spawn<F, Fut>(&mut self, run_id: String, work: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = work(self.abandon.subscribe());
        self.in_hand.insert(run_id.clone());
        self.tasks.spawn(async move {
            fut.await;
            run_id
        });
    }

    /// Lets the runs in hand end within `grace`, then abandons the rest.
    pub(crate) async fn drain(mut self, grace: Duration) {
        if !self.tasks.is_empty() {
            tracing::info!(
                runs = self.tasks.len(),
                "shutting down: waiting for the sync runs in hand"
            );
        }
        let ended = tokio::time::timeout(grace, async {
            while let Some(ended) = self.tasks.join_next().await {
                self.reap(ended);
            }
        })
        .await;
        if ended.is_err() {
            tracing::info!(
                runs = self.in_hand.len(),
                "abandoning the sync runs in hand; they resume elsewhere"
            );
            let _ = self.abandon.send(true);
            while let Some(ended) = self.tasks.join_next().await {
                self.reap(ended);
            }
        }
    }
}

/// True once shutdown is asked (or its sender is gone).
pub(crate) fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Resolves once `signal` turns true (or its sender is gone).
pub(crate) async fn raised(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|s| *s).await;
}

/// Sleeps for `d` unless shutdown comes first; true if it came.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = raised(stop) => {}
    }
    stopping(stop)
}

/// A worker without a job queue: takes the runs a previous worker left unfinished, then
/// every `every` the queued runs, until `shutdown`. Two pollers may take the same queued
/// run; the later start takes it over and the other stops at its next page.
pub async fn poll(
    runs: SyncRuns,
    options: PoolOptions,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pool = Pool::new(options.concurrency);
    // The unfinished runs found at start and not taken yet (`None` before they are
    // listed): kept until taken, since only the queued ones are found by later polls.
    let mut backlog: Option<Vec<String>> = None;
    tracing::info!(
        concurrency = options.concurrency,
        "waiting for sync runs (polling the store)"
    );
    while let Some(free) = pool.free_slots(&mut shutdown).await {
        let found = match &backlog {
            None => runs
                .unfinished()
                .await
                .map(|u| u.into_iter().map(|r| r.id).collect()),
            Some(left) => runs.queued().await.map(|q| [left.clone(), q].concat()),
        };
        match found {
            Ok(ids) => {
                let first = backlog.is_none();
                let mut seen = HashSet::new();
                let candidates: Vec<String> = ids
                    .into_iter()
                    .filter(|id| !pool.holds(id) && seen.insert(id.clone()))
                    .collect();
                let (take, rest) = candidates.split_at(free.min(candidates.len()));
                for run_id in take {
                    let (runs, id) = (runs.clone(), run_id.clone());
                    pool.spawn(run_id.clone(), move |abandon| {
                        execute_local(runs, id, abandon)
                    });
                }
                let left = match backlog.take() {
                    None => rest.to_vec(),
                    Some(left) => left,
                };
                backlog = Some(left.into_iter().filter(|id| !pool.holds(id)).collect());
                if first && !take.is_empty() {
                    tracing::info!(runs = take.len(), "resuming unfinished sync runs");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for sync runs"),
        }
        if sleep_or_stop(every, &mut shutdown).await {
            break;
        }
    }
    pool.drain(options.grace).await;
}

/// Executes a run; abandoned, it stays running in the store and resumes at the next
/// worker start.
async fn execute_local(runs: SyncRuns, run_id: String, mut abandon: watch::Receiver<bool>) {
    tokio::select! {
        _ = execute_logged(&runs, &run_id) => {}
        _ = raised(&mut abandon) => {
            tracing::info!(run_id, "sync run abandoned at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run handed out while it is queued or executing here is queued once; once its
    /// execution has ended it can be handed out again.
    #[tokio::test]
    async fn a_run_in_hand_is_not_queued_twice() -> Result<(), EngineError> {
        let (workers, mut queue) = local_queue();
        workers.dispatch("r1").await?;
        workers.dispatch_again("r1", "serve:x#dead").await?;
        workers.dispatch("r2").await?;
        let mut queued = Vec::new();
        while let Ok(id) = queue.rx.try_recv() {
            queued.push(id);
        }
        assert_eq!(queued, ["r1", "r2"]);
        queue.in_hand.release("r1");
        workers.dispatch("r1").await?;
        assert_eq!(queue.rx.try_recv().ok().as_deref(), Some("r1"));
        Ok(())
    }
}
