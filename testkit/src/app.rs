//! A running API on a fresh database, and small tools for talking to it.
//!
//! Every test spawns its own [`TestApp`]: a new SQLite directory or a new PostgreSQL
//! database, a server on a free port, a workspace and its admin token. `finish` stops the
//! server and drops the database; if a test fails first, `PgTestDb`'s `Drop` still does.

use crate::db::{postgres_store, PgTestDb};
pub use crate::nats::require_nats;
pub use crate::random_hex;
pub use crate::sandbox::approve;
use crate::wait::wait_until;
use anyhow::{anyhow, bail, Context};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use syncledger_api::config::Environment;
use syncledger_api::state::AppState;
use syncledger_api::{Application, Settings};
use syncledger_domain::Plan;
use syncledger_engine::workspaces;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long any single wait in these tests may take before it counts as a failure.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod sqlite { #[tokio::test] fn name() }` and `mod postgres { … }` for each
/// `async fn name(backend: Backend) -> anyhow::Result<()>` of the calling module.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() -> anyhow::Result<()> {
                    super::$test($crate::app::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() -> anyhow::Result<()> {
                    super::$test($crate::app::Backend::Postgres).await
                }
            )+
        }
    };
}
pub use crate::on_both_backends;

pub struct Options {
    pub plan: Plan,
    pub rate_limit_per_minute: u32,
    pub nats_url: Option<String>,
    /// Client-side pacing of provider requests (on, as in production, unless a test
    /// needs requests as fast as its own CRM answers them).
    pub provider_pacing: bool,
    /// The NATS (stream, subject prefix) to publish to, to share one with another app;
    /// `None` gives the app a fresh pair.
    pub nats_stream: Option<(String, String)>,
    /// Development by default: the tests drive sandboxes on loopback with the
    /// sandbox OAuth apps, on SQLite and PostgreSQL alike (a database URL alone
    /// would mean production).
    pub environment: Environment,
    /// Last changes to the settings (provider apps, outbound policy, ...).
    pub tweak: fn(Settings) -> Settings,
    /// Run on this PostgreSQL database (a server the test owns) instead of a fresh one
    /// on the shared server or SQLite.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plan: Plan::Enterprise,
            rate_limit_per_minute: Settings::default().rate_limit_per_minute,
            nats_url: None,
            provider_pacing: true,
            nats_stream: None,
            environment: Environment::Development,
            tweak: |settings| settings,
            database_url: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub data_dir: TempDir,
    /// The workspace created at start, its admin token's id and bearer string.
    pub workspace_id: String,
    pub admin_id: String,
    pub admin: String,
    /// The base URL of `GET /metrics` when the settings name a `metrics_addr`.
    pub metrics: Option<String>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    pg: Option<PgTestDb>,
}

/// A workspace made through the service layer, with its admin token.
pub struct Tenant {
    pub id: String,
    pub admin_id: String,
    pub admin: String,
}

fn api_error(e: syncledger_engine::EngineError) -> anyhow::Error {
    let e = syncledger_api::error::ApiError::from(e);
    anyhow!("{} {}: {}", e.status, e.code, e.message)
}

impl TestApp {
    /// `None` when the backend is PostgreSQL and it is unreachable outside CI.
    pub async fn spawn(backend: Backend) -> anyhow::Result<Option<TestApp>> {
        Self::spawn_with(backend, Options::default()).await
    }

    /// A server configured as in production (no sandbox apps, no loopback providers),
    /// then changed by `tweak`.
    pub async fn spawn_production(
        backend: Backend,
        tweak: fn(Settings) -> Settings,
    ) -> anyhow::Result<Option<TestApp>> {
        let opts = Options {
            environment: Environment::Production,
            tweak,
            ..Options::default()
        };
        Self::spawn_with(backend, opts).await
    }

