//! A pull-only integration of the in-memory CRM on a real store, the engine's own
//! `SyncRuns` executing its runs, a lock that holds the run's commits back, and the
//! run's commits as the store recorded them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use sqlx::Row;
use syncledger_crm::Credentials;
use syncledger_domain::integration::{FieldMapping, MappingDirection};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_domain::sync_config::{ConflictStrategy, Direction, Frequency, SyncConfig};
use syncledger_domain::sync_run::{RunKind, RunStatus, SyncRun, Trigger};
use syncledger_domain::{Entity, Integration, IntegrationCommand};
use syncledger_engine::{seal_credentials, Connections, Connector, ProviderApps, SyncRuns};
use syncledger_store::{EventPool, Metadata, Store};
use syncledger_vault::{MasterKey, Vault};

use crate::crm::PagedCrm;

/// How long a test waits for any one thing.
pub const TIMEOUT: Duration = Duration::from_secs(60);

const WORKSPACE: &str = "ws-pipeline";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `test` on a fresh store of `backend` (PostgreSQL: skipped when unreachable,
/// except with `CI=true`, where it fails).
pub async fn on<F, Fut>(backend: Backend, test: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    match backend {
        Backend::Sqlite => syncledger_testkit::with_sqlite(test).await,
        Backend::Postgres => syncledger_testkit::with_postgres(test).await,
    }
}

/// A connected, pull-only integration of the CRM's contacts, and the runs on it.
pub struct Pipeline {
    pub store: Store,
    pub runs: SyncRuns,
    pub integration_id: String,
    pub meta: Metadata,
}

impl Pipeline {
    pub async fn connect(store: Store, crm: &PagedCrm) -> anyhow::Result<Pipeline> {
        let vault = Vault::new(store.any.clone(), MasterKey::generate());
        let apps = ProviderApps {
            // The CRM listens on loopback, and pacing would only slow the test down.
            outbound: OutboundPolicy::development(),
            pacing: false,
            ..ProviderApps::default()
        };
        let connections = Connections::new(&store, vault.clone(), Connector::new(apps), "test");
        let runs = SyncRuns::new(&store, connections, "pipeline-test");
        let integration_id = uuid::Uuid::now_v7().to_string();
        let meta = Metadata::new("test", WORKSPACE, uuid::Uuid::now_v7().to_string());
        let integrations = store.cqrs::<Integration>();
        for command in setup_commands(&integration_id, crm, &vault).await? {
            integrations
                .execute(&integration_id, command, &meta)
                .await?;
        }
        Ok(Pipeline {
            store,
            runs,
            integration_id,
            meta,
        })
    }

    /// Queues a full run and starts executing it on a task of its own.
    pub async fn start_full_run(
        &self,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<anyhow::Result<RunStatus>>)> {
        let run_id = self
            .runs
            .trigger(
                &self.integration_id,
                RunKind::Full,
                Trigger::Manual,
                None,
                &self.meta,
            )
            .await?;
        Ok((run_id.clone(), self.execute(&run_id)))
    }

    /// Executes (or resumes) the run on a task of its own.
    pub fn execute(&self, run_id: &str) -> tokio::task::JoinHandle<anyhow::Result<RunStatus>> {
        let (runs, run_id) = (self.runs.clone(), run_id.to_owned());
        tokio::spawn(async move { Ok(runs.execute(&run_id).await?) })
    }

    /// A full run executed to its end; returns the run.
    pub async fn full_run(&self) -> anyhow::Result<SyncRun> {
        let (run_id, execution) = self.start_full_run().await?;
        finished(execution).await?;
        self.run(&run_id).await
    }

    pub async fn run(&self, run_id: &str) -> anyhow::Result<SyncRun> {
        self.runs.load(run_id).await?.context("the run exists")
    }
}

/// Creates the integration with its mappings and an API key.
async fn setup_commands(
    integration_id: &str,
    crm: &PagedCrm,
    vault: &Vault,
) -> anyhow::Result<Vec<IntegrationCommand>> {
    let sync_config = SyncConfig {
        direction: Direction::Pull,
        frequency: Frequency::Manual,
        entities: vec![Entity::Contacts],
        conflict_strategy: ConflictStrategy::CrmWins,
        on_crm_delete: Default::default(),
        on_app_archive: Default::default(),
    };
    let pulled = |field: &str| FieldMapping {
        crm_field: field.into(),
        app_field: field.into(),
        direction: MappingDirection::Pull,
        transform: None,
    };
    let key = Credentials::ApiKey(SecretString::from("paged-crm-key"));
    let (kind, secret, expires_at) = seal_credentials(vault, WORKSPACE, &key).await?;
    Ok(vec![
        IntegrationCommand::Create {
            integration_id: integration_id.into(),
            workspace_id: WORKSPACE.into(),
            provider: "custom".into(),
            name: "Paged CRM".into(),
            sync_config,
            base_url: None,
            spec: Some(crm.spec()),
            at: Utc::now(),
        },
        IntegrationCommand::ChangeFieldMappings {
            entity: Entity::Contacts,
            mappings: vec![pulled("email"), pulled("first_name")],
            filter: None,
            at: Utc::now(),
        },
        IntegrationCommand::StoreCredentials {
            kind,
            secret,
            expires_at,
            refresh_token: None,
            at: Utc::now(),
        },
    ])
}

/// The status an execution ended the run in.
pub async fn finished(
    execution: tokio::task::JoinHandle<anyhow::Result<RunStatus>>,
) -> anyhow::Result<RunStatus> {
    tokio::time::timeout(TIMEOUT, execution)
        .await
        .context("the run ends")??
}

/// A transaction on its own connection that keeps every other writer from appending
/// events until it is released: PostgreSQL's events table locked in SHARE mode (reads
/// go on, inserts wait), SQLite's write lock (WAL readers go on, writers wait).
pub struct CommitsHeld {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
}

impl CommitsHeld {
    pub async fn hold(store: &Store) -> anyhow::Result<CommitsHeld> {
        let mut conn = store.any.acquire().await?;
        let statements: &[&str] = match store.events {
            EventPool::Postgres(_) => &["BEGIN", "LOCK TABLE events IN SHARE MODE"],
            EventPool::Sqlite(_) => &["BEGIN IMMEDIATE"],
        };
        for statement in statements {
            sqlx::raw_sql(statement).execute(&mut *conn).await?;
        }
        Ok(CommitsHeld { conn })
    }

    pub async fn release(mut self) -> anyhow::Result<()> {
        sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await?;
        Ok(())
    }
}

/// An event as stored, with its metadata.
pub struct Stored {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub phase: Option<String>,
    /// The CRM record a record event names, if it does.
    pub remote_id: Option<String>,
    pub correlation_id: String,
    /// When its append wrote it: every event of one append has the same instant, and
    /// two appends never do (one transaction ends before the next begins).
    pub written: String,
}

/// Every event in the store, in commit order.
pub async fn events(store: &Store) -> anyhow::Result<Vec<Stored>> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, event_type, CAST(payload AS TEXT) AS payload,
                CAST(metadata AS TEXT) AS metadata
           FROM events ORDER BY global_position",
    )
    .fetch_all(&store.any)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let payload: serde_json::Value =
            serde_json::from_str(&row.try_get::<String, _>("payload")?)?;
        let metadata: serde_json::Value =
            serde_json::from_str(&row.try_get::<String, _>("metadata")?)?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        out.push(Stored {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            event_type: row.try_get("event_type")?,
            phase: payload["phase"].as_str().map(str::to_owned),
            remote_id: payload["remote_id"].as_str().map(str::to_owned),
            correlation_id: text(&metadata["correlation_id"]),
            written: text(&metadata["time"]),
        });
    }
    Ok(out)
}

