//! `syncledger bench sync`: a full import and an incremental run against a HubSpot
//! sandbox (or, with `--provider zoho`, a Zoho CRM sandbox), one JSON line per phase.
//!
//! The sandbox runs as a child process (`syncledger sandbox hubspot|zoho`), so the peak memory
//! reported (`VmHWM` of this process) is the engine's own, not the simulated CRM's. API
//! calls are read from the sandbox's request counters; `min_api_calls` is the fewest the
//! provider's page sizes allow (HubSpot: list pages of 100, search pages of 200, one
//! deletions page; Zoho: list pages of 200, one field-metadata call for the mandatory
//! `fields`, one deleted-records page). The records read model is brought up to date between the phases and that
//! catch-up is reported as its own line.
//!
//! With `--rate-limit realistic` the sandbox enforces HubSpot's 100 requests per
//! rolling 10 s and each phase line adds `limit_seconds`, the least time its
//! `min_api_calls` take under that limit, and `limit_ratio` (seconds over it);
//! `rate_limited_429` counts the requests the sandbox refused for its limit.

use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use serde_json::{json, Value};
use syncledger_crm::{Credentials, Tokens};
use syncledger_domain::sync_config::{ConflictStrategy, Direction, Frequency, SyncConfig};
use syncledger_domain::sync_run::{RunKind, RunStatus, SyncRun, Trigger};
use syncledger_domain::{Entity, Integration, IntegrationCommand, Plan};
use syncledger_engine::{seal_credentials, Connections, Connector, SyncRuns};
use syncledger_store::{Metadata, Store};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{round2, round3};
use crate::config::Settings;

/// The sandbox's counter of requests it refused for its rate limit.
const RATE_LIMITED_COUNTER: &str = "/_sandbox/refused/429";
/// HubSpot's realistic limit: requests per window, and the window in seconds.
const REALISTIC_MAX: usize = 100;
const REALISTIC_WINDOW_S: f64 = 10.0;
/// HubSpot's search limit: requests per second.
const SEARCH_PER_S: usize = 4;

/// HubSpot's page sizes: list (full pulls, deletions) and search (incremental pulls).
const LIST_PAGE: usize = 100;
const SEARCH_PAGE: usize = 200;
/// Zoho's largest page (`per_page`), for full and incremental pulls alike.
const ZOHO_PAGE: usize = 200;

/// What differs between the providers the bench drives.
struct Dialect {
    /// The sandbox's contacts, as its control API names them.
    contacts: &'static str,
    /// The fewest API calls of a full pull of `n` contacts and of an incremental pull
    /// of `changed` ones.
    full_min: fn(usize) -> usize,
    incremental_min: fn(usize) -> usize,
    /// The control body that changes a contact's title.
    change: fn(&str, usize) -> Value,
}

