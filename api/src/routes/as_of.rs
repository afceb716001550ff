//! `?as_of=` on `GET /v1/records/{id}` and `GET /v1/integrations/{id}`: the resource as it
//! was at an instant, folded from the prefix of its events recorded by then (the rule is
//! in `syncledger_store::history`). Before the resource's first event it did not exist
//! (404, as an unknown id); an instant in the future gives the current state.

use crate::error::{ApiError, ApiResult};
use crate::routes::integration_view::{IntegrationView, LastRunView, SyncConfigBody};
use crate::state::AppState;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use syncledger_domain::record::Record;
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::{Aggregate, Integration, IntegrationEvent};
use syncledger_projections::integration_status::StatusRow;
use syncledger_store::{history, StoredEvent};

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AsOf {
    /// An RFC 3339 instant (e.g. `2024-05-01T12:00:00.123456Z`): the state at that instant.
    pub as_of: Option<String>,
}

impl AsOf {
    /// The instant asked for, if any; a malformed one is 400 naming `as_of`.
    pub fn instant(&self) -> ApiResult<Option<DateTime<Utc>>> {
        self.as_of
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::invalid_field(
                            "as_of",
                            "must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z",
                        )
                    })
            })
            .transpose()
    }
}

/// The record as of `t`, if it existed then in the workspace (else 404, whoever owns it).
pub async fn record(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    t: DateTime<Utc>,
) -> ApiResult<Record> {
    let events = state.store.events_as_of(Record::TYPE, id, t).await?;
    let record: Record = history::fold(&events).map_err(ApiError::internal)?;
    if record.id.is_none() || record.workspace_id != workspace_id {
        return Err(ApiError::not_found("record"));
    }
    Ok(record)
}

/// The integration as of `t`, as `GET /v1/integrations/{id}` showed it then. Every field
/// of that view comes from the integration's own events (runs begin on it), so all of them
/// are as of `t`.
pub async fn integration(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    t: DateTime<Utc>,
) -> ApiResult<IntegrationView> {
    let events = state.store.events_as_of(Integration::TYPE, id, t).await?;
    match StatusRow::fold(&events)? {
        Some(row) if row.state.id.is_some() && row.state.workspace_id == workspace_id => {
            let mut view = integration_view(id, &row);
            view.last_run = last_run(state, &events, t).await?;
            Ok(view)
        }
        _ => Err(ApiError::not_found("integration")),
    }
}

/// The integration's latest run as of `t`: the last one begun on it by then, folded
/// from its own events recorded by then.
async fn last_run(
    state: &AppState,
    events: &[StoredEvent],
    t: DateTime<Utc>,
) -> ApiResult<Option<LastRunView>> {
    let begun = events.iter().rev().find_map(|e| {
        match serde_json::from_value::<IntegrationEvent>(e.payload.clone()) {
            Ok(IntegrationEvent::SyncRunBegun { run_id, .. }) => Some(run_id),
            _ => None,
        }
    });
    let Some(run_id) = begun else {
        return Ok(None);
    };
    let run_events = state.store.events_as_of(SyncRun::TYPE, &run_id, t).await?;
    let run: SyncRun = history::fold(&run_events).map_err(ApiError::internal)?;
    Ok(run.id.is_some().then(|| LastRunView::from(&run)))
}

/// What the `integration_status` read model would show for `row`: times to the second.
fn integration_view(id: &str, row: &StatusRow) -> IntegrationView {
    let s = &row.state;
    let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    IntegrationView {
        id: id.to_string(),
        provider: s.provider.clone(),
        name: s.name.clone(),
        status: s.status.as_str().to_string(),
        sync_config: SyncConfigBody::from_domain(&s.sync_config),
        base_url: s.base_url.clone(),
        last_error: s.last_error.clone(),
        credential_kind: s
            .credential_kind
            .and_then(|k| serde_json::to_value(k).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        credentials_expire_at: s.credentials_expire_at.map(secs),
        last_sync_at: row.last_sync_at.map(secs),
        next_sync_at: row.next_sync_at().map(secs),
        created_at: secs(row.created_at),
        updated_at: secs(row.updated_at),
        version: row.version,
        // Filled in by the caller, from the runs' own events.
        last_run: None,
    }
}
