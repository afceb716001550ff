//! `syncledger bench`: the benchmarks behind the CLI's `bench` command. The CLI only
//! parses [`BenchCommand`] and hands it to [`run`]; every measurement lives here:
//!
//! - `store.rs` (no subcommand): integration commands per second and feed-plus-projection
//!   throughput on a fresh SQLite store and/or PostgreSQL database;
//! - `sync.rs` (`bench sync`): a full import and an incremental run against a sandbox;
//! - `as_of.rs` (`bench as-of`): point-in-time read latency;
//! - `rebuild.rs` (`bench rebuild`): every projection rebuilt from a generated log;
//! - `http.rs` (`bench http`): request throughput, with and without `/metrics` scraped;
//! - `webhooks.rs` (`bench webhooks`): outgoing webhook deliveries per second and lag;
//! - `sink.rs` (`bench sink`): the Postgres destination sink's rows per second and lag;
//! - `import.rs` (`bench import`): a CSV import's rows per second, new and again.
//! - `merge.rs` (`bench merge`): per-field three-way conflict detection, µs per record.
//! - `live.rs` (`bench live`): commit → live-stream client latency while an import runs.
//!
//! Each prints JSON lines on stdout. Nothing here is used by `serve` or the tests.

mod as_of;
mod http;
mod import;
mod live;
mod merge;
mod pages;
mod rebuild;
mod sink;
mod store;
mod sync;
mod webhooks;

pub use as_of::AsOfBenchArgs;
pub use http::HttpBenchArgs;
pub use import::ImportBenchArgs;
pub use live::LiveBenchArgs;
pub use merge::MergeBenchArgs;
pub use pages::PagesBenchArgs;
pub use rebuild::RebuildBenchArgs;
pub use sink::SinkBenchArgs;
pub use sync::SyncBenchArgs;
pub use webhooks::WebhooksBenchArgs;

