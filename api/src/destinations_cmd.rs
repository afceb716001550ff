//! `syncledger destinations add|list|rebuild`: the Postgres destination use cases from the
//! command line, against the store directly (the same engine calls, events and audit
//! entries as `/v1/destinations`). A running server's sink does the writing.

use crate::config::Settings;
use crate::error::ApiError;
use crate::webhooks_cmd::{meta, CliEngine};
use secrecy::SecretString;
use std::path::PathBuf;
use std::process::ExitCode;
use syncledger_domain::destination::{Destination, TableMapping};
use syncledger_engine::destinations::DestinationInput;
use syncledger_engine::Engine;

#[derive(clap::Subcommand, Debug)]
pub enum DestinationsCommand {
    /// Create a destination; prints it as JSON. The database URL is read from the
    /// environment variable `DESTINATION_DATABASE_URL` (never from the command line,
    /// which other users of the machine can read).
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        name: String,
        /// A JSON file holding the table mappings (an array, as `POST /v1/destinations`
        /// takes them).
        #[arg(long)]
        mappings: PathBuf,
        /// The schema of the tables (default `public`).
        #[arg(long)]
        schema: Option<String>,
        /// Create mapped tables that do not exist yet.
        #[arg(long)]
        create_tables: bool,
    },
    /// The workspace's destinations, one JSON object per line.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Refill a destination's tables from the log's beginning and swap them in.
    Rebuild {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        destination: String,
    },
}

/// The variable `destinations add` reads the database URL from.
pub const URL_VAR: &str = "DESTINATION_DATABASE_URL";

pub async fn run(settings: &Settings, command: DestinationsCommand) -> anyhow::Result<ExitCode> {
    // Read before anything is opened: a missing URL changes nothing.
    let url = match &command {
        DestinationsCommand::Add { .. } => Some(std::env::var(URL_VAR).map_err(|_| {
            anyhow::anyhow!("set {URL_VAR} to the destination database's URL (postgres://…)")
        })?),
        _ => None,
    };
    let mappings = match &command {
        DestinationsCommand::Add { mappings, .. } => {
            let text = std::fs::read_to_string(mappings)
                .map_err(|e| anyhow::anyhow!("{}: {e}", mappings.display()))?;
            serde_json::from_str::<Vec<TableMapping>>(&text)
                .map_err(|e| anyhow::anyhow!("{}: not table mappings: {e}", mappings.display()))?
        }
        _ => vec![],
    };
    let cli = CliEngine::open(settings).await?;
    let outcome = execute(&cli.engine, command, url, mappings).await;
    cli.close().await;
    outcome
}

fn shown(d: &Destination) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "name": d.name,
        "target": d.target,
        "schema": d.schema,
        "tables": d.mappings.iter().map(|m| serde_json::json!({"entity": m.entity.as_str(), "table": m.table})).collect::<Vec<_>>(),
        "generation": d.generation,
    })
}

async fn execute(
    engine: &Engine,
    command: DestinationsCommand,
    url: Option<String>,
    mappings: Vec<TableMapping>,
) -> anyhow::Result<ExitCode> {
    let refused = |e: syncledger_engine::EngineError| anyhow::anyhow!(ApiError::from(e).message);
    let destinations = engine.destinations();
    match command {
        DestinationsCommand::Add {
            workspace,
            name,
            schema,
            create_tables,
            ..
        } => {
            let input = DestinationInput {
                name,
                database_url: SecretString::from(url.unwrap_or_default()),
                schema,
                mappings,
                create_tables,
            };
            let made = destinations
                .create(&meta(&workspace, "cli:destinations"), input)
                .await
                .map_err(refused)?;
            println!("{}", shown(&made));
        }
        DestinationsCommand::List { workspace } => {
            let mut after = String::new();
            loop {
                let page = destinations
                    .list(&workspace, &after, 200)
                    .await
                    .map_err(refused)?;
                for d in &page {
                    println!("{}", shown(d));
                }
                match page.last().and_then(|d| d.id.clone()) {
                    Some(last) if page.len() == 200 => after = last,
                    _ => break,
                }
            }
        }
        DestinationsCommand::Rebuild {
            workspace,
            destination,
        } => {
            let d = destinations
                .rebuild(&meta(&workspace, "cli:destinations"), &destination)
                .await
                .map_err(refused)?;
            println!("{}", shown(&d));
        }
    }
    Ok(ExitCode::SUCCESS)
}
