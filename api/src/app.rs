//! The application: HTTP API plus its background loops, under one shutdown signal.

use crate::auth::{client_request_id, ClientRequestId, RequestId};
use crate::config::Settings;
use crate::error::ApiError;
use crate::openapi::document as openapi;
use crate::routes::{
    audit, destinations, events, health, imports, integrations, mappings, oauth, provider_hooks,
    providers, records, sync_runs, tokens, webhook_endpoints, webhooks,
};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use syncledger_bus::{JobQueue, JobQueueConfig, LocalBus, NatsBus};
use syncledger_engine::jobs::NatsDispatcher;
use syncledger_engine::workers::{local_queue, Dispatcher, LocalQueue, PoolOptions, Unassigned};
use syncledger_projections::Runner;
use syncledger_store::Store;
use syncledger_vault::{MasterKey, Vault};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub fn router(state: AppState) -> Router {
    let http_metrics = state.http_metrics.clone();
    let timeout = state.request_timeout;
    let v1 = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi))
        .route("/providers", get(providers::list))
        .route("/providers/{id}", get(providers::get))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route(
            "/integrations",
            post(integrations::create).get(integrations::list),
        )
        .route(
            "/integrations/{id}",
            get(integrations::get)
                .patch(integrations::update)
                .delete(integrations::disconnect),
        )
        .route("/integrations/{id}/pause", post(integrations::pause))
        .route("/integrations/{id}/resume", post(integrations::resume))
        .route(
            "/integrations/{id}/credentials",
            post(integrations::credentials),
        )
        .route("/integrations/{id}/connect", post(oauth::connect))
        .route("/integrations/{id}/test", post(oauth::test))
        .route("/integrations/{id}/fields", get(oauth::fields))
        .route("/integrations/{id}/mappings", get(mappings::list))
        .route(
            "/integrations/{id}/mappings/{entity}",
            get(mappings::get).put(mappings::put),
        )
        .route(
            "/integrations/{id}/mappings/{entity}/auto",
            post(mappings::auto),
        )
        .route(
            "/integrations/{id}/mappings/{entity}/preview",
            post(mappings::preview),
        )
        .route(
            "/integrations/{id}/mappings/{entity}/reapply",
            post(mappings::reapply),
        )
        .route("/oauth/callback", get(oauth::callback))
        .route("/webhooks/hubspot", post(webhooks::hubspot))
        .route("/webhooks/chatwoot/{id}", post(provider_hooks::chatwoot))
        .route("/webhooks/tave/{id}/{token}", post(provider_hooks::tave))
        .route(
            "/integrations/{id}/hook-url",
            post(provider_hooks::create_hook_url),
        )
        .route(
            "/integrations/{id}/webhook-secret",
            put(provider_hooks::set_secret),
        )
        .route(
            "/integrations/{id}/inbound-webhook",
            post(imports::create_inbound),
        )
        .route("/inbound/{id}", post(imports::receive))
        .route("/inbound/{id}/{secret}", post(imports::receive_with_secret))
        .route(
            "/webhook-endpoints",
            get(webhook_endpoints::list).post(webhook_endpoints::create),
        )
        .route(
            "/webhook-endpoints/{id}",
            get(webhook_endpoints::get)
                .patch(webhook_endpoints::update)
                .delete(webhook_endpoints::delete),
        )
        .route(
            "/webhook-endpoints/{id}/rotate-secret",
            post(webhook_endpoints::rotate_secret),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries",
            get(webhook_endpoints::deliveries),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries/{message_id}/resend",
            post(webhook_endpoints::resend),
        )
        .route(
            "/webhook-endpoints/{id}/replay",
            post(webhook_endpoints::replay),
        )
        .route(
            "/destinations",
            get(destinations::list).post(destinations::create),
        )
        .route(
            "/destinations/{id}",
            get(destinations::get).delete(destinations::delete),
        )
        .route("/destinations/{id}/held", get(destinations::held))
        .route("/destinations/{id}/rebuild", post(destinations::rebuild))
        .route("/records", post(records::create).get(records::list))
        .route("/records/{id}", get(records::get).patch(records::edit))
        .route("/records/{id}/history", get(records::history))
        .route("/records/{id}/archive", post(records::archive))
        .route(
            "/integrations/{id}/sync-runs",
            post(sync_runs::start).get(sync_runs::list),
        )
        .route("/sync-runs/{id}", get(sync_runs::get))
        .route("/sync-runs/{id}/cancel", post(sync_runs::cancel))
        .route("/sync-runs/{id}/retry", post(sync_runs::retry))
        .route("/sync-runs/{id}/rollback", post(sync_runs::rollback))
        .route("/audit", get(audit::list))
        .route("/audit/verify", get(audit::verify))
        .route("/audit/export", get(audit::export))
        .route("/events/stream", get(events::stream))
        .merge(crate::routes::conflicts::routes())
        .merge(crate::routes::diverged::routes())
        .route_layer(middleware::from_fn(crate::strict_query::refuse_unknown))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::guard,
        ));
    // 1 MiB for every body but a CSV import's, which is the file itself.
    let limited = Router::new()
        .nest("/v1", v1)
        .merge(crate::dashboard::routes())
        .layer(RequestBodyLimitLayer::new(1024 * 1024));
    let files = Router::new()
        .route("/v1/integrations/{id}/imports", post(imports::csv))
        .route_layer(middleware::from_fn(crate::strict_query::refuse_unknown))
        .layer(RequestBodyLimitLayer::new(imports::CSV_BODY_LIMIT));
    Router::new()
        .merge(limited)
        .merge(files)
        .fallback(not_found)
        .with_state(state)
        // Inside the layers below, so a 408 gets a JSON body, an access line and its
        // count in the metrics like any other answer.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(access_log)
                // The access line carries the status; a 5xx's cause is logged where it
                // happened (`ApiError::internal`), once.
                .on_failure(()),
        )
        .layer(middleware::from_fn_with_state(
            http_metrics,
            crate::http_metrics::track,
        ))
        // Outermost, so the request's span and every line in it carry the request id.
        .layer(middleware::from_fn(request_id))
}

