//! `GET /metrics` on its own listener: request counts and latencies per route template,
//! sync runs, provider calls, 429s and pacing waits, SSE clients, pool use and projection
//! lag move with real activity; nothing in a scrape names a tenant; the README lists every
//! metric and the Grafana dashboard queries only metrics the server exposes.
//!
//! The process's recorder is shared by every test in this binary, so the sync-run and
//! provider series are told apart by provider: each test here uses a provider of the
//! catalogue that no other test connects (`dubsado` on SQLite, `studio_ninja` on
//! PostgreSQL, `iris_works` with NATS). The HTTP series are each server's own.

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use syncledger_api::metrics::{Kind, CATALOGUE};
use syncledger_api::Settings;
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};
use syncledger_testkit::app::{
    connect, on_both_backends, require_nats, send, wait_run, Backend, Options, Sse, TestApp,
    TIMEOUT,
};
use syncledger_testkit::wait::wait_until;

on_both_backends!(requests_runs_and_streams_move_their_series);

/// Records the generic sandbox seeds per entity.
const RECORDS: usize = 30;

fn with_metrics(settings: Settings) -> Settings {
    Settings {
        metrics_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..settings
    }
}

async fn requests_runs_and_streams_move_their_series(backend: Backend) -> anyhow::Result<()> {
    let opts = Options {
        tweak: with_metrics,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let provider = match backend {
        Backend::Sqlite => "dubsado",
        Backend::Postgres => "studio_ninja",
    };

    // Requests: counted by route template, method and status, with their latency.
    let before = Scrape::of(&app).await?;
    for _ in 0..3 {
        app.get("/v1/integrations", &app.admin)
            .await?
            .expect(StatusCode::OK);
    }
    app.get("/v1/integrations", "")
        .await?
        .expect(StatusCode::UNAUTHORIZED);
    let brew = Method::from_bytes(b"BREW")?;
    send(app.request(brew, "/v1/integrations", &app.admin)).await?;
    app.get("/v1/no/such/endpoint", &app.admin)
        .await?
        .expect(StatusCode::NOT_FOUND);
    let record = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": "ada@example.com"}}),
        )
        .await?;
    let record_id = record.str("id")?;
    app.get(&format!("/v1/records/{record_id}"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    let after = Scrape::of(&app).await?;
    let requests = |route: &str, method: &str, status: &str| {
        let labels = [("route", route), ("method", method), ("status", status)];
        after.value("syncledger_http_requests_total", &labels)
            - before.value("syncledger_http_requests_total", &labels)
    };
    assert_eq!(requests("/v1/integrations", "GET", "200"), 3.0);
    assert_eq!(requests("/v1/integrations", "GET", "401"), 1.0);
    assert_eq!(requests("/v1/integrations", "other", "405"), 1.0);
    assert_eq!(requests("unmatched", "GET", "404"), 1.0);
    assert_eq!(requests("/v1/records/{id}", "GET", "200"), 1.0);
    let latency = |suffix: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("route", "/v1/integrations"), ("method", "GET")];
        labels.extend_from_slice(extra);
        let name = format!("syncledger_http_request_duration_seconds{suffix}");
        after.value(&name, &labels) - before.value(&name, &labels)
    };
    assert_eq!(latency("_count", &[]), 4.0);
    assert_eq!(latency("_bucket", &[("le", "+Inf")]), 4.0);
    assert!(latency("_sum", &[]) > 0.0);
    assert!(
        after
            .series("syncledger_http_requests_total")
            .all(|s| !s.labels["route"].contains(&record_id)),
        "a raw path in a route label"
    );

    // A live event stream is counted while it is open.
    assert_eq!(after.value("syncledger_sse_clients", &[]), 0.0);
    let stream = Sse::open(&app, &app.admin).await?;
    let streaming = Scrape::of(&app).await?;
    assert_eq!(streaming.value("syncledger_sse_clients", &[]), 1.0);
    drop(stream);

    // A sync run: counted by provider, kind and outcome, with its duration, its records,
    // its provider requests (a 429 among them, retried) and its pacing waits.
    let sandbox = Sandbox::start_generic(GenericSandboxConfig {
        records: RECORDS,
        ..GenericSandboxConfig::default()
    })
    .await?;
    let integration = connect_api_key(&app, provider, &sandbox).await?;
    let fault = json!({"kind": "status", "status": 429, "count": 1,
        "path_prefix": "/cursor/contacts"});
    send(
        reqwest::Client::new()
            .post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&fault),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);
    let before = Scrape::of(&app).await?;
    let started = app
        .post(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    started.expect(StatusCode::CREATED);
    let run = wait_run(&app, &started.str("id")?).await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["stats"]["processed"], RECORDS as u64, "{run}");
    let after = Scrape::of(&app).await?;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let by_provider = [("provider", provider), ("kind", "full")];
    assert_eq!(
        delta(
            "syncledger_sync_runs_total",
            &[
                ("provider", provider),
                ("kind", "full"),
                ("outcome", "completed")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta("syncledger_sync_run_duration_seconds_count", &by_provider),
        1.0
    );
    assert_eq!(
        delta("syncledger_sync_records_processed_total", &by_provider),
        RECORDS as f64
    );
    let provider_requests = |status: &str, retry: &str| {
        delta(
            "syncledger_provider_requests_total",
            &[("provider", provider), ("status", status), ("retry", retry)],
        )
    };
    assert_eq!(provider_requests("429", "false"), 1.0);
    assert!(provider_requests("200", "true") >= 1.0, "the 429's retry");
    assert!(provider_requests("200", "false") >= 1.0, "the later pages");
    assert_eq!(
        delta(
            "syncledger_provider_rate_limited_total",
            &[("provider", provider)]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "syncledger_provider_retry_wait_seconds_count",
            &[("provider", provider)]
        ),
        1.0
    );
    // Every request of the run was paced (the catalogue's 60 a minute for this provider).
    let requests_sent = |scrape: &Scrape| -> f64 {
        scrape
            .series("syncledger_provider_requests_total")
            .filter(|s| s.labels.get("provider").map(String::as_str) == Some(provider))
            .map(|s| s.value)
            .sum()
    };
    let sent = requests_sent(&after) - requests_sent(&before);
    assert!(sent >= 3.0, "{sent} requests");
    assert_eq!(
        delta(
            "syncledger_provider_pacing_wait_seconds_count",
            &[("provider", provider)]
        ),
        sent
    );

    // The gauges read at scrape time: every projection caught up (the run's view waits
    // for that), the pools as configured.
    assert_eq!(after.value("syncledger_projection_lag_read_ok", &[]), 1.0);
    let projections = syncledger_projections::names();
    for p in &projections {
        let labels = [("projection", *p)];
        assert_eq!(
            after.get("syncledger_projection_lag_positions", &labels),
            Some(0.0),
            "{p}"
        );
        assert_eq!(
            after.get("syncledger_projection_lag_seconds", &labels),
            Some(0.0),
            "{p}"
        );
    }
    assert_eq!(
        after.series("syncledger_projection_lag_seconds").count(),
        projections.len(),
        "no NATS publisher without NATS"
    );
    for pool in ["events", "feed", "any"] {
        let max = after
            .get("syncledger_db_pool_max_connections", &[("pool", pool)])
            .with_context(|| format!("the {pool} pool's size"))?;
        let idle = after.value(
            "syncledger_db_pool_connections",
            &[("pool", pool), ("state", "idle")],
        );
        let busy = after.value(
            "syncledger_db_pool_connections",
            &[("pool", pool), ("state", "in_use")],
        );
        assert!(
            max >= 1.0 && idle + busy <= max,
            "{pool}: {idle} + {busy} of {max}"
        );
    }
    if backend == Backend::Postgres {
        // The test app's database_max_connections.
        assert_eq!(
            after.get("syncledger_db_pool_max_connections", &[("pool", "any")]),
            Some(8.0)
        );
    }
    assert_eq!(
        after.get(
            "syncledger_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Only catalogued metrics, each with its catalogued type and labels; no tenant's ids.
    after.assert_catalogued()?;
    for id in [&app.workspace_id, &integration, &app.admin_id, &record_id] {
        assert!(!after.text.contains(id.as_str()), "{id} in the scrape");
    }
    assert!(!after.text.contains(&app.admin), "a token in the scrape");

    sandbox.shutdown().await;
    app.finish().await
}

/// With NATS the publisher's lag is exposed beside the projections', and reaches 0 once
/// it has published every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nats_publisher_lag_is_exposed() -> anyhow::Result<()> {
    let Some(nats_url) = require_nats().await else {
        return Ok(());
    };
    let opts = Options {
        nats_url: Some(nats_url),
        tweak: with_metrics,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, opts).await? else {
        return Ok(());
    };
    app.post(
        "/v1/records",
        &app.admin,
        json!({"entity": "contacts", "fields": {"email": "grace@example.com"}}),
    )
    .await?
    .expect(StatusCode::CREATED);
    let first = Scrape::of(&app).await?;
    let publisher = [("projection", "nats_publisher")];
    assert!(first
        .get("syncledger_projection_lag_positions", &publisher)
        .is_some());
    assert!(first
        .get("syncledger_projection_lag_seconds", &publisher)
        .is_some());
    wait_until(TIMEOUT, "the NATS publisher's lag is 0", || async {
        Scrape::of(&app).await.is_ok_and(|s| {
            s.get("syncledger_projection_lag_positions", &publisher) == Some(0.0)
                && s.get("syncledger_projection_lag_seconds", &publisher) == Some(0.0)
        })
    })
    .await;
    app.finish().await
}

/// A token refresh at the provider is counted by provider and outcome. (HubSpot is shared
/// with other tests of this binary, whose refreshes only add: the count must grow by at
/// least the one this run makes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_refreshes_are_counted() -> anyhow::Result<()> {
    let opts = Options {
        tweak: with_metrics,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, opts).await? else {
        return Ok(());
    };
    let sandbox = syncledger_testkit::sandbox::hubspot(5).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    // Every access token the CRM issued stops working: the run's first call gets a 401.
    send(reqwest::Client::new().post(format!("{}/_sandbox/tokens/expire", sandbox.base_url())))
        .await?
        .expect(StatusCode::NO_CONTENT);
    let refreshed = [("provider", "hubspot"), ("outcome", "refreshed")];
    let before = Scrape::of(&app)
        .await?
        .value("syncledger_token_refreshes_total", &refreshed);
    let started = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    started.expect(StatusCode::CREATED);
    let run = wait_run(&app, &started.str("id")?).await?;
    assert_eq!(run["status"], "completed", "{run}");
    let after = Scrape::of(&app).await?;
    assert!(
        after.value("syncledger_token_refreshes_total", &refreshed) >= before + 1.0,
        "no refresh counted"
    );
    sandbox.shutdown().await;
    app.finish().await
}

fn with_metrics_and_a_one_second_timeout(settings: Settings) -> Settings {
    Settings {
        request_timeout_secs: 1,
        ..with_metrics(settings)
    }
}

/// A request the server gives up on (`request_timeout_secs`) is answered 408 with the
/// usual JSON error and counted like any other answer. The timeout used to wrap the
/// whole application from outside, so its 408s had an empty body, no access log line
/// and no count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_timeout_is_counted_and_answered_in_json() -> anyhow::Result<()> {
    let opts = Options {
        tweak: with_metrics_and_a_one_second_timeout,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, opts).await? else {
        return Ok(());
    };
    let sandbox = syncledger_testkit::sandbox::hubspot(5).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    // The CRM takes 5 s to answer the connection test; the server waits 1 s.
    let fault = json!({"kind": "slow", "millis": 5_000, "count": 1, "path_prefix": "/"});
    send(
        reqwest::Client::new()
            .post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&fault),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);
    let route = [
        ("route", "/v1/integrations/{id}/test"),
        ("method", "POST"),
        ("status", "408"),
    ];
    let before = Scrape::of(&app)
        .await?
        .value("syncledger_http_requests_total", &route);
    let answer = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    answer.expect(StatusCode::REQUEST_TIMEOUT);
    assert_eq!(answer.body["error"]["code"], "timeout", "{}", answer.text);
    let after = Scrape::of(&app)
        .await?
        .value("syncledger_http_requests_total", &route);
    assert_eq!(after - before, 1.0);
    sandbox.shutdown().await;
    app.finish().await
}

