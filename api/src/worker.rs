//! `syncledger worker`: a process that only executes sync runs. With NATS configured it
//! takes them from the JetStream job queue shared with every other worker; without, it
//! resumes the runs left unfinished and then polls the store for queued ones.

use crate::app;
use crate::config::Settings;
use crate::state::sync_engine;
use std::process::ExitCode;
use std::time::Duration;
use syncledger_engine::workers::PoolOptions;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Sync runs executed at once.
    #[arg(long, default_value_t = 2, env = "SYNCLEDGER_WORKER_CONCURRENCY")]
    pub concurrency: usize,
    /// Without NATS: how often to look for queued runs, in milliseconds.
    #[arg(
        long,
        default_value_t = 3000,
        env = "SYNCLEDGER_WORKER_POLL_INTERVAL_MS"
    )]
    pub poll_interval_ms: u64,
    /// On SIGTERM or Ctrl-C: seconds the runs in hand may take to end before they are
    /// abandoned (they resume from their last committed page elsewhere).
    #[arg(long, default_value_t = 30, env = "SYNCLEDGER_WORKER_GRACE_SECS")]
    pub grace_secs: u64,
}

pub async fn run(settings: &Settings, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let shutdown = app::shutdown_signal()?;
    let (store, vault) = app::open_existing(settings).await?;
    // Bound before any run starts, so a port that is taken stops the worker at once.
    let metrics = match settings.metrics_addr {
        Some(addr) => {
            let listener = crate::metrics::Listener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("metrics_addr {addr}: {e}"))?;
            tracing::info!(metrics = %listener.addr(), "worker metrics at GET /metrics");
            Some(listener.spawn_for_worker(store.clone(), shutdown.clone()))
        }
        None => None,
    };
    let nats = app::connect_nats(settings).await?;
    let name = format!("worker:{}", std::process::id());
    let (_, runs) = sync_engine(
        &store,
        vault,
        settings.provider_apps(),
        name.clone(),
        name.clone(),
    );
    let options = PoolOptions {
        concurrency: args.concurrency.max(1),
        grace: Duration::from_secs(args.grace_secs),
    };
    tracing::info!(
        worker = %name,
        store = %settings.store_config().redacted_url(),
        queue = if nats.is_some() { "nats" } else { "store" },
        "syncledger worker started"
    );
    match nats {
        Some(nats) => {
            let queue = app::job_queue(&nats, settings).await?;
            syncledger_engine::jobs::consume(runs, queue, options, shutdown).await;
        }
        None => {
            let every = Duration::from_millis(args.poll_interval_ms.max(10));
            syncledger_engine::workers::poll(runs, options, every, shutdown).await;
        }
    }
    tracing::info!(worker = %name, "syncledger worker stopped");
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
