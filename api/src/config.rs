//! Layered configuration: defaults, then an optional `syncledger.toml`, then `SYNCLEDGER_*`
//! environment variables (plus the conventional `DATABASE_URL` and `NATS_URL`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_engine::{ClientApp, ProviderApps};
use syncledger_store::StoreConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where the server runs. Development is the embedded default (SQLite, sandboxes on
/// loopback, sandbox OAuth apps); production gets none of those defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

/// The OAuth app the local sandboxes accept; used only in development.
const SANDBOX_CLIENT_ID: &str = "sandbox-client";
const SANDBOX_CLIENT_SECRET: &str = "sandbox-secret";

/// Unknown keys in `syncledger.toml` are refused (a typo must not leave a default in
/// force silently).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on.
    pub addr: SocketAddr,
    /// The URL users and providers reach the API at (OAuth redirects); defaults to `http://{addr}`.
    pub public_url: Option<String>,
    /// Where `GET /metrics` (Prometheus text format) is served, without authentication:
    /// keep it on loopback or a network only the scraper reaches. Unset: no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the SQLite database and the master key file live.
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL; unset means SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    pub database_max_connections: u32,
    /// Base64 of 32 bytes; unset means a key file in `data_dir`.
    pub master_key: Option<SecretString>,
    /// With NATS configured, committed events go to JetStream and SSE reads from it, and
    /// sync runs are handed to workers through a JetStream job queue.
    pub nats_url: Option<String>,
    /// JetStream stream name (default `SYNCLEDGER_EVENTS`). Several databases may share a
    /// stream: message ids are `<store id>:<global position>`, the store id being made
    /// with each database's schema.
    pub nats_stream: Option<String>,
    /// Subject prefix (default `syncledger.events`).
    pub nats_subject_prefix: Option<String>,
    /// Seconds a sync-run job may go unacknowledged before the job queue hands it to
    /// another worker (a live worker keeps extending it). Applies when the queue's
    /// consumer is first created.
    pub nats_job_ack_wait_secs: u64,
    pub log_format: LogFormat,
    /// Requests per minute allowed for each API token.
    pub rate_limit_per_minute: u32,
    /// Events per projection batch.
    pub projection_batch: i64,
    /// Read models that may apply a batch at the same time on PostgreSQL (1: they take
    /// turns; 0 counts as 1). SQLite has one writer: there they always take turns.
    pub projection_parallelism: u32,
    /// The HubSpot app's OAuth client id (unset: not configured; in development the
    /// sandbox app stands in).
    pub hubspot_client_id: String,
    pub hubspot_client_secret: SecretString,
    /// The Salesforce connected app's consumer key and secret.
    pub salesforce_client_id: String,
    pub salesforce_client_secret: SecretString,
    /// The Pipedrive app's client id and secret.
    pub pipedrive_client_id: String,
    pub pipedrive_client_secret: SecretString,
    /// The Zoho CRM app's client id and secret (one client for every data centre:
    /// multi-DC enabled in Zoho's API console).
    pub zoho_client_id: String,
    pub zoho_client_secret: SecretString,
    /// The OAuth client used by custom providers whose spec declares OAuth 2.0.
    pub custom_client_id: String,
    pub custom_client_secret: SecretString,
    /// Pace provider calls to each provider's published limits (turn off only for
    /// benchmarks against a sandbox with limits off).
    pub provider_pacing: bool,
    /// Sync runs this process executes at once (0: execute none; leave them to
    /// `syncledger worker` processes).
    pub workers: u32,
    /// Seconds between scheduler ticks (0: no scheduler in this process).
    pub scheduler_interval_secs: u64,
    /// Live event streams (`GET /v1/events/stream`) one API token may hold open at once;
    /// one more is refused with 429 `too_many_streams`.
    pub sse_streams_per_token: usize,
    /// Live event streams one workspace may hold open at once, over all its tokens.
    pub sse_streams_per_workspace: usize,
    /// Records whose folded state each destination's sink keeps in memory between
    /// batches (about 5 KB each); a record not kept is read again from the store.
    pub destination_kept_states: usize,
    /// `development` or `production`. Unset: development exactly when no
    /// `database_url` is set (the embedded SQLite default).
    pub environment: Option<Environment>,
    /// Let integrations reach loopback hosts (e.g. local sandboxes) outside
    /// development. The OAuth client secrets still go to official hosts only.
    pub allow_loopback_providers: bool,
    /// Let integrations reach private networks (10/8, 172.16/12, 192.168/16, fc00::/7).
    pub allow_private_providers: bool,
    /// A dashboard session ends after this many minutes without a page view (at most
    /// 12 hours in all, however active).
    pub dashboard_idle_minutes: u32,
    /// `GET /v1/ready` answers 503 when a projection's oldest unapplied event has waited
    /// longer than this many seconds.
    pub ready_max_lag_secs: u64,
    /// A request that has no response head after this many seconds is answered 408
    /// (`timeout`), counted and logged like any other (streams, once open, run on).
    pub request_timeout_secs: u64,
    /// Outgoing webhooks may be sent to private networks (an app's own endpoints inside
    /// the operator's network); loopback follows `allow_loopback_providers`.
    pub allow_private_webhooks: bool,
    /// Destination databases may be on private networks (the app's own PostgreSQL inside
    /// the operator's network); loopback follows `allow_loopback_providers`.
    pub allow_private_destinations: bool,
    /// The wait before a failed webhook delivery's first retry, in milliseconds; each
    /// later one doubles it, up to an hour, for 24 hours.
    pub webhook_first_retry_ms: u64,
    /// How long a webhook message is retried before it is given up, in seconds.
    pub webhook_retry_window_secs: u64,
    /// A webhook endpoint with no successful delivery for this many seconds is disabled.
    pub webhook_disable_after_secs: u64,
    /// On SIGTERM or Ctrl-C, seconds `serve` may take to finish requests, end live streams,
    /// commit the projection batch in progress and let sync runs reach a page boundary;
    /// whatever is still going then is abandoned (runs resume from their last committed
    /// page) and the process exits.
    pub shutdown_grace_secs: u64,
    /// This process's name in the runs it executes (default: the host name). A `serve`
    /// that starts again under the same name resumes the runs it held when it died at
    /// once, instead of waiting for the job queue's ack wait; give each process on one
    /// host its own name when several share a database.
    pub instance_name: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            metrics_addr: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            master_key: None,
            nats_url: None,
            nats_stream: None,
            nats_subject_prefix: None,
            nats_job_ack_wait_secs: 60,
            log_format: LogFormat::Text,
            rate_limit_per_minute: 1200,
            projection_batch: 500,
            projection_parallelism: 1,
            hubspot_client_id: String::new(),
            hubspot_client_secret: SecretString::from(""),
            salesforce_client_id: String::new(),
            salesforce_client_secret: SecretString::from(""),
            pipedrive_client_id: String::new(),
            pipedrive_client_secret: SecretString::from(""),
            zoho_client_id: String::new(),
            zoho_client_secret: SecretString::from(""),
            custom_client_id: String::new(),
            custom_client_secret: SecretString::from(""),
            provider_pacing: true,
            workers: 2,
            scheduler_interval_secs: 30,
            sse_streams_per_token: crate::streams::DEFAULT_PER_TOKEN,
            sse_streams_per_workspace: crate::streams::DEFAULT_PER_WORKSPACE,
            destination_kept_states: syncledger_engine::sink::SinkOptions::default().kept_states,
            environment: None,
            allow_loopback_providers: false,
            allow_private_providers: false,
            dashboard_idle_minutes: 30,
            ready_max_lag_secs: 60,
            request_timeout_secs: 60,
            allow_private_webhooks: false,
            allow_private_destinations: false,
            webhook_first_retry_ms: 5000,
            webhook_retry_window_secs: 24 * 3600,
            webhook_disable_after_secs: 3 * 24 * 3600,
            shutdown_grace_secs: 30,
            instance_name: None,
        }
    }
}

