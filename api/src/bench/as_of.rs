//! `syncledger bench as-of`: how long `GET /v1/records/{id}?as_of=` takes for a record
//! with many events.
//!
//! One record is written with `--events` events (a create makes two, then one per edit)
//! through the command path, and the projections are let catch up. Then the point-in-time
//! read is timed over HTTP against the API running in this process, at instants drawn at
//! random (seeded) between the record's first and last event; every answer is checked
//! against the events recorded by its instant. One JSON line: latency percentiles of those
//! reads, and of current reads of the same record for comparison.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use syncledger_domain::record::{Record, RecordCommand};
use syncledger_domain::{Aggregate, Entity, Plan};
use syncledger_store::{Metadata, Store};
use tokio::sync::watch;

use super::round3;
use crate::config::Settings;
use crate::state::AppState;
use crate::Application;

/// Reads made before timing starts (connections, caches).
const WARM_UP: usize = 20;
/// How long the projections may take to apply the record's events.
const CATCH_UP: Duration = Duration::from_secs(300);

#[derive(clap::Args, Debug, Clone)]
pub struct AsOfBenchArgs {
    /// Events of the record (at least 2: its creation makes two).
    #[arg(long, default_value_t = 1000)]
    pub events: usize,
    /// Point-in-time reads timed.
    #[arg(long, default_value_t = 200)]
    pub reads: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub async fn run(base: &Settings, args: AsOfBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.events >= 2, "--events must be at least 2");
    anyhow::ensure!(args.reads >= 1, "--reads must be at least 1");
    let base = Settings {
        addr: "127.0.0.1:0".parse()?,
        // The reads come from one client as fast as it can send them.
        rate_limit_per_minute: u32::MAX,
        ..base.clone()
    };
    let url = args.database_url.clone();
    super::on_scratch(base, url.as_deref(), |settings| async move {
        serve_and_measure(settings, &args).await
    })
    .await
}

async fn serve_and_measure(settings: Settings, args: &AsOfBenchArgs) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let base = format!("http://{}", app.addr());
    let state = app.state();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(app.run(stopped));
    let result = measure(&state, &base, args).await;
    let _ = stop.send(true);
    server.await.context("the API task")??;
    state.store.close().await;
    result
}

/// The record: created, then edited until it has `events` events. Answers its id.
async fn write_record(
    state: &AppState,
    workspace_id: &str,
    events: usize,
) -> anyhow::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let meta = Metadata::new("bench", workspace_id, uuid::Uuid::now_v7().to_string());
    let create = RecordCommand::Create {
        record_id: id.clone(),
        workspace_id: workspace_id.to_string(),
        entity: Entity::Contacts,
        fields: [("email".to_string(), Some("bench@example.com".to_string()))].into(),
        actor: "bench".into(),
        at: Utc::now(),
    };
    state.records.execute(&id, create, &meta).await?;
    for n in 1..=events - 2 {
        let edit = RecordCommand::Edit {
            fields: [("edits".to_string(), Some(n.to_string()))].into(),
            actor: "bench".into(),
            at: Utc::now(),
        };
        state.records.execute(&id, edit, &meta).await?;
    }
    Ok(id)
}

/// Until every projection has applied every stored event (polled, with a deadline).
async fn caught_up(store: &Store) -> anyhow::Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    let count = store.feed().count().await?;
    loop {
        let mut behind = false;
        for p in syncledger_projections::all() {
            let cp = syncledger_projections::checkpoint::read(&store.any, p.name()).await?;
            behind |= cp.is_none_or(|cp| cp.events < count);
        }
        if !behind {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the projections did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn measure(state: &AppState, base: &str, args: &AsOfBenchArgs) -> anyhow::Result<()> {
    let (ws, token) =
        syncledger_engine::workspaces::create_workspace(&state.store, "bench", Plan::Enterprise)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let id = write_record(state, &ws, args.events).await?;
    let write_seconds = started.elapsed().as_secs_f64();
    caught_up(&state.store).await?;
    let instants: Vec<_> = state
        .store
        .feed()
        .events_of(Record::TYPE, &id)
        .await?
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    anyhow::ensure!(
        instants.len() == args.events,
        "the record has {} events",
        instants.len()
    );
    let (first, last) = (instants[0], instants[instants.len() - 1]);
    let span = (last - first).num_microseconds().unwrap_or(i64::MAX).max(0);

    let client = reqwest::Client::new();
    let url = format!("{base}/v1/records/{id}");
    let mut rng = StdRng::seed_from_u64(42);
    let mut as_of = Vec::with_capacity(args.reads);
    let mut folded = 0u64;
    for i in 0..WARM_UP + args.reads {
        let at = first + chrono::Duration::microseconds(rng.gen_range(0..=span));
        let query = [("as_of", at.to_rfc3339_opts(SecondsFormat::Micros, true))];
        let t0 = Instant::now();
        let body = get(client.get(&url).bearer_auth(&token.bearer).query(&query)).await?;
        let took = t0.elapsed();
        let expected = instants.partition_point(|t| *t <= at) as u64;
        anyhow::ensure!(
            body["version"].as_u64() == Some(expected),
            "as of {at}: version {} where {expected} events were recorded",
            body["version"]
        );
        if i >= WARM_UP {
            as_of.push(took);
            folded += expected;
        }
    }
    let mut current = Vec::with_capacity(args.reads);
    for _ in 0..args.reads {
        let t0 = Instant::now();
        get(client.get(&url).bearer_auth(&token.bearer)).await?;
        current.push(t0.elapsed());
    }
    let (a, c) = (Percentiles::of(as_of), Percentiles::of(current));
    println!(
        "{}",
        json!({"bench": "as_of", "store": if state.store.is_postgres() { "postgres" } else { "sqlite" },
               "events": args.events, "reads": args.reads,
               "mean_events_folded": round3(folded as f64 / args.reads as f64),
               "p50_ms": a.p50, "p95_ms": a.p95, "p99_ms": a.p99, "mean_ms": a.mean, "max_ms": a.max,
               "current_p50_ms": c.p50, "current_p95_ms": c.p95, "current_p99_ms": c.p99,
               "write_seconds": round3(write_seconds)})
    );
    Ok(())
}

async fn get(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = request.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

/// Latency percentiles in milliseconds (nearest rank).
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    mean: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort_unstable();
        let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
        let rank = |p: f64| {
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            ms(samples[i])
        };
        let total: Duration = samples.iter().sum();
        Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            mean: ms(total / samples.len().max(1) as u32),
            max: samples.last().copied().map_or(0.0, ms),
        }
    }
}
