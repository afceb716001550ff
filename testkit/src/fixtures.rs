//! Data seeded through the real command path (cqrs-es over the store), so tests see the
//! same events, sequences and metadata the API would produce.

use chrono::Utc;
use syncledger_domain::integration::{CredentialKind, EncryptedSecret};
use syncledger_domain::{
    Frequency, IntegrationCommand, Plan, Status, SyncConfig, WorkspaceCommand,
};
use syncledger_domain::{Integration, Workspace};
use syncledger_store::{Metadata, Store};

#[derive(Clone, Debug)]
pub struct SeededIntegration {
    pub id: String,
    pub name: String,
    /// The status the commands left it in.
    pub status: Status,
    /// How many events it has (its last sequence).
    pub events: i64,
    /// Whether it syncs on a schedule (so a connected one has a next run).
    pub scheduled: bool,
}

#[derive(Clone, Debug)]
pub struct SeededWorkspace {
    pub id: String,
    pub name: String,
    pub integrations: Vec<SeededIntegration>,
}

impl SeededWorkspace {
    /// Events on the workspace aggregate plus on its integrations.
    pub fn event_count(&self) -> i64 {
        1 + self.integrations.len() as i64 + self.integrations.iter().map(|i| i.events).sum::<i64>()
    }
}

/// Events produced by [`seed_workspace`].
pub const EVENTS_PER_WORKSPACE: i64 = 15;

fn metadata(workspace_id: &str) -> Metadata {
    Metadata::new("user:test", workspace_id, uuid::Uuid::now_v7().to_string())
}

fn secret() -> EncryptedSecret {
    EncryptedSecret {
        key_id: "dk-test".into(),
        nonce: "bm9uY2U=".into(),
        ciphertext: "Y2lwaGVydGV4dA==".into(),
    }
}

/// Every other integration syncs hourly, so the read model's schedule columns are filled.
fn sync_config(k: usize) -> SyncConfig {
    let frequency = if k % 2 == 1 {
        Frequency::Interval { minutes: 60 }
    } else {
        Frequency::Manual
    };
    SyncConfig {
        frequency,
        ..SyncConfig::default()
    }
}

/// A workspace named `name` (Enterprise plan) with four integrations, driven to
/// pending_auth, connected, paused, and connected again after a pause and a resume.
/// The workspace's name appears once in its `WorkspaceCreated` payload and once in each
/// integration's name.
pub async fn seed_workspace(store: &Store, name: &str) -> anyhow::Result<SeededWorkspace> {
    let id = uuid::Uuid::now_v7().to_string();
    let meta = metadata(&id);
    let create = WorkspaceCommand::Create {
        workspace_id: id.clone(),
        name: name.to_string(),
        plan: Plan::Enterprise,
        at: Utc::now(),
    };
    store
        .cqrs::<Workspace>()
        .execute(&id, create, &meta)
        .await?;
    let mut integrations = Vec::new();
    for (k, provider) in ["hubspot", "salesforce", "pipedrive", "zoho"]
        .into_iter()
        .enumerate()
    {
        let integration =
            seed_integration(store, &id, &format!("{name} {provider}"), provider, k).await?;
        integrations.push(integration);
    }
    Ok(SeededWorkspace {
        id,
        name: name.to_string(),
        integrations,
    })
}

/// Create an integration and run the first `steps` of: store credentials, pause, resume.
async fn seed_integration(
    store: &Store,
    workspace_id: &str,
    name: &str,
    provider: &str,
    steps: usize,
) -> anyhow::Result<SeededIntegration> {
    let id = uuid::Uuid::now_v7().to_string();
    let meta = metadata(workspace_id);
    let reserve = WorkspaceCommand::ReserveIntegration {
        integration_id: id.clone(),
        name: name.to_string(),
    };
    store
        .cqrs::<Workspace>()
        .execute(workspace_id, reserve, &meta)
        .await?;
    let mut commands = vec![IntegrationCommand::Create {
        integration_id: id.clone(),
        workspace_id: workspace_id.to_string(),
        provider: provider.to_string(),
        name: name.to_string(),
        sync_config: sync_config(steps),
        base_url: None,
        spec: None,
        at: Utc::now(),
    }];
    let lifecycle = [
        IntegrationCommand::StoreCredentials {
            kind: CredentialKind::ApiKey,
            secret: secret(),
            expires_at: None,
            refresh_token: None,
            at: Utc::now(),
        },
        IntegrationCommand::Pause { at: Utc::now() },
        IntegrationCommand::Resume { at: Utc::now() },
    ];
    commands.extend(lifecycle.into_iter().take(steps));
    let events = commands.len() as i64;
    let cqrs = store.cqrs::<Integration>();
    for command in commands {
        cqrs.execute(&id, command, &meta).await?;
    }
    let status = cqrs.load(&id).await?.status;
    Ok(SeededIntegration {
        id,
        name: name.to_string(),
        status,
        events,
        scheduled: sync_config(steps).frequency.period_minutes().is_some(),
    })
}