/// Every setting: its key (in `syncledger.toml`) and its environment variable. The one
/// list `load` maps variables by, refuses unknown ones by, and the example file and
/// `config check` are checked against.
pub const ENV_KEYS: [(&str, &str); COUNT] = [
    ("addr", "SYNCLEDGER_ADDR"),
    ("public_url", "SYNCLEDGER_PUBLIC_URL"),
    ("metrics_addr", "SYNCLEDGER_METRICS_ADDR"),
    ("data_dir", "SYNCLEDGER_DATA_DIR"),
    ("database_url", "SYNCLEDGER_DATABASE_URL"),
    (
        "database_max_connections",
        "SYNCLEDGER_DATABASE_MAX_CONNECTIONS",
    ),
    ("master_key", "SYNCLEDGER_MASTER_KEY"),
    ("nats_url", "SYNCLEDGER_NATS_URL"),
    ("nats_stream", "SYNCLEDGER_NATS_STREAM"),
    ("nats_subject_prefix", "SYNCLEDGER_NATS_SUBJECT_PREFIX"),
    (
        "nats_job_ack_wait_secs",
        "SYNCLEDGER_NATS_JOB_ACK_WAIT_SECS",
    ),
    ("log_format", "SYNCLEDGER_LOG_FORMAT"),
    ("rate_limit_per_minute", "SYNCLEDGER_RATE_LIMIT_PER_MINUTE"),
    ("projection_batch", "SYNCLEDGER_PROJECTION_BATCH"),
    (
        "projection_parallelism",
        "SYNCLEDGER_PROJECTION_PARALLELISM",
    ),
    ("hubspot_client_id", "SYNCLEDGER_HUBSPOT_CLIENT_ID"),
    ("hubspot_client_secret", "SYNCLEDGER_HUBSPOT_CLIENT_SECRET"),
    ("salesforce_client_id", "SYNCLEDGER_SALESFORCE_CLIENT_ID"),
    (
        "salesforce_client_secret",
        "SYNCLEDGER_SALESFORCE_CLIENT_SECRET",
    ),
    ("pipedrive_client_id", "SYNCLEDGER_PIPEDRIVE_CLIENT_ID"),
    (
        "pipedrive_client_secret",
        "SYNCLEDGER_PIPEDRIVE_CLIENT_SECRET",
    ),
    ("zoho_client_id", "SYNCLEDGER_ZOHO_CLIENT_ID"),
    ("zoho_client_secret", "SYNCLEDGER_ZOHO_CLIENT_SECRET"),
    ("custom_client_id", "SYNCLEDGER_CUSTOM_CLIENT_ID"),
    ("custom_client_secret", "SYNCLEDGER_CUSTOM_CLIENT_SECRET"),
    ("provider_pacing", "SYNCLEDGER_PROVIDER_PACING"),
    ("workers", "SYNCLEDGER_WORKERS"),
    (
        "scheduler_interval_secs",
        "SYNCLEDGER_SCHEDULER_INTERVAL_SECS",
    ),
    ("sse_streams_per_token", "SYNCLEDGER_SSE_STREAMS_PER_TOKEN"),
    (
        "sse_streams_per_workspace",
        "SYNCLEDGER_SSE_STREAMS_PER_WORKSPACE",
    ),
    (
        "destination_kept_states",
        "SYNCLEDGER_DESTINATION_KEPT_STATES",
    ),
    ("environment", "SYNCLEDGER_ENVIRONMENT"),
    (
        "allow_loopback_providers",
        "SYNCLEDGER_ALLOW_LOOPBACK_PROVIDERS",
    ),
    (
        "allow_private_providers",
        "SYNCLEDGER_ALLOW_PRIVATE_PROVIDERS",
    ),
    (
        "dashboard_idle_minutes",
        "SYNCLEDGER_DASHBOARD_IDLE_MINUTES",
    ),
    ("ready_max_lag_secs", "SYNCLEDGER_READY_MAX_LAG_SECS"),
    ("request_timeout_secs", "SYNCLEDGER_REQUEST_TIMEOUT_SECS"),
    (
        "allow_private_webhooks",
        "SYNCLEDGER_ALLOW_PRIVATE_WEBHOOKS",
    ),
    (
        "allow_private_destinations",
        "SYNCLEDGER_ALLOW_PRIVATE_DESTINATIONS",
    ),
    (
        "webhook_first_retry_ms",
        "SYNCLEDGER_WEBHOOK_FIRST_RETRY_MS",
    ),
    (
        "webhook_retry_window_secs",
        "SYNCLEDGER_WEBHOOK_RETRY_WINDOW_SECS",
    ),
    (
        "webhook_disable_after_secs",
        "SYNCLEDGER_WEBHOOK_DISABLE_AFTER_SECS",
    ),
    ("shutdown_grace_secs", "SYNCLEDGER_SHUTDOWN_GRACE_SECS"),
    ("instance_name", "SYNCLEDGER_INSTANCE_NAME"),
];

