//! Prometheus metrics: `GET /metrics` on its own listener (`metrics_addr`), in the
//! Prometheus text format.
//!
//! Two kinds of series make one scrape:
//! - what happens (requests, runs, provider calls, token refreshes) is counted where it
//!   happens through the `metrics` facade, into the process's one Prometheus recorder
//!   ([`install`]: at most once per process, shared by every application in it);
//! - what *is* (SSE clients, pool use, projection lag) is read from this application at
//!   scrape time ([`current`]): one checkpoint and one feed read per projection, and the
//!   counts the pools and the stream registry keep anyway.
//!
//! The listener has no authentication: it is meant for loopback or a scrape network (it
//! is off unless `metrics_addr` is set). No series carries a tenant's data: labels are
//! route templates, HTTP methods and statuses, provider ids, run kinds and outcomes,
//! projection and pool names; never a workspace, integration, token or record id.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use syncledger_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::http_metrics::{HTTP_DURATION, HTTP_REQUESTS};

/// Gauge: live event streams (`GET /v1/events/stream`) open.
pub const SSE_CLIENTS: &str = "syncledger_sse_clients";
/// Gauge: database connections by `pool` and `state` (`idle`, `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "syncledger_db_pool_connections";
/// Gauge: the most connections a `pool` may open.
pub const DB_POOL_MAX: &str = "syncledger_db_pool_max_connections";
/// Gauge: global positions between a reader's checkpoint and the head of the log, by
/// `projection` (each read model, and `nats_publisher`).
pub const LAG_POSITIONS: &str = "syncledger_projection_lag_positions";
/// Gauge: seconds the oldest event a reader has not applied has waited, by `projection`.
pub const LAG_SECONDS: &str = "syncledger_projection_lag_seconds";
/// Gauge: 1 when the last scrape could read the lag, 0 when the store did not answer in
/// time (the lag series are then absent).
pub const LAG_READ_OK: &str = "syncledger_projection_lag_read_ok";
/// Gauge: always 1, labelled with the `version`.
pub const BUILD_INFO: &str = "syncledger_build_info";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric the server exposes: the README lists each, and the dashboard may query only
/// these.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use syncledger_crm::metrics as crm;
use syncledger_engine::metrics as engine;

/// Every metric, in the order the README lists them.
pub const CATALOGUE: [Metric; 17] = [
    metric(
        HTTP_REQUESTS,
        Kind::Counter,
        &["route", "method", "status"],
        "HTTP requests answered, by route template, method and status.",
    ),
    metric(
        HTTP_DURATION,
        Kind::Histogram,
        &["route", "method"],
        "Seconds from a request's arrival to its response head, by route template and method.",
    ),
    metric(
        engine::SYNC_RUNS,
        Kind::Counter,
        &["provider", "kind", "outcome"],
        "Sync runs this process executed to their end, by provider, kind and outcome.",
    ),
    metric(
        engine::SYNC_RUN_DURATION,
        Kind::Histogram,
        &["provider", "kind"],
        "Seconds those sync runs took from start to end.",
    ),
    metric(
        engine::SYNC_RECORDS,
        Kind::Counter,
        &["provider", "kind"],
        "Records those sync runs processed.",
    ),
    metric(
        crm::PROVIDER_REQUESTS,
        Kind::Counter,
        &["provider", "status", "retry"],
        "Provider HTTP requests, by provider, status code (error: no answer) and whether it was a retry.",
    ),
    metric(
        crm::PROVIDER_RATE_LIMITED,
        Kind::Counter,
        &["provider"],
        "429 answers from providers.",
    ),
    metric(
        crm::PROVIDER_PACING_WAIT,
        Kind::Histogram,
        &["provider"],
        "Seconds each paced provider request waited for its turn; the sum is the time spent waiting on pacing.",
    ),
    metric(
        crm::PROVIDER_RETRY_WAIT,
        Kind::Histogram,
        &["provider"],
        "Seconds of backoff before each provider retry (Retry-After included).",
    ),
    metric(
        engine::TOKEN_REFRESHES,
        Kind::Counter,
        &["provider", "outcome"],
        "OAuth token refreshes at the provider: refreshed, rejected (reconnect needed) or failed (tried again later).",
    ),
    metric(
        SSE_CLIENTS,
        Kind::Gauge,
        &[],
        "Live event streams open.",
    ),
    metric(
        DB_POOL_CONNECTIONS,
        Kind::Gauge,
        &["pool", "state"],
        "Database connections by pool (events, feed, any) and state (idle, in_use).",
    ),
    metric(
        DB_POOL_MAX,
        Kind::Gauge,
        &["pool"],
        "The most connections each pool may open.",
    ),
    metric(
        LAG_POSITIONS,
        Kind::Gauge,
        &["projection"],
        "Global log positions between each projection's (and the NATS publisher's) checkpoint and the head; 0 when caught up.",
    ),
    metric(
        LAG_SECONDS,
        Kind::Gauge,
        &["projection"],
        "Seconds the oldest event each projection (and the NATS publisher) has not applied has waited; 0 when caught up.",
    ),
    metric(
        LAG_READ_OK,
        Kind::Gauge,
        &[],
        "1 when this scrape read the lag, 0 when the store did not answer in time.",
    ),
    metric(
        BUILD_INFO,
        Kind::Gauge,
        &["version"],
        "Always 1, labelled with the running version.",
    ),
];

