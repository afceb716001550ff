//! `syncledger bench webhooks`: outgoing webhook delivery throughput and lag. A server in
//! this process (scratch storage) with one endpoint subscribed to `record.created`
//! pointed at a receiver in this process that answers 200 at once. Two phases, a JSON
//! line each:
//!
//! - `backlog`: N records are created first; then the endpoint replays them all (a
//!   replay since before the first): messages delivered per second, from the replay's
//!   start to the last arrival;
//! - `live`: N more records are created through the API by C clients while the endpoint
//!   follows: the lag from a record's creation answered to its message's arrival (p50,
//!   p99, max).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{json, Value};
use syncledger_domain::Plan;
use syncledger_engine::webhook_endpoints::EndpointInput;
use syncledger_store::Metadata;
use tokio::sync::Notify;

use super::{round2, round3};
use crate::config::Settings;

#[derive(clap::Args, Debug, Clone)]
pub struct WebhooksBenchArgs {
    /// Records created, each making one message.
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Concurrent API clients creating them.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub async fn run(base: &Settings, args: WebhooksBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.messages >= 1, "--messages must be at least 1");
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    // The receiver is on loopback.
    let base = Settings {
        allow_loopback_providers: true,
        ..super::in_process(base)?
    };
    let url = args.database_url.clone();
    super::serving_on_scratch(base, url.as_deref(), |state, base| async move {
        measure(&state, &base, &args).await
    })
    .await
}

/// Creates `args.messages` records through the API (emails tagged `tag`) with
/// `args.clients` clients; when each creation was answered.
async fn create(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    args: &WebhooksBenchArgs,
    tag: &str,
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut creators = Vec::new();
    for c in 0..args.clients {
        let (client, bearer) = (client.clone(), bearer.to_owned());
        let url = format!("{base}/v1/records");
        let mine: Vec<String> = (0..args.messages)
            .filter(|i| i % args.clients == c)
            .map(|i| format!("{tag}{i}@bench.example"))
            .collect();
        creators.push(tokio::spawn(async move {
            let mut committed = Vec::with_capacity(mine.len());
            for email in mine {
                let body = json!({"entity": "contacts", "fields": {"email": email}});
                let resp = client
                    .post(&url)
                    .bearer_auth(&bearer)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status().is_success(),
                    "POST /v1/records: {}",
                    resp.status()
                );
                committed.push((email, Instant::now()));
            }
            Ok::<_, anyhow::Error>(committed)
        }));
    }
    let mut committed = HashMap::new();
    for c in creators {
        committed.extend(c.await??);
    }
    Ok(committed)
}

/// Waits until `n` distinct messages have arrived, or fails after a minute without one.
async fn arrived(arrivals: &Arrivals, n: usize) -> anyhow::Result<()> {
    loop {
        let waiting = arrivals.more.notified();
        let got = arrivals.at.lock().map(|a| a.len()).unwrap_or_default();
        if got >= n {
            return Ok(());
        }
        if tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .is_err()
        {
            anyhow::bail!("only {got} of {n} messages arrived");
        }
    }
}

/// When each message (by the email of its record) arrived.
#[derive(Clone, Default)]
struct Arrivals {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    more: Arc<Notify>,
}

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> &'static str {
    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(email) = value["data"]["fields"]["email"].as_str() {
        if let Ok(mut at) = arrivals.at.lock() {
            at.entry(email.to_owned()).or_insert_with(Instant::now);
        }
        arrivals.more.notify_waiters();
    }
    "ok"
}

async fn measure(
    state: &crate::state::AppState,
    base: &str,
    args: &WebhooksBenchArgs,
) -> anyhow::Result<()> {
    let (workspace_id, token) =
        syncledger_engine::workspaces::create_workspace(&state.store, "bench", Plan::Enterprise)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let arrivals = Arrivals::default();
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let receiving = tokio::spawn(async move { axum::serve(listener, receiver).await });
    let meta = Metadata::new("bench", &workspace_id, uuid::Uuid::now_v7().to_string());
    // Off while the backlog is made.
    let endpoints = state.engine.webhook_endpoints();
    let made = endpoints
        .create(
            &meta,
            EndpointInput {
                url: Some(hook),
                event_types: Some(vec!["record.created".into()]),
                enabled: Some(false),
                ..EndpointInput::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let endpoint_id = made.endpoint.id.clone().context("the endpoint's id")?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    create(&client, base, &token.bearer, args, "backlog").await?;
    let replayed = Instant::now();
    endpoints
        .replay(&meta, &endpoint_id, before)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let on = EndpointInput {
        enabled: Some(true),
        ..EndpointInput::default()
    };
    endpoints
        .change(&meta, &endpoint_id, on)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    arrived(&arrivals, args.messages).await?;
    let backlog = arrivals.at.lock().map(|a| a.clone()).unwrap_or_default();
    let last = backlog.values().max().copied().unwrap_or(replayed);
    let elapsed = last.duration_since(replayed).as_secs_f64();
    let store = if state.store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "{}",
        json!({
            "bench": "webhooks",
            "phase": "backlog",
            "store": store,
            "messages": args.messages,
            "delivered_s": round2(elapsed),
            "deliveries_per_s": round2(args.messages as f64 / elapsed),
        })
    );

    // Live: created while the endpoint follows.
    let started = Instant::now();
    let committed = create(&client, base, &token.bearer, args, "live").await?;
    let created = started.elapsed();
    arrived(&arrivals, 2 * args.messages).await?;
    let at = arrivals.at.lock().map(|a| a.clone()).unwrap_or_default();
    receiving.abort();
    let mut lags: Vec<f64> = committed
        .iter()
        .filter_map(|(email, done)| {
            at.get(email)
                .map(|a| a.saturating_duration_since(*done).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&lags, p).map_or(0.0, round3);
    let line = json!({
        "bench": "webhooks",
        "phase": "live",
        "store": store,
        "messages": args.messages,
        "clients": args.clients,
        "created_per_s": round2(args.messages as f64 / created.as_secs_f64()),
        "lag_p50_ms": pct(0.50),
        "lag_p99_ms": pct(0.99),
        "lag_max_ms": lags.last().copied().map_or(0.0, round3),
    });
    println!("{line}");
    Ok(())
}