/// Without `metrics_addr` nothing listens and the API has no `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metrics_unless_configured() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    assert!(app.metrics.is_none());
    assert!(app.scrape().await.is_err());
    app.get("/metrics", &app.admin)
        .await?
        .expect(StatusCode::NOT_FOUND);
    app.finish().await
}

/// The README's Metrics table lists every metric of the catalogue with its type and
/// labels.
#[test]
fn the_readme_lists_every_metric() {
    let readme = include_str!("../../../README.md");
    for m in CATALOGUE {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", m.name)))
            .unwrap_or_else(|| panic!("no README row for {}", m.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells.get(2).copied(), Some(m.kind.as_str()), "{row}");
        let labels: BTreeSet<&str> = cells
            .get(3)
            .copied()
            .unwrap_or_default()
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(labels, m.labels.iter().copied().collect(), "{row}");
    }
}

/// The Grafana dashboard is valid dashboard JSON whose queries name only metrics the
/// server exposes, and every one of them.
#[test]
fn the_dashboard_queries_exactly_the_exposed_metrics() -> anyhow::Result<()> {
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../deploy/grafana-dashboard.json"))?;
    assert_eq!(dashboard["title"], "syncledger");
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let panels = dashboard["panels"].as_array().context("panels")?;
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut queries = Vec::new();
    for panel in panels {
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{panel}");
        let targets = panel["targets"].as_array().context("targets")?;
        assert!(!targets.is_empty(), "{panel}");
        for t in targets {
            queries.push(t["expr"].as_str().context("expr")?.to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .context("templating")?
    {
        if let Some(q) = variable["query"]["query"].as_str() {
            queries.push(q.to_string());
        }
    }
    let mut used = BTreeSet::new();
    for q in &queries {
        for name in metric_names(q) {
            let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                CATALOGUE
                    .iter()
                    .any(|m| m.name == base && m.kind == Kind::Histogram)
                    .then(|| base.to_string())
            });
            let base = match histogram {
                Some(base) => base,
                None => {
                    // A histogram has no series of its bare name.
                    assert!(
                        CATALOGUE
                            .iter()
                            .any(|m| m.name == name && m.kind != Kind::Histogram),
                        "{name} (in {q}) is not a metric the server exposes"
                    );
                    name
                }
            };
            used.insert(base);
        }
    }
    let all: BTreeSet<String> = CATALOGUE.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(used, all, "the dashboard shows every metric");
    Ok(())
}

/// The `syncledger_…` identifiers in a query.
fn metric_names(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("syncledger_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Creates an integration of a catalogue provider described by a spec for the generic
/// sandbox, with an API key, and tests its connection.
async fn connect_api_key(
    app: &TestApp,
    provider: &str,
    sandbox: &Sandbox,
) -> anyhow::Result<String> {
    let spec = json!({
        "name": "Metrics CRM",
        "base_url": sandbox.base_url(),
        "auth": {"type": "api_key", "header": "X-Api-Key"},
        "contacts": {
            "list": {
                "path": "/cursor/contacts",
                "records_path": "data.items",
                "id_path": "id",
                "updated_at_path": "updated",
                "fields": {"first_name": "attributes.first_name", "email": "attributes.email"}
            },
            "pagination": {"type": "cursor", "param": "cursor", "cursor_path": "meta.next",
                           "limit_param": "limit", "limit": 10}
        }
    });
    let body = json!({"provider": provider, "name": format!("{provider} metrics"), "spec": spec,
        "sync_config": {"direction": "pull", "frequency": "manual", "entities": ["contacts"],
                        "conflict_strategy": "crm_wins"}});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let mappings = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "pull"},
        {"crm_field": "first_name", "app_field": "first_name", "direction": "pull"}
    ]});
    let path = format!("/v1/integrations/{id}/mappings/contacts");
    send(app.request(Method::PUT, &path, &app.admin).json(&mappings))
        .await?
        .expect(StatusCode::OK);
    app.set_api_key(&app.admin, &id, &GenericSandboxConfig::default().api_key)
        .await?;
    let tested = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(tested.expect(StatusCode::OK)["ok"], true, "{}", tested.text);
    Ok(id)
}

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed: its samples and the `# TYPE` of each family.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    async fn of(app: &TestApp) -> anyhow::Result<Scrape> {
        Scrape::parse(app.scrape().await?)
    }

    fn parse(text: String) -> anyhow::Result<Scrape> {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") {
                    let name = words.next().context("a TYPE line's name")?;
                    let kind = words.next().context("a TYPE line's type")?;
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        bail!("{name} has two TYPE lines");
                    }
                }
                continue;
            }
            samples.push(parse_sample(line).with_context(|| format!("line {line:?}"))?);
        }
        Ok(Scrape {
            text,
            samples,
            types,
        })
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sample of `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.series(name)
            .find(|s| s.labels == want)
            .map(|s| s.value)
    }

    /// As [`Scrape::get`], 0 when absent (a counter not incremented yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every family is in the catalogue with its type, every sample has its labels.
    fn assert_catalogued(&self) -> anyhow::Result<()> {
        for (family, kind) in &self.types {
            let m = CATALOGUE
                .iter()
                .find(|m| m.name == family)
                .with_context(|| format!("{family} is exposed but not catalogued"))?;
            assert_eq!(m.kind.as_str(), kind, "{family}");
        }
        for s in &self.samples {
            let (family, extra) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = s.name.strip_suffix(suffix)?;
                    (self.types.get(base).map(String::as_str) == Some("histogram"))
                        .then_some((base, *suffix == "_bucket"))
                })
                .unwrap_or((s.name.as_str(), false));
            let m = CATALOGUE
                .iter()
                .find(|m| m.name == family)
                .with_context(|| format!("{} is exposed but not catalogued", s.name))?;
            let mut labels: BTreeSet<&str> = m.labels.iter().copied().collect();
            if extra {
                labels.insert("le");
            }
            let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
            assert_eq!(got, labels, "{}", s.name);
        }
        Ok(())
    }
}

/// `name{k="v",…} value` (a timestamp after the value is ignored).
fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("a value")?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' || c.is_whitespace() {
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = body[key_start..key_end].trim().to_string();
            anyhow::ensure!(chars.next().map(|(_, c)| c) == Some('"'), "a quoted value");
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => bail!("an escape at the end"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => bail!("an unterminated label value"),
                }
            }
            anyhow::ensure!(labels.insert(key, value).is_none(), "a label twice");
        }
        let end = end.context("a closing brace")?;
        rest = &body[end + 1..];
    }
    let value = rest.split_whitespace().next().context("a value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse()?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}
