//! An execution from start to end: take the run (a replaced worker notices its tag is
//! gone), drive its passes through store outages, record how it ended and give the
//! integration's active-run slot back.

use chrono::Utc;
use syncledger_crm::CrmError;
use syncledger_domain::provider_text::clean;
use syncledger_domain::sync_run::{RunStatus, SyncRun, SyncRunCommand, SyncRunError};
use syncledger_store::{CommandError, Metadata};

use super::execution::{store_err, Execution, Flow};
use super::Services;
use crate::crashpoint;
use crate::EngineError;

/// Executes (or resumes) the run to its end; returns the status it ended in. Every log
/// line of the execution (provider retries and waits among them) is in a `run` span that
/// names the run and its integration.
#[tracing::instrument(name = "run", skip_all, fields(run_id = %run_id, integration_id = tracing::field::Empty))]
pub(super) async fn execute(services: &Services, run_id: &str) -> Result<RunStatus, EngineError> {
    let run = services.runs.load(run_id).await.map_err(store_err)?;
    if run.id.is_none() {
        return Err(EngineError::RunNotFound);
    }
    tracing::Span::current().record(
        "integration_id",
        tracing::field::display(&run.integration_id),
    );
    let meta = Metadata::new(
        format!("worker:{}", services.worker),
        run.workspace_id.clone(),
        run_id,
    );
    if !run.status.is_active() {
        release(services, &run, &meta).await?;
        return Ok(run.status);
    }
    if super::import::left_to_its_holder(services, &run) {
        return Ok(run.status);
    }
    let tag = match start(services, run_id, &meta).await? {
        Ok(tag) => tag,
        Err(status) => {
            release(services, &run, &meta).await?;
            return Ok(status);
        }
    };
    let outcome = drive_through_outages(services, run_id, &tag, &meta).await;
    let mut ended_here = false;
    if let Some(command) = end_of(run_id, outcome) {
        ended_here = record_end(services, run_id, command, &meta).await?;
    }
    let run = services.runs.load(run_id).await.map_err(store_err)?;
    // A run cancelled while this execution held it ended here too (the cancel leaves the
    // worker tag as it was; a run taken over carries the other execution's tag).
    ended_here |= run.status == RunStatus::Cancelled && run.worker.as_deref() == Some(tag.as_str());
    if ended_here && !run.status.is_active() {
        count_end(services, &run).await;
    }
    if !run.status.is_active() {
        release(services, &run, &meta).await?;
    }
    Ok(run.status)
}

/// Counts the run's end in the process's metrics: once per run, by the execution that
/// held it when it ended.
async fn count_end(services: &Services, run: &SyncRun) {
    let provider = match services.integrations.load(&run.integration_id).await {
        Ok(integration) => integration.provider,
        Err(_) => String::new(),
    };
    let seconds = match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => (end - start).to_std().ok().map(|d| d.as_secs_f64()),
        _ => None,
    };
    crate::metrics::run_ended(&provider, run.kind, run.status, seconds, &run.stats);
}