/// The run's pull commits in order: per append that wrote pull page events, the number
/// of records written before each of its page events (none for a page whose records
/// were written one by one, each by a command of its own).
pub async fn pull_commits(store: &Store, run_id: &str) -> anyhow::Result<Vec<Vec<usize>>> {
    let mut appends: Vec<(String, Vec<&Stored>)> = Vec::new();
    let events = events(store).await?;
    for e in events.iter().filter(|e| e.correlation_id == run_id) {
        match appends.last_mut() {
            Some((written, list)) if *written == e.written => list.push(e),
            _ => appends.push((e.written.clone(), vec![e])),
        }
    }
    let mut commits = Vec::new();
    for (_, list) in appends {
        let mut pages = Vec::new();
        let mut records = std::collections::BTreeSet::new();
        for e in list {
            if e.aggregate_type == "record" {
                records.insert(e.aggregate_id.as_str());
            } else if e.event_type == "PageCommitted" && e.phase.as_deref() == Some("pull") {
                pages.push(records.len());
                records.clear();
            }
        }
        if !pages.is_empty() {
            commits.push(pages);
        }
    }
    Ok(commits)
}

/// Per record, how many appends wrote events for it under `run_id`.
pub async fn record_writes(store: &Store, run_id: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut writes: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in events(store).await? {
        if e.aggregate_type == "record" && e.correlation_id == run_id {
            writes.entry(e.aggregate_id).or_default().insert(e.written);
        }
    }
    Ok(writes.into_iter().map(|(id, w)| (id, w.len())).collect())
}

/// How many records exist, and how many of them were created more than once.
pub async fn records_created(store: &Store) -> anyhow::Result<(usize, usize)> {
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    for e in events(store).await? {
        if e.aggregate_type == "record" {
            let n = created.entry(e.aggregate_id).or_default();
            if matches!(e.event_type.as_str(), "RecordCreated" | "RecordImported") {
                *n += 1;
            }
        }
    }
    let twice = created.values().filter(|&&n| n != 1).count();
    Ok((created.len(), twice))
}

/// The id of the record the CRM record `remote_id` was imported as.
pub async fn record_of(store: &Store, remote_id: &str) -> anyhow::Result<String> {
    events(store)
        .await?
        .into_iter()
        .find(|e| e.event_type == "RecordImported" && e.remote_id.as_deref() == Some(remote_id))
        .map(|e| e.aggregate_id)
        .with_context(|| format!("{remote_id} was imported"))
}