/// What [`seed_sync_activity`] wrote.
#[derive(Clone, Debug)]
pub struct SeededActivity {
    pub run_id: String,
    /// Linked to the CRM, then edited by the app.
    pub kept: String,
    /// Linked, then deleted in the CRM.
    pub unlinked: String,
    pub events: i64,
}

/// A completed sync run over two fetched contacts, an app edit and a remote deletion,
/// through the command path.
pub async fn seed_sync_activity(
    store: &Store,
    workspace_id: &str,
    integration_id: &str,
) -> anyhow::Result<SeededActivity> {
    use syncledger_domain::merge::{Fields, MergePolicy};
    use syncledger_domain::record::{Record, RecordCommand};
    use syncledger_domain::sync_run::{Phase, RunKind, RunStats, SyncRun, SyncRunCommand, Trigger};
    use syncledger_domain::{ConflictStrategy, Entity};

    let meta = metadata(workspace_id);
    let run_id = uuid::Uuid::now_v7().to_string();
    let (kept, unlinked) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let runs = store.cqrs::<SyncRun>();
    let records = store.cqrs::<Record>();
    let mut events = 0;
    let run_commands = [
        SyncRunCommand::Queue {
            run_id: run_id.clone(),
            integration_id: integration_id.into(),
            workspace_id: workspace_id.into(),
            kind: RunKind::Full,
            trigger: Trigger::Manual,
            retry_of: None,
            rollback_of: None,
            options: Default::default(),
            at: Utc::now(),
        },
        SyncRunCommand::Start {
            worker: "worker-test".into(),
            at: Utc::now(),
        },
    ];
    for command in run_commands {
        runs.execute(&run_id, command, &meta).await?;
        events += 1;
    }
    let fields = |email: &str| -> Fields {
        [("email".to_string(), Some(email.to_string()))]
            .into_iter()
            .collect()
    };
    for (record_id, remote_id, email) in [
        (&kept, "101", "Ada@Example.com"),
        (&unlinked, "102", "bob@example.com"),
    ] {
        let ingest = RecordCommand::Ingest {
            record_id: record_id.clone(),
            workspace_id: workspace_id.into(),
            entity: Entity::Contacts,
            integration_id: integration_id.into(),
            remote_id: remote_id.into(),
            remote_updated_at: Utc::now(),
            remote: fields(email),
            fields: fields(email),
            policy: MergePolicy {
                strategy: ConflictStrategy::LastWriteWins,
                always: Default::default(),
            },
            run_id: run_id.clone(),
            at: Utc::now(),
        };
        records.execute(record_id, ingest, &meta).await?;
        // Imported: created, linked and filled in one event.
        events += 1;
    }
    let page = SyncRunCommand::CommitPage {
        entity: Entity::Contacts,
        phase: Phase::Pull,
        cursor: None,
        done: true,
        stats: RunStats {
            processed: 2,
            created: 2,
            api_calls: 1,
            ..RunStats::default()
        },
        failures: vec![],
        total: None,
        at: Utc::now(),
    };
    runs.execute(&run_id, page, &meta).await?;
    runs.execute(&run_id, SyncRunCommand::Finish { at: Utc::now() }, &meta)
        .await?;
    events += 2;
    let phone: Fields = [("phone".to_string(), Some("+1 555 0100".to_string()))]
        .into_iter()
        .collect();
    let edit = RecordCommand::Edit {
        fields: phone,
        actor: "token:app".into(),
        at: Utc::now(),
    };
    records.execute(&kept, edit, &meta).await?;
    let delete = RecordCommand::RemoteDelete {
        integration_id: integration_id.into(),
        run_id: run_id.clone(),
        on_delete: syncledger_domain::OnCrmDelete::KeepAndRecreate,
        at: Utc::now(),
    };
    records.execute(&unlinked, delete, &meta).await?;
    events += 2;
    Ok(SeededActivity {
        run_id,
        kept,
        unlinked,
        events,
    })
}