    pub async fn spawn_with(backend: Backend, opts: Options) -> anyhow::Result<Option<TestApp>> {
        let data_dir = crate::db::private_tempdir();
        let pg = match backend {
            _ if opts.database_url.is_some() => None,
            Backend::Sqlite => None,
            Backend::Postgres => {
                let Some((store, db)) = postgres_store().await else {
                    return Ok(None);
                };
                // The test only needs the migrated database; the app opens its own pools.
                store.close().await;
                Some(db)
            }
        };
        let (nats_stream, nats_subject_prefix) = match (&opts.nats_url, opts.nats_stream) {
            (None, _) => (None, None),
            (Some(_), Some((stream, prefix))) => (Some(stream), Some(prefix)),
            // A fresh stream per test app, so that no test sees another's events.
            (Some(_), None) => (
                Some(format!("SLTEST_{}", uuid::Uuid::new_v4().simple())),
                Some(format!("sltest.{}", uuid::Uuid::new_v4().simple())),
            ),
        };
        let settings = Settings {
            addr: "127.0.0.1:0".parse()?,
            data_dir: data_dir.path().to_path_buf(),
            database_url: opts
                .database_url
                .clone()
                .or_else(|| pg.as_ref().map(|db| db.url.clone()))
                .map(SecretString::from),
            database_max_connections: 8,
            nats_stream,
            nats_subject_prefix,
            nats_url: opts.nats_url,
            rate_limit_per_minute: opts.rate_limit_per_minute,
            provider_pacing: opts.provider_pacing,
            environment: Some(opts.environment),
            ..Settings::default()
        };
        let settings = (opts.tweak)(settings);
        let app = Application::build(settings)
            .await
            .context("build the application")?;
        let base = format!("http://{}", app.addr());
        let metrics = app.metrics_addr().map(|a| format!("http://{a}"));
        let state = app.state();
        let (shutdown, rx) = watch::channel(false);
        let server = tokio::spawn(app.run(rx));
        let (workspace_id, token) = workspaces::create_workspace(&state.store, "Acme", opts.plan)
            .await
            .map_err(api_error)?;
        let app = TestApp {
            base,
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            state,
            data_dir,
            workspace_id,
            admin_id: token.id,
            admin: token.bearer,
            metrics,
            shutdown,
            server: Some(server),
            pg,
        };
        app.wait_ready().await;
        Ok(Some(app))
    }

