//! Creating an integration. The workspace decides the plan's cap and the name's
//! uniqueness (it reserves a slot), the new integration decides its own creation, and both
//! decisions land in ONE append, one transaction: a crash can leave either both or
//! neither, never a slot or a name held by an integration that does not exist.
//!
//! Concurrent creates in one workspace race for the workspace's next sequence. The loser
//! of a race decides again on the fresh state, for as long as [`RACE_BUDGET`] allows, so a
//! caller sees a real answer (created, plan limit, duplicate name), not a version conflict.

use crate::crashpoint;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::time::Duration;
use syncledger_domain::{
    Aggregate, Integration, IntegrationCommand, IntegrationError, SyncConfig, Workspace,
    WorkspaceCommand, WorkspaceError,
};
use syncledger_store::append::{AppendError, NewEvent, Writer};
use syncledger_store::{CommandError, Cqrs, EventPool, Metadata};
use tokio::time::Instant;

/// How long a create keeps deciding again after losing races to other writers of its
/// workspace. Each round has a winner, so this is only reached under a storm of writes.
pub const RACE_BUDGET: Duration = Duration::from_secs(30);

/// How a writer that lost an append race waits before deciding again: a random part of
/// a pause that doubles each time (up to 50 ms), so the next round has fewer losers, for
/// as long as [`RACE_BUDGET`] allows.
pub(crate) struct RaceBackoff {
    deadline: Instant,
    pause: Duration,
}

impl RaceBackoff {
    pub(crate) fn new() -> Self {
        RaceBackoff {
            deadline: Instant::now() + RACE_BUDGET,
            pause: Duration::from_millis(1),
        }
    }

    /// Waits before the next round; false when the budget is spent (give up).
    pub(crate) async fn lost(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let jitter = rand::thread_rng().gen_range(0..=self.pause.as_micros() as u64);
        tokio::time::sleep(Duration::from_micros(jitter)).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        true
    }
}

/// An integration to create, its input validated by the caller.
#[derive(Clone, Debug)]
pub struct NewIntegration {
    /// Fresh (a UUIDv7): the integration has no events yet.
    pub integration_id: String,
    pub workspace_id: String,
    pub provider: String,
    pub name: String,
    pub sync_config: SyncConfig,
    pub base_url: Option<String>,
    pub spec: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreationError {
    /// Plan limit, duplicate name, invalid name, no such workspace.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Integration(#[from] IntegrationError),
    /// Other writers kept winning the workspace for the whole [`RACE_BUDGET`].
    #[error("the workspace was changed concurrently for too long; retry")]
    Contended,
    #[error("event store: {0}")]
    Store(String),
}

impl From<CommandError<WorkspaceError>> for CreationError {
    fn from(e: CommandError<WorkspaceError>) -> Self {
        match e {
            CommandError::Domain(d) => CreationError::Workspace(d),
            CommandError::Conflict | CommandError::Stale { .. } => CreationError::Contended,
            CommandError::Store(s) => CreationError::Store(s),
        }
    }
}

/// Reserve the workspace's slot and create the integration, in one transaction.
pub async fn create_integration(
    events: &EventPool,
    workspaces: &Cqrs<Workspace>,
    new: &NewIntegration,
    meta: &Metadata,
) -> Result<(), CreationError> {
    let mut backoff = RaceBackoff::new();
    loop {
        let (workspace, sequence) = workspaces.load_versioned(&new.workspace_id).await?;
        let batches = decide(&workspace, sequence, new, meta)?;
        // A crash here is a crash "between reserving and creating": nothing is written.
        crashpoint::reach("integration:reserved");
        let [reserved, created] = &batches;
        // A writer per attempt: its connection goes back to the pool before the next
        // attempt loads the workspace, so racing creates cannot hold every connection.
        match Writer::default()
            .append_all(events, &[reserved, created])
            .await
        {
            Ok(()) => return Ok(()),
            Err(AppendError::Conflict) => {
                if !backoff.lost().await {
                    return Err(CreationError::Contended);
                }
            }
            Err(AppendError::Db(e)) => return Err(CreationError::Store(e.to_string())),
        }
    }
}

/// The workspace's reservation (after its event `sequence`) and the integration's
/// creation, as the rows to append.
fn decide(
    workspace: &Workspace,
    sequence: i64,
    new: &NewIntegration,
    meta: &Metadata,
) -> Result<[Vec<NewEvent>; 2], CreationError> {
    let reserved = workspace.decide(WorkspaceCommand::ReserveIntegration {
        integration_id: new.integration_id.clone(),
        name: new.name.clone(),
    })?;
    let created = Integration::default().decide(IntegrationCommand::Create {
        integration_id: new.integration_id.clone(),
        workspace_id: new.workspace_id.clone(),
        provider: new.provider.clone(),
        name: new.name.trim().to_string(),
        sync_config: new.sync_config.clone(),
        base_url: new.base_url.clone(),
        spec: new.spec.clone(),
        at: new.at,
    })?;
    Ok([
        rows::<Workspace>(&new.workspace_id, sequence, &reserved, meta)?,
        rows::<Integration>(&new.integration_id, 0, &created, meta)?,
    ])
}

/// `events` of aggregate `id` as rows, numbered from `after + 1`.
pub(crate) fn rows<A: Aggregate>(
    id: &str,
    after: i64,
    events: &[A::Event],
    meta: &Metadata,
) -> Result<Vec<NewEvent>, CreationError> {
    events
        .iter()
        .zip(after + 1..)
        .map(|(e, seq)| NewEvent::of::<A>(id, seq, e, meta))
        .collect::<Result<_, _>>()
        .map_err(|e| CreationError::Store(format!("encoding an event: {e}")))
}