/// What [`seed_conflicts`] wrote: one contact per way a conflict on `email` ends.
#[derive(Clone, Debug)]
pub struct SeededConflicts {
    /// Resolved by a person, keeping the CRM's value.
    pub resolved: String,
    /// Ignored by a person.
    pub ignored: String,
    /// Replaced by a newer conflict (still open) when the CRM changed again.
    pub superseded: String,
    /// Still waiting for a person.
    pub open: String,
    /// Settled at once by an "always use the CRM" rule.
    pub auto: String,
}

/// Contacts imported from the CRM, edited by the app, then changed in the CRM under
/// manual review, and each conflict taken to a different end, through the command path.
pub async fn seed_conflicts(
    store: &Store,
    workspace_id: &str,
    integration_id: &str,
) -> anyhow::Result<SeededConflicts> {
    use syncledger_domain::merge::{Fields, MergePolicy, Side};
    use syncledger_domain::record::{Record, RecordCommand, Resolution};
    use syncledger_domain::{ConflictStrategy, Entity};

    let meta = metadata(workspace_id);
    let records = store.cqrs::<Record>();
    let email = |value: &str| -> Fields {
        [("email".to_string(), Some(value.to_string()))]
            .into_iter()
            .collect()
    };
    let start = Utc::now();
    let ingest = |id: &str, value: &str, secs: i64, always: Option<Side>| RecordCommand::Ingest {
        record_id: id.to_string(),
        workspace_id: workspace_id.into(),
        entity: Entity::Contacts,
        integration_id: integration_id.into(),
        remote_id: format!("crm-{id}"),
        remote_updated_at: start + chrono::Duration::seconds(secs),
        remote: email(value),
        fields: email(value),
        policy: MergePolicy {
            strategy: ConflictStrategy::ManualReview,
            always: always
                .map(|side| ("email".to_string(), side))
                .into_iter()
                .collect(),
        },
        run_id: "run-conflicts".into(),
        at: start + chrono::Duration::seconds(secs),
    };
    let seeded = SeededConflicts {
        resolved: uuid::Uuid::now_v7().to_string(),
        ignored: uuid::Uuid::now_v7().to_string(),
        superseded: uuid::Uuid::now_v7().to_string(),
        open: uuid::Uuid::now_v7().to_string(),
        auto: uuid::Uuid::now_v7().to_string(),
    };
    for id in [
        &seeded.resolved,
        &seeded.ignored,
        &seeded.superseded,
        &seeded.open,
        &seeded.auto,
    ] {
        let always = (id == &seeded.auto).then_some(Side::Crm);
        records
            .execute(id, ingest(id, "old@example.com", 1, None), &meta)
            .await?;
        let edit = RecordCommand::Edit {
            fields: email("app@example.com"),
            actor: "token:app".into(),
            at: start + chrono::Duration::seconds(2),
        };
        records.execute(id, edit, &meta).await?;
        records
            .execute(id, ingest(id, "crm@example.com", 3, always), &meta)
            .await?;
    }
    let person = |id: &str| (id.to_string(), "token:reviewer".to_string());
    let (id, actor) = person(&seeded.resolved);
    let resolve = RecordCommand::ResolveConflict {
        integration_id: integration_id.into(),
        field: "email".into(),
        resolution: Resolution::UseCrm,
        actor,
        at: start + chrono::Duration::seconds(4),
    };
    records.execute(&id, resolve, &meta).await?;
    let (id, actor) = person(&seeded.ignored);
    let ignore = RecordCommand::IgnoreConflict {
        integration_id: integration_id.into(),
        field: "email".into(),
        actor,
        at: start + chrono::Duration::seconds(4),
    };
    records.execute(&id, ignore, &meta).await?;
    let superseded = &seeded.superseded;
    records
        .execute(
            superseded,
            ingest(superseded, "newer@example.com", 5, None),
            &meta,
        )
        .await?;
    Ok(seeded)
}