    async fn wait_ready(&self) {
        let (client, url) = (self.client.clone(), self.url("/v1/health"));
        wait_until(TIMEOUT, "the API answers /v1/health", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// Stop the server (it must stop within the timeout), close the pools, drop the database.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            match tokio::time::timeout(TIMEOUT, server).await {
                Ok(joined) => joined.context("server task")?.context("server")?,
                Err(_) => {
                    abort.abort();
                    bail!("the server did not stop within {TIMEOUT:?} of the shutdown signal");
                }
            }
        }
        self.state.store.close().await;
        if let Some(db) = self.pg.take() {
            db.cleanup().await;
        }
        Ok(())
    }

    /// `GET /metrics`, asserting 200 and the text format's content type; the body.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        let base = self
            .metrics
            .as_ref()
            .context("no metrics listener: set metrics_addr in the settings")?;
        let resp = send(self.client.get(format!("{base}/metrics"))).await?;
        resp.expect(StatusCode::OK);
        let ctype = resp
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        anyhow::ensure!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        Ok(resp.text)
    }

    /// The URL of the test's PostgreSQL database, if it runs on one.
    pub fn pg_url(&self) -> Option<String> {
        self.pg.as_ref().map(|db| db.url.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with `Authorization: Bearer <token>` (none if `token` is empty).
    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        if token.is_empty() {
            rb
        } else {
            rb.bearer_auth(token)
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Resp> {
        send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Resp> {
        send(self.request(Method::POST, path, token).json(&body)).await
    }

    /// POST without a body (pause, resume).
    pub async fn post_empty(&self, path: &str, token: &str) -> anyhow::Result<Resp> {
        send(self.request(Method::POST, path, token)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Resp> {
        send(self.request(Method::PATCH, path, token).json(&body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> anyhow::Result<Resp> {
        send(self.request(Method::DELETE, path, token)).await
    }

    /// Create an integration (asserting 201) and return its id.
    pub async fn create_integration(&self, token: &str, name: &str) -> anyhow::Result<String> {
        let resp = self
            .post("/v1/integrations", token, integration_body(name))
            .await?;
        resp.expect(StatusCode::CREATED);
        resp.str("id")
    }

    /// Store an API key on an integration (asserting 200).
    pub async fn set_api_key(&self, token: &str, id: &str, key: &str) -> anyhow::Result<Resp> {
        let body = json!({"type": "api_key", "api_key": key});
        let resp = self
            .post(&format!("/v1/integrations/{id}/credentials"), token, body)
            .await?;
        resp.expect(StatusCode::OK);
        Ok(resp)
    }

    /// Issue a token through the API with the admin token; returns (id, bearer).
    pub async fn issue_token(&self, role: &str) -> anyhow::Result<(String, String)> {
        self.issue_token_as(&self.admin, role).await
    }

    pub async fn issue_token_as(
        &self,
        admin: &str,
        role: &str,
    ) -> anyhow::Result<(String, String)> {
        let body = json!({"role": role, "label": format!("{role} token")});
        let resp = self.post("/v1/tokens", admin, body).await?;
        resp.expect(StatusCode::CREATED);
        Ok((resp.str("id")?, resp.str("token")?))
    }

    /// Another workspace in the same database.
    pub async fn new_workspace(&self, name: &str, plan: Plan) -> anyhow::Result<Tenant> {
        let (id, token) = workspaces::create_workspace(&self.state.store, name, plan)
            .await
            .map_err(api_error)?;
        Ok(Tenant {
            id,
            admin_id: token.id,
            admin: token.bearer,
        })
    }

    /// Events in the whole store.
    pub async fn event_count(&self) -> anyhow::Result<i64> {
        Ok(self.state.store.feed().count().await?)
    }

    /// Every item of a paged list, following `next_cursor` with pages of `limit`.
    pub async fn list_all(
        &self,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
        limit: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let limit = limit.to_string();
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", &limit));
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let resp = send(self.request(Method::GET, path, token).query(&q)).await?;
            resp.expect(StatusCode::OK);
            let page = resp.body["data"].as_array().cloned().unwrap_or_default();
            assert!(page.len() <= limit.parse::<usize>()?, "page over limit");
            items.extend(page);
            match resp.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(items),
            }
        }
        bail!("{path}: more than 1000 pages")
    }

    /// What a rejected request must leave as it was.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            events: self.event_count().await?,
            integrations: self
                .list_all("/v1/integrations", &self.admin, &[], 500)
                .await?,
            tokens: self.list_all("/v1/tokens", &self.admin, &[], 500).await?,
        })
    }

    /// Wait until every projection has applied every stored event. (On PostgreSQL the
    /// feed's head can trail the last commit while any transaction in the cluster is open,
    /// so this counts events rather than comparing with the head.)
    pub async fn caught_up(&self) {
        let store = self.state.store.clone();
        wait_until(TIMEOUT, "the projections apply every stored event", || {
            let store = store.clone();
            async move {
                let Ok(count) = store.feed().count().await else {
                    return false;
                };
                for p in syncledger_projections::all() {
                    let cp = syncledger_projections::checkpoint::read(&store.any, p.name()).await;
                    if !matches!(cp, Ok(Some(cp)) if cp.events == count) {
                        return false;
                    }
                }
                true
            }
        })
        .await;
    }
}

#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub events: i64,
    pub integrations: Vec<Value>,
    pub tokens: Vec<Value>,
}

/// A response: status, headers, the body as text and (if it parses) as JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

pub async fn send(rb: RequestBuilder) -> anyhow::Result<Resp> {
    let resp = rb.send().await.context("send the request")?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.context("read the response body")?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Resp {
        status,
        headers,
        text,
        body,
    })
}

impl Resp {
    /// Assert the status, showing the body if it differs.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }

    /// Assert an error response: status, `error.code`, and a message containing `needle`.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str, needle: &str) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.text);
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "error message {message:?} should mention {needle:?}"
        );
    }

    pub fn str(&self, field: &str) -> anyhow::Result<String> {
        self.body[field]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no string {field:?} in {}", self.text))
    }
}

pub fn sync_config() -> Value {
    json!({
        "direction": "bidirectional",
        "frequency": "interval",
        "interval_minutes": 60,
        "entities": ["contacts", "companies"],
        "conflict_strategy": "manual_review"
    })
}

pub fn integration_body(name: &str) -> Value {
    json!({"provider": "hubspot", "name": name, "sync_config": sync_config()})
}

/// One server-sent event.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
    /// The frame as received, for searching.
    pub raw: String,
}

