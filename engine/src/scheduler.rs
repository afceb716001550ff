//! The scheduler: starts an incremental run for each connected integration whose
//! schedule is due. The due time (`next_sync_at`) is kept by the integration-status read
//! model: one period after the last run began, or after the integration connected or its
//! schedule changed. A due integration with a run already active is simply skipped: its
//! next period starts when that run began.

use chrono::{DateTime, Utc};
use syncledger_domain::sync_run::{RunKind, Trigger};
use syncledger_projections::integration_status;
use syncledger_store::Metadata;

use crate::runs::RunError;
use crate::workers::Dispatcher;
use crate::{EngineError, SyncRuns};

/// Integrations due at `now`: (integration id, workspace id).
async fn due(runs: &SyncRuns, now: DateTime<Utc>) -> Result<Vec<(String, String)>, EngineError> {
    Ok(integration_status::Query(&runs.store().any)
        .due(now)
        .await?)
}

/// Starts the runs due at `now`; returns their ids.
pub async fn tick(
    runs: &SyncRuns,
    dispatcher: &dyn Dispatcher,
    now: DateTime<Utc>,
) -> Result<Vec<String>, EngineError> {
    let mut started = Vec::new();
    for (integration_id, workspace_id) in due(runs, now).await? {
        let meta = Metadata::new("scheduler", workspace_id, uuid::Uuid::now_v7().to_string());
        match runs
            .trigger(
                &integration_id,
                RunKind::Incremental,
                Trigger::Scheduled,
                None,
                &meta,
            )
            .await
        {
            Ok(run_id) => {
                dispatcher.dispatch(&run_id).await?;
                started.push(run_id);
            }
            // Busy, paused meanwhile, or gone: nothing to do this time.
            Err(
                RunError::Active { .. } | RunError::Unusable(_) | RunError::IntegrationNotFound,
            ) => {}
            Err(RunError::Engine(e)) => return Err(e),
            Err(e) => tracing::warn!(integration_id, error = %e, "scheduled run not started"),
        }
    }
    // Webhooks that arrived while a run was active: their follow-up run.
    for integration_id in runs.take_pending_webhooks() {
        let Some(workspace_id) = workspace_of(runs, &integration_id).await? else {
            continue;
        };
        let meta = Metadata::new("webhook", workspace_id, uuid::Uuid::now_v7().to_string());
        match runs
            .trigger(
                &integration_id,
                RunKind::Incremental,
                Trigger::Webhook,
                None,
                &meta,
            )
            .await
        {
            Ok(run_id) => {
                dispatcher.dispatch(&run_id).await?;
                started.push(run_id);
            }
            Err(RunError::Active { .. }) => runs.remember_webhook(&integration_id),
            Err(e) => tracing::info!(integration_id, error = %e, "webhook follow-up not started"),
        }
    }
    Ok(started)
}

async fn workspace_of(
    runs: &SyncRuns,
    integration_id: &str,
) -> Result<Option<String>, EngineError> {
    Ok(integration_status::Query(&runs.store().any)
        .workspace_of(integration_id)
        .await?)
}

/// Ticks every `every` until `shutdown` turns true.
pub async fn run(
    runs: SyncRuns,
    dispatcher: std::sync::Arc<dyn Dispatcher>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = tick(&runs, dispatcher.as_ref(), Utc::now()).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
