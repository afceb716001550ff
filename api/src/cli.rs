//! The `syncledger` command line.

use crate::app::{self, Application};
use crate::config::{LogFormat, Settings};
use crate::error::ApiError;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use syncledger_domain::{Plan, Role};
use syncledger_engine::workspaces;
use syncledger_vault::MasterKey;

#[derive(Parser, Debug)]
#[command(name = "syncledger", version, about = "Event-sourced CRM sync engine")]
pub struct Cli {
    /// Configuration file (default: ./syncledger.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log as text or JSON.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print each command's result as JSON (one object per line) instead of text; the
    /// commands that print JSON anyway are unchanged.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API with its projection runner and event publisher.
    Serve {
        /// Listen address (default 127.0.0.1:8080).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage API tokens locally (needs the data directory or the database, not the API).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// The dashboard: make a one-time sign-in link.
    Dashboard {
        #[command(subcommand)]
        command: DashboardCommand,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `syncledger completions bash > /etc/bash_completion.d/syncledger`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The configuration: `config check` prints every setting as it is in force (from the
    /// defaults, the file and the environment), secrets only as set or unset.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Rebuild projections from position zero into fresh tables, then swap them in; or,
    /// with --into, build them as they were at --until into new SQLite files.
    Replay {
        /// A projection (integration_status, audit_log, sync_runs, records, conflicts,
        /// webhook_endpoints), repeatable, or `all`; default all.
        #[arg(long)]
        projection: Vec<String>,
        /// With --into: only events recorded at or before this RFC 3339 time.
        #[arg(long, value_parser = crate::replay::parse_until)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Write each projection to DIR/<projection>-<until>.sqlite plus a .json manifest,
        /// leaving the live tables alone.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
    },
    /// Outgoing webhooks: register an endpoint, list them, replay one since an instant.
    Webhooks {
        #[command(subcommand)]
        command: crate::webhooks_cmd::WebhooksCommand,
    },
    /// Postgres destinations: add one (its URL from DESTINATION_DATABASE_URL), list
    /// them, rebuild one.
    Destinations {
        #[command(subcommand)]
        command: crate::destinations_cmd::DestinationsCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure throughput: the event store (default), or `bench sync` against a sandbox.
    Bench(crate::bench::BenchCommand),
    /// Execute sync runs: from the NATS job queue, or polled from the store without NATS.
    Worker(crate::worker::WorkerArgs),
    /// Reverse a sync run (compensating events, CRM values written back), or preview it.
    Rollback(crate::rollback_cmd::RollbackArgs),
    /// Import a CSV file into an integration of a CRM that publishes no API (a sync run
    /// of kind import, executed here; one JSON line reports it; exit 1 unless completed).
    Import(crate::import_cmd::ImportArgs),
    /// List the fields a rollback left diverged from an integration's CRM, or settle them
    /// (`--keep app` pushes the app's values, `--keep crm` takes the CRM's).
    Diverged(crate::rollback_cmd::DivergedArgs),
    /// Run a local simulator of a provider's API (first line: `listening on http://HOST:PORT`).
    #[cfg(feature = "sandbox")]
    Sandbox {
        #[arg(value_parser = ["hubspot", "salesforce", "pipedrive", "zoho", "generic"])]
        provider: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Records seeded per object type.
        #[arg(long, default_value_t = 100)]
        records: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// HubSpot and Zoho only: enforce this many requests per 10 seconds (429 beyond).
        #[arg(long)]
        rate_limit_per_10s: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace; prints {"workspace_id":…,"admin_token":…,"sign_in_url":…}
    /// (the URL signs an admin in to the dashboard once, within 15 minutes).
    Create {
        name: String,
        #[arg(long, default_value = "starter")]
        plan: Plan,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration as JSON (an unknown key or variable has already
    /// stopped the binary with its name).
    Check,
}

#[derive(Subcommand, Debug)]
pub enum DashboardCommand {
    /// Print a one-time sign-in URL for the workspace's dashboard (single use, valid for
    /// 15 minutes; the URL starts with the configured public URL). Issuing it is recorded
    /// in the audit trail.
    Link {
        /// The workspace id.
        #[arg(long)]
        workspace: String,
        /// admin (default), operator, viewer or auditor.
        #[arg(long, value_parser = parse_role, default_value = "admin")]
        role: Role,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Issue a token for a workspace, as `POST /v1/tokens` does (same use case, same audit
    /// event), e.g. to recover a workspace whose admin tokens are all lost. Prints
    /// {"workspace_id":…,"token_id":…,"role":…,"label":…,"token":…} once.
    Create {
        /// The workspace id.
        #[arg(long)]
        workspace: String,
        /// admin, operator, viewer or auditor.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The token's label (shown by `GET /v1/tokens`).
        #[arg(long, default_value = "issued by the local CLI")]
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        format!("unknown role {text:?} (expected admin, operator, viewer or auditor)")
    })
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Generate a new master key and re-wrap every data key with it.
    RotateMaster,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain; exits non-zero naming the first broken position.
    Verify {
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Write a workspace's trail (filtered like `GET /v1/audit`) as JSON lines or CSV,
    /// read and written a chunk at a time.
    Export(ExportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub workspace: String,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: crate::trail::Format,
    /// The file to write (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub integration: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    /// An event type, e.g. IntegrationPaused.
    #[arg(long)]
    pub action: Option<String>,
    /// RFC 3339, inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[arg(long)]
    pub to: Option<String>,
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(f) = cli.log_format {
        settings.log_format = f;
    }
    crate::telemetry::init(settings.log_format);
    match run(cli.command, settings, Print { json: cli.json }).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", each_cause_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: many of our errors already
/// include their source in their own message ("key vault: key file: …"), and printing
/// the chain as well (`{:#}`) would repeat it.
pub fn each_cause_once(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// How a command prints its result: text for a person, or `--json` for a program.
#[derive(Clone, Copy, Debug)]
pub struct Print {
    pub json: bool,
}

impl Print {
    /// Prints `value` as one JSON line with `--json`, else `text`.
    fn result(self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }
}

async fn run(command: Command, mut settings: Settings, print: Print) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { addr } => {
            if let Some(a) = addr {
                settings.addr = a;
            }
            let shutdown = app::shutdown_signal()?;
            let app = Application::build(settings.clone()).await?;
            tracing::info!(addr = %app.addr(), store = %settings.store_config().redacted_url(), "syncledger listening");
            println!("listening on http://{}", app.addr());
            app.run(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "syncledger", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let shown = serde_json::Value::Object(settings.effective());
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Workspace {
            command: WorkspaceCommand::Create { name, plan },
        } => {
            let (store, _vault) = app::open(&settings).await?;
            let (workspace_id, token) = workspaces::create_workspace(&store, &name, plan)
                .await
                .map_err(|e| anyhow::anyhow!(ApiError::from(e).message))?;
            let link = sign_in_url(&settings, &store, &workspace_id, Role::Admin).await;
            store.close().await;
            #[derive(serde::Serialize)]
            struct Created<'a> {
                workspace_id: &'a str,
                admin_token: &'a str,
                sign_in_url: &'a str,
            }
            let line = Created {
                workspace_id: &workspace_id,
                admin_token: &token.bearer,
                sign_in_url: &link?,
            };
            println!("{}", serde_json::to_string(&line)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard {
            command: DashboardCommand::Link { workspace, role },
        } => {
            let (store, _vault) = app::open_existing(&settings).await?;
            let link = sign_in_url(&settings, &store, &workspace, role).await;
            store.close().await;
            let link = link?;
            print.result(serde_json::json!({"sign_in_url": link}), || link.clone());
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens {
            command:
                TokensCommand::Create {
                    workspace,
                    role,
                    name,
                },
        } => create_token(&settings, &workspace, role, &name).await,
        Command::Keys {
            command: KeysCommand::RotateMaster,
        } => rotate_master(&settings, print).await,
        Command::Replay {
            projection,
            until,
            into,
        } => match (until, into) {
            (Some(_), None) => anyhow::bail!(
                "--until needs --into DIR: the live tables always hold the current state \
                 (rewriting them to a past state is not allowed); replay into a separate place"
            ),
            (until, Some(dir)) => replay_into(&settings, &projection, until, &dir, print).await,
            (None, None) => replay(&settings, &projection, print).await,
        },
        Command::Rollback(args) => crate::rollback_cmd::run(&settings, args).await,
        Command::Webhooks { command } => crate::webhooks_cmd::run(&settings, command).await,
        Command::Destinations { command } => crate::destinations_cmd::run(&settings, command).await,
        Command::Diverged(args) => crate::rollback_cmd::diverged(&settings, args).await,
        Command::Import(args) => crate::import_cmd::run(&settings, args).await,
        Command::Audit {
            command: AuditCommand::Verify { workspace },
        } => {
            let (store, _) = app::open_existing(&settings).await?;
            syncledger_projections::Runner::new(store.clone(), syncledger_projections::all())
                .catch_up()
                .await?;
            let report =
                syncledger_projections::audit::verify(&store, workspace.as_deref()).await?;
            store.close().await;
            if let (Some(w), 0) = (&workspace, report.workspaces) {
                // A workspace exists from its first event on: none means no such workspace
                // (a typo must not read as a verified chain).
                eprintln!("error: no workspace {w} in this store");
                return Ok(ExitCode::from(2));
            }
            match report.broken {
                None => {
                    print.result(
                        serde_json::json!({"ok": true, "checked": report.checked,
                            "workspaces": report.workspaces, "unverified": report.unverified}),
                        || {
                            format!(
                                "audit chain ok: {} event(s) in {} workspace(s)",
                                report.checked, report.workspaces
                            )
                        },
                    );
                    if let Some(n) = report.unverified.filter(|n| *n > 0) {
                        eprintln!(
                            "warning: {n} stored event(s) are not projected yet and were not verified; run again"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    print.result(
                        serde_json::json!({"ok": false, "broken_at": b.position,
                            "workspace_id": b.workspace_id, "reason": b.reason}),
                        || {
                            format!(
                                "audit chain BROKEN at position {} (workspace {}): {}",
                                b.position, b.workspace_id, b.reason
                            )
                        },
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Export(args),
        } => audit_export(&settings, args).await,
        Command::Bench(command) => crate::bench::run(&settings, command).await,
        Command::Worker(args) => crate::worker::run(&settings, args).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            provider,
            addr,
            records,
            seed,
            rate_limit_per_10s,
        } => {
            use syncledger_sandbox::{
                GenericSandboxConfig, PipedriveSandboxConfig, SalesforceSandboxConfig, Sandbox,
                SandboxConfig, ZohoSandboxConfig,
            };
            let mut shutdown = app::shutdown_signal()?;
            let sandbox = match provider.as_str() {
                "salesforce" => {
                    Sandbox::start_salesforce(SalesforceSandboxConfig {
                        addr,
                        records,
                        seed,
                        ..Default::default()
                    })
                    .await?
                }
                "generic" => {
                    Sandbox::start_generic(GenericSandboxConfig {
                        addr,
                        records,
                        seed,
                        ..Default::default()
                    })
                    .await?
                }
                "zoho" => {
                    Sandbox::start_zoho(ZohoSandboxConfig {
                        addr,
                        records,
                        seed,
                        rate_limit: rate_limit_per_10s.map(|max| syncledger_sandbox::RateLimit {
                            max,
                            interval_ms: 10_000,
                        }),
                        ..Default::default()
                    })
                    .await?
                }
                "pipedrive" => {
                    Sandbox::start_pipedrive(PipedriveSandboxConfig {
                        addr,
                        records,
                        seed,
                        ..Default::default()
                    })
                    .await?
                }
                _ => {
                    Sandbox::start_hubspot(SandboxConfig {
                        addr,
                        records,
                        seed,
                        rate_limit: rate_limit_per_10s.map(|max| syncledger_sandbox::RateLimit {
                            max,
                            interval_ms: 10_000,
                        }),
                        ..Default::default()
                    })
                    .await?
                }
            };
            println!("listening on {}", sandbox.base_url());
            shutdown.wait_for(|stop| *stop).await?;
            sandbox.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn progress_bar(total: i64, name: &str) -> ProgressBar {
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:20} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}

async fn replay(settings: &Settings, only: &[String], print: Print) -> anyhow::Result<ExitCode> {
    let projections = crate::replay::select(only)?;
    let (store, _) = app::open_existing(settings).await?;
    let total = store.feed().count().await?;
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    let bar = progress_bar(total, &names.join(", "));
    let started = std::time::Instant::now();
    // The log is read once for all of them (`rebuild_all`), each swapped in atomically.
    let selected: Vec<&dyn syncledger_projections::Projection> =
        projections.iter().map(|p| p.as_ref()).collect();
    let applied = syncledger_projections::rebuild::rebuild_all(
        &store,
        &selected,
        settings.projection_batch,
        &|n| bar.set_position(n.max(0) as u64),
    )
    .await?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    for (name, applied) in applied {
        print.result(
            serde_json::json!({"projection": name, "events": applied,
                "seconds": seconds, "swapped_in": true}),
            || format!("{name}: rebuilt from {applied} event(s) in {seconds:.2}s and swapped in"),
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn audit_export(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    use crate::trail::{parse_time, Export, Filter};
    use anyhow::Context;
    use std::io::Write;
    let time = |name: &str, v: Option<&str>| {
        parse_time(v).with_context(|| format!("--{name} must be an RFC 3339 time"))
    };
    let filter = Filter {
        from: time("from", args.from.as_deref())?,
        to: time("to", args.to.as_deref())?,
        workspace_id: args.workspace,
        integration: args.integration,
        actor: args.actor,
        action: args.action,
    };
    let (store, _) = app::open_existing(settings).await?;
    syncledger_projections::Runner::new(store.clone(), syncledger_projections::all())
        .catch_up()
        .await?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let started = std::time::Instant::now();
    let mut export = Export::start(store.any.clone(), filter, args.format).await?;
    while let Some(chunk) = export.next_chunk().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    store.close().await;
    eprintln!(
        "exported {} audit entries in {:.2}s",
        export.rows(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `replay --into DIR [--until T]` (default: now). Reads the live store, writes only in DIR.
async fn replay_into(
    settings: &Settings,
    only: &[String],
    until: Option<chrono::DateTime<chrono::Utc>>,
    dir: &std::path::Path,
    print: Print,
) -> anyhow::Result<ExitCode> {
    let projections = crate::replay::select(only)?;
    let until = until.unwrap_or_else(chrono::Utc::now);
    let (store, _) = app::open_existing(settings).await?;
    let total = store.feed().count().await?;
    for p in projections {
        let bar = progress_bar(total, p.name());
        let result = crate::replay::replay_into(
            &store,
            p.as_ref(),
            until,
            dir,
            settings.projection_batch,
            &|n| bar.set_position(n.max(0) as u64),
        )
        .await;
        bar.finish_and_clear();
        let written = result?;
        let until = until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        print.result(
            serde_json::json!({"projection": p.name(), "events": written.replayed.events,
                "until": until, "database": written.database.display().to_string(),
                "manifest": written.manifest.display().to_string()}),
            || {
                format!(
                    "{}: {} event(s) up to {until} written to {} (manifest {})",
                    p.name(),
                    written.replayed.events,
                    written.database.display(),
                    written.manifest.display()
                )
            },
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// With a key file: the new key is written beside it first (`master.key.new`), the data keys
/// are re-wrapped in one transaction, then the new file replaces the old. With
/// `SYNCLEDGER_MASTER_KEY`: the new key is printed once; put it in the environment.
/// `tokens create`: the API's token use case against the local store; the bearer token is
/// printed once and never logged.
/// A one-time dashboard sign-in URL for `workspace_id`, under the public URL (or the
/// listen address when none is configured).
async fn sign_in_url(
    settings: &Settings,
    store: &syncledger_store::Store,
    workspace_id: &str,
    role: Role,
) -> anyhow::Result<String> {
    let meta =
        syncledger_store::Metadata::new("system", workspace_id, uuid::Uuid::now_v7().to_string())
            .caused_by("cli:dashboard-link");
    let link =
        syncledger_engine::sign_in::issue_link(store, &store.cqrs(), &meta, workspace_id, role)
            .await
            .map_err(|e| anyhow::anyhow!(ApiError::from(e).message))?;
    let base = settings.public_url(settings.addr);
    Ok(crate::dashboard::link_url(&base, &link.code))
}

async fn create_token(
    settings: &Settings,
    workspace_id: &str,
    role: Role,
    label: &str,
) -> anyhow::Result<ExitCode> {
    let (store, _vault) = app::open_existing(settings).await?;
    let meta =
        syncledger_store::Metadata::new("system", workspace_id, uuid::Uuid::now_v7().to_string())
            .caused_by("cli:tokens-create");
    let token = (role, label, None);
    let issued = workspaces::issue_token(&store, &store.cqrs(), workspace_id, token, &meta)
        .await
        .map_err(|e| anyhow::anyhow!(ApiError::from(e).message));
    store.close().await;
    let issued = issued?;
    #[derive(serde::Serialize)]
    struct Issued<'a> {
        workspace_id: &'a str,
        token_id: &'a str,
        role: &'a str,
        label: &'a str,
        token: &'a str,
    }
    let line = Issued {
        workspace_id,
        token_id: &issued.id,
        role: issued.role.as_str(),
        label: &issued.label,
        token: &issued.bearer,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(ExitCode::SUCCESS)
}

async fn rotate_master(settings: &Settings, print: Print) -> anyhow::Result<ExitCode> {
    let (store, vault) = app::open_existing(settings).await?;
    let new = MasterKey::generate();
    let from_env = settings.master_key.is_some();
    let key_file = settings.data_dir.join("master.key");
    let staged = settings.data_dir.join("master.key.new");
    if !from_env {
        write_private(&staged, &new.to_base64())?;
    }
    let printable = new.to_base64();
    let new_id = new.id().to_string();
    let count = vault.rotate_master(new).await?;
    if from_env {
        print.result(
            serde_json::json!({"rewrapped": count, "master_key_id": new_id,
                "master_key": printable}),
            || {
                format!(
                    "re-wrapped {count} data key(s) with master key {new_id}\n\
                     set SYNCLEDGER_MASTER_KEY to the new key before the next start:\n{printable}"
                )
            },
        );
    } else {
        std::fs::rename(&staged, &key_file)?;
        print.result(
            serde_json::json!({"rewrapped": count, "master_key_id": new_id,
                "key_file": key_file.display().to_string()}),
            || {
                format!(
                    "re-wrapped {count} data key(s) with master key {new_id}; {} updated",
                    key_file.display()
                )
            },
        );
    }
    // A server or worker already running holds the old key in memory: it reads sealed
    // credentials no more until it restarts with the new one.
    eprintln!(
        "restart every `syncledger serve` and `syncledger worker` process using this store \
         now: they hold the old master key until they start again"
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::each_cause_once;

    #[derive(Debug, thiserror::Error)]
    #[error("key file: {0}")]
    struct KeyFile(#[from] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("key vault: {0}")]
    struct Vault(#[from] KeyFile);

    /// A message that already holds its cause is not followed by it again; a context
    /// that does not is followed by its cause.
    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let nested = anyhow::Error::from(Vault(KeyFile(io)));
        assert_eq!(
            each_cause_once(&nested),
            "key vault: key file: Is a directory (os error 21)"
        );
        assert_ne!(format!("{nested:#}"), each_cause_once(&nested));
        let context = anyhow::Error::from(std::io::Error::other("connection refused"))
            .context("open the store");
        assert_eq!(
            each_cause_once(&context),
            "open the store: connection refused"
        );
    }
}
