//! `syncledger bench` (filled in below).
use crate::cli::BenchArgs;
use crate::config::Settings;
use std::process::ExitCode;

pub async fn run(_settings: &Settings, _args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("bench is not built yet")
}
