//! What the engine counts, through the `metrics` facade (a no-op until the process
//! installs a recorder; `syncledger serve` does when `metrics_addr` is set). Labels are
//! provider ids (catalogue ids, a bounded set) and values of bounded enumerations; never
//! a workspace, an integration or a run id.

use syncledger_domain::sync_run::{RunKind, RunStats, RunStatus};

/// Counter: sync runs this process executed to their end, by `provider`, `kind` and
/// `outcome` (the run's final status).
pub const SYNC_RUNS: &str = "syncledger_sync_runs_total";
/// Histogram: how long those runs took from start to end, by `provider` and `kind`.
pub const SYNC_RUN_DURATION: &str = "syncledger_sync_run_duration_seconds";
/// Counter: records those runs processed, by `provider` and `kind`.
pub const SYNC_RECORDS: &str = "syncledger_sync_records_processed_total";
/// Counter: OAuth token refreshes this process made at the provider, by `provider` and
/// `outcome` (`refreshed`; `rejected`: the provider refused the grant, or there was no
/// refresh token, so the integration needs reconnecting; `failed`: another error, tried
/// again later).
pub const TOKEN_REFRESHES: &str = "syncledger_token_refreshes_total";

/// Every metric of this crate, for the catalogue the server describes and documents.
pub const ALL: [&str; 4] = [SYNC_RUNS, SYNC_RUN_DURATION, SYNC_RECORDS, TOKEN_REFRESHES];

/// The label for an integration's provider: its catalogue id, `other` if it has none.
pub fn provider_label(provider: &str) -> &'static str {
    syncledger_domain::provider::find(provider).map_or("other", |p| p.id)
}

pub fn kind_label(kind: Option<RunKind>) -> &'static str {
    match kind {
        Some(RunKind::Full) => "full",
        Some(RunKind::Incremental) => "incremental",
        Some(RunKind::Push) => "push",
        Some(RunKind::Reapply) => "reapply",
        Some(RunKind::Rollback) => "rollback",
        Some(RunKind::Import) => "import",
        None => "unknown",
    }
}

/// A run this process executed has ended with `status` after `seconds`.
pub(crate) fn run_ended(
    provider: &str,
    kind: Option<RunKind>,
    status: RunStatus,
    seconds: Option<f64>,
    stats: &RunStats,
) {
    let (provider, kind) = (provider_label(provider), kind_label(kind));
    metrics::counter!(SYNC_RUNS, "provider" => provider, "kind" => kind, "outcome" => status.as_str())
        .increment(1);
    if let Some(seconds) = seconds {
        metrics::histogram!(SYNC_RUN_DURATION, "provider" => provider, "kind" => kind)
            .record(seconds);
    }
    metrics::counter!(SYNC_RECORDS, "provider" => provider, "kind" => kind)
        .increment(stats.processed);
}

/// One refresh at the provider, and how it went.
pub(crate) fn token_refresh(provider: &str, outcome: &'static str) {
    metrics::counter!(TOKEN_REFRESHES, "provider" => provider_label(provider), "outcome" => outcome)
        .increment(1);
}