/// Takes the run under a tag of this execution's own, so a worker that was replaced (its
/// run taken over after it stalled) notices at its next page and stops. `Err` with the
/// run's status when it can no longer start (it ended meanwhile).
async fn start(
    services: &Services,
    run_id: &str,
    meta: &Metadata,
) -> Result<Result<String, RunStatus>, EngineError> {
    let tag = format!(
        "{}#{}",
        services.worker,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let command = SyncRunCommand::Start {
        worker: tag.clone(),
        at: Utc::now(),
    };
    match services.runs.execute(run_id, command, meta).await {
        Ok(()) => Ok(Ok(tag)),
        Err(CommandError::Domain(SyncRunError::InvalidTransition { status, .. })) => {
            Ok(Err(status))
        }
        Err(e) => Err(store_err(e)),
    }
}

/// How the execution's outcome ends the run; `None` when it was stopped (someone else
/// ended the run or took it over).
fn end_of(run_id: &str, outcome: Result<Flow, EngineError>) -> Option<SyncRunCommand> {
    match outcome {
        Ok(Flow::Stopped) => None,
        Ok(Flow::Continue) => {
            crashpoint::reach("run:finishing");
            Some(SyncRunCommand::Finish { at: Utc::now() })
        }
        Err(EngineError::Provider(CrmError::QuotaExhausted(detail))) => {
            Some(SyncRunCommand::ExhaustQuota {
                detail: clean(&detail),
                at: Utc::now(),
            })
        }
        Err(e) => {
            tracing::warn!(run_id, error = %e, "sync run failed");
            Some(SyncRunCommand::Fail {
                reason: e.to_string(),
                at: Utc::now(),
            })
        }
    }
}

/// Records the run's end, waiting out a store outage; an end the run no longer takes
/// (it ended meanwhile) is left alone. Answers whether this end was recorded.
async fn record_end(
    services: &Services,
    run_id: &str,
    command: SyncRunCommand,
    meta: &Metadata,
) -> Result<bool, EngineError> {
    let mut strikes = 0;
    loop {
        match services.runs.execute(run_id, command.clone(), meta).await {
            Ok(()) => {
                services.committed.notify_waiters();
                return Ok(true);
            }
            Err(CommandError::Domain(SyncRunError::InvalidTransition { .. })) => return Ok(false),
            Err(CommandError::Store(e)) if strikes < STORE_RETRIES => {
                tracing::warn!(run_id, error = %e, "could not record the run's end; retrying once the store answers");
                if wait_for_store(services).await {
                    strikes += 1;
                }
            }
            Err(e) => return Err(store_err(e)),
        }
    }
}

/// Store errors tolerated in a row while the store answers, with no page committed in
/// between, before the run fails: an error that persists with the database up is not an
/// outage. Errors while the database does not answer are not counted: the run waits for
/// it, however long, and resumes.
const STORE_RETRIES: u32 = 3;

/// Executes the run, riding out store outages: on a store error the execution waits until
/// the database answers again and resumes from the run's last committed page (a fetched
/// page that was not committed is fetched again; its records merge as no change).
async fn drive_through_outages(
    services: &Services,
    run_id: &str,
    tag: &str,
    meta: &Metadata,
) -> Result<Flow, EngineError> {
    let mut strikes = 0;
    let mut committed = None;
    loop {
        let (run, version) = match services.runs.load_versioned(run_id).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "could not load the run; retrying once the store answers");
                if wait_for_store(services).await {
                    strikes += 1;
                    if strikes > STORE_RETRIES {
                        return Err(store_err(e));
                    }
                }
                continue;
            }
        };
        // Cancelled or taken over while the store was away: not ours to go on with.
        if run.status != RunStatus::Running || run.worker.as_deref() != Some(tag) {
            return Ok(Flow::Stopped);
        }
        if committed.is_some_and(|v| version > v) {
            strikes = 0;
        }
        committed = Some(version);
        let outcome =
            match Execution::open(services, run, version, tag.to_owned(), meta.clone()).await {
                Ok(mut ctx) => ctx.drive().await,
                Err(e) => Err(e),
            };
        match outcome {
            Err(EngineError::Store(cause)) => {
                tracing::warn!(run_id, error = %cause, "store error during a sync run; resuming from its last committed page once the store answers");
                if wait_for_store(services).await {
                    strikes += 1;
                    if strikes > STORE_RETRIES {
                        return Err(EngineError::Store(cause));
                    }
                }
            }
            other => return other,
        }
    }
}

/// Waits until the store answers, with backoff and no limit. Returns whether it answered
/// at once (the error was not an outage, or one already over).
async fn wait_for_store(services: &Services) -> bool {
    if services.store.answers().await {
        return true;
    }
    let mut pause = std::time::Duration::from_millis(100);
    while !services.store.answers().await {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
    tracing::info!("the store answers again");
    false
}

async fn release(services: &Services, run: &SyncRun, meta: &Metadata) -> Result<(), EngineError> {
    let Some(run_id) = run.id.clone() else {
        return Ok(());
    };
    services
        .integrations
        .execute(
            &run.integration_id,
            syncledger_domain::IntegrationCommand::FinishSyncRun {
                run_id,
                at: Utc::now(),
            },
            meta,
        )
        .await
        .map_err(EngineError::from)
}
