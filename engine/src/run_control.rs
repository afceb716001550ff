//! Sync runs on a person's behalf: start one (at most one active per integration), list
//! an integration's runs, read one, cancel, retry only the records a run failed on, and
//! roll a run back or preview that. Executing runs is [`crate::runs`]; runs execute on
//! workers, so a started run is answered while still `queued`.

use syncledger_domain::sync_config::Direction;
use syncledger_domain::sync_run::{RunKind, RunOptions, RunStatus, SyncRun, Trigger};
use syncledger_domain::Aggregate;
use syncledger_projections::sync_runs;
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::error::{entity_named, EngineError};
use crate::rollback::Preview;
use crate::RunError;

/// A run a person asks for; every part is optional and checked here.
#[derive(Clone, Debug, Default)]
pub struct StartRequest {
    /// `full`, `incremental` (the default) or `push`.
    pub kind: Option<String>,
    pub entities: Option<Vec<String>>,
    pub direction: Option<String>,
    pub import_historical: Option<bool>,
}

fn parse_kind(kind: Option<&str>) -> Result<RunKind, EngineError> {
    match kind.unwrap_or("incremental") {
        "full" => Ok(RunKind::Full),
        "incremental" => Ok(RunKind::Incremental),
        "push" => Ok(RunKind::Push),
        other => Err(EngineError::invalid(
            "kind",
            format!("must be full, incremental or push, not {other:?}"),
        )),
    }
}

fn parse_direction(name: &str) -> Result<Direction, EngineError> {
    match name {
        "pull" => Ok(Direction::Pull),
        "push" => Ok(Direction::Push),
        "bidirectional" => Ok(Direction::Bidirectional),
        other => Err(EngineError::invalid(
            "direction",
            format!("must be pull, push or bidirectional, not {other:?}"),
        )),
    }
}

impl StartRequest {
    fn parse(&self) -> Result<(RunKind, RunOptions), EngineError> {
        let kind = parse_kind(self.kind.as_deref())?;
        let options = RunOptions {
            entities: self
                .entities
                .as_ref()
                .map(|names| {
                    names
                        .iter()
                        .map(|n| entity_named("entities", Some(n)))
                        .collect()
                })
                .transpose()?,
            direction: self.direction.as_deref().map(parse_direction).transpose()?,
            import_historical: self.import_historical.unwrap_or(true),
        };
        Ok((kind, options))
    }
}

/// The sync-run use cases; see [`Engine::sync_runs`].
pub struct RunControl<'a>(&'a Engine);

impl Engine {
    pub fn sync_runs(&self) -> RunControl<'_> {
        RunControl(self)
    }
}

impl RunControl<'_> {
    /// The run, current (read from its events), if it belongs to the workspace.
    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<SyncRun, RunError> {
        match self.0.runs.load(id).await? {
            Some(run) if run.workspace_id == workspace_id => Ok(run),
            _ => Err(RunError::RunNotFound),
        }
    }

    /// Hands the run to a worker and answers with it as it is now.
    async fn started(&self, meta: &Metadata, run_id: &str) -> Result<SyncRun, RunError> {
        self.0.dispatcher.dispatch(run_id).await?;
        self.0
            .fresh
            .settle(sync_runs::TABLE, SyncRun::TYPE, run_id)
            .await?;
        self.get(&meta.workspace_id, run_id).await
    }

    /// Start a run now.
    pub async fn start(
        &self,
        meta: &Metadata,
        integration_id: &str,
        request: &StartRequest,
    ) -> Result<SyncRun, RunError> {
        let (kind, options) = request.parse()?;
        self.0
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        let run_id = self
            .0
            .runs
            .trigger_with(integration_id, kind, Trigger::Manual, options, meta)
            .await?;
        self.started(meta, &run_id).await
    }

    /// Up to `limit` of an integration of the workspace's runs, newest first, with ids
    /// before `before` (`None`: from the newest), optionally only those in `status`.
    pub async fn list(
        &self,
        workspace_id: &str,
        integration_id: &str,
        status: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SyncRun>, EngineError> {
        self.0
            .integrations()
            .check_owned(workspace_id, integration_id)
            .await?;
        let status = match status {
            None => None,
            Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                EngineError::invalid("status", format!("must be one of {}", names.join(", ")))
            })?),
        };
        // "~" sorts after every UUID.
        let before = before.unwrap_or("~");
        Ok(sync_runs::Query(&self.0.store.any)
            .list(workspace_id, integration_id, status, before, limit)
            .await?)
    }

    /// Cancel a queued or running run; its worker stops at the next page.
    pub async fn cancel(&self, meta: &Metadata, id: &str) -> Result<SyncRun, RunError> {
        self.get(&meta.workspace_id, id).await?;
        let run = self.0.runs.cancel(id, &meta.actor, meta).await?;
        self.0
            .fresh
            .settle(sync_runs::TABLE, SyncRun::TYPE, id)
            .await?;
        Ok(run)
    }

    /// Start a run that retries only the records run `id` failed on.
    pub async fn retry(&self, meta: &Metadata, id: &str) -> Result<SyncRun, RunError> {
        self.get(&meta.workspace_id, id).await?;
        let run_id = self.0.runs.retry(id, Trigger::Manual, meta).await?;
        self.started(meta, &run_id).await
    }

    /// What rolling back run `id` would do, record by record; writes nothing.
    pub async fn preview_rollback(&self, meta: &Metadata, id: &str) -> Result<Preview, RunError> {
        self.0.runs.preview_rollback(id, meta).await
    }

    /// Start a run of kind `rollback` that reverses run `id`.
    pub async fn rollback(&self, meta: &Metadata, id: &str) -> Result<SyncRun, RunError> {
        self.get(&meta.workspace_id, id).await?;
        let run_id = self.0.runs.rollback(id, meta).await?;
        self.started(meta, &run_id).await
    }
}
