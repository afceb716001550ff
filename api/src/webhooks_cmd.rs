//! `syncledger webhooks add|list|replay`: the outgoing-webhook use cases from the command
//! line, against the store directly (the same engine calls, events and audit entries as
//! `/v1/webhook-endpoints`), for an operator without an admin token at hand.

use crate::app;
use crate::config::Settings;
use crate::error::ApiError;
use crate::state::sync_engine;
use secrecy::ExposeSecret;
use std::process::ExitCode;
use std::sync::Arc;
use syncledger_bus::LocalBus;
use syncledger_engine::freshness::ReadYourWrites;
use syncledger_engine::webhook_endpoints::EndpointInput;
use syncledger_engine::Engine;
use syncledger_projections::Runner;
use syncledger_store::Metadata;
use tokio::sync::watch;

#[derive(clap::Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Register an endpoint; prints it as JSON with its signing secret (shown this once).
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        url: String,
        /// An event type of the catalogue (record.created, sync_run.failed, …);
        /// repeatable.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// The workspace's endpoints, one JSON object per line.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Send an endpoint everything since an instant (RFC 3339) again, same webhook-ids; a
    /// running server's delivery worker does the sending.
    Replay {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        endpoint: String,
        #[arg(long, value_parser = crate::replay::parse_until)]
        since: chrono::DateTime<chrono::Utc>,
    },
}

pub async fn run(settings: &Settings, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let cli = CliEngine::open(settings).await?;
    let outcome = execute(&cli.engine, command).await;
    cli.close().await;
    outcome
}

/// The engine of a command-line use case, against the store directly: the same calls,
/// events and audit entries as the API's, for an operator without an admin token at hand.
pub(crate) struct CliEngine {
    pub engine: Engine,
    store: syncledger_store::Store,
    stop: watch::Sender<bool>,
    following: tokio::task::JoinHandle<()>,
}

impl CliEngine {
    pub async fn open(settings: &Settings) -> anyhow::Result<CliEngine> {
        let (store, vault) = app::open_existing(settings).await?;
        Ok(Self::over(settings, store, vault, true))
    }

    /// An engine over `store`; its read models are followed when `follow` (else they
    /// stay where they are: a benchmark that measures something else).
    pub fn over(
        settings: &Settings,
        store: syncledger_store::Store,
        vault: syncledger_vault::Vault,
        follow: bool,
    ) -> CliEngine {
        let name = format!("cli:{}", std::process::id());
        let (connections, runs) = sync_engine(
            &store,
            vault.clone(),
            settings.provider_apps(),
            name.clone(),
            name,
        );
        // The engine answers commands once its read models show them: a runner of this
        // process's own keeps them up to date while the command runs.
        let wake = runs.committed();
        let fresh = ReadYourWrites::new(store.clone(), wake.clone(), LocalBus::new());
        let engine = Engine::new(
            store.clone(),
            vault,
            connections,
            runs,
            fresh,
            Arc::new(syncledger_engine::workers::Unassigned),
            None,
            settings.webhook_policy(),
            settings.destination_policy(),
        );
        let (stop, stopped) = watch::channel(false);
        let runner = Runner::new(store.clone(), syncledger_projections::all());
        let following = tokio::spawn(async move {
            if follow {
                runner.run(stopped, wake).await;
            }
        });
        CliEngine {
            engine,
            store,
            stop,
            following,
        }
    }

    pub async fn close(self) {
        let _ = self.stop.send(true);
        let _ = self.following.await;
        self.store.close().await;
    }
}

pub(crate) fn meta(workspace: &str, command: &str) -> Metadata {
    Metadata::new("system", workspace, uuid::Uuid::now_v7().to_string()).caused_by(command)
}

fn shown(e: &syncledger_domain::webhook::WebhookEndpoint) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "url": e.url,
        "event_types": e.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "description": e.description,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
    })
}

async fn execute(engine: &Engine, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let refused = |e: syncledger_engine::EngineError| anyhow::anyhow!(ApiError::from(e).message);
    let endpoints = engine.webhook_endpoints();
    match command {
        WebhooksCommand::Add {
            workspace,
            url,
            events,
            description,
        } => {
            let input = EndpointInput {
                url: Some(url),
                event_types: Some(events),
                description,
                enabled: None,
            };
            let made = endpoints
                .create(&meta(&workspace, "cli:webhooks"), input)
                .await
                .map_err(refused)?;
            let mut line = shown(&made.endpoint);
            line["secret"] = serde_json::json!(made.secret.expose_secret());
            println!("{line}");
        }
        WebhooksCommand::List { workspace } => {
            let mut after = String::new();
            loop {
                let page = endpoints
                    .list(&workspace, &after, 200)
                    .await
                    .map_err(refused)?;
                for e in &page {
                    println!("{}", shown(e));
                }
                match page.last().and_then(|e| e.id.clone()) {
                    Some(last) if page.len() == 200 => after = last,
                    _ => break,
                }
            }
        }
        WebhooksCommand::Replay {
            workspace,
            endpoint,
            since,
        } => {
            endpoints
                .replay(&meta(&workspace, "cli:webhooks"), &endpoint, since)
                .await
                .map_err(refused)?;
            println!(
                "{}",
                serde_json::json!({"endpoint": endpoint, "since": since.to_rfc3339()})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