use crate::config::Settings;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommand {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    #[command(flatten)]
    pub store: BenchArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// A full import and an incremental run against a provider sandbox; one JSON line
    /// per phase.
    Sync(SyncBenchArgs),
    /// Point-in-time read latency (`GET /v1/records/{id}?as_of=`) for a record with many
    /// events; one JSON line.
    AsOf(AsOfBenchArgs),
    /// Every projection rebuilt from a generated log of N events; one JSON line per
    /// projection and a total.
    Rebuild(RebuildBenchArgs),
    /// Dashboard page latency (p50/p95 per page) on a large generated store; one JSON
    /// line per page.
    Pages(PagesBenchArgs),
    /// Requests per second of a cheap authenticated read with N clients, optionally while
    /// `GET /metrics` is scraped every M ms; one JSON line.
    Http(HttpBenchArgs),
    /// Outgoing webhook deliveries per second to a local receiver, and the lag from a
    /// record's creation to its message's arrival; one JSON line.
    Webhooks(WebhooksBenchArgs),
    /// The Postgres destination sink: rows per second while an import runs and catching
    /// up a backlog, and the lag from commit to row; one JSON line per phase.
    Sink(SinkBenchArgs),
    /// A CSV import into an integration of a CRM without an API: rows per second of a
    /// first import and of the same file again with edits; one JSON line per phase.
    Import(ImportBenchArgs),
    /// Per-field three-way conflict detection on generated records, in memory: µs per
    /// record (p50, p99, mean) and records per second; one JSON line.
    Merge(MergeBenchArgs),
    /// The latency from an event's commit to a live-stream client (`GET
    /// /v1/events/stream`) while a full import runs: p50/p99, events lost; one JSON line.
    Live(LiveBenchArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BenchStore {
    Sqlite,
    Postgres,
    Both,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which store(s) to measure; each run uses a fresh database.
    #[arg(long, value_enum, default_value = "both")]
    pub store: BenchStore,
    /// PostgreSQL server (a database on it is created and dropped for the run).
    #[arg(
        long,
        env = "SYNCLEDGER_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub pg_url: String,
    /// Integration commands to run.
    #[arg(long, default_value_t = 2000)]
    pub commands: usize,
    /// Events in the log to rebuild projections from.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

/// Runs the benchmark `command` names.
pub async fn run(settings: &Settings, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command.what {
        Some(BenchWhat::Sync(args)) => sync::run(settings, args).await,
        Some(BenchWhat::AsOf(args)) => as_of::run(settings, args).await,
        Some(BenchWhat::Rebuild(args)) => rebuild::run(settings, args).await,
        Some(BenchWhat::Pages(args)) => pages::run(settings, args).await,
        Some(BenchWhat::Http(args)) => http::run(settings, args).await,
        Some(BenchWhat::Live(args)) => live::run(settings, args).await,
        Some(BenchWhat::Webhooks(args)) => webhooks::run(settings, args).await,
        Some(BenchWhat::Sink(args)) => sink::run(settings, args).await,
        Some(BenchWhat::Import(args)) => import::run(settings, args).await,
        Some(BenchWhat::Merge(args)) => merge::run(args).await,
        None => store::run(settings, command.store).await,
    }
}

/// `x` rounded to two decimals.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` rounded to three decimals.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The value at quantile `p` (0 to 1) of `sorted`, by nearest rank, as every bench
/// reports its percentiles; `None` when there is none.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let i = ((sorted.len() as f64 - 1.0).max(0.0) * p).round() as usize;
    sorted.get(i).copied()
}

/// [`quantile`] of sorted durations, in milliseconds (0 when there is none).
fn quantile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    quantile(sorted, p).map_or(0.0, |d| round3(d.as_secs_f64() * 1000.0))
}

/// Runs a benchmark on scratch storage: a new data directory, and a new database on
/// the PostgreSQL server `database_url` names (else a SQLite file in that directory),
/// dropped afterwards whether the benchmark succeeded or not. `base` is adjusted
/// with the scratch locations and handed to `bench`.
async fn on_scratch<F, Fut>(
    base: Settings,
    database_url: Option<&str>,
    bench: F,
) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let dir = scratch_dir()?;
    let pg = match database_url {
        Some(url) => Some(TempPgDb::create(url).await?),
        None => None,
    };
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        database_url: pg
            .as_ref()
            .map(|db| secrecy::SecretString::from(db.url.clone())),
        ..base
    };
    let result = bench(settings).await;
    if let Some(db) = pg {
        db.drop_db().await?;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `base` for a `serve` inside a benchmark: a free loopback port, no rate limit, no
/// scheduler, and no run workers (the benchmark executes its runs itself); development
/// mode, so that sandboxes and receivers on loopback are allowed.
fn in_process(base: &Settings) -> anyhow::Result<Settings> {
    Ok(Settings {
        addr: "127.0.0.1:0".parse()?,
        rate_limit_per_minute: u32::MAX,
        environment: Some(crate::config::Environment::Development),
        scheduler_interval_secs: 0,
        workers: 0,
        ..base.clone()
    })
}

/// `serve` in this process on scratch storage ([`on_scratch`]) while `measure` runs
/// (handed the server's state and base URL); then the server is shut down and the
/// store closed.
async fn serving_on_scratch<F, Fut>(
    settings: Settings,
    database_url: Option<&str>,
    measure: F,
) -> anyhow::Result<ExitCode>
where
    F: FnOnce(crate::state::AppState, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use anyhow::Context;
    on_scratch(settings, database_url, |settings| async move {
        let app = crate::Application::build(settings).await?;
        let base = format!("http://{}", app.addr());
        let state = app.state();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(app.run(stopped));
        let result = measure(state.clone(), base).await;
        let _ = stop.send(true);
        server.await.context("the API task")??;
        state.store.close().await;
        result
    })
    .await
}

struct TempPgDb {
    admin_url: String,
    url: String,
    name: String,
}

impl TempPgDb {
    async fn create(admin_url: &str) -> anyhow::Result<TempPgDb> {
        use sqlx::Connection;
        let name = format!("syncledger_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = if query.is_empty() {
            format!("{base}/{name}")
        } else {
            format!("{base}/{name}?{query}")
        };
        Ok(TempPgDb {
            admin_url: admin_url.to_string(),
            url,
            name,
        })
    }

    async fn drop_db(self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

/// A temporary data directory private to the owner, as the store requires.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}