/// Run durations: a second to two hours.
const RUN_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
];
/// Pacing and backoff waits: none to a minute.
const WAIT_BUCKETS: [f64; 9] = [0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];

/// The process's Prometheus recorder, installed on first use (a process has one global
/// recorder; every application in it shares this handle).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in [
                                (engine::SYNC_RUN_DURATION, &RUN_BUCKETS[..]),
                (crm::PROVIDER_PACING_WAIT, &WAIT_BUCKETS[..]),
                (crm::PROVIDER_RETRY_WAIT, &WAIT_BUCKETS[..]),
            ] {
                builder = match builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                {
                    Ok(b) => b,
                    // Only an empty bucket list is refused, and none is.
                    Err(e) => {
                        tracing::error!(error = %e, metric = name, "metric buckets refused");
                        PrometheusBuilder::new()
                    }
                };
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => describe(),
                Err(_) => tracing::warn!(
                    "another metrics recorder is installed; /metrics shows only the gauges read at scrape time"
                ),
            }
            handle
        })
        .clone()
}

/// HELP lines for the metrics the recorder holds.
fn describe() {
    for m in CATALOGUE {
        if m.name == HTTP_REQUESTS || m.name == HTTP_DURATION {
            // Each application's own (`http_metrics`).
            continue;
        }
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
            // Gauges are read at scrape time and described there.
            Kind::Gauge => {}
        }
    }
}

/// How long the scrape may wait for the lag reads.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// What a process's metrics are read from: `serve` has all of them; a `syncledger
/// worker` has its runs' and provider calls' counters (the recorder) and its store
/// pools, but no HTTP requests, streams or projections of its own.
#[derive(Clone)]
pub enum Source {
    Server(AppState),
    Worker(Store),
}

impl Source {
    fn store(&self) -> &Store {
        match self {
            Source::Server(state) => &state.store,
            Source::Worker(store) => store,
        }
    }
}

