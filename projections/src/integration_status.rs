//! Read model: each integration's provider, name, status, sync config, schedule and
//! credential expiry. The credential itself never reaches this table.

use crate::statement::Statement;
use crate::{rfc3339, Projection, ProjectionError, Tables};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use std::collections::BTreeMap;
use syncledger_domain::integration::CredentialKind;
use syncledger_domain::{Aggregate, Integration, IntegrationEvent, Status, SyncConfig};
use syncledger_store::StoredEvent;

pub struct IntegrationStatus;

pub const TABLE: &str = "integration_status";

/// The projected row, before it is written. Folding an integration's events (from the
/// first) gives the row the read model holds after them; point-in-time reads fold a
/// prefix of the events the same way.
#[derive(Debug, Clone)]
pub struct StatusRow {
    pub state: Integration,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the schedule last (re)started: becoming connected or a config change.
    schedule_base: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub last_position: i64,
}

impl StatusRow {
    /// The row before the integration's first event `e`.
    pub fn new(e: &StoredEvent) -> Self {
        StatusRow {
            state: Integration::default(),
            created_at: event_time(e),
            updated_at: event_time(e),
            schedule_base: None,
            last_sync_at: None,
            version: 0,
            last_position: 0,
        }
    }

    /// The row after `events`, an integration's history from its first event on
    /// (`None` when there are none).
    pub fn fold(events: &[StoredEvent]) -> Result<Option<StatusRow>, ProjectionError> {
        let Some(first) = events.first() else {
            return Ok(None);
        };
        let mut row = StatusRow::new(first);
        for e in events {
            row.step(e, &decode(e)?);
        }
        Ok(Some(row))
    }

    pub fn next_sync_at(&self) -> Option<DateTime<Utc>> {
        if self.state.status != Status::Connected {
            return None;
        }
        let period = self.state.sync_config.frequency.period_minutes()?;
        let base = self.last_sync_at.or(self.schedule_base)?;
        Some(base + Duration::minutes(i64::from(period)))
    }

    /// Apply `e` (decoded as `event`); an event the row has already seen changes nothing.
    fn step(&mut self, e: &StoredEvent, event: &IntegrationEvent) {
        // An older position never overwrites a newer one (idempotent on replay).
        if e.sequence <= self.version {
            return;
        }
        let was = self.state.status;
        let old_config = self.state.sync_config.clone();
        self.state.apply(event);
        let at = event_time(e);
        let became_connected = was != Status::Connected && self.state.status == Status::Connected;
        if became_connected || self.state.sync_config != old_config {
            self.schedule_base = Some(at);
        }
        // Any run (manual, scheduled or webhook) restarts the schedule's period.
        if let IntegrationEvent::SyncRunBegun { at, .. } = event {
            self.last_sync_at = Some(*at);
        }
        self.updated_at = at;
        self.version = e.sequence;
        self.last_position = e.position.pos;
    }
}

fn decode(e: &StoredEvent) -> Result<IntegrationEvent, ProjectionError> {
    crate::decode(e)
}

