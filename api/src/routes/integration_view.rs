//! How the API shows an integration and its sync configuration: the views shared by the
//! integrations routes and their `as_of` reads (kept apart so neither imports the other).

use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use syncledger_domain::sync_config::{
    OnAppArchive, OnCrmDelete, MAX_INTERVAL_MINUTES, MIN_INTERVAL_MINUTES,
};
use syncledger_domain::{ConflictStrategy, Direction, Entity, Frequency, SyncConfig};
use syncledger_engine::integrations::IntegrationState;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrequencyKind {
    Manual,
    Interval,
    Daily,
    Realtime,
}

/// The sync configuration as the API speaks it.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncConfigBody {
    /// pull, push or bidirectional.
    #[schema(value_type = String, example = "bidirectional")]
    pub direction: Direction,
    pub frequency: FrequencyKind,
    /// Required when frequency is `interval`: 15 to 1440.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_minutes: Option<u32>,
    /// contacts and/or companies.
    #[schema(value_type = Vec<String>, example = json!(["contacts", "companies"]))]
    pub entities: Vec<Entity>,
    /// last_write_wins, crm_wins, app_wins or manual_review.
    #[schema(value_type = String, example = "manual_review")]
    pub conflict_strategy: ConflictStrategy,
    /// What a deletion in the CRM does to the linked app record:
    /// `archive_record` (default: the record is archived, its link shown as
    /// `deleted_in_crm` and never pushed again), `unlink` (the record stays, app-only:
    /// later runs neither push it nor create it in the CRM again) or
    /// `keep_and_recreate` (the only choice that creates the CRM record again, on the
    /// next push).
    #[serde(default)]
    #[schema(value_type = String, example = "archive_record")]
    pub on_crm_delete: OnCrmDelete,
    /// What archiving a record in the app (`POST /v1/records/{id}/archive`) does in the
    /// CRM: `nothing` (default) or `delete_in_crm` (the next push deletes the CRM record
    /// and marks the link `deleted_in_crm`). `delete_in_crm` is refused (400) for a
    /// provider syncledger cannot delete records in (today every provider but HubSpot).
    #[serde(default)]
    #[schema(value_type = String, example = "nothing")]
    pub on_app_archive: OnAppArchive,
}

impl SyncConfigBody {
    pub(crate) fn into_domain(self) -> ApiResult<SyncConfig> {
        let frequency = match (self.frequency, self.interval_minutes) {
            (FrequencyKind::Interval, Some(minutes)) => Frequency::Interval { minutes },
            (FrequencyKind::Interval, None) => {
                return Err(ApiError::invalid_field(
                    "sync_config.interval_minutes",
                    format!("is required when frequency is interval ({MIN_INTERVAL_MINUTES} to {MAX_INTERVAL_MINUTES})"),
                ))
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid_field(
                    "sync_config.interval_minutes",
                    "is only allowed when frequency is interval",
                ))
            }
            (FrequencyKind::Manual, None) => Frequency::Manual,
            (FrequencyKind::Daily, None) => Frequency::Daily,
            (FrequencyKind::Realtime, None) => Frequency::Realtime,
        };
        let config = SyncConfig {
            direction: self.direction,
            frequency,
            entities: self.entities,
            conflict_strategy: self.conflict_strategy,
            on_crm_delete: self.on_crm_delete,
            on_app_archive: self.on_app_archive,
        };
        config
            .validate()
            .map_err(|e| ApiError::invalid_field(e.field, e.message))?;
        Ok(config)
    }

    pub(crate) fn from_domain(c: &SyncConfig) -> Self {
        let (frequency, interval_minutes) = match c.frequency {
            Frequency::Manual => (FrequencyKind::Manual, None),
            Frequency::Interval { minutes } => (FrequencyKind::Interval, Some(minutes)),
            Frequency::Daily => (FrequencyKind::Daily, None),
            Frequency::Realtime => (FrequencyKind::Realtime, None),
        };
        SyncConfigBody {
            direction: c.direction,
            frequency,
            interval_minutes,
            entities: c.entities.clone(),
            conflict_strategy: c.conflict_strategy,
            on_crm_delete: c.on_crm_delete,
            on_app_archive: c.on_app_archive,
        }
    }
}

#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: String,
    pub provider: String,
    pub name: String,
    /// pending_auth, connected, paused, error or disconnected.
    pub status: String,
    pub sync_config: SyncConfigBody,
    pub base_url: Option<String>,
    pub last_error: Option<String>,
    /// oauth2, api_key or basic: never the credential itself.
    pub credential_kind: Option<String>,
    pub credentials_expire_at: Option<String>,
    /// When someone stored the current credentials (connected, or typed a key).
    pub credentials_set_at: Option<String>,
    /// When they were last rotated since (an OAuth token refresh); null if never.
    pub credentials_rotated_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub next_sync_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
    /// The latest sync run: its status and counts (null before the first run, and in
    /// `as_of` answers).
    pub last_run: Option<LastRunView>,
}

/// The integration's latest sync run, in short (`GET /v1/sync-runs/{id}` has the rest).
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct LastRunView {
    pub id: String,
    /// full, incremental, push, reapply or rollback.
    pub kind: String,
    /// queued, running, completed, partial, failed, cancelled or quota_exhausted.
    pub status: String,
    pub stats: crate::routes::sync_runs::StatsView,
    pub queued_at: Option<String>,
    pub ended_at: Option<String>,
    /// Why it failed, was cancelled or stopped.
    pub reason: Option<String>,
}

impl From<&syncledger_domain::sync_run::SyncRun> for LastRunView {
    fn from(run: &syncledger_domain::sync_run::SyncRun) -> Self {
        let full = crate::routes::sync_runs::view(run);
        LastRunView {
            id: full.id,
            kind: full.kind,
            status: full.status,
            stats: full.stats,
            queued_at: full.queued_at,
            ended_at: full.ended_at,
            reason: full.reason,
        }
    }
}

/// RFC 3339 in UTC, to the second, as every API time is.
pub(crate) fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stored RFC 3339 time as the API shows it (see [`secs`]); unreadable is none.
pub(crate) fn api_time(stored: Option<String>) -> Option<String> {
    stored
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| secs(t.with_timezone(&Utc)))
}

impl From<IntegrationState> for IntegrationView {
    fn from(s: IntegrationState) -> Self {
        let r = s.row;
        IntegrationView {
            id: r.id,
            provider: r.provider,
            name: r.name,
            status: r.status,
            sync_config: SyncConfigBody::from_domain(&r.sync_config),
            base_url: r.base_url,
            last_error: r.last_error,
            credential_kind: r.credential_kind,
            credentials_expire_at: r.credentials_expire_at.map(secs),
            credentials_set_at: r.credentials_set_at.map(secs),
            credentials_rotated_at: r.credentials_rotated_at.map(secs),
            last_sync_at: r.last_sync_at.map(secs),
            next_sync_at: r.next_sync_at.map(secs),
            created_at: r.created_at.map(secs).unwrap_or_default(),
            updated_at: r.updated_at.map(secs).unwrap_or_default(),
            version: r.version,
            last_run: s.last_run.as_ref().map(LastRunView::from),
        }
    }
}