/// The gauges read from `source` now, in the text format.
async fn gauges(source: &Source) -> String {
    let mut out = Exposition::default();
    out.family(BUILD_INFO);
    out.sample(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    if let Source::Server(state) = source {
        out.family(SSE_CLIENTS);
        out.sample(SSE_CLIENTS, &[], state.streams.open_total() as f64);
    }
    let pools = source.store().pool_use();
    out.family(DB_POOL_CONNECTIONS);
    for p in &pools {
        out.sample(
            DB_POOL_CONNECTIONS,
            &[("pool", p.pool), ("state", "idle")],
            f64::from(p.idle),
        );
        out.sample(
            DB_POOL_CONNECTIONS,
            &[("pool", p.pool), ("state", "in_use")],
            f64::from(p.in_use()),
        );
    }
    out.family(DB_POOL_MAX);
    for p in &pools {
        out.sample(DB_POOL_MAX, &[("pool", p.pool)], f64::from(p.max));
    }
    let Source::Server(state) = source else {
        return out.text;
    };
    let mut readers = syncledger_projections::names();
    if state.nats.is_some() {
        readers.push(syncledger_bus::NATS_PUBLISHER_CHECKPOINT);
    }
    let lags = tokio::time::timeout(
        LAG_TIMEOUT,
        syncledger_projections::lag::lags_of(&state.store, &readers),
    )
    .await;
    let lags = match lags {
        Ok(Ok(lags)) => Some(lags),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the projection lag could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the projection lag was not read within 2 s");
            None
        }
    };
    out.family(LAG_READ_OK);
    out.sample(LAG_READ_OK, &[], if lags.is_some() { 1.0 } else { 0.0 });
    if let Some(lags) = lags {
        let now = chrono::Utc::now();
        out.family(LAG_POSITIONS);
        for l in &lags {
            out.sample(
                LAG_POSITIONS,
                &[("projection", l.projection)],
                l.positions as f64,
            );
        }
        out.family(LAG_SECONDS);
        for l in &lags {
            let behind = l.behind(now).num_milliseconds() as f64 / 1000.0;
            out.sample(LAG_SECONDS, &[("projection", l.projection)], behind);
        }
    }
    out.text
}

/// Text-format lines written by hand, for the gauges read at scrape time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines of a catalogued metric.
    fn family(&mut self, name: &str) {
        if let Some(m) = CATALOGUE.iter().find(|m| m.name == name) {
            let _ = writeln!(self.text, "# HELP {name} {}", escape(m.help, false));
            let _ = writeln!(self.text, "# TYPE {name} {}", m.kind.as_str());
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v, true));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Escapes a HELP text (backslash, newline) or a label value (also double quotes).
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// The metrics listener, bound at build time (so port 0 can be asked for and read back).
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
    handle: PrometheusHandle,
}

impl Listener {
    /// Installs the recorder (once per process) and binds `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        let handle = install();
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Listener {
            listener,
            addr,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts counting the application's requests, and serves `GET /metrics` until
    /// `shutdown` turns true, keeping the recorders' histograms compact meanwhile.
    pub fn spawn(self, state: AppState, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        state.http_metrics.enable();
        self.serve(Source::Server(state), shutdown)
    }

    /// Serves a `syncledger worker`'s `GET /metrics` until `shutdown` turns true.
    pub fn spawn_for_worker(self, store: Store, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        self.serve(Source::Worker(store), shutdown)
    }

    fn serve(self, source: Source, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let http = match &source {
            Source::Server(state) => Some(state.http_metrics.clone()),
            Source::Worker(_) => None,
        };
        let scrape = Scrape {
            source,
            handle: self.handle.clone(),
        };
        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(scrape);
        let handle = self.handle;
        tokio::spawn(async move {
            let mut stop = shutdown.clone();
            let upkeep = async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            handle.run_upkeep();
                            if let Some(http) = &http {
                                http.upkeep();
                            }
                        }
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            };
            let served = std::future::IntoFuture::into_future(
                axum::serve(self.listener, app.into_make_service()).with_graceful_shutdown(
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                ),
            );
            let (served, ()) = tokio::join!(served, upkeep);
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        })
    }
}

#[derive(Clone)]
struct Scrape {
    source: Source,
    handle: PrometheusHandle,
}

async fn serve_metrics(State(scrape): State<Scrape>) -> Response {
    let mut body = match &scrape.source {
        Source::Server(state) => state.http_metrics.render(),
        Source::Worker(_) => String::new(),
    };
    for part in [scrape.handle.render(), gauges(&scrape.source).await] {
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&part);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_names_each_metric_once_with_the_prefix() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for m in CATALOGUE {
            assert!(m.name.starts_with("syncledger_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
        }
        for name in crm::ALL.iter().chain(engine::ALL.iter()) {
            assert!(CATALOGUE.iter().any(|m| m.name == *name), "{name}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("x", &[("a", "q\"b\\n\n")], 1.5);
        assert_eq!(out.text, "x{a=\"q\\\"b\\\\n\\n\"} 1.5\n");
    }
}
