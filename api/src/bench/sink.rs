//! `syncledger bench sink`: the Postgres destination sink's throughput and lag, into a
//! fresh database on `--target-url` (the app's), the store on scratch storage. No API
//! server and no read-model runner: what is measured is the sink alone (its worker, the
//! feed it reads, the record histories it folds, the app's database it writes). Three
//! phases, a JSON line each:
//!
//! - `import`: a destination follows while a generated import of N contacts is appended
//!   (a `RecordImported` per contact, pages and runs as the engine writes them): rows
//!   per second from the import's start until the table holds them all, and how far the
//!   table trailed the log when the import's last event was committed;
//! - `backlog`: a log of E events shaped like a real installation's (`bench rebuild`'s)
//!   is written first, then a destination created: events and rows per second until its
//!   table holds what the log says;
//! - `live`: contacts appended one at a time at a steady rate while a destination
//!   follows: the lag from each commit to its row (the row's own insert time, taken by a
//!   trigger), p50 and p99.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use syncledger_domain::destination::{Destination, TableMapping};
use syncledger_domain::record::{Record, RecordEvent, Source};
use syncledger_domain::Entity;
use syncledger_engine::destinations::DestinationInput;
use syncledger_engine::sink::{self, SinkOptions};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::Metadata;
use tokio::sync::{watch, Notify};

use super::rebuild::{Log, Shape, INTEGRATIONS};
use super::{round2, round3, TempPgDb};
use crate::config::Settings;
use crate::webhooks_cmd::CliEngine;

#[derive(clap::Args, Debug, Clone)]
pub struct SinkBenchArgs {
    /// Contacts in the import the sink follows.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Events in the backlog a new destination catches up.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Contacts appended one by one for the lag, and how many per second.
    #[arg(long, default_value_t = 2_000)]
    pub live: usize,
    #[arg(long, default_value_t = 200)]
    pub live_rate: u32,
    /// Events per sink batch.
    #[arg(long, default_value_t = 5_000)]
    pub batch: i64,
    /// Records whose folded state the sink keeps between batches (the server's default
    /// when not given).
    #[arg(long)]
    pub kept_states: Option<usize>,
    /// The store's PostgreSQL server (a fresh database, dropped after); without it, a
    /// fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The PostgreSQL server the app's database is created on (dropped after).
    #[arg(
        long,
        env = "SYNCLEDGER_BENCH_TARGET_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub target_url: String,
}

pub async fn run(base: &Settings, args: SinkBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.records >= 1 && args.events >= 1, "nothing to measure");
    anyhow::ensure!(args.live_rate >= 1, "--live-rate must be at least 1");
    let base = Settings {
        environment: Some(crate::config::Environment::Development),
        allow_loopback_providers: true,
        ..base.clone()
    };
    let url = args.database_url.clone();
    super::on_scratch(base, url.as_deref(), |settings| async move {
        let target = TempPgDb::create(&args.target_url).await?;
        let result = bench(&settings, &args, &target.url).await;
        target.drop_db().await?;
        result
    })
    .await
}

/// A contacts table for a destination, its rows timed by a trigger.
fn mapping(table: &str) -> anyhow::Result<TableMapping> {
    Ok(serde_json::from_value(json!({
        "entity": "contacts",
        "table": table,
        "key": {"column": "record_id", "source": "record_id"},
        "columns": [
            {"column": "email", "field": "email", "type": "text", "normalise": {"kind": "email"}},
            {"column": "first_name", "field": "firstname", "type": "text"},
            {"column": "last_name", "field": "lastname", "type": "text"},
            {"column": "phone", "field": "phone", "type": "text"},
            {"column": "company", "field": "company", "type": "text"},
            {"column": "title", "field": "jobtitle", "type": "text"},
            {"column": "city", "field": "city", "type": "text"},
            {"column": "stage", "field": "lifecyclestage", "type": "text",
             "normalise": {"kind": "enum", "map": {"lead": "lead", "customer": "customer",
                                                   "opportunity": "opportunity"}}}
        ]
    }))?)
}