fn dialect(provider: &str) -> Dialect {
    match provider {
        "zoho" => Dialect {
            contacts: "Contacts",
            // Pages, the field catalogue (`fields` is mandatory), the deleted records.
            full_min: |n| n.div_ceil(ZOHO_PAGE).max(1) + 2,
            incremental_min: |n| n.div_ceil(ZOHO_PAGE).max(1) + 1,
            change: |id, i| json!({"id": id, "Title": format!("Changed {i}")}),
        },
        _ => Dialect {
            contacts: "contacts",
            full_min: |n| n.div_ceil(LIST_PAGE).max(1) + 1,
            incremental_min: |n| n.div_ceil(SEARCH_PAGE).max(1) + 1,
            change: |id, i| json!({"id": id, "properties": {"jobtitle": format!("Changed {i}")}}),
        },
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct SyncBenchArgs {
    /// The provider simulated.
    #[arg(long, value_parser = ["hubspot", "zoho"], default_value = "hubspot")]
    pub provider: String,
    /// Contacts in the CRM.
    #[arg(long, default_value_t = 10_000)]
    pub records: usize,
    /// Percentage of the records changed in the CRM before the incremental run.
    #[arg(long, default_value_t = 1.0)]
    pub changed_pct: f64,
    /// `off`: no limits, no client pacing; `realistic`: HubSpot's 100 requests / 10 s,
    /// enforced by the sandbox and paced by the client.
    #[arg(long, value_parser = ["off", "realistic"], default_value = "off")]
    pub rate_limit: String,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Then preview and roll back the full import (a `rollback` phase line).
    #[arg(long)]
    pub rollback: bool,
    /// Run every projection alongside the full import, as `serve` does, and report how far
    /// the records read model trails the log when the run ends and how long it takes to
    /// catch up (a `live_lag` line, before the `projection` catch-up line).
    #[arg(long)]
    pub live: bool,
    /// Instead of the phases above: one full import alone, then this many at once, each
    /// in a workspace of its own (as many customers' runs would be) on a task of its own
    /// (as that many workers run them); a `concurrent` line compares the aggregate with
    /// the run alone and says how evenly the runs shared.
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub concurrent: Option<u16>,
}

/// The sandbox child process and its address.
struct SandboxProcess {
    child: tokio::process::Child,
    base_url: String,
    client: reqwest::Client,
}

impl SandboxProcess {
    async fn start(args: &SyncBenchArgs) -> anyhow::Result<SandboxProcess> {
        let exe = std::env::current_exe().context("find the syncledger binary")?;
        let mut cmd = tokio::process::Command::new(exe);
        let records = args.records.to_string();
        cmd.args(["sandbox", &args.provider, "--records", &records]);
        if args.rate_limit == "realistic" {
            cmd.args(["--rate-limit-per-10s", &REALISTIC_MAX.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start the sandbox")?;
        let stdout = child.stdout.take().context("sandbox stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next_line()
            .await?
            .context("the sandbox exited before listening")?;
        let base_url = first
            .strip_prefix("listening on ")
            .context("the sandbox's first line names its address")?
            .trim()
            .to_string();
        Ok(SandboxProcess {
            child,
            base_url,
            client: reqwest::Client::new(),
        })
    }

    /// Requests the engine made (control endpoints excluded), and how many of them
    /// the sandbox refused with 429 for its rate limit.
    async fn api_calls(&self) -> anyhow::Result<(u64, u64)> {
        let counters: Value = self
            .client
            .get(format!("{}/_sandbox/counters", self.base_url))
            .send()
            .await?
            .json()
            .await?;
        let count = |keep: &dyn Fn(&str) -> bool| -> u64 {
            counters
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| keep(k))
                        .filter_map(|(_, v)| v.as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        let calls = count(&|k| !k.contains("/_sandbox") && !k.contains("/oauth"));
        let refused = count(&|k| k == RATE_LIMITED_COUNTER);
        Ok((calls, refused))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "sandbox {path}: {}",
            resp.status()
        );
        Ok(resp.json().await.unwrap_or(Value::Null))
    }
}

/// Peak resident memory of this process, in MB.
pub(super) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

async fn event_count(store: &Store) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
        .fetch_one(&store.any)
        .await?)
}

pub async fn run(base: &Settings, args: SyncBenchArgs) -> anyhow::Result<ExitCode> {
    let base = Settings {
        provider_pacing: args.rate_limit == "realistic",
        // The bench drives its own sandbox on loopback with the sandbox OAuth app,
        // also on a PostgreSQL scratch database.
        environment: Some(crate::config::Environment::Development),
        ..base.clone()
    };
    let url = args.database_url.clone();
    super::on_scratch(base, url.as_deref(), |settings| async move {
        bench(&settings, &args).await
    })
    .await
}

async fn bench(settings: &Settings, args: &SyncBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.provider == "hubspot" || args.rate_limit == "off",
        "--rate-limit realistic models HubSpot's limits only"
    );
    let dialect = dialect(&args.provider);
    let sandbox = SandboxProcess::start(args).await?;
    let (store, vault) = crate::app::open(settings).await?;
    let connections = Connections::new(
        &store,
        vault.clone(),
        Connector::new(settings.provider_apps()),
        "bench",
    );
    let runs = SyncRuns::new(&store, connections, "bench");
    let (id, meta) = connect(&store, &vault, &sandbox, &args.provider, "bench").await?;
    if let Some(k) = args.concurrent {
        let others = Others {
            store: &store,
            vault: &vault,
            sandbox: &sandbox,
        };
        concurrent(&runs, others, args, &id, &meta, usize::from(k)).await?;
        drop(sandbox.child);
        store.close().await;
        return Ok(());
    }

    let n = args.records;
    let full_min = (dialect.full_min)(n);
    let realistic = args.rate_limit == "realistic";
    let live = args
        .live
        .then(|| LiveProjections::start(&store, settings, runs.committed()));
    let full = phase(
        &runs,
        &store,
        &sandbox,
        &id,
        &meta,
        "full",
        RunKind::Full,
        n,
        full_min,
        realistic,
    )
    .await?;
    if let Some(live) = live {
        live.report_lag(&store, &full).await?;
    }

    // The records read model catches up with the import before anything reads it.
    let started = Instant::now();
    let before = event_count(&store).await?;
    syncledger_projections::runner::Runner::new(
        store.clone(),
        vec![std::sync::Arc::new(
            syncledger_projections::records::Records,
        )],
    )
    .with_batch(settings.projection_batch.max(2000))
    .catch_up()
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"phase": "projection", "projection": "records", "events": before,
               "seconds": round2(seconds), "events_per_s": round2(before as f64 / seconds.max(1e-9)),
               "peak_rss_mb": peak_rss_mb()})
    );

    // Change a share of the contacts in the CRM, then run incrementally.
    let changed = ((n as f64) * args.changed_pct / 100.0).round() as usize;
    let remote_ids: Vec<String> = sqlx::query_scalar(
        "SELECT remote_id FROM record_links WHERE integration_id = $1 ORDER BY remote_id LIMIT $2",
    )
    .bind(&id)
    .bind(changed as i64)
    .fetch_all(&store.any)
    .await?;
    for (i, remote_id) in remote_ids.iter().enumerate() {
        sandbox
            .post(
                &format!("/_sandbox/records/{}", dialect.contacts),
                (dialect.change)(remote_id, i),
            )
            .await?;
    }
    let incremental_min = (dialect.incremental_min)(remote_ids.len());
    phase(
        &runs,
        &store,
        &sandbox,
        &id,
        &meta,
        "incremental",
        RunKind::Incremental,
        remote_ids.len(),
        incremental_min,
        realistic,
    )
    .await?;
    if args.rollback {
        rollback_phase(&runs, &store, &meta, &full).await?;
    }
    drop(sandbox.child);
    store.close().await;
    Ok(())
}

