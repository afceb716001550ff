//! A fixed pool of evaluation threads with a bounded queue, for expressions that
//! requests bring (previews, mapping saves): however many requests arrive, at most
//! [`WORKERS`] threads compile or evaluate and [`QUEUE`] jobs wait; beyond that a job is
//! refused with [`TransformError::Busy`] instead of piling up threads.
//!
//! The threads have a large stack because the CEL parser recurses on the source.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use super::TransformError;

pub const WORKERS: usize = 4;
pub const QUEUE: usize = 64;
const STACK: usize = 8 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Option<SyncSender<Job>>,
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panic in a job fails that job (its result sender drops) and not the worker.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let started = (0..WORKERS)
            .filter(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("cel-{i}"))
                    .stack_size(STACK)
                    .spawn(move || work(&rx))
                    .is_ok()
            })
            .count();
        Pool {
            jobs: (started > 0).then_some(tx),
        }
    })
}

/// Runs `job` on the pool and waits for it without blocking the async runtime.
pub async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransformError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // Nobody waits any more (the request went away): do not start.
        if !tx.is_closed() {
            let _ = tx.send(job());
        }
    });
    let jobs = pool()
        .jobs
        .as_ref()
        .ok_or_else(|| TransformError::Runtime("no evaluation thread could be started".into()))?;
    match jobs.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(TransformError::Busy),
        Err(TrySendError::Disconnected(_)) => {
            return Err(TransformError::Runtime(
                "the evaluation pool stopped".into(),
            ))
        }
    }
    rx.await
        .map_err(|_| TransformError::Runtime("the evaluation failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_work_instead_of_growing() {
        // Every worker blocks on the gate until the test has overfilled the queue.
        let gate = Arc::new(Barrier::new(WORKERS + 1));
        let mut pending = Vec::new();
        for i in 0..(QUEUE + 2 * WORKERS + 8) {
            let gate = (i < WORKERS).then(|| Arc::clone(&gate));
            pending.push(Box::pin(run(move || {
                if let Some(gate) = gate {
                    gate.wait();
                }
            })));
        }
        let mut refused = 0;
        let mut accepted = Vec::new();
        for mut job in pending {
            // The first poll submits the job.
            match futures::poll!(job.as_mut()) {
                std::task::Poll::Ready(Err(TransformError::Busy)) => refused += 1,
                _ => accepted.push(job),
            }
        }
        assert!(refused >= WORKERS + 8, "refused {refused}");
        assert!(
            accepted.len() <= QUEUE + WORKERS,
            "accepted {}",
            accepted.len()
        );
        gate.wait();
        for job in accepted {
            job.await.expect("accepted jobs run");
        }
    }
}