/// The span every log line of a request is in: method, route template (never the raw
/// path or query, which may carry ids or codes), request id, and once authenticated the
/// workspace and token id (`auth::record_caller`; never the token).
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        workspace = tracing::field::Empty,
        token_id = tracing::field::Empty,
    )
}

/// The access log: one INFO line per request, in its span, with status and latency.
fn access_log(resp: &Response, latency: Duration, _span: &tracing::Span) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(status = resp.status().as_u16(), latency_ms, "request");
}

/// Errors produced below the handlers (wrong method, body too large) get the API's
/// JSON error format too.
async fn json_errors(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let is_page = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let status = resp.status();
    if is_json || is_page || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than this endpoint takes (1 MiB; a CSV import 20 MiB)",
        ),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        s if s.is_server_error() => ("internal", "an internal error occurred; it has been logged"),
        _ => ("bad_request", "the request could not be processed"),
    };
    ApiError::new(status, code, message).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// One correlation id per request, always minted here: a client's id must never be able
/// to make its events look like another request's or run's (rollback finds a run's events
/// by it). A sane client `x-request-id` is kept beside it as the request id (metadata,
/// audit trail) and echoed back; the answer names the correlation id in
/// `x-correlation-id`.
async fn request_id(mut req: Request, next: Next) -> Response {
    let correlation = uuid::Uuid::now_v7().to_string();
    let client = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(client_request_id);
    req.extensions_mut().insert(RequestId(correlation.clone()));
    if let Some(client) = &client {
        req.extensions_mut().insert(ClientRequestId(client.clone()));
    }
    let resp = next.run(req).await;
    let mut resp = with_request_id(resp, &correlation).await;
    let echoed = client.as_deref().unwrap_or(&correlation);
    for (name, value) in [("x-request-id", echoed), ("x-correlation-id", &correlation)] {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// The largest error body [`with_request_id`] reads to add the id to.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A 5xx JSON error answered with `error.request_id` added to its body: the id its log
/// lines carry, so an operator can find the cause from what a client reports.
async fn with_request_id(resp: Response, id: &str) -> Response {
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !resp.status().is_server_error() || !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return ApiError::new(
            parts.status,
            "internal",
            "an internal error occurred; it has been logged",
        )
        .into_response();
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut body) => match body.get_mut("error").and_then(|e| e.as_object_mut()) {
            Some(error) => {
                error.insert("request_id".into(), serde_json::Value::String(id.into()));
                serde_json::to_vec(&body).unwrap_or_else(|_| bytes.to_vec())
            }
            None => bytes.to_vec(),
        },
        _ => bytes.to_vec(),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] syncledger_store::StoreError),
    #[error("key vault: {0}")]
    Vault(#[from] syncledger_vault::VaultError),
    #[error("NATS: {0}")]
    Nats(#[from] syncledger_bus::BusError),
    /// A command that needs an existing store found none where it looked.
    #[error("{0}")]
    Missing(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Open the store and the vault as configured.
pub async fn open(settings: &Settings) -> Result<(Store, Vault), StartError> {
    let store = Store::open(&settings.store_config()).await?;
    let env_key = settings
        .master_key
        .as_ref()
        .map(|k| k.expose_secret().to_string());
    if env_key.is_none() {
        // The key file lives there: the same privacy as the database's directory.
        syncledger_store::files::private_dir(&settings.data_dir)
            .map_err(syncledger_store::StoreError::from)?;
    }
    let master = MasterKey::load_or_create(env_key.as_deref(), &settings.data_dir)?;
    let vault = Vault::new(store.any.clone(), master);
    vault.check_master().await?;
    Ok((store, vault))
}

/// [`open`] for every command but `serve` and `workspace create`: what it works on must
/// exist already. Run from another directory (or with another `data_dir`), a command
/// would otherwise make an empty database and a new master key and work on those, as if
/// the real ones were gone.
pub async fn open_existing(settings: &Settings) -> Result<(Store, Vault), StartError> {
    let place = "run it where `serve` runs (the same data_dir), or set SYNCLEDGER_DATA_DIR \
                 or database_url; only `serve` and `workspace create` make a new store";
    match settings.store_config().backend() {
        syncledger_store::Backend::Sqlite(path) if !path.exists() => {
            return Err(StartError::Missing(format!(
                "no database at {}: {place}",
                path.display()
            )));
        }
        syncledger_store::Backend::Postgres(url) if !has_event_log(&url).await? => {
            return Err(StartError::Missing(format!(
                "no syncledger event log in the PostgreSQL database at {}: {place}",
                syncledger_store::config::redact_url(&url)
            )));
        }
        _ => {}
    }
    if settings.master_key.is_none() {
        let key = settings.data_dir.join(syncledger_vault::KEY_FILE_NAME);
        if !key.exists() {
            return Err(StartError::Missing(format!(
                "no master key file at {} (and no master_key setting): {place}",
                key.display()
            )));
        }
    }
    open(settings).await
}

/// Whether the PostgreSQL database at `url` holds an event log already (before anything
/// is migrated into it).
async fn has_event_log(url: &str) -> Result<bool, StartError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(syncledger_store::StoreError::Connect)?;
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass('events')::text")
        .fetch_one(&mut conn)
        .await
        .map_err(syncledger_store::StoreError::Connect)?;
    let _ = conn.close().await;
    Ok(found.is_some())
}

/// NATS as configured (`None` without a URL), its events stream ready.
pub async fn connect_nats(settings: &Settings) -> Result<Option<NatsBus>, StartError> {
    let Some(url) = settings.nats_url.as_ref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let mut config = syncledger_bus::NatsConfig::new(url.clone());
    if let Some(stream) = &settings.nats_stream {
        config.stream = stream.clone();
    }
    if let Some(prefix) = &settings.nats_subject_prefix {
        config.subject_prefix = prefix.clone();
    }
    let nats = NatsBus::connect_with(config).await?;
    nats.ensure_stream().await?;
    Ok(Some(nats))
}

/// The sync-run job queue that goes with the NATS events stream.
pub async fn job_queue(nats: &NatsBus, settings: &Settings) -> Result<JobQueue, StartError> {
    let config = JobQueueConfig {
        ack_wait: Duration::from_secs(settings.nats_job_ack_wait_secs.max(1)),
        ..JobQueueConfig::for_events(nats.config())
    };
    Ok(JobQueue::open(nats, config).await?)
}

/// Where `serve` sends the runs it starts, and what its own workers take them from.
enum RunQueue {
    /// In-process (no NATS, `workers` > 0).
    Local(LocalQueue),
    /// The JetStream job queue (NATS configured).
    Nats(Box<JobQueue>),
    /// Left in the store for `syncledger worker` processes (no NATS, `workers` = 0).
    Store,
}

/// The part of the shutdown grace period `serve`'s sync workers may use to bring their
/// runs to an end before abandoning them (they resume from their last committed page);
/// the rest is left for the other parts to finish after them.
fn worker_grace(grace: Duration) -> Duration {
    grace * 2 / 3
}

pub struct Application {
    addr: SocketAddr,
    listener: TcpListener,
    state: AppState,
    settings: Settings,
    /// The run queue, drained by the workers `run` starts.
    queue: Option<RunQueue>,
    /// `GET /metrics`, when `metrics_addr` is set.
    metrics: Option<crate::metrics::Listener>,
}

impl Application {
    /// Open everything and bind the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let (store, vault) = open(&settings).await?;
        let listener =
            TcpListener::bind(settings.addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.addr,
            source,
        })?;
        let metrics = match settings.metrics_addr {
            Some(addr) => Some(
                crate::metrics::Listener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let nats = connect_nats(&settings).await?;
        let (dispatcher, queue): (Arc<dyn Dispatcher>, RunQueue) = match &nats {
            Some(nats) => {
                let jobs = job_queue(nats, &settings).await?;
                (
                    Arc::new(NatsDispatcher::new(jobs.clone())),
                    RunQueue::Nats(Box::new(jobs)),
                )
            }
            None if settings.workers > 0 => {
                let (dispatcher, queue) = local_queue();
                (Arc::new(dispatcher), RunQueue::Local(queue))
            }
            None => (Arc::new(Unassigned), RunQueue::Store),
        };
        if settings.is_development() {
            tracing::warn!(
                sandbox_oauth_apps = ?settings.sandbox_app_providers(),
                "running in the development default: sandbox OAuth apps stand in for unconfigured \
                 providers and loopback provider hosts are allowed; set environment = \"production\" \
                 (or a database_url) for a real deployment"
            );
        }
        let state = AppState::new(
            store,
            vault,
            LocalBus::new(),
            nats,
            settings.rate_limit_per_minute,
            settings.public_url(addr),
            settings.provider_apps(),
            dispatcher,
            chrono::Duration::minutes(i64::from(settings.dashboard_idle_minutes.max(1))),
            std::time::Duration::from_secs(settings.ready_max_lag_secs),
            std::time::Duration::from_secs(settings.request_timeout_secs.max(1)),
            settings.webhook_policy(),
            settings.destination_policy(),
            &settings.instance_name(),
        );
        state.streams.set_limits(
            settings.sse_streams_per_token,
            settings.sse_streams_per_workspace,
        );
        Ok(Application {
            addr,
            listener,
            state,
            settings,
            queue: Some(queue),
            metrics,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `GET /metrics` is served (`None`: `metrics_addr` is not set).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(crate::metrics::Listener::addr)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until `shutdown` turns true; then stop accepting, let requests and the
    /// current projection batch finish, and return.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let state = self.state.clone();
        let mut tasks = spawn_background(&state, &self.settings, shutdown.clone());
        if let Some(metrics) = self.metrics {
            tasks.push(metrics.spawn(state.clone(), shutdown.clone()));
        }
        if let Some(queue) = self.queue {
            tasks.extend(spawn_sync(&state, &self.settings, queue, shutdown.clone()));
        }
        // Live event streams never end on their own: end them at shutdown, or a client
        // left connected would hold the graceful shutdown open.
        let (streams, mut closing) = (state.streams.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let _ = closing.wait_for(|s| *s).await;
            streams.close_all();
        }));
        let mut stop = shutdown.clone();
        let app = router(state);
        let serving = async move {
            let served = axum::serve(self.listener, app.into_make_service())
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            for t in tasks {
                if let Err(e) = t.await {
                    tracing::error!(error = %e, "background task ended abnormally");
                }
            }
            served
        };
        let grace = self.settings.shutdown_grace();
        let mut signalled = shutdown;
        let overdue = async move {
            let _ = signalled.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = serving => served,
            _ = overdue => {
                // Whatever still runs is dropped with the process: every write is a
                // transaction, so it is as if the process had been killed there.
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    "shutdown grace period over: exiting with work unfinished"
                );
                Ok(())
            }
        }
    }
}

fn spawn_background(
    state: &AppState,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let runner = Runner::new(state.store.clone(), syncledger_projections::all())
        .with_batch(settings.projection_batch)
        .with_parallelism(settings.projection_parallelism as usize);
    let wake = state.projections_wake.clone();
    let rx = shutdown.clone();
    tasks.push(tokio::spawn(async move { runner.run(rx, wake).await }));
    let delivery = syncledger_engine::delivery::DeliveryOptions {
        schedule: settings.webhook_schedule(),
        policy: settings.webhook_policy(),
        // Named by the instance, as its runs are: a serve started again under the same
        // name takes its endpoints back at once instead of waiting out the dead one's
        // leases.
        holder: format!("webhooks:{}", settings.instance_name()),
        ..Default::default()
    };
    tasks.push(syncledger_engine::delivery::spawn(
        state.engine.clone(),
        delivery,
        state.projections_wake.clone(),
        shutdown.clone(),
    ));
    let sink = syncledger_engine::sink::SinkOptions {
        policy: settings.destination_policy(),
        kept_states: settings.destination_kept_states,
        ..Default::default()
    };
    tasks.push(syncledger_engine::sink::spawn(
        state.engine.clone(),
        sink,
        state.projections_wake.clone(),
        shutdown.clone(),
    ));
    match &state.nats {
        Some(nats) => {
            let (store, nats, rx) = (state.store.clone(), nats.clone(), shutdown.clone());
            // Woken by this process's runs as they commit; other processes' commits are
            // found by its poll.
            tasks.push(tokio::spawn(syncledger_bus::run_nats_publisher_woken(
                store,
                nats,
                state.runs.committed(),
                syncledger_bus::POLL_INTERVAL,
                rx,
            )));
        }
        None => {
            // Runs' commits poke the follower, as commands do: live streams see a run's
            // events as they commit.
            tasks.push(tokio::spawn(syncledger_bus::forward_commits(
                state.runs.committed(),
                state.bus.clone(),
                shutdown.clone(),
            )));
            let (feed, bus, rx) = (state.store.feed(), state.bus.clone(), shutdown.clone());
            tasks.push(tokio::spawn(syncledger_bus::run_local_follower(
                feed, bus, rx,
            )));
        }
    }
    tasks
}

/// The sync workers and the scheduler. Runs left queued or running by a previous
/// process (it stopped or died mid-run) are handed out again first (the job queue drops
/// the ones it still holds as duplicates).
fn spawn_sync(
    state: &AppState,
    settings: &Settings,
    queue: RunQueue,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let workers = settings.workers as usize;
    let hand_out = match queue {
        RunQueue::Local(queue) => {
            let options = PoolOptions {
                concurrency: workers,
                grace: worker_grace(settings.shutdown_grace()),
            };
            tasks.extend(queue.spawn(state.runs.clone(), options, shutdown.clone()));
            true
        }
        RunQueue::Nats(jobs) => {
            if workers > 0 {
                let options = PoolOptions {
                    concurrency: workers,
                    grace: worker_grace(settings.shutdown_grace()),
                };
                tasks.push(tokio::spawn(syncledger_engine::jobs::consume(
                    state.runs.clone(),
                    *jobs,
                    options,
                    shutdown.clone(),
                )));
            }
            true
        }
        RunQueue::Store => false,
    };
    if hand_out {
        let (runs, dispatcher) = (state.runs.clone(), state.dispatcher.clone());
        tasks.push(tokio::spawn(async move {
            match syncledger_engine::workers::resume_unfinished(&runs, dispatcher.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "resuming unfinished sync runs"),
                Err(e) => tracing::warn!(error = %e, "could not list unfinished sync runs"),
            }
        }));
    }
    if settings.scheduler_interval_secs > 0 {
        let (runs, dispatcher) = (state.runs.clone(), state.dispatcher.clone());
        let every = Duration::from_secs(settings.scheduler_interval_secs);
        tasks.push(tokio::spawn(syncledger_engine::scheduler::run(
            runs, dispatcher, every, shutdown,
        )));
    }
    tasks
}

/// A watch channel that turns true on SIGTERM or Ctrl-C. The handlers are installed before
/// this returns, so a signal that arrives right after start-up is never missed.
pub fn shutdown_signal() -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: finishing requests and the current batch");
        let _ = tx.send(true);
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn failing() -> ApiError {
        ApiError::internal("the disk is full")
    }

    async fn refused() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "no")
    }

    async fn call(app: &Router, path: &str) -> anyhow::Result<(StatusCode, String, String)> {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty())?)
            .await?;
        let status = resp.status();
        let id = resp
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), MAX_ERROR_BODY).await?;
        Ok((status, id, String::from_utf8(body.to_vec())?))
    }

    /// A 500 tells the client the id its log lines carry; other answers are left as they
    /// are, and the cause stays out of the body.
    #[tokio::test]
    async fn a_500_names_its_request_id() -> anyhow::Result<()> {
        let app = Router::new()
            .route("/boom", get(failing))
            .route("/no", get(refused))
            .layer(middleware::from_fn(request_id));
        let (status, id, body) = call(&app, "/boom").await?;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(!body.to_string().contains("disk"), "{body}");
        let (status, _, body) = call(&app, "/no").await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!body.contains("request_id"), "{body}");
        Ok(())
    }
}
