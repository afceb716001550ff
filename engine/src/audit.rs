//! The audit trail for a compliance officer: filtered pages of a workspace's trail in
//! chain order, and the verification of its hash chain against the event log. (Exporting
//! it as JSONL or CSV is the HTTP API's and the CLI's formatting of these pages.)

use syncledger_projections::audit::query::{AuditRow, Filter, Query};
use syncledger_projections::audit::{self, VerifyReport};

use crate::app::Engine;
use crate::error::EngineError;

/// The audit use cases; see [`Engine::audit`].
pub struct Audit<'a>(&'a Engine);

impl Engine {
    pub fn audit(&self) -> Audit<'_> {
        Audit(self)
    }
}

impl Audit<'_> {
    /// Up to `limit` entries matching `filter` after chain sequence `after`.
    pub async fn page(
        &self,
        filter: &Filter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, EngineError> {
        Ok(Query(&self.0.store.any)
            .page(filter, after, i64::MAX, limit)
            .await?)
    }

    /// Recompute the workspace's hash chain from the event log.
    pub async fn verify(&self, workspace_id: &str) -> Result<VerifyReport, EngineError> {
        Ok(audit::verify(&self.0.store, Some(workspace_id)).await?)
    }
}