struct Bench<'a> {
    cli: &'a CliEngine,
    target: sqlx::PgPool,
    target_url: &'a str,
    options: SinkOptions,
    wake: Arc<Notify>,
}

impl Bench<'_> {
    /// A destination of `workspace` into a new table `table` (with a `written_at` column
    /// a trigger sets), its sink started.
    async fn destination(
        &self,
        workspace: &str,
        table: &str,
    ) -> anyhow::Result<(String, watch::Sender<bool>, tokio::task::JoinHandle<()>)> {
        sqlx::query(&format!(
            "CREATE TABLE {table} (record_id text PRIMARY KEY, email text, first_name text,
               last_name text, phone text, company text, title text, city text, stage text,
               written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))
        .execute(&self.target)
        .await?;
        let meta = Metadata::new("bench", workspace, uuid::Uuid::now_v7().to_string());
        let input = DestinationInput {
            name: table.into(),
            database_url: SecretString::from(self.target_url.to_owned()),
            schema: None,
            mappings: vec![mapping(table)?],
            create_tables: false,
        };
        let engine = &self.cli.engine;
        let (id, cmd) = engine
            .destinations()
            .checked(&meta, input)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        engine
            .store
            .cqrs::<Destination>()
            .execute(&id, cmd, &meta)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let (stop, stopped) = watch::channel(false);
        let task = sink::spawn_one(
            engine.clone(),
            self.options.clone(),
            id.clone(),
            self.wake.clone(),
            stopped,
        );
        Ok((id, stop, task))
    }

    /// Waits until destination `id` has written everything the log holds now.
    async fn caught_up(&self, id: &str) -> anyhow::Result<()> {
        let head = self.cli.engine.store.feed().head().await?;
        loop {
            let at: Option<(i64, i64)> = sqlx::query_as(
                "SELECT tx, pos FROM \"_syncledger\".checkpoints
                  WHERE destination_id = $1 AND slot = 'live'",
            )
            .bind(id)
            .fetch_optional(&self.target)
            .await
            .unwrap_or(None);
            if at.is_some_and(|(tx, pos)| (tx, pos) >= (head.tx, head.pos)) {
                return Ok(());
            }
            self.wake.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn count(&self, table: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.target)
            .await?)
    }
}