/// How many settings there are.
const COUNT: usize = 44;

/// `SYNCLEDGER_*` variables the binary reads that are not settings: the worker's and the
/// benches' command-line defaults (clap `env`) and the crash points of the recovery tests.
const OTHER_VARIABLES: [&str; 6] = [
    "SYNCLEDGER_WORKER_CONCURRENCY",
    "SYNCLEDGER_WORKER_POLL_INTERVAL_MS",
    "SYNCLEDGER_WORKER_GRACE_SECS",
    "SYNCLEDGER_BENCH_DATABASE_URL",
    "SYNCLEDGER_BENCH_PG_URL",
    "SYNCLEDGER_CRASH_AT",
];

/// Prefixes the test suite's own variables use (`SYNCLEDGER_TEST_PG_URL`, the model
/// test's `SYNCLEDGER_MODEL_CASES`); never read by the binary, so a shell that has them
/// set can still run it.
const TEST_PREFIXES: [&str; 2] = ["SYNCLEDGER_TEST_", "SYNCLEDGER_MODEL_"];

/// The first `SYNCLEDGER_*` variable in `names` that is neither a setting nor one of the
/// binary's other variables (a typo, or a setting that does not exist).
pub fn unknown_variable<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().find(|name| {
        name.starts_with("SYNCLEDGER_")
            && !ENV_KEYS.iter().any(|(_, var)| var == name)
            && !OTHER_VARIABLES.contains(name)
            && !TEST_PREFIXES.iter().any(|p| name.starts_with(p))
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error(
        "configuration: unknown environment variable {0}: it is not a setting (see \
         syncledger.example.toml for every setting and its variable); unset it or fix its name"
    )]
    UnknownVariable(String),
}