/// Where [`Sse::resume`] starts.
#[derive(Clone, Copy, Debug)]
pub enum Resume<'a> {
    /// From now on.
    Now,
    /// After this event id, as the `Last-Event-ID` header.
    LastEventId(&'a str),
    /// After this event id, as `?after=`.
    After(&'a str),
}

/// A reader of `GET /v1/events/stream` that keeps every event it has seen.
pub struct Sse {
    stream: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pub seen: Vec<SseEvent>,
}

impl Sse {
    /// Open the stream; the server has subscribed once the response head is here.
    pub async fn open(app: &TestApp, token: &str) -> anyhow::Result<Sse> {
        Sse::resume(app, token, Resume::Now).await
    }

    /// Open the stream resuming as `from` says (a reconnecting browser's
    /// `Last-Event-ID`, or `?after=`).
    pub async fn resume(app: &TestApp, token: &str, from: Resume<'_>) -> anyhow::Result<Sse> {
        let mut request = app.client.get(app.url("/v1/events/stream"));
        match from {
            Resume::Now => {}
            Resume::LastEventId(id) => request = request.header("last-event-id", id),
            Resume::After(id) => request = request.query(&[("after", id)]),
        }
        let resp = request
            .bearer_auth(token)
            // The client-wide timeout covers the whole body, and this body never ends.
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::OK, "open the event stream");
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        Ok(Sse {
            stream: resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed(),
            buf: Vec::new(),
            seen: Vec::new(),
        })
    }

    /// The next complete event, or `None` if `deadline` passes first.
    async fn next_event(&mut self, deadline: Instant) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(ev) = parse_frame(&String::from_utf8(frame)?)? {
                    self.seen.push(ev.clone());
                    return Ok(Some(ev));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the event stream ended"),
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk?),
            }
        }
    }

    /// Read until an event matches `pred`; fail if none does within [`TIMEOUT`].
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&SseEvent) -> bool,
    ) -> anyhow::Result<SseEvent> {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(ev) = self.next_event(deadline).await? {
            if pred(&ev) {
                return Ok(ev);
            }
        }
        bail!(
            "no event {what} within {TIMEOUT:?}; saw {:?}",
            self.seen.iter().map(|e| &e.event).collect::<Vec<_>>()
        )
    }
}

fn parse_frame(frame: &str) -> anyhow::Result<Option<SseEvent>> {
    let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::new());
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_string(),
            "id" => id = value.to_string(),
            "data" => data.push(value),
            _ => {} // comments (keep-alives) and unknown fields
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    let data = serde_json::from_str(&data.join("\n")).context("SSE data is not JSON")?;
    Ok(Some(SseEvent {
        event,
        id,
        data,
        raw: frame.to_string(),
    }))
}

/// Everything the process logs from the first call on (DEBUG and up), for checking that no
/// secret is ever written to a log line.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("a global tracing subscriber was already set; logs are not captured");
        }
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buf) = self.0.lock() {
            buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How long a test run may take before the test gives up.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates an integration of `provider` against `base_url` and connects it by OAuth.
pub async fn connect(
    app: &TestApp,
    provider: &str,
    base_url: &str,
    direction: &str,
    strategy: &str,
) -> anyhow::Result<String> {
    let body = json!({"provider": provider,
        "name": format!("{provider} sync {}", random_hex()),
        "base_url": base_url,
        "sync_config": {"direction": direction, "frequency": "manual",
                        "entities": ["contacts", "companies"], "conflict_strategy": strategy}});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let callback = approve(&resp.str("authorization_url")?).await?;
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    Ok(id)
}

/// Waits until the run has ended and its integration has let it go (the worker writes
/// that after the run's end), then until the read models are settled; returns its view.
pub async fn wait_run(app: &TestApp, run_id: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/sync-runs/{run_id}");
    wait_until(RUN_TIMEOUT, "the sync run ends", || async {
        match app.get(&path, &app.admin).await {
            Ok(r) => !matches!(r.body["status"].as_str(), Some("queued" | "running")),
            Err(_) => false,
        }
    })
    .await;
    let ended = app.get(&path, &app.admin).await?;
    let integration_id = ended.str("integration_id")?;
    let integrations = app.state.store.cqrs::<syncledger_domain::Integration>();
    wait_until(RUN_TIMEOUT, "the integration releases the run", || async {
        integrations
            .load(&integration_id)
            .await
            .is_ok_and(|i| i.active_run.as_deref() != Some(run_id))
    })
    .await;
    app.caught_up().await;
    Ok(app
        .get(&path, &app.admin)
        .await?
        .expect(StatusCode::OK)
        .clone())
}
