//! `syncledger bench live`: how long a committed event takes to reach a client of the
//! live stream (`GET /v1/events/stream`) while a full HubSpot import runs.
//!
//! The server runs in this process on scratch storage, as `serve` does (its read-model
//! runner, sink, webhooks and the embedded bus follower, woken by each commit of the
//! import's run). One client holds the workspace's stream open over HTTP while the
//! import of N records per object type runs through the API. For every event of the
//! workspace committed after the stream opened, the latency is the instant the client
//! parsed it less the instant the event was written (its `recorded_at`, stamped by the
//! append that committed it; one machine, one clock). One JSON line: events expected
//! and received (a client too slow for the bus's buffer loses events; they are
//! counted, not hidden), latency p50/p99/max, and the import's own rate.
//!
//! Meanwhile a second client edits one app record every `OWN_EFFECT_EVERY` and reads the
//! records list (`GET /v1/records?q=`, the read model) until the edit shows there: the
//! time from sending the edit to seeing it listed is a command's own effect under the
//! import (`own_effect_p50_ms`, `_p99_ms`), and `own_effect_late` counts the edits whose
//! first list read after the answer did not show them yet.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use syncledger_domain::Plan;
use syncledger_store::Position;
use tokio::sync::watch;

use super::{quantile_ms, round2};
use crate::config::Settings;

#[derive(clap::Args, Debug, Clone)]
pub struct LiveBenchArgs {
    /// Records per object type (contacts and companies) the import brings in.
    #[arg(long, default_value_t = 20_000)]
    pub records: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// How long the client waits, once the import has ended, for the import's last event
/// before the bench fails (it arrives at once unless the stream is broken).
const LAST_EVENT: Duration = Duration::from_secs(60);

/// How often the second client edits its record while the import runs.
const OWN_EFFECT_EVERY: Duration = Duration::from_millis(50);
/// How long an edit may take to show in the list before the bench fails.
const OWN_EFFECT_BOUND: Duration = Duration::from_secs(30);

pub async fn run(base: &Settings, args: LiveBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.records >= 1, "--records must be at least 1");
    // The import talks to a sandbox on loopback, unpaced.
    let base = Settings {
        provider_pacing: false,
        ..super::in_process(base)?
    };
    let url = args.database_url.clone();
    super::serving_on_scratch(base, url.as_deref(), |state, base| async move {
        measure(&state, &base, &args).await
    })
    .await
}

/// One event as the client saw it.
struct Seen {
    at: Position,
    latency: Duration,
}

async fn measure(
    state: &crate::state::AppState,
    base: &str,
    args: &LiveBenchArgs,
) -> anyhow::Result<()> {
    let (workspace, token) =
        syncledger_engine::workspaces::create_workspace(&state.store, "bench", Plan::Enterprise)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = reqwest::Client::new();
    let stream = client
        .get(format!("{base}/v1/events/stream"))
        .bearer_auth(&token.bearer)
        .send()
        .await?;
    anyhow::ensure!(
        stream.status().is_success(),
        "GET /v1/events/stream: {}",
        stream.status()
    );
    // The stream is subscribed once its answer has begun: what commits after this head
    // must reach it.
    let opened = state.store.feed().head().await?;
    let (done, finished) = watch::channel(None::<Expected>);
    let reader = tokio::spawn(read(stream, opened, finished));

    let (importing, imported) = watch::channel(false);
    let editor = tokio::spawn(own_effects(
        client.clone(),
        base.to_string(),
        token.bearer.clone(),
        imported,
    ));
    let started = Instant::now();
    let import = super::http::import(state, &client, base, &token.bearer, args.records).await;
    let import_s = started.elapsed().as_secs_f64();
    let _ = importing.send(true);
    let own = editor.await.context("the editing client")??;
    import?;
    let expected = events_of(state, &workspace, opened).await?;
    let _ = done.send(Some(expected));
    let mut latencies: Vec<Duration> = reader
        .await
        .context("the stream's reader")??
        .into_iter()
        .map(|s| s.latency)
        .collect();
    let expected = expected.count;
    latencies.sort_unstable();
    let store = if state.store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "{}",
        json!({
            "bench": "live", "store": store, "records_per_type": args.records,
            "import_s": round2(import_s),
            "import_records_per_s": round2((args.records * 2) as f64 / import_s),
            "events_expected": expected, "events_received": latencies.len(),
            "events_lost": expected.saturating_sub(latencies.len()),
            "p50_ms": quantile_ms(&latencies, 0.50), "p99_ms": quantile_ms(&latencies, 0.99),
            "max_ms": quantile_ms(&latencies, 1.0),
            "own_effects": own.latencies.len(), "own_effect_late": own.late,
            "own_effect_p50_ms": quantile_ms(&own.latencies, 0.50),
            "own_effect_p99_ms": quantile_ms(&own.latencies, 0.99),
            "own_effect_max_ms": quantile_ms(&own.latencies, 1.0),
        })
    );
    Ok(())
}

/// The edits' times to show in the list (sorted), and how many were not there yet at
/// the first read after their answer.
struct OwnEffects {
    latencies: Vec<Duration>,
    late: usize,
}

