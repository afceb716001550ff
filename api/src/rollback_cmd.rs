//! `syncledger rollback RUN_ID [--dry-run]`: the API's rollback, from the command line.
//! The rollback run is executed in this process; its events name the actor `cli`.
//! `syncledger diverged --integration I [--keep app|crm] [--record R]…`: what a rollback
//! left diverged, and an admin's choice for it, as `/v1/integrations/{id}/diverged` does.

use crate::app;
use crate::config::Settings;
use crate::state::sync_engine;
use std::process::ExitCode;
use syncledger_store::Metadata;

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The sync run to reverse.
    pub run_id: String,
    /// Print what the rollback would do (JSON) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(settings: &Settings, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let (store, vault) = app::open_existing(settings).await?;
    let name = format!("cli:{}", std::process::id());
    let (_, runs) = sync_engine(&store, vault, settings.provider_apps(), name.clone(), name);
    let outcome = async {
        let Some(target) = runs.load(&args.run_id).await? else {
            anyhow::bail!("sync run {} not found", args.run_id);
        };
        let meta = Metadata::new(
            "cli",
            target.workspace_id.clone(),
            uuid::Uuid::now_v7().to_string(),
        );
        if args.dry_run {
            let preview = runs.preview_rollback(&args.run_id, &meta).await?;
            println!("{}", serde_json::to_string_pretty(&preview)?);
            return Ok(ExitCode::SUCCESS);
        }
        let rollback_id = runs.rollback(&args.run_id, &meta).await?;
        let status = runs.execute(&rollback_id).await?;
        let run = runs
            .load(&rollback_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("rollback run {rollback_id} vanished"))?;
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "rollback_run_id": rollback_id,
                "rollback_of": args.run_id,
                "status": status.as_str(),
                "stats": run.stats,
                "failures": run.failures.len(),
            }))?
        );
        Ok(match status {
            syncledger_domain::sync_run::RunStatus::Completed => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        })
    }
    .await;
    store.close().await;
    outcome
}

#[derive(clap::Args, Debug)]
pub struct DivergedArgs {
    /// The integration whose diverged fields to list or settle.
    #[arg(long)]
    pub integration: String,
    /// Settle them: `app` pushes the app's values on the next run, `crm` takes the CRM's.
    /// Without it, only list them (JSON).
    #[arg(long, value_parser = ["app", "crm"])]
    pub keep: Option<String>,
    /// Only these records (repeatable); all of them when absent.
    #[arg(long = "record")]
    pub records: Vec<String>,
}

pub async fn diverged(settings: &Settings, args: DivergedArgs) -> anyhow::Result<ExitCode> {
    use syncledger_domain::merge::Side;
    use syncledger_engine::divergence;
    let (store, _) = app::open_existing(settings).await?;
    let outcome = async {
        let integration = store
            .cqrs::<syncledger_domain::Integration>()
            .load(&args.integration)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if integration.id.is_none() {
            anyhow::bail!("integration {} not found", args.integration);
        }
        syncledger_projections::Runner::new(store.clone(), syncledger_projections::all())
            .catch_up()
            .await?;
        let workspace = integration.workspace_id.clone();
        let Some(keep) = args.keep.as_deref() else {
            let list = divergence::list(&store, &workspace, &args.integration).await?;
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        };
        let keep = if keep == "app" { Side::App } else { Side::Crm };
        let meta = Metadata::new("cli", workspace, uuid::Uuid::now_v7().to_string());
        let records = (!args.records.is_empty()).then_some(args.records);
        let settled = divergence::settle(&store, &args.integration, keep, records, &meta).await?;
        println!("{}", serde_json::to_string(&settled)?);
        Ok(ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    outcome
}
