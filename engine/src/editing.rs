//! Editing an integration after its creation: its name, sync configuration, base URL
//! and spec, in one change that lands whole or not at all.
//!
//! A rename is decided by two aggregates: the integration takes the name, the workspace
//! keeps names unique (its slot holds the name). Both decisions land in ONE append, as in
//! [`crate::creation`], so two renames racing for one name cannot both win and a crash
//! never leaves the workspace and the integration disagreeing on a name.
//!
//! An endpoint change (base URL or spec) keeps the stored credentials only when every
//! host they would now be sent to is one they were sent to before ([`origins`]): an
//! operator who points an integration at another host connects it again, so credentials
//! given for one CRM never reach a host their owner did not give them for.

use chrono::Utc;
use syncledger_domain::{
    Aggregate, Integration, IntegrationCommand, IntegrationEvent, SyncConfig, Workspace,
    WorkspaceCommand,
};
use syncledger_store::append::{AppendError, Writer};
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::connector::origins;
use crate::creation::{rows, RaceBackoff};
use crate::error::EngineError;

/// What to change; `None` leaves a part as it is.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    pub name: Option<String>,
    pub sync_config: Option<SyncConfig>,
    /// The base URL override and the canonical spec the integration should have, both
    /// already checked against the outbound policy.
    pub endpoint: Option<Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub base_url: Option<String>,
    pub spec: Option<String>,
}

impl Edit {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.sync_config.is_none() && self.endpoint.is_none()
    }

    /// The integration's commands for this edit, decided on `current`.
    fn commands(&self, current: &Integration) -> Vec<IntegrationCommand> {
        let at = Utc::now();
        let mut commands = Vec::new();
        if let Some(name) = &self.name {
            commands.push(IntegrationCommand::Rename {
                name: name.clone(),
                at,
            });
        }
        if let Some(sync_config) = &self.sync_config {
            commands.push(IntegrationCommand::ChangeSyncConfig {
                sync_config: sync_config.clone(),
                at,
            });
        }
        if let Some(endpoint) = &self.endpoint {
            let before = origins(
                &current.provider,
                current.base_url.as_deref(),
                current.spec.as_deref(),
            );
            let after = origins(
                &current.provider,
                endpoint.base_url.as_deref(),
                endpoint.spec.as_deref(),
            );
            commands.push(IntegrationCommand::ChangeEndpoint {
                base_url: endpoint.base_url.clone(),
                spec: endpoint.spec.clone(),
                keep_credentials: after.is_subset(&before),
                at,
            });
        }
        commands
    }
}

/// Apply `edit` to integration `id` of `meta`'s workspace, only at version `expected`
/// when given (`Stale` otherwise, also when another writer appends first). Losing a race
/// for the workspace (another integration created or renamed) is decided again.
pub(crate) async fn edit_integration(
    engine: &Engine,
    meta: &Metadata,
    id: &str,
    edit: &Edit,
    expected: Option<i64>,
) -> Result<(), EngineError> {
    let mut backoff = RaceBackoff::new();
    loop {
        let (current, sequence) = engine.integrations.load_versioned(id).await?;
        if current.id.is_none() || current.workspace_id != meta.workspace_id {
            return Err(EngineError::NotFound);
        }
        if expected.is_some_and(|v| v != sequence) {
            return Err(EngineError::Stale { current: sequence });
        }
        let mut state = current.clone();
        let mut events = Vec::new();
        for command in edit.commands(&current) {
            let decided = state.decide(command)?;
            for event in &decided {
                state.apply(event);
            }
            events.extend(decided);
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut meta = meta.clone();
        meta.time = Utc::now();
        let mut batches = Vec::with_capacity(2);
        let renamed = events.iter().find_map(|e| match e {
            IntegrationEvent::IntegrationRenamed { name, .. } => Some(name.clone()),
            _ => None,
        });
        if let Some(name) = renamed {
            let (workspace, after) = engine.workspaces.load_versioned(&meta.workspace_id).await?;
            let slot = workspace.decide(WorkspaceCommand::RenameIntegration {
                integration_id: id.to_string(),
                name,
            })?;
            batches.push(rows::<Workspace>(&meta.workspace_id, after, &slot, &meta)?);
        }
        batches.push(rows::<Integration>(id, sequence, &events, &meta)?);
        let batches: Vec<&[_]> = batches.iter().map(Vec::as_slice).collect();
        match Writer::default()
            .append_all(&engine.store.events, &batches)
            .await
        {
            Ok(()) => return Ok(()),
            // Decided again on fresh state: with `expected`, the next round answers
            // `Stale` if the integration moved, and goes on if only the workspace did.
            Err(AppendError::Conflict) => {
                if !backoff.lost().await {
                    return Err(EngineError::Concurrent);
                }
            }
            Err(AppendError::Db(e)) => return Err(EngineError::Store(e.to_string())),
        }
    }
}