async fn load(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    id: &str,
) -> Result<Option<StatusRow>, ProjectionError> {
    let row = sqlx::query(&format!(
        "SELECT state, created_at, updated_at, last_sync_at, version, last_position, next_sync_at
           FROM {table} WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let parse = |s: Option<String>| {
        s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let state: String = r.try_get("state")?;
    let state: Integration =
        serde_json::from_str(&state).map_err(|e| ProjectionError::BadEvent {
            position: -1,
            message: format!("stored integration state: {e}"),
        })?;
    let last_position: i64 = r.try_get("last_position")?;
    let created_at = parse(r.try_get("created_at")?).unwrap_or_default();
    let updated_at = parse(r.try_get("updated_at")?).unwrap_or_default();
    let last_sync_at = parse(r.try_get("last_sync_at")?);
    let next: Option<DateTime<Utc>> = parse(r.try_get("next_sync_at")?);
    let period = state.sync_config.frequency.period_minutes();
    let schedule_base = match (next, period) {
        (Some(n), Some(p)) => Some(n - Duration::minutes(i64::from(p))),
        _ => None,
    };
    Ok(Some(StatusRow {
        state,
        created_at,
        updated_at,
        schedule_base,
        last_sync_at,
        version: r.try_get("version")?,
        last_position,
    }))
}

async fn store(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    id: &str,
    row: &StatusRow,
) -> Result<(), ProjectionError> {
    let s = &row.state;
    let mut state = s.clone();
    state.secret = None;
    let state_json = serde_json::to_string(&state).unwrap_or_else(|_| "{}".into());
    let config = serde_json::to_string(&s.sync_config).unwrap_or_else(|_| "{}".into());
    let kind = s
        .credential_kind
        .and_then(|k| serde_json::to_value(k).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    sqlx::query(&format!(
        "INSERT INTO {table} (id, workspace_id, provider, name, status, sync_config, base_url, last_error,
                              credential_kind, credentials_expire_at, last_sync_at, next_sync_at,
                              created_at, updated_at, version, last_position, state,
                              credentials_set_at, credentials_rotated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (id) DO UPDATE SET
           workspace_id = excluded.workspace_id, provider = excluded.provider, name = excluded.name,
           status = excluded.status, sync_config = excluded.sync_config, base_url = excluded.base_url,
           last_error = excluded.last_error, credential_kind = excluded.credential_kind,
           credentials_expire_at = excluded.credentials_expire_at, last_sync_at = excluded.last_sync_at,
           next_sync_at = excluded.next_sync_at, updated_at = excluded.updated_at,
           version = excluded.version, last_position = excluded.last_position, state = excluded.state,
           credentials_set_at = excluded.credentials_set_at,
           credentials_rotated_at = excluded.credentials_rotated_at"
    ))
    .bind(id)
    .bind(&s.workspace_id)
    .bind(&s.provider)
    .bind(&s.name)
    .bind(s.status.as_str())
    .bind(config)
    .bind(s.base_url.clone())
    .bind(s.last_error.clone())
    .bind(kind)
    .bind(s.credentials_expire_at.map(rfc3339))
    .bind(row.last_sync_at.map(rfc3339))
    .bind(row.next_sync_at().map(rfc3339))
    .bind(rfc3339(row.created_at))
    .bind(rfc3339(row.updated_at))
    .bind(row.version)
    .bind(row.last_position)
    .bind(state_json)
    .bind(s.credentials_set_at.map(rfc3339))
    .bind(s.credentials_rotated_at.map(rfc3339))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// When the event happened: the metadata's time, else when it was recorded.
pub(crate) fn event_time(e: &StoredEvent) -> DateTime<Utc> {
    e.metadata
        .get("time")
        .and_then(|t| t.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(e.recorded_at)
}

#[async_trait]
impl Projection for IntegrationStatus {
    fn name(&self) -> &'static str {
        "integration_status"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.get(TABLE);
        let mut touched: BTreeMap<String, StatusRow> = BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| e.aggregate_type == Integration::TYPE)
        {
            let event = decode(e)?;
            let mut row = match touched.remove(&e.aggregate_id) {
                Some(r) => r,
                None => match load(conn, table, &e.aggregate_id).await? {
                    Some(r) => r,
                    None => StatusRow::new(e),
                },
            };
            row.step(e, &event);
            touched.insert(e.aggregate_id.clone(), row);
        }
        for (id, row) in &touched {
            store(conn, table, id, row).await?;
        }
        Ok(())
    }
}

/// An integration as the read model shows it (what `GET /v1/integrations/{id}` answers,
/// without its last run).
#[derive(Clone, Debug)]
pub struct IntegrationRow {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub status: String,
    pub sync_config: SyncConfig,
    pub base_url: Option<String>,
    pub last_error: Option<String>,
    /// `oauth2`, `api_key` or `basic`: never the credential.
    pub credential_kind: Option<String>,
    pub credentials_expire_at: Option<DateTime<Utc>>,
    /// When someone stored the credentials, and when they were last rotated since.
    pub credentials_set_at: Option<DateTime<Utc>>,
    pub credentials_rotated_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

/// How a credential kind is named in the read model and the API.
pub fn kind_name(kind: Option<CredentialKind>) -> Option<String> {
    kind.and_then(|k| serde_json::to_value(k).ok())
        .and_then(|v| v.as_str().map(str::to_string))
}

impl IntegrationRow {
    /// The row an integration's state alone gives (its schedule and times from `row`).
    pub fn of(id: &str, row: &StatusRow) -> Self {
        let s = &row.state;
        IntegrationRow {
            id: id.to_string(),
            provider: s.provider.clone(),
            name: s.name.clone(),
            status: s.status.as_str().to_string(),
            sync_config: s.sync_config.clone(),
            base_url: s.base_url.clone(),
            last_error: s.last_error.clone(),
            credential_kind: kind_name(s.credential_kind),
            credentials_expire_at: s.credentials_expire_at,
            credentials_set_at: s.credentials_set_at,
            credentials_rotated_at: s.credentials_rotated_at,
            last_sync_at: row.last_sync_at,
            next_sync_at: row.next_sync_at(),
            created_at: Some(row.created_at),
            updated_at: Some(row.updated_at),
            version: row.version,
        }
    }

    fn read(r: &sqlx::any::AnyRow) -> Result<Self, ProjectionError> {
        let config: String = r.try_get("sync_config")?;
        let sync_config =
            serde_json::from_str(&config).map_err(|_| ProjectionError::Corrupt(TABLE))?;
        let time = |column: &str| -> Result<Option<DateTime<Utc>>, ProjectionError> {
            let text: Option<String> = r.try_get(column)?;
            Ok(text
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&Utc)))
        };
        Ok(IntegrationRow {
            id: r.try_get("id")?,
            provider: r.try_get("provider")?,
            name: r.try_get("name")?,
            status: r.try_get("status")?,
            sync_config,
            base_url: r.try_get("base_url")?,
            last_error: r.try_get("last_error")?,
            credential_kind: r.try_get("credential_kind")?,
            credentials_expire_at: time("credentials_expire_at")?,
            credentials_set_at: time("credentials_set_at")?,
            credentials_rotated_at: time("credentials_rotated_at")?,
            last_sync_at: time("last_sync_at")?,
            next_sync_at: time("next_sync_at")?,
            created_at: time("created_at")?,
            updated_at: time("updated_at")?,
            version: r.try_get("version")?,
        })
    }
}

const COLUMNS: &str =
    "id, provider, name, status, sync_config, base_url, last_error, credential_kind,
    credentials_expire_at, credentials_set_at, credentials_rotated_at, last_sync_at, next_sync_at,
    created_at, updated_at, version";

/// What [`Query::list`] runs: by id, served by the index on `(workspace_id, id)`.
pub fn list_statement(workspace_id: &str, after: &str, limit: i64) -> Statement {
    let mut s = Statement::default();
    s.sql = format!(
        "SELECT {COLUMNS} FROM {TABLE} WHERE workspace_id = ${} AND id > ${} ORDER BY id LIMIT ${}",
        s.arg(workspace_id),
        s.arg(after),
        s.arg(limit)
    );
    s
}

/// What [`Query::card_counts`] runs: an integration's open conflicts (the index on
/// `(workspace_id, integration_id, status)`) and the records linked to it (the record links' primary
/// key), each counted from an index alone.
pub fn card_count_statements(workspace_id: &str, integration_id: &str) -> [Statement; 2] {
    let conflicts = "SELECT COUNT(*) FROM conflicts
          WHERE workspace_id = $1 AND integration_id = $2 AND status = 'open'";
    let links = "SELECT COUNT(*) FROM record_links WHERE workspace_id = $1 AND integration_id = $2";
    [conflicts, links].map(|sql| {
        let mut s = Statement::new(sql);
        s.arg(workspace_id);
        s.arg(integration_id);
        s
    })
}

/// Typed reads of the `integration_status` read model.
pub struct Query<'a>(pub &'a sqlx::AnyPool);

/// What an integration's overview card counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardCounts {
    pub open_conflicts: i64,
    pub records_linked: i64,
}

impl Query<'_> {
    /// The integration, if it exists in the workspace.
    pub async fn get(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<IntegrationRow>, ProjectionError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {TABLE} WHERE id = $1 AND workspace_id = $2"
        ))
        .bind(id)
        .bind(workspace_id)
        .fetch_optional(self.0)
        .await?;
        row.as_ref().map(IntegrationRow::read).transpose()
    }

    /// Up to `limit` of the workspace's integrations after id `after`, by id.
    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<IntegrationRow>, ProjectionError> {
        let statement = list_statement(workspace_id, after, limit);
        let rows = statement.query().fetch_all(self.0).await?;
        rows.iter().map(IntegrationRow::read).collect()
    }

    /// For the overview's card of each integration: its open conflicts and the records
    /// linked to it (see [`card_count_statements`]).
    pub async fn card_counts(
        &self,
        workspace_id: &str,
        integration_id: &str,
    ) -> Result<CardCounts, ProjectionError> {
        let [conflicts, links] = card_count_statements(workspace_id, integration_id);
        let count = |s: Statement| async move {
            let row = s.query().fetch_one(self.0).await?;
            Ok::<i64, ProjectionError>(row.try_get(0)?)
        };
        Ok(CardCounts {
            open_conflicts: count(conflicts).await?,
            records_linked: count(links).await?,
        })
    }

    /// The integration's replayed state (its credential removed), if it exists in the
    /// workspace: what a page shows of it (its "always use" rules, ...) without folding
    /// the aggregate, whose events grow with every run.
    pub async fn state(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<Integration>, ProjectionError> {
        let state: Option<String> = sqlx::query_scalar(&format!(
            "SELECT state FROM {TABLE} WHERE id = $1 AND workspace_id = $2"
        ))
        .bind(id)
        .bind(workspace_id)
        .fetch_optional(self.0)
        .await?;
        state
            .map(|s| serde_json::from_str(&s).map_err(|_| ProjectionError::Corrupt(TABLE)))
            .transpose()
    }

    /// The workspace an integration belongs to, if the read model knows it.
    pub async fn workspace_of(&self, id: &str) -> Result<Option<String>, ProjectionError> {
        Ok(
            sqlx::query_scalar(&format!("SELECT workspace_id FROM {TABLE} WHERE id = $1"))
                .bind(id)
                .fetch_optional(self.0)
                .await?,
        )
    }

    /// Connected integrations whose next scheduled run is due at `now`, soonest first:
    /// `(integration id, workspace id)`.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<(String, String)>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT id, workspace_id FROM {TABLE}
              WHERE status = 'connected' AND next_sync_at IS NOT NULL AND next_sync_at <= $1
              ORDER BY next_sync_at"
        ))
        .bind(rfc3339(now))
        .fetch_all(self.0)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("workspace_id")?)))
            .collect()
    }

    /// Connected integrations of `provider` whose credentials reach `account_id`:
    /// `(integration id, workspace id)`. A row whose state cannot be read is left out.
    pub async fn connected_to_account(
        &self,
        provider: &str,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, ProjectionError> {
        let rows = sqlx::query(&format!(
            "SELECT id, workspace_id, state FROM {TABLE}
              WHERE provider = $1 AND status = 'connected'"
        ))
        .bind(provider)
        .fetch_all(self.0)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let stored: String = row.try_get("state")?;
            let Ok(integration) = serde_json::from_str::<Integration>(&stored) else {
                continue;
            };
            if integration.account_id.as_deref() == Some(account_id) {
                out.push((row.try_get("id")?, row.try_get("workspace_id")?));
            }
        }
        Ok(out)
    }
}
