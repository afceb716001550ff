//! `syncledger bench` (no subcommand): integration commands per second, and feed-plus-projection
//! throughput while rebuilding a large log, on a fresh SQLite store and/or a fresh
//! PostgreSQL database. Prints one JSON line per measurement.

use super::{round2, scratch_dir, BenchArgs, BenchStore, TempPgDb};
use crate::config::Settings;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;
use syncledger_domain::{
    Aggregate, DomainEvent, Integration, IntegrationCommand, IntegrationEvent, Plan, SyncConfig,
    Workspace, WorkspaceCommand,
};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store, StoreConfig};

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let _ = settings;
    if matches!(args.store, BenchStore::Sqlite | BenchStore::Both) {
        let dir = scratch_dir()?;
        let store = Store::open(&StoreConfig::sqlite(dir.path())).await?;
        bench_store("sqlite", &store, &args).await?;
        store.close().await;
    }
    if matches!(args.store, BenchStore::Postgres | BenchStore::Both) {
        let db = TempPgDb::create(&args.pg_url).await?;
        let store = Store::open(&StoreConfig::postgres(&db.url)).await?;
        let result = bench_store("postgres", &store, &args).await;
        store.close().await;
        db.drop_db().await?;
        result?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_store(name: &str, store: &Store, args: &BenchArgs) -> anyhow::Result<()> {
    let ws = uuid::Uuid::now_v7().to_string();
    let meta = Metadata::new("bench", &ws, uuid::Uuid::now_v7().to_string());
    store
        .cqrs::<Workspace>()
        .execute(
            &ws,
            WorkspaceCommand::Create {
                workspace_id: ws.clone(),
                name: "bench".into(),
                plan: Plan::Enterprise,
                at: Utc::now(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Commands: each integration is created, then paused and resumed in turn.
    let integrations = store.cqrs::<Integration>();
    let per_aggregate = 10usize;
    let aggregates = args.commands.div_ceil(per_aggregate);
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = stream::iter(0..aggregates)
        .map(|_| {
            let (integrations, meta, ws) = (&integrations, &meta, &ws);
            async move {
                let id = uuid::Uuid::now_v7().to_string();
                for n in 0..per_aggregate {
                    let cmd = match n {
                        0 => IntegrationCommand::Create {
                            integration_id: id.clone(),
                            workspace_id: ws.clone(),
                            provider: "hubspot".into(),
                            name: format!("bench {id}"),
                            sync_config: SyncConfig::default(),
                            base_url: None,
                            spec: None,
                            at: Utc::now(),
                        },
                        1 => IntegrationCommand::StoreCredentials {
                            kind: syncledger_domain::integration::CredentialKind::ApiKey,
                            secret: syncledger_domain::integration::EncryptedSecret {
                                key_id: "bench".into(),
                                nonce: "AAAAAAAAAAAAAAAA".into(),
                                ciphertext: "AAAA".into(),
                            },
                            expires_at: None,
                            refresh_token: None,
                            at: Utc::now(),
                        },
                        n if n % 2 == 0 => IntegrationCommand::Pause { at: Utc::now() },
                        _ => IntegrationCommand::Resume { at: Utc::now() },
                    };
                    integrations
                        .execute(&id, cmd, meta)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                Ok(())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let secs = started.elapsed().as_secs_f64();
    let commands = aggregates * per_aggregate;
    println!(
        "{}",
        json!({"store": name, "metric": "integration_commands", "commands": commands,
               "concurrency": args.concurrency, "seconds": round2(secs),
               "commands_per_s": round2(commands as f64 / secs)})
    );

    // A large log, appended in bulk, then every projection rebuilt from it.
    let existing = store.feed().count().await?;
    let target = args.events as i64;
    fill_log(store, &ws, (target - existing).max(0) as usize).await?;
    let total = store.feed().count().await?;
    for p in syncledger_projections::all() {
        let started = Instant::now();
        let applied =
            syncledger_projections::rebuild::rebuild(store, p.as_ref(), 1000, &|_| {}).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"store": name, "metric": "rebuild", "projection": p.name(), "events": applied,
                   "log_events": total, "seconds": round2(secs), "events_per_s": round2(applied as f64 / secs)})
        );
    }
    Ok(())
}

/// Append `n` realistic integration events (creations, then pause/resume) in bulk.
async fn fill_log(store: &Store, ws: &str, n: usize) -> anyhow::Result<()> {
    const PER_AGGREGATE: usize = 100;
    let meta = Metadata::new("bench", ws, uuid::Uuid::now_v7().to_string());
    let mut batch = Vec::with_capacity(5000);
    let mut written = 0;
    while written < n {
        let id = uuid::Uuid::now_v7().to_string();
        for seq in 1..=PER_AGGREGATE.min(n - written) {
            let event = match seq {
                1 => IntegrationEvent::IntegrationCreated {
                    integration_id: id.clone(),
                    workspace_id: ws.to_string(),
                    provider: "hubspot".into(),
                    name: format!("log {id}"),
                    sync_config: SyncConfig::default(),
                    base_url: None,
                    spec: None,
                    at: Utc::now(),
                },
                2 => IntegrationEvent::IntegrationFailed {
                    reason: "bench".into(),
                    at: Utc::now(),
                },
                s if s % 2 == 1 => IntegrationEvent::SyncConfigChanged {
                    sync_config: SyncConfig::default(),
                    at: Utc::now(),
                },
                _ => IntegrationEvent::ConnectionTested {
                    ok: false,
                    detail: "bench".into(),
                    account_id: None,
                    at: Utc::now(),
                },
            };
            batch.push(NewEvent {
                aggregate_type: Integration::TYPE.into(),
                aggregate_id: id.clone(),
                sequence: seq as i64,
                event_type: event.event_type().into(),
                event_version: event.event_version().into(),
                payload: serde_json::to_string(&event)?,
                metadata: meta.clone(),
            });
            written += 1;
        }
        if batch.len() >= 5000 || written >= n {
            append(&store.events, &batch).await?;
            batch.clear();
        }
    }
    Ok(())
}
