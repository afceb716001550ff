//! Listing an integration's sync runs (starting, cancelling, retrying and rolling back
//! runs is [`crate::runs::SyncRuns`]).

use syncledger_domain::sync_run::{RunStatus, SyncRun};
use syncledger_projections::sync_runs;

use crate::app::Engine;
use crate::error::EngineError;

impl Engine {
    /// Up to `limit` of an integration of the workspace's runs, newest first, with ids
    /// before `before` (`None`: from the newest), optionally only those in `status`.
    pub async fn list_runs(
        &self,
        workspace_id: &str,
        integration_id: &str,
        status: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SyncRun>, EngineError> {
        self.integrations()
            .owned(workspace_id, integration_id)
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
        Ok(sync_runs::Query(&self.store.any)
            .list(workspace_id, integration_id, status, before, limit)
            .await?)
    }
}