/// A workspace named `name` with a pull-only integration of contacts on the sandbox,
/// holding sandbox-issued tokens: its id and the metadata its commands carry.
async fn connect(
    store: &Store,
    vault: &syncledger_vault::Vault,
    sandbox: &SandboxProcess,
    provider: &str,
    name: &str,
) -> anyhow::Result<(String, Metadata)> {
    let (ws, _) = syncledger_engine::workspaces::create_workspace(store, name, Plan::Enterprise)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let meta = Metadata::new("bench", &ws, uuid::Uuid::now_v7().to_string());

    // A pull-only integration of contacts, holding sandbox-issued tokens.
    let id = uuid::Uuid::now_v7().to_string();
    let integrations = store.cqrs::<Integration>();
    let create = IntegrationCommand::Create {
        integration_id: id.clone(),
        workspace_id: ws.clone(),
        provider: provider.to_string(),
        name: "bench".into(),
        sync_config: SyncConfig {
            direction: Direction::Pull,
            frequency: Frequency::Manual,
            entities: vec![Entity::Contacts],
            conflict_strategy: ConflictStrategy::LastWriteWins,
            on_crm_delete: Default::default(),
            on_app_archive: Default::default(),
        },
        base_url: Some(sandbox.base_url.clone()),
        spec: None,
        at: Utc::now(),
    };
    integrations.execute(&id, create, &meta).await?;
    let pair = sandbox.post("/_sandbox/tokens", json!({})).await?;
    let token = |k: &str| {
        pair[k]
            .as_str()
            .map(str::to_string)
            .context("sandbox tokens")
    };
    let tokens = Tokens {
        access_token: SecretString::from(token("access_token")?),
        refresh_token: Some(SecretString::from(token("refresh_token")?)),
        expires_at: Some(
            Utc::now() + chrono::Duration::seconds(pair["expires_in"].as_i64().unwrap_or(1800)),
        ),
        // Zoho's token response names the API domain (the sandbox); HubSpot's none.
        instance_url: pair["api_domain"].as_str().map(str::to_string),
    };
    let (kind, secret, expires_at) =
        seal_credentials(vault, &ws, &Credentials::OAuth2(tokens)).await?;
    integrations
        .execute(
            &id,
            IntegrationCommand::StoreCredentials {
                kind,
                secret,
                expires_at,
                refresh_token: None,
                at: Utc::now(),
            },
            &meta,
        )
        .await?;

    Ok((id, meta))
}

/// What the concurrent phase needs besides the runs: where it makes its workspaces.
struct Others<'a> {
    store: &'a Store,
    vault: &'a syncledger_vault::Vault,
    sandbox: &'a SandboxProcess,
}

/// Executes a full run and checks that it completed and created all `n` records: each
/// run imports every contact into a workspace of its own, else its rate means nothing.
async fn import_all(runs: &SyncRuns, run_id: &str, n: usize) -> anyhow::Result<()> {
    let status = runs.execute(run_id).await?;
    let run = runs.load(run_id).await?.context("the run")?;
    anyhow::ensure!(
        status == RunStatus::Completed && run.stats.created == n as u64,
        "a full run ended {} having created {} of {n} records",
        status.as_str(),
        run.stats.created
    );
    Ok(())
}

