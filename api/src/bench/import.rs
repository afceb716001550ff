//! `syncledger bench import`: a CSV import into an integration of a CRM that publishes no
//! API (HoneyBook), through the same engine call as `syncledger import` and
//! `POST /v1/integrations/{id}/imports`, on scratch storage. Two phases, a JSON line each:
//!
//! - `first`: N new rows (every one creates a record): rows per second from the call to
//!   the run's end, and the events it appended;
//! - `again`: the same file with a tenth of the rows edited (the rest unchanged, which
//!   write nothing): rows per second, and how many were updated.
//!
//! The read models follow as in `serve` (the run waits for nothing of theirs).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use syncledger_domain::sync_run::RunStatus;
use syncledger_domain::{ConflictStrategy, Direction, Entity, Frequency, Integration};
use syncledger_domain::{IntegrationCommand, Plan, SyncConfig};
use syncledger_engine::imports::ImportOptions;
use syncledger_store::Metadata;

use super::round2;
use crate::config::Settings;
use crate::webhooks_cmd::CliEngine;

#[derive(clap::Args, Debug, Clone)]
pub struct ImportBenchArgs {
    /// Rows in the CSV file (at most 100,000, the import's own limit).
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// The store's PostgreSQL server (a fresh database, dropped after); without it, a
    /// fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// How long a phase may take before the bench gives up on it.
const PHASE: Duration = Duration::from_secs(60 * 60);

pub async fn run(base: &Settings, args: ImportBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=syncledger_domain::import::MAX_ROWS).contains(&args.rows),
        "--rows must be 1 to {}",
        syncledger_domain::import::MAX_ROWS
    );
    let url = args.database_url.clone();
    super::on_scratch(base.clone(), url.as_deref(), |settings| async move {
        bench(&settings, &args).await
    })
    .await
}

/// The CSV file: `rows` clients, row `i` edited when `edited(i)`.
fn csv(rows: usize, edited: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 120);
    out.push_str("id,email,first_name,last_name,phone,company\n");
    for i in 0..rows {
        let first = if edited(i) { "Edited" } else { "First" };
        out.push_str(&format!(
            "hb{i},client{i}@studio.example,{first}{i},Last{i},+3512100{i:05},Company {}\n",
            i % 997
        ));
    }
    out.into_bytes()
}

async fn bench(settings: &Settings, args: &ImportBenchArgs) -> anyhow::Result<()> {
    let (store, vault) = crate::app::open(settings).await?;
    let backend = if store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let cli = CliEngine::over(settings, store.clone(), vault, true);
    let (ws, _) =
        syncledger_engine::workspaces::create_workspace(&store, "bench", Plan::Enterprise)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let meta = Metadata::new("bench", &ws, uuid::Uuid::now_v7().to_string());
    let id = uuid::Uuid::now_v7().to_string();
    let create = IntegrationCommand::Create {
        integration_id: id.clone(),
        workspace_id: ws.clone(),
        provider: "honeybook".into(),
        name: "bench".into(),
        sync_config: SyncConfig {
            direction: Direction::Pull,
            frequency: Frequency::Manual,
            entities: vec![Entity::Contacts],
            conflict_strategy: ConflictStrategy::CrmWins,
            ..SyncConfig::default()
        },
        base_url: None,
        spec: None,
        at: Utc::now(),
    };
    store
        .cqrs::<Integration>()
        .execute(&id, create, &meta)
        .await?;

    for (phase, file) in [
        ("first", csv(args.rows, |_| false)),
        ("again", csv(args.rows, |i| i % 10 == 0)),
    ] {
        let events_before = store.feed().count().await?;
        let started = Instant::now();
        let run = cli
            .engine
            .imports()
            .csv_waiting(&meta, &id, &file, &ImportOptions::default(), PHASE)
            .await
            .map_err(|e| anyhow::anyhow!(crate::error::ApiError::from(e).message))?;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            run.status == RunStatus::Completed,
            "the {phase} import ended {}: {:?}",
            run.status.as_str(),
            run.reason
        );
        let events = store.feed().count().await? - events_before;
        println!(
            "{}",
            json!({"bench": "import", "phase": phase, "store": backend, "rows": args.rows,
                   "bytes": file.len(), "seconds": round2(seconds),
                   "rows_per_s": round2(args.rows as f64 / seconds),
                   "events": events, "created": run.stats.created,
                   "updated": run.stats.updated, "unchanged": run.stats.unchanged})
        );
    }
    cli.close().await;
    Ok(())
}