async fn bench(settings: &Settings, args: &SinkBenchArgs, target_url: &str) -> anyhow::Result<()> {
    let (store, vault) = crate::app::open(settings).await?;
    let backend = if store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let cli = CliEngine::over(settings, store.clone(), vault, false);
    let target = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(target_url)
        .await
        .context("the app's database")?;
    let bench = Bench {
        cli: &cli,
        target,
        target_url,
        options: SinkOptions {
            policy: settings.destination_policy(),
            batch: args.batch,
            kept_states: args
                .kept_states
                .unwrap_or(SinkOptions::default().kept_states),
            ..SinkOptions::default()
        },
        wake: Arc::new(Notify::new()),
    };

    // Import: the sink follows while the import is appended.
    let workspace = uuid::Uuid::now_v7().to_string();
    let (id, stop, task) = bench.destination(&workspace, "import_contacts").await?;
    bench.caught_up(&id).await?;
    // The imports (one per integration) alone end the log (`runs`); `events` only bounds it, above what
    // they write (an imported record is two events, a run and its pages more). It was
    // `records * 2`, which cut the last import short of its records.
    let shape = Shape {
        events: args.records * 4 + 10_000,
        records: args.records,
        runs: INTEGRATIONS,
        run_records: 500,
    };
    let mut log = Log::new(&store, shape);
    log.workspace = workspace.clone();
    // Each append wakes the sink, as a server's runs do (`SyncRuns::committed`).
    log.wake = Some(bench.wake.clone());
    let started = Instant::now();
    let appending = async {
        log.write().await?;
        bench.wake.notify_waiters();
        Ok::<_, anyhow::Error>(Instant::now())
    };
    let written = appending.await?;
    bench.caught_up(&id).await?;
    let done = Instant::now();
    let rows = bench.count("import_contacts").await?;
    anyhow::ensure!(
        rows as usize == args.records,
        "{rows} rows of {}",
        args.records
    );
    let seconds = done.duration_since(started).as_secs_f64();
    println!(
        "{}",
        json!({"bench": "sink", "phase": "import", "store": backend, "records": args.records,
               "import_s": round2(written.duration_since(started).as_secs_f64()),
               "seconds": round2(seconds), "rows_per_s": round2(rows as f64 / seconds),
               "lag_at_import_end_s": round3(done.duration_since(written).as_secs_f64())})
    );
    let _ = stop.send(true);
    let _ = task.await;

    // Backlog: the log first, then a destination. The peak memory reported is this
    // phase's: Linux resets the high-water mark on writing 5 to clear_refs.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut log = Log::new(&store, Shape::of_events(args.events));
    log.write().await?;
    let backlog_workspace = log.workspace.clone();
    let events = store.feed().count().await?;
    let started = Instant::now();
    let (id, stop, task) = bench
        .destination(&backlog_workspace, "backlog_contacts")
        .await?;
    bench.caught_up(&id).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rows = bench.count("backlog_contacts").await?;
    println!(
        "{}",
        json!({"bench": "sink", "phase": "backlog", "store": backend, "events": events,
               "rows": rows, "seconds": round2(seconds),
               "events_per_s": round2(events as f64 / seconds),
               "rows_per_s": round2(rows as f64 / seconds),
               "kept_states": bench.options.kept_states,
               "peak_rss_mb": super::sync::peak_rss_mb()})
    );

    // Live: one contact at a time, at a steady rate, while the backlog's sink follows.
    let every = Duration::from_secs_f64(1.0 / f64::from(args.live_rate));
    let mut committed = Vec::with_capacity(args.live);
    let meta = Metadata::new(
        "bench",
        &backlog_workspace,
        uuid::Uuid::now_v7().to_string(),
    );
    let mut tick = tokio::time::interval(every);
    for i in 0..args.live {
        tick.tick().await;
        let record_id = uuid::Uuid::now_v7().to_string();
        let fields = [
            ("email".to_owned(), Some(format!("live{i}@bench.example"))),
            ("firstname".to_owned(), Some(format!("Live {i}"))),
        ]
        .into();
        let created = RecordEvent::RecordCreated {
            record_id: record_id.clone(),
            workspace_id: backlog_workspace.clone(),
            entity: Entity::Contacts,
            at: Utc::now(),
        };
        let filled = RecordEvent::FieldsChanged {
            fields,
            source: Source::App {
                actor: "token:bench".into(),
            },
            run_id: None,
            at: Utc::now(),
        };
        let mut meta = meta.clone();
        meta.time = Utc::now();
        append(
            &store.events,
            &[
                NewEvent::of::<Record>(&record_id, 1, &created, &meta)?,
                NewEvent::of::<Record>(&record_id, 2, &filled, &meta)?,
            ],
        )
        .await?;
        committed.push((record_id, Utc::now()));
        bench.wake.notify_waiters();
    }
    bench.caught_up(&id).await?;
    let written: std::collections::HashMap<String, chrono::DateTime<Utc>> = sqlx::query_as(
        "SELECT record_id, written_at FROM backlog_contacts WHERE email LIKE 'live%'",
    )
    .fetch_all(&bench.target)
    .await?
    .into_iter()
    .collect();
    let mut lags: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            written
                .get(id)
                .map(|w| (*w - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    anyhow::ensure!(
        lags.len() == args.live,
        "{} of {} live rows",
        lags.len(),
        args.live
    );
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&lags, p).map_or(0.0, round3);
    println!(
        "{}",
        json!({"bench": "sink", "phase": "live", "store": backend, "records": args.live,
               "per_s": args.live_rate, "lag_p50_ms": pct(0.5), "lag_p99_ms": pct(0.99),
               "lag_max_ms": lags.last().copied().map_or(0.0, round3)})
    );
    let _ = stop.send(true);
    let _ = task.await;
    bench.target.close().await;
    cli.close().await;
    Ok(())
}