impl Settings {
    /// Load from `file` (if it exists) and the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        if let Some(name) = unknown_variable(names.iter().map(String::as_str)) {
            return Err(ConfigError::UnknownVariable(name.to_string()));
        }
        let defaults = Settings::default();
        let mut builder = config::Config::builder();
        builder = builder
            .set_default("addr", defaults.addr.to_string())?
            .set_default("data_dir", defaults.data_dir.display().to_string())?
            .set_default(
                "database_max_connections",
                defaults.database_max_connections,
            )?
            .set_default("log_format", "text")?
            .set_default("rate_limit_per_minute", defaults.rate_limit_per_minute)?
            .set_default("projection_batch", defaults.projection_batch)?
            .set_default(
                "projection_parallelism",
                i64::from(defaults.projection_parallelism),
            )?
            .set_default("provider_pacing", defaults.provider_pacing)?
            .set_default("nats_job_ack_wait_secs", defaults.nats_job_ack_wait_secs)?
            .set_default("workers", defaults.workers)?
            .set_default("scheduler_interval_secs", defaults.scheduler_interval_secs)?
            .set_default(
                "sse_streams_per_token",
                defaults.sse_streams_per_token as u64,
            )?
            .set_default(
                "sse_streams_per_workspace",
                defaults.sse_streams_per_workspace as u64,
            )?
            .set_default(
                "destination_kept_states",
                defaults.destination_kept_states as u64,
            )?
            .set_default(
                "allow_loopback_providers",
                defaults.allow_loopback_providers,
            )?
            .set_default("allow_private_providers", defaults.allow_private_providers)?
            .set_default("dashboard_idle_minutes", defaults.dashboard_idle_minutes)?
            .set_default("ready_max_lag_secs", defaults.ready_max_lag_secs)?
            .set_default("request_timeout_secs", defaults.request_timeout_secs)?
            .set_default("allow_private_webhooks", defaults.allow_private_webhooks)?
            .set_default(
                "allow_private_destinations",
                defaults.allow_private_destinations,
            )?
            .set_default("webhook_first_retry_ms", defaults.webhook_first_retry_ms)?
            .set_default(
                "webhook_retry_window_secs",
                defaults.webhook_retry_window_secs,
            )?
            .set_default(
                "webhook_disable_after_secs",
                defaults.webhook_disable_after_secs,
            )?
            .set_default("shutdown_grace_secs", defaults.shutdown_grace_secs)?;
        for (provider, app) in defaults.oauth_apps() {
            builder = builder
                .set_default(format!("{provider}_client_id"), app.client_id)?
                .set_default(
                    format!("{provider}_client_secret"),
                    app.client_secret.expose_secret(),
                )?;
        }
        let path = file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("syncledger.toml"));
        builder = builder.add_source(config::File::from(path).required(file.is_some()));
        // Conventional names first, so SYNCLEDGER_* wins when both are set.
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override_option("database_url", Some(url))?;
        }
        if let Ok(url) = std::env::var("NATS_URL") {
            builder = builder.set_override_option("nats_url", Some(url))?;
        }
        for (key, var) in ENV_KEYS {
            if let Ok(v) = std::env::var(var) {
                builder = builder.set_override(key, v)?;
            }
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        Ok(settings)
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            database_url: self
                .database_url
                .as_ref()
                .map(|u| u.expose_secret().to_string())
                .filter(|u| !u.is_empty()),
            data_dir: self.data_dir.clone(),
            max_connections: self.database_max_connections,
        }
    }

    /// The OAuth app of each provider with a dedicated adapter, and of custom providers.
    pub fn oauth_apps(&self) -> Vec<(&'static str, ClientApp)> {
        let app = |id: &String, secret: &SecretString| ClientApp {
            client_id: id.clone(),
            client_secret: secret.clone(),
        };
        vec![
            (
                "hubspot",
                app(&self.hubspot_client_id, &self.hubspot_client_secret),
            ),
            (
                "salesforce",
                app(&self.salesforce_client_id, &self.salesforce_client_secret),
            ),
            (
                "pipedrive",
                app(&self.pipedrive_client_id, &self.pipedrive_client_secret),
            ),
            ("zoho", app(&self.zoho_client_id, &self.zoho_client_secret)),
            (
                "custom",
                app(&self.custom_client_id, &self.custom_client_secret),
            ),
        ]
    }

    /// Development: the environment says so, or (unset) no `database_url` is set.
    pub fn is_development(&self) -> bool {
        match self.environment {
            Some(env) => env == Environment::Development,
            None => self.store_config().database_url.is_none(),
        }
    }

    /// Which hosts integrations may reach: loopback in development or when allowed,
    /// private networks when allowed, public hosts always.
    pub fn outbound_policy(&self) -> OutboundPolicy {
        let development = self.is_development();
        OutboundPolicy {
            allow_loopback: development || self.allow_loopback_providers,
            allow_private: self.allow_private_providers,
            development,
        }
    }

    /// Which hosts outgoing webhooks may reach: public hosts, loopback as for providers,
    /// private networks when `allow_private_webhooks`.
    pub fn webhook_policy(&self) -> OutboundPolicy {
        let providers = self.outbound_policy();
        OutboundPolicy {
            allow_loopback: providers.allow_loopback,
            allow_private: self.allow_private_webhooks,
            development: false,
        }
    }

    /// Which hosts destination databases may be on: public hosts, loopback as for
    /// providers, private networks when `allow_private_destinations`.
    pub fn destination_policy(&self) -> OutboundPolicy {
        OutboundPolicy {
            allow_private: self.allow_private_destinations,
            ..self.webhook_policy()
        }
    }

    /// How failed webhook deliveries are retried, and when a failing endpoint is disabled.
    pub fn webhook_schedule(&self) -> syncledger_domain::webhook::RetrySchedule {
        let secs =
            |s: u64| chrono::Duration::seconds(i64::try_from(s.max(1)).unwrap_or(i64::MAX / 1000));
        syncledger_domain::webhook::RetrySchedule {
            first: chrono::Duration::milliseconds(
                i64::try_from(self.webhook_first_retry_ms.max(1)).unwrap_or(5000),
            ),
            give_up_after: secs(self.webhook_retry_window_secs),
            disable_after: secs(self.webhook_disable_after_secs),
            ..Default::default()
        }
    }

    /// Providers whose OAuth app is not configured: in development the sandbox app
    /// stands in for them.
    pub fn sandbox_app_providers(&self) -> Vec<&'static str> {
        if !self.is_development() {
            return Vec::new();
        }
        self.oauth_apps()
            .into_iter()
            .filter(|(_, app)| !configured(app))
            .map(|(provider, _)| provider)
            .collect()
    }

    /// The configured OAuth apps (sandbox apps in development where none is set),
    /// pacing and the outbound policy.
    pub fn provider_apps(&self) -> ProviderApps {
        let sandbox = self.sandbox_app_providers();
        let apps = self
            .oauth_apps()
            .into_iter()
            .filter_map(|(provider, app)| {
                if sandbox.contains(&provider) {
                    let app = ClientApp {
                        client_id: SANDBOX_CLIENT_ID.into(),
                        client_secret: SecretString::from(SANDBOX_CLIENT_SECRET),
                    };
                    return Some((provider.to_string(), app));
                }
                configured(&app).then(|| (provider.to_string(), app))
            })
            .collect();
        ProviderApps {
            apps,
            pacing: self.provider_pacing,
            outbound: self.outbound_policy(),
        }
    }

    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_string()
    }
}

