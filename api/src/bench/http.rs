//! `syncledger bench http`: request throughput of a cheap authenticated read
//! (`GET /v1/integrations`) with N concurrent clients for D seconds, optionally while
//! `GET /metrics` is scraped every M ms, to measure what serving metrics costs.
//!
//! The server runs in this process on scratch storage with `metrics_addr` on a free
//! loopback port (so requests are counted in both modes; only the scraping differs), and no
//! rate limit. With `--sync-records N` a full HubSpot import of N records per object type
//! runs first against an in-process sandbox, so the scrape holds the sync-run and provider
//! series a working server has. One JSON line: requests per second, latency percentiles,
//! and the scrapes made, their mean time and the last one's size in bytes.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use syncledger_domain::Plan;
use tokio::sync::watch;

use super::{round2, round3};
use crate::config::Settings;
use crate::Application;

#[derive(clap::Args, Debug, Clone)]
pub struct HttpBenchArgs {
    /// Concurrent clients, each sending its next request when the last is answered.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to send requests, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Scrape `GET /metrics` every this many milliseconds meanwhile (0: never).
    #[arg(long, default_value_t = 0)]
    pub scrape_every_ms: u64,
    /// Before measuring, import this many HubSpot records per object type from an
    /// in-process sandbox (0: none).
    #[arg(long, default_value_t = 0)]
    pub sync_records: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub async fn run(base: &Settings, args: HttpBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.seconds >= 1, "--seconds must be at least 1");
    let base = Settings {
        metrics_addr: Some("127.0.0.1:0".parse()?),
        // The import talks to a sandbox on loopback, unpaced; its run is executed by the
        // bench itself (`import`), as `bench sync` does: it ends when the call returns.
        provider_pacing: false,
        ..super::in_process(base)?
    };
    let url = args.database_url.clone();
    super::on_scratch(base, url.as_deref(), |settings| async move {
        serve_and_measure(settings, &args).await
    })
    .await
}

async fn serve_and_measure(settings: Settings, args: &HttpBenchArgs) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let base = format!("http://{}", app.addr());
    let metrics = format!(
        "http://{}/metrics",
        app.metrics_addr().context("the metrics listener")?
    );
    let state = app.state();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(app.run(stopped));
    let result = measure(&state, &base, &metrics, args).await;
    let _ = stop.send(true);
    server.await.context("the API task")??;
    state.store.close().await;
    result
}

async fn measure(
    state: &crate::state::AppState,
    base: &str,
    metrics: &str,
    args: &HttpBenchArgs,
) -> anyhow::Result<()> {
    let (_, token) =
        syncledger_engine::workspaces::create_workspace(&state.store, "bench", Plan::Enterprise)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    if args.sync_records > 0 {
        import(state, &client, base, &token.bearer, args.sync_records).await?;
    }
    let url = format!("{base}/v1/integrations");
    // Warm the connections up.
    for _ in 0..args.clients {
        let resp = client.get(&url).bearer_auth(&token.bearer).send().await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "GET /v1/integrations: {}",
            resp.status()
        );
        resp.bytes().await?;
    }
    let running = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let (client, url, bearer) = (client.clone(), url.clone(), token.bearer.clone());
        let (running, failures) = (running.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while running.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match client.get(&url).bearer_auth(&bearer).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let scraper = (args.scrape_every_ms > 0).then(|| {
        let (client, url, running) = (client.clone(), metrics.to_string(), running.clone());
        let every = Duration::from_millis(args.scrape_every_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let (mut scrapes, mut spent, mut bytes) = (0u64, Duration::ZERO, 0usize);
            while running.load(Ordering::Relaxed) {
                tick.tick().await;
                let sent = Instant::now();
                if let Ok(resp) = client.get(&url).send().await {
                    if let Ok(body) = resp.bytes().await {
                        spent += sent.elapsed();
                        scrapes += 1;
                        bytes = body.len();
                    }
                }
            }
            (scrapes, spent, bytes)
        })
    });
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    running.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await?);
    }
    let scraped = match scraper {
        Some(s) => Some(s.await?),
        None => None,
    };
    // The scrape after the run, whatever the mode: its size.
    let last = client.get(metrics).send().await?.text().await?;
    latencies.sort_unstable();
    let pct = |p: f64| super::quantile_ms(&latencies, p);
    let (scrapes, scrape_ms) = scraped.map_or((0, 0.0), |(n, spent, _)| {
        let mean = if n == 0 {
            0.0
        } else {
            spent.as_secs_f64() * 1000.0 / n as f64
        };
        (n, round3(mean))
    });
    let line = json!({
        "bench": "http",
        "route": "GET /v1/integrations",
        "clients": args.clients,
        "seconds": round2(elapsed),
        "scrape_every_ms": args.scrape_every_ms,
        "sync_records": args.sync_records,
        "requests": latencies.len(),
        "failures": failures.load(Ordering::Relaxed),
        "requests_per_s": round2(latencies.len() as f64 / elapsed),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "scrapes": scrapes,
        "scrape_ms_mean": scrape_ms,
        "scrape_bytes": last.len(),
        "scrape_series": last.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(),
    });
    println!("{line}");
    Ok(())
}

/// A full HubSpot import through the API: an integration on an in-process sandbox,
/// connected by OAuth, and one full run waited for.
#[cfg(feature = "sandbox")]
pub(super) async fn import(
    state: &crate::state::AppState,
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    records: usize,
) -> anyhow::Result<()> {
    use syncledger_sandbox::{Sandbox, SandboxConfig};
    let sandbox = Sandbox::start_hubspot(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await?;
    let body = json!({"provider": "hubspot", "name": "bench import", "base_url": sandbox.base_url(),
        "sync_config": {"direction": "pull", "frequency": "manual",
                        "entities": ["contacts", "companies"], "conflict_strategy": "crm_wins"}});
    let created: Value = client
        .post(format!("{base}/v1/integrations"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().context("the integration's id")?;
    let connect: Value = client
        .post(format!("{base}/v1/integrations/{id}/connect"))
        .bearer_auth(bearer)
        .send()
        .await?
        .json()
        .await?;
    let authorize = connect["authorization_url"]
        .as_str()
        .context("an authorization URL")?;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let approved = no_redirects.get(authorize).send().await?;
    let callback = approved
        .headers()
        .get(reqwest::header::LOCATION)
        .context("the sandbox's redirect")?
        .to_str()?
        .to_string();
    let connected = client.get(&callback).send().await?;
    anyhow::ensure!(
        connected.status().is_success(),
        "OAuth callback: {}",
        connected.status()
    );
    let started: Value = client
        .post(format!("{base}/v1/integrations/{id}/sync-runs"))
        .bearer_auth(bearer)
        .json(&json!({"kind": "full"}))
        .send()
        .await?
        .json()
        .await?;
    let run = started["id"].as_str().context("the run's id")?;
    let status = state.runs.execute(run).await?;
    anyhow::ensure!(
        status == syncledger_domain::sync_run::RunStatus::Completed,
        "the import ended {}",
        status.as_str()
    );
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(not(feature = "sandbox"))]
pub(super) async fn import(
    _state: &crate::state::AppState,
    _client: &reqwest::Client,
    _base: &str,
    _bearer: &str,
    _records: usize,
) -> anyhow::Result<()> {
    anyhow::bail!("--sync-records needs the sandbox feature")
}