/// Creates an app contact, then until `done` edits its job title every
/// `OWN_EFFECT_EVERY` and reads the list until the new title shows.
async fn own_effects(
    client: reqwest::Client,
    base: String,
    bearer: String,
    mut done: watch::Receiver<bool>,
) -> anyhow::Result<OwnEffects> {
    let email = "own-effect@bench.invalid";
    let created: Value = client
        .post(format!("{base}/v1/records"))
        .bearer_auth(&bearer)
        .json(&json!({"entity": "contacts", "fields": {"email": email, "jobtitle": "edit 0"}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"]
        .as_str()
        .context("the created record's id")?
        .to_string();
    let mut own = OwnEffects {
        latencies: Vec::new(),
        late: 0,
    };
    let mut tick = tokio::time::interval(OWN_EFFECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let title = format!("edit {n}");
        let sent = Instant::now();
        client
            .patch(format!("{base}/v1/records/{id}"))
            .bearer_auth(&bearer)
            .json(&json!({"fields": {"jobtitle": title}}))
            .send()
            .await?
            .error_for_status()?;
        let mut first = true;
        loop {
            let page: Value = client
                .get(format!("{base}/v1/records"))
                .query(&[("entity", "contacts"), ("q", email)])
                .bearer_auth(&bearer)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let shown = page["data"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["id"] == id.as_str() && r["fields"]["jobtitle"]["value"] == title.as_str()
                })
            });
            if shown {
                break;
            }
            if first {
                own.late += 1;
                first = false;
            }
            anyhow::ensure!(
                sent.elapsed() < OWN_EFFECT_BOUND,
                "an edit did not show in the records list within {OWN_EFFECT_BOUND:?}"
            );
        }
        own.latencies.push(sent.elapsed());
    }
    own.latencies.sort_unstable();
    Ok(own)
}

/// What the stream must deliver: the workspace's events committed after it opened, and
/// the last one's place.
#[derive(Clone, Copy)]
struct Expected {
    count: usize,
    last: Position,
}

/// The workspace's events in the feed after `after`.
async fn events_of(
    state: &crate::state::AppState,
    workspace: &str,
    mut after: Position,
) -> anyhow::Result<Expected> {
    let feed = state.store.feed();
    let mut expected = Expected {
        count: 0,
        last: after,
    };
    loop {
        let page = feed.read(after, 10_000).await?;
        let Some(end) = page.last() else {
            return Ok(expected);
        };
        after = end.position;
        for e in page.iter().filter(|e| e.workspace_id() == workspace) {
            expected.count += 1;
            expected.last = e.position;
        }
    }
}

/// Reads the stream's events committed after `opened`, each with its latency, until the
/// last one `finished` names has come. The stream delivers in commit order and a client
/// that falls behind loses the oldest events, never the newest, so once the last has
/// come nothing more will.
async fn read(
    mut stream: reqwest::Response,
    opened: Position,
    mut finished: watch::Receiver<Option<Expected>>,
) -> anyhow::Result<Vec<Seen>> {
    let mut seen = Vec::new();
    let mut buffer = String::new();
    let mut newest = opened;
    let mut deadline = None;
    loop {
        if let Some(expected) = *finished.borrow() {
            if newest >= expected.last {
                return Ok(seen);
            }
        }
        let chunk = match deadline {
            // Before the import has ended: whatever comes first.
            None => tokio::select! {
                chunk = stream.chunk() => chunk?,
                _ = finished.changed() => {
                    deadline = Some(tokio::time::Instant::now() + LAST_EVENT);
                    continue;
                }
            },
            Some(end) => tokio::time::timeout_at(end, stream.chunk())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the import's last event never reached the stream")
                })??,
        };
        let Some(chunk) = chunk else {
            anyhow::bail!("the stream ended before the import's last event");
        };
        let now = Utc::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(event) = parse(&frame, now).filter(|e| e.at > opened) {
                newest = newest.max(event.at);
                seen.push(event);
            }
        }
    }
}

/// An SSE frame's event: its place and how long it took to arrive at `now`. Comments
/// (keep-alives) and frames without JSON data are skipped.
fn parse(frame: &str, now: DateTime<Utc>) -> Option<Seen> {
    let data: String = frame
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    let event: Value = serde_json::from_str(&data).ok()?;
    let recorded: DateTime<Utc> = event["recorded_at"].as_str()?.parse().ok()?;
    Some(Seen {
        at: Position {
            tx: event["tx"].as_i64().unwrap_or(0),
            pos: event["position"].as_i64()?,
        },
        latency: (now - recorded).to_std().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_frame_gives_its_place_and_latency() {
        let now = "2026-12-07T10:00:00.250Z".parse().unwrap_or_default();
        let frame = "id: 7:42\nevent: RecordCreated\ndata: {\"position\":42,\"tx\":7,\
                     \"recorded_at\":\"2026-12-07T10:00:00.200Z\"}\n\n";
        let seen = parse(frame, now).map(|s| (s.at.tx, s.at.pos, s.latency.as_millis()));
        assert_eq!(seen, Some((7, 42, 50)));
        assert!(parse(": keep-alive\n\n", now).is_none());
    }
}