/// `--concurrent K`: a full import alone, then K at once. The aggregate is the records
/// of all K over the time until the last ended; each run's own rate is its records over
/// its own time (all start together).
async fn concurrent(
    runs: &SyncRuns,
    others: Others<'_>,
    args: &SyncBenchArgs,
    alone: &str,
    meta: &Metadata,
    k: usize,
) -> anyhow::Result<()> {
    let n = args.records;
    let started = Instant::now();
    let run_id = runs
        .trigger(alone, RunKind::Full, Trigger::Manual, None, meta)
        .await?;
    import_all(runs, &run_id, n).await?;
    let alone_rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{}",
        json!({"phase": "alone", "records": n, "seconds": round2(started.elapsed().as_secs_f64()),
               "records_per_s": round2(alone_rate)})
    );
    let mut queued = Vec::with_capacity(k);
    for i in 0..k {
        let name = format!("bench-{i}");
        let (id, meta) = connect(
            others.store,
            others.vault,
            others.sandbox,
            &args.provider,
            &name,
        )
        .await?;
        queued.push(
            runs.trigger(&id, RunKind::Full, Trigger::Manual, None, &meta)
                .await?,
        );
    }
    let started = Instant::now();
    let each: Vec<_> = queued
        .into_iter()
        .map(|run_id| {
            let runs = runs.clone();
            tokio::spawn(async move {
                import_all(&runs, &run_id, n).await?;
                anyhow::Ok(started.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut seconds = Vec::with_capacity(k);
    for run in each {
        seconds.push(run.await??);
    }
    let wall = seconds.iter().copied().fold(0.0, f64::max).max(1e-9);
    let first = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let rates: Vec<f64> = seconds.iter().map(|s| n as f64 / s.max(1e-9)).collect();
    let mean = rates.iter().sum::<f64>() / k as f64;
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let fastest = rates.iter().copied().fold(0.0, f64::max);
    let aggregate = (n * k) as f64 / wall;
    println!(
        "{}",
        json!({"phase": "concurrent", "runs": k, "records_per_run": n,
               "seconds": round2(wall), "first_ended_s": round2(first),
               "aggregate_records_per_s": round2(aggregate),
               "alone_records_per_s": round2(alone_rate),
               "aggregate_vs_alone": round3(aggregate / alone_rate.max(1e-9)),
               "run_records_per_s": {"min": round2(slowest), "mean": round2(mean), "max": round2(fastest)},
               "slowest_vs_mean": round3(slowest / mean.max(1e-9)),
               "run_seconds": seconds.iter().map(|s| round2(*s)).collect::<Vec<_>>(),
               "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}

/// Every projection following the log during the full import, as in `serve`: woken by
/// each commit of the run (`SyncRuns::committed`), else polling every 100 ms.
struct LiveProjections {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    batch: i64,
}

impl LiveProjections {
    fn start(
        store: &Store,
        settings: &Settings,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Self {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let runner =
            syncledger_projections::Runner::new(store.clone(), syncledger_projections::all())
                .with_batch(settings.projection_batch)
                .with_parallelism(settings.projection_parallelism as usize);
        let task = tokio::spawn(async move { runner.run(shutdown, wake).await });
        LiveProjections {
            stop,
            task,
            started: Instant::now(),
            batch: settings.projection_batch,
        }
    }

    /// At the full run's end: how many events the records read model had not applied,
    /// then the time until it has applied every event the log held at that moment: the
    /// live runner finishes the batch in hand and stops, and the records projection
    /// catches up alone (the other read models follow in the next line's catch-up, so
    /// this is the records view's own lag, not theirs). The rate is over the whole
    /// import (events the records read model applied per second since the run started).
    async fn report_lag(self, store: &Store, run: &SyncRun) -> anyhow::Result<()> {
        let ended = Instant::now();
        let head = store.feed().count().await?;
        let applied = syncledger_projections::checkpoint::read(&store.any, "records")
            .await?
            .map_or(0, |c| c.events);
        let _ = self.stop.send(true);
        self.task.await?;
        syncledger_projections::Runner::new(
            store.clone(),
            vec![std::sync::Arc::new(
                syncledger_projections::records::Records,
            )],
        )
        .with_batch(self.batch)
        .catch_up()
        .await?;
        let lag = ended.elapsed().as_secs_f64();
        let total = self.started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"phase": "live_lag", "projection": "records",
                   "run": run.id, "events": head,
                   "behind_events_at_run_end": head - applied, "lag_seconds": round2(lag),
                   "events_per_s": round2(head as f64 / total.max(1e-9)),
                   "peak_rss_mb": peak_rss_mb()})
        );
        Ok(())
    }
}

/// Previews, then rolls back, the full import: every record it created is archived
/// (those the incremental run changed since are conflicts and stay).
async fn rollback_phase(
    runs: &SyncRuns,
    store: &Store,
    meta: &Metadata,
    full: &SyncRun,
) -> anyhow::Result<()> {
    let full_id = full.id.clone().context("the full run's id")?;
    let started = Instant::now();
    let preview = runs.preview_rollback(&full_id, meta).await?;
    let preview_seconds = started.elapsed().as_secs_f64();
    let events_before = event_count(store).await?;
    let started = Instant::now();
    let run_id = runs.rollback(&full_id, meta).await?;
    let status = runs.execute(&run_id).await?;
    let seconds = started.elapsed().as_secs_f64();
    let run = runs.load(&run_id).await?.context("the rollback run")?;
    anyhow::ensure!(
        status == RunStatus::Completed,
        "the rollback ended {}: {}",
        status.as_str(),
        run.reason.clone().unwrap_or_default()
    );
    let records = run.stats.processed;
    println!(
        "{}",
        json!({"phase": "rollback", "records": records, "seconds": round2(seconds),
               "records_per_s": round2(records as f64 / seconds.max(1e-9)),
               "compensated": run.stats.updated, "conflicts": run.stats.conflicts_detected,
               "events_written": event_count(store).await? - events_before,
               "preview_records": preview.summary.records,
               "preview_seconds": round2(preview_seconds),
               "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}

/// The least time `calls` requests (`searches` of them searches) take under
/// HubSpot's rolling limits — `REALISTIC_MAX` per `REALISTIC_WINDOW_S`, and
/// `SEARCH_PER_S` searches per second: the first window's requests go at once and
/// each later window's worth waits one window more. Zero when one window holds them all.
fn limit_seconds(calls: usize, searches: usize) -> f64 {
    let general = (calls.saturating_sub(1) / REALISTIC_MAX) as f64 * REALISTIC_WINDOW_S;
    let search = (searches.saturating_sub(1) / SEARCH_PER_S) as f64;
    general.max(search)
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    runs: &SyncRuns,
    store: &Store,
    sandbox: &SandboxProcess,
    integration_id: &str,
    meta: &Metadata,
    name: &str,
    kind: RunKind,
    records: usize,
    min_api_calls: usize,
    realistic: bool,
) -> anyhow::Result<SyncRun> {
    let events_before = event_count(store).await?;
    let (calls_before, refused_before) = sandbox.api_calls().await?;
    let started = Instant::now();
    let run_id = runs
        .trigger(integration_id, kind, Trigger::Manual, None, meta)
        .await?;
    let status = runs.execute(&run_id).await?;
    let seconds = started.elapsed().as_secs_f64();
    let run = runs.load(&run_id).await?.context("the run")?;
    anyhow::ensure!(
        status == RunStatus::Completed,
        "the {name} run ended {}: {}",
        status.as_str(),
        run.reason.clone().unwrap_or_default()
    );
    let events = event_count(store).await? - events_before;
    let (calls_after, refused_after) = sandbox.api_calls().await?;
    let api_calls = calls_after - calls_before;
    let mut line = json!({"phase": name, "records": records, "seconds": round2(seconds),
           "records_per_s": round2(records as f64 / seconds.max(1e-9)),
           "events_written": events, "record_events": events - run_events(&run),
           "created": run.stats.created, "updated": run.stats.updated,
           "unchanged": run.stats.unchanged,
           "api_calls": api_calls, "min_api_calls": min_api_calls,
           "api_calls_ratio": round3(api_calls as f64 / min_api_calls.max(1) as f64),
           "rate_limited_429": refused_after - refused_before,
           "peak_rss_mb": peak_rss_mb()});
    if realistic {
        let searches = if kind == RunKind::Incremental {
            min_api_calls.saturating_sub(1)
        } else {
            0
        };
        let allowed = limit_seconds(min_api_calls, searches);
        line["limit_seconds"] = json!(allowed);
        line["limit_ratio"] = if allowed > 0.0 {
            json!(round3(seconds / allowed))
        } else {
            Value::Null
        };
    }
    println!("{line}");
    Ok(run)
}

/// The run's own events: queued, started, one per page, ended.
fn run_events(run: &SyncRun) -> i64 {
    let pages: u64 = run.passes.values().map(|p| p.pages).sum();
    3 + pages as i64
}