impl Settings {
    /// Every setting as it is in force, by name, for `syncledger config check`:
    /// secrets are shown only as set or unset, a database URL without its password.
    pub fn effective(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{json, Value};
        let secret = |s: &SecretString| {
            if s.expose_secret().is_empty() {
                json!(null)
            } else {
                json!("<set, not shown>")
            }
        };
        let optional_secret = |s: &Option<SecretString>| s.as_ref().map_or(json!(null), secret);
        let environment = match self.environment {
            Some(Environment::Development) => json!("development"),
            Some(Environment::Production) => json!("production"),
            None => json!(null),
        };
        let values: [(&str, Value); COUNT] = [
            ("addr", json!(self.addr.to_string())),
            ("public_url", json!(self.public_url)),
            (
                "metrics_addr",
                json!(self.metrics_addr.map(|a| a.to_string())),
            ),
            ("data_dir", json!(self.data_dir.display().to_string())),
            (
                "database_url",
                self.store_config().database_url.map_or(json!(null), |u| {
                    json!(syncledger_store::config::redact_url(&u))
                }),
            ),
            (
                "database_max_connections",
                json!(self.database_max_connections),
            ),
            ("master_key", optional_secret(&self.master_key)),
            ("nats_url", json!(self.nats_url)),
            ("nats_stream", json!(self.nats_stream)),
            ("nats_subject_prefix", json!(self.nats_subject_prefix)),
            ("nats_job_ack_wait_secs", json!(self.nats_job_ack_wait_secs)),
            (
                "log_format",
                json!(match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }),
            ),
            ("rate_limit_per_minute", json!(self.rate_limit_per_minute)),
            ("projection_batch", json!(self.projection_batch)),
            ("projection_parallelism", json!(self.projection_parallelism)),
            ("hubspot_client_id", json!(self.hubspot_client_id)),
            ("hubspot_client_secret", secret(&self.hubspot_client_secret)),
            ("salesforce_client_id", json!(self.salesforce_client_id)),
            (
                "salesforce_client_secret",
                secret(&self.salesforce_client_secret),
            ),
            ("pipedrive_client_id", json!(self.pipedrive_client_id)),
            (
                "pipedrive_client_secret",
                secret(&self.pipedrive_client_secret),
            ),
            ("zoho_client_id", json!(self.zoho_client_id)),
            ("zoho_client_secret", secret(&self.zoho_client_secret)),
            ("custom_client_id", json!(self.custom_client_id)),
            ("custom_client_secret", secret(&self.custom_client_secret)),
            ("provider_pacing", json!(self.provider_pacing)),
            ("workers", json!(self.workers)),
            (
                "scheduler_interval_secs",
                json!(self.scheduler_interval_secs),
            ),
            ("sse_streams_per_token", json!(self.sse_streams_per_token)),
            (
                "sse_streams_per_workspace",
                json!(self.sse_streams_per_workspace),
            ),
            (
                "destination_kept_states",
                json!(self.destination_kept_states),
            ),
            ("environment", environment),
            (
                "allow_loopback_providers",
                json!(self.allow_loopback_providers),
            ),
            (
                "allow_private_providers",
                json!(self.allow_private_providers),
            ),
            ("dashboard_idle_minutes", json!(self.dashboard_idle_minutes)),
            ("ready_max_lag_secs", json!(self.ready_max_lag_secs)),
            ("request_timeout_secs", json!(self.request_timeout_secs)),
            ("allow_private_webhooks", json!(self.allow_private_webhooks)),
            (
                "allow_private_destinations",
                json!(self.allow_private_destinations),
            ),
            ("webhook_first_retry_ms", json!(self.webhook_first_retry_ms)),
            (
                "webhook_retry_window_secs",
                json!(self.webhook_retry_window_secs),
            ),
            (
                "webhook_disable_after_secs",
                json!(self.webhook_disable_after_secs),
            ),
            ("shutdown_grace_secs", json!(self.shutdown_grace_secs)),
            ("instance_name", json!(self.instance_name())),
        ];
        values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

impl Settings {
    /// [`Settings::instance_name`], or the host name (`localhost` when it cannot be read).
    pub fn instance_name(&self) -> String {
        self.instance_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(host_name)
            .unwrap_or_else(|| "localhost".into())
    }

