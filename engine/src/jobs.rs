//! Runs handed out through the JetStream job queue: the dispatcher that queues a run id,
//! and the loop by which a process (a `syncledger worker`, or `serve` with workers) takes
//! jobs and executes them.
//!
//! A job is acknowledged once its run has ended. While the run executes, in-progress
//! acks keep the job from being handed out again; a worker that dies stops sending them,
//! the job is delivered to another worker after the ack wait, and that worker resumes the
//! run from its last committed page.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use syncledger_bus::{BusError, Job, JobQueue};
use tokio::sync::watch;

use crate::workers::{
    execute_logged, raised, sleep_or_stop, stopping, Dispatcher, Pool, PoolOptions,
};
use crate::{EngineError, SyncRuns};

/// How long one pull request waits for jobs: also how soon an idle worker notices
/// shutdown.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// How long a job whose run could not be executed (the store unreachable) waits before
/// it is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Queues runs on the JetStream work queue.
#[derive(Clone)]
pub struct NatsDispatcher {
    queue: JobQueue,
}

impl NatsDispatcher {
    pub fn new(queue: JobQueue) -> Self {
        NatsDispatcher { queue }
    }
}

#[async_trait]
impl Dispatcher for NatsDispatcher {
    async fn dispatch(&self, run_id: &str) -> Result<(), EngineError> {
        self.publish(run_id, run_id).await
    }

    async fn dispatch_again(&self, run_id: &str, execution: &str) -> Result<(), EngineError> {
        self.publish(run_id, &format!("{run_id}@{execution}")).await
    }
}

impl NatsDispatcher {
    /// Queues `run_id` as a job whose message id is `message_id` (a second job with the
    /// same id, within the queue's duplicate window, is dropped).
    async fn publish(&self, run_id: &str, message_id: &str) -> Result<(), EngineError> {
        match self.queue.publish(run_id, message_id).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!(run_id, "sync run already in the job queue");
                Ok(())
            }
            Err(e) => Err(EngineError::Store(format!("job queue: {e}"))),
        }
    }
}

/// Takes jobs from the queue and executes their runs, at most `options.concurrency` at
/// once, until `shutdown`; then lets the runs in hand end within the grace period and
/// gives the rest back to the queue.
pub async fn consume(
    runs: SyncRuns,
    queue: JobQueue,
    options: PoolOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pool = Pool::new(options.concurrency);
    let progress_every = queue.config().ack_wait / 3;
    let mut failures = 0u32;
    tracing::info!(
        concurrency = options.concurrency,
        stream = %queue.config().stream,
        "waiting for sync runs from the job queue"
    );
    while let Some(free) = pool.free_slots(&mut shutdown).await {
        let pulled = match queue.pull(free, PULL_WAIT).await {
            Ok(mut jobs) => loop {
                match jobs.next().await {
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(job)) => take(&mut pool, &runs, job, progress_every, &shutdown).await,
                }
            },
            Err(e) => Err(e),
        };
        match pulled {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(250 * 2u64.pow(failures.min(5)));
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job queue: pull failed");
                if sleep_or_stop(delay, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    pool.drain(options.grace).await;
}

/// Starts executing a job's run, or gives the job back when this process is stopping.
async fn take(
    pool: &mut Pool,
    runs: &SyncRuns,
    job: Job,
    progress_every: Duration,
    shutdown: &watch::Receiver<bool>,
) {
    if stopping(shutdown) {
        settle(&job, Settle::Retry(None)).await;
        return;
    }
    if pool.holds(&job.run_id) {
        // A second job for a run this process is executing: the run's own job is
        // acknowledged when it ends, and this one is delivered again after the ack wait.
        tracing::debug!(run_id = %job.run_id, "sync run already in hand");
        return;
    }
    let runs = runs.clone();
    pool.spawn(job.run_id.clone(), move |abandon| {
        execute_job(runs, job, progress_every, abandon)
    });
}

/// Executes the run, sending in-progress acks meanwhile, and settles the job.
async fn execute_job(
    runs: SyncRuns,
    job: Job,
    progress_every: Duration,
    mut abandon: watch::Receiver<bool>,
) {
    if job.delivered > 1 {
        tracing::info!(run_id = %job.run_id, delivered = job.delivered, "sync run delivered again: resuming it");
    }
    let execution = execute_logged(&runs, &job.run_id);
    tokio::pin!(execution);
    let start = tokio::time::Instant::now() + progress_every;
    let mut progress = tokio::time::interval_at(start, progress_every);
    let outcome = loop {
        tokio::select! {
            result = &mut execution => break Some(result),
            _ = progress.tick() => {
                if let Err(e) = job.progress().await {
                    tracing::warn!(run_id = %job.run_id, error = %e, "job queue: in-progress ack failed");
                }
            }
            _ = raised(&mut abandon) => break None,
        }
    };
    let decision = match outcome {
        Some(Ok(status)) if status.is_active() => Settle::Leave,
        Some(Ok(_)) => Settle::Ack,
        Some(Err(EngineError::RunNotFound)) => Settle::Reject,
        Some(Err(_)) => Settle::Retry(Some(RETRY_DELAY)),
        None => {
            tracing::info!(run_id = %job.run_id, "sync run abandoned at shutdown: back to the queue");
            Settle::Retry(None)
        }
    };
    settle(&job, decision).await;
}

/// What becomes of a job.
enum Settle {
    /// The run has ended.
    Ack,
    /// Another execution took the run over: its job is that execution's to settle (the
    /// same message, redelivered), so this delivery is left alone.
    Leave,
    /// Deliver again (now, or after a delay).
    Retry(Option<Duration>),
    /// Not a run of this store: never deliver again.
    Reject,
}

async fn settle(job: &Job, decision: Settle) {
    let sent: Result<(), BusError> = match decision {
        Settle::Ack => job.ack().await,
        Settle::Leave => Ok(()),
        Settle::Retry(delay) => job.retry(delay).await,
        Settle::Reject => {
            tracing::warn!(run_id = %job.run_id, "job for an unknown sync run dropped");
            job.reject().await
        }
    };
    if let Err(e) = sent {
        // The job is delivered again after the ack wait; the run's state decides then.
        tracing::warn!(run_id = %job.run_id, error = %e, "job queue: could not settle a job");
    }
}
