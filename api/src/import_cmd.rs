//! `syncledger import --integration I FILE.csv`: a CSV import from the command line, into
//! an integration of a CRM that publishes no API, against the store directly (the same
//! engine call, run of kind `import`, events and audit entries as
//! `POST /v1/integrations/{id}/imports`; actor `cli`). The run is executed in this
//! process, and one JSON line reports how it ended; exit 1 unless it completed.

use crate::config::Settings;
use crate::error::ApiError;
use crate::webhooks_cmd::CliEngine;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use syncledger_domain::import::MAX_CSV_BYTES;
use syncledger_domain::sync_run::RunStatus;
use syncledger_engine::imports::ImportOptions;
use syncledger_store::Metadata;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The integration (of Dubsado, HoneyBook, 17hats, Studio Ninja, Pixieset or Iris
    /// Works) the file comes from.
    #[arg(long)]
    pub integration: String,
    /// contacts (default) or companies.
    #[arg(long)]
    pub entity: Option<String>,
    /// The column holding the CRM's id of a record (default `id`); a row without one is
    /// told apart by its email (domain for companies).
    #[arg(long)]
    pub id_field: Option<String>,
    /// The CSV file: UTF-8, a header line naming the columns, at most 20 MiB and
    /// 100,000 rows.
    pub file: PathBuf,
}

/// How long the command waits for its run: in effect, until it ends.
const UNTIL_IT_ENDS: Duration = Duration::from_secs(24 * 60 * 60);

pub async fn run(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    // Read (and bounded) before anything is opened: a file refused changes nothing.
    let shown = args.file.display().to_string();
    let size = std::fs::metadata(&args.file)
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
        .len();
    if size > MAX_CSV_BYTES as u64 {
        anyhow::bail!(
            "{shown}: {size} bytes; at most {} MiB are imported at once (split the file)",
            MAX_CSV_BYTES / (1024 * 1024)
        );
    }
    let bytes = std::fs::read(&args.file).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let cli = CliEngine::open(settings).await?;
    let outcome = import(&cli, &args, &bytes).await;
    cli.close().await;
    outcome
}

async fn import(cli: &CliEngine, args: &ImportArgs, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let integration = cli
        .engine
        .integrations
        .load(&args.integration)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if integration.id.is_none() {
        anyhow::bail!("integration {} not found", args.integration);
    }
    let meta = Metadata::new(
        "cli",
        integration.workspace_id.clone(),
        uuid::Uuid::now_v7().to_string(),
    )
    .caused_by("cli:import");
    let options = ImportOptions {
        entity: args.entity.clone(),
        id_field: args.id_field.clone(),
    };
    let run = cli
        .engine
        .imports()
        .csv_waiting(&meta, &args.integration, bytes, &options, UNTIL_IT_ENDS)
        .await
        .map_err(|e| anyhow::anyhow!(ApiError::from(e).message))?;
    println!(
        "{}",
        serde_json::json!({
            "run_id": run.id,
            "integration_id": run.integration_id,
            "status": run.status.as_str(),
            "stats": run.stats,
            "failures": run.failures.len(),
            "reason": run.reason,
        })
    );
    Ok(match run.status {
        RunStatus::Completed => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