    pub fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// The kernel's host name. Read from `/proc` rather than through a crate: one file on the
/// only platform syncledger runs on.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn configured(app: &ClientApp) -> bool {
    !app.client_id.is_empty() && !app.client_secret.expose_secret().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields `Settings` has, as serde names them when it refuses an unknown one.
    fn fields() -> Vec<String> {
        let refused = config::Config::builder()
            .set_override("no_such_setting", 1)
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize::<Settings>());
        let message = match refused {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        let listed = message.split("expected one of ").nth(1).unwrap_or_default();
        listed
            .split(", ")
            .map(|f| {
                f.trim_matches(|c: char| c == '`' || c.is_whitespace())
                    .to_string()
            })
            .filter(|f| !f.is_empty())
            .collect()
    }

    /// One list of settings: every field of `Settings` has its variable in ENV_KEYS, its
    /// line in `config check` and in syncledger.example.toml, and nothing else does.
    #[test]
    fn every_setting_is_listed_once_everywhere() {
        let mut fields = fields();
        assert_eq!(fields.len(), COUNT, "the fields serde lists: {fields:?}");
        fields.sort();
        let mut keys: Vec<String> = ENV_KEYS.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, fields, "ENV_KEYS names every setting");
        for (key, var) in ENV_KEYS {
            assert_eq!(var, format!("SYNCLEDGER_{}", key.to_uppercase()), "{key}");
        }
        let mut shown: Vec<String> = Settings::default().effective().keys().cloned().collect();
        shown.sort();
        assert_eq!(shown, keys, "config check shows every setting");
        let example = include_str!("../../syncledger.example.toml");
        for (key, var) in ENV_KEYS {
            assert!(
                example.contains(&format!("# {key} = ")) && example.contains(var),
                "syncledger.example.toml documents {key} and {var}"
            );
        }
    }

    #[test]
    fn unknown_variables_are_named_and_the_known_ones_pass() {
        assert_eq!(
            unknown_variable(["PATH", "SYNCLEDGER_WROKERS", "SYNCLEDGER_WORKERS"]),
            Some("SYNCLEDGER_WROKERS")
        );
        let known = [
            "SYNCLEDGER_WORKERS",
            "SYNCLEDGER_READY_MAX_LAG_SECS",
            "SYNCLEDGER_WORKER_GRACE_SECS",
            "SYNCLEDGER_CRASH_AT",
            "SYNCLEDGER_TEST_PG_URL",
            "SYNCLEDGER_MODEL_CASES",
            "DATABASE_URL",
            "NATS_URL",
        ];
        assert_eq!(unknown_variable(known), None);
    }

    #[test]
    fn config_check_shows_no_secret() {
        let s = Settings {
            database_url: Some(SecretString::from("postgres://u:hunter2@h/db")),
            master_key: Some(SecretString::from("c2VjcmV0LW1hc3Rlci1rZXk=")),
            hubspot_client_secret: SecretString::from("hs-app-secret"),
            custom_client_secret: SecretString::from("custom-app-secret"),
            ..Settings::default()
        };
        let shown = serde_json::Value::Object(s.effective()).to_string();
        for secret in ["hunter2", "c2VjcmV0", "hs-app-secret", "custom-app-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
        assert!(
            shown.contains(r#""master_key":"<set, not shown>""#),
            "{shown}"
        );
    }

    #[test]
    fn sandbox_apps_only_in_development() {
        let dev = Settings::default();
        assert!(dev.is_development());
        assert_eq!(dev.provider_apps().apps.len(), 5);
        assert!(dev.outbound_policy().allow_loopback);
        let prod = Settings {
            database_url: Some(SecretString::from("postgres://db/x")),
            ..Settings::default()
        };
        assert!(!prod.is_development());
        assert!(prod.provider_apps().apps.is_empty());
        assert_eq!(prod.outbound_policy(), OutboundPolicy::default());
        let explicit = Settings {
            environment: Some(Environment::Production),
            hubspot_client_id: "real".into(),
            hubspot_client_secret: SecretString::from("real-secret"),
            ..Settings::default()
        };
        let apps = explicit.provider_apps().apps;
        assert_eq!(apps.keys().collect::<Vec<_>>(), ["hubspot"]);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let s = Settings {
            database_url: Some(SecretString::from("postgres://u:hunter2@h/db")),
            master_key: Some(SecretString::from("c2VjcmV0LW1hc3Rlci1rZXk=")),
            hubspot_client_secret: SecretString::from("hs-app-secret"),
            salesforce_client_secret: SecretString::from("sf-app-secret"),
            pipedrive_client_secret: SecretString::from("pd-app-secret"),
            ..Settings::default()
        };
        let text = format!("{s:?}");
        assert!(
            !text.contains("hunter2")
                && !text.contains("c2VjcmV0")
                && !text.contains("hs-app-secret")
                && !text.contains("sf-app-secret")
                && !text.contains("pd-app-secret"),
            "{text}"
        );
    }
}
