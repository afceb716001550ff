//! What a sync run reads from the read models (typed queries of `records`, `record_links`
//! and `sync_runs`): which record a CRM record is linked to, which
//! record a match key points at, a record's replayed state and version, the records that
//! owe a push, and where the previous runs left their high-water marks.
//!
//! The read models may lag the event store. That is safe here: every write the engine
//! derives from these reads is appended with the expected per-aggregate sequence, so a
//! stale read ends in a conflict, and the conflicting record is decided again on state
//! loaded from the store itself.

use std::collections::HashMap;

use sqlx::{AnyPool, Row};
use syncledger_domain::record::Record;
use syncledger_domain::sync_run::{RunStatus, SyncRun};
use syncledger_domain::Entity;

use crate::ProjectionError;

/// Ids bound per statement: far below every database's parameter limit.
const CHUNK: usize = 400;

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn store_err(e: sqlx::Error) -> ProjectionError {
    ProjectionError::from(e)
}

/// A record's state as the read model last saw it, and its sequence there.
pub struct Known {
    pub state: Record,
    pub version: i64,
}

fn parse(state: &str) -> Result<Record, ProjectionError> {
    serde_json::from_str(state).map_err(|_| ProjectionError::Corrupt(crate::records::TABLE))
}

/// remote id → record id, for the CRM records of `entity` already linked.
pub async fn linked(
    pool: &AnyPool,
    workspace_id: &str,
    integration_id: &str,
    entity: Entity,
    remote_ids: &[&str],
) -> Result<HashMap<String, String>, ProjectionError> {
    let mut out = HashMap::new();
    for chunk in remote_ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT remote_id, record_id FROM record_links
              WHERE workspace_id = $1 AND integration_id = $2 AND entity = $3
                AND remote_id IN ({})",
            placeholders(4, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(workspace_id)
            .bind(integration_id)
            .bind(entity.as_str());
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(pool).await.map_err(store_err)? {
            out.insert(
                row.try_get("remote_id").map_err(store_err)?,
                row.try_get("record_id").map_err(store_err)?,
            );
        }
    }
    Ok(out)
}

/// States of the given records.
pub async fn states(
    pool: &AnyPool,
    ids: &[&str],
) -> Result<HashMap<String, Known>, ProjectionError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, state, version FROM records WHERE id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(pool).await.map_err(store_err)? {
            let state: String = row.try_get("state").map_err(store_err)?;
            out.insert(
                row.try_get("id").map_err(store_err)?,
                Known {
                    state: parse(&state)?,
                    version: row.try_get("version").map_err(store_err)?,
                },
            );
        }
    }
    Ok(out)
}

/// match key → records with that key not yet linked to this integration (oldest first),
/// with their states.
pub async fn by_match_key(
    pool: &AnyPool,
    workspace_id: &str,
    entity: Entity,
    integration_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, (String, Known)>, ProjectionError> {
    let mut out: HashMap<String, (String, Known)> = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, match_key, state, version FROM records
              WHERE workspace_id = $1 AND entity = $2 AND match_key IN ({})
              ORDER BY created_at, id",
            placeholders(3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(workspace_id).bind(entity.as_str());
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(pool).await.map_err(store_err)? {
            let key: String = row.try_get("match_key").map_err(store_err)?;
            if out.contains_key(&key) {
                continue;
            }
            let state = parse(&row.try_get::<String, _>("state").map_err(store_err)?)?;
            if state.links.contains_key(integration_id) {
                continue;
            }
            let id: String = row.try_get("id").map_err(store_err)?;
            let version = row.try_get("version").map_err(store_err)?;
            out.insert(key, (id, Known { state, version }));
        }
    }
    Ok(out)
}

/// match key → (app record, CRM record) for the records with that key whose link to
/// this integration is live: the CRM records an app-created record must not be
/// upserted into (one CRM record is never linked to two app records).
pub async fn linked_by_match_key(
    pool: &AnyPool,
    workspace_id: &str,
    entity: Entity,
    integration_id: &str,
    keys: &[&str],
) -> Result<HashMap<String, (String, String)>, ProjectionError> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let sql = format!(
            "SELECT r.id, r.match_key, r.state FROM records r
              WHERE r.workspace_id = $1 AND r.entity = $2 AND r.match_key IN ({})
                AND EXISTS (SELECT 1 FROM record_links l
                             WHERE l.record_id = r.id AND l.integration_id = $3)
              ORDER BY r.created_at, r.id",
            placeholders(4, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(workspace_id)
            .bind(entity.as_str())
            .bind(integration_id);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(pool).await.map_err(store_err)? {
            let key: String = row.try_get("match_key").map_err(store_err)?;
            let state = parse(&row.try_get::<String, _>("state").map_err(store_err)?)?;
            let Some(link) = state.links.get(integration_id).filter(|l| l.is_active()) else {
                continue;
            };
            let id: String = row.try_get("id").map_err(store_err)?;
            out.entry(key).or_insert((id, link.remote_id.clone()));
        }
    }
    Ok(out)
}

/// (app record, CRM record) for the records of the entity the app archived whose link to
/// this integration is live: what `on_app_archive: delete_in_crm` deletes in the CRM.
pub async fn archived_linked(
    pool: &AnyPool,
    workspace_id: &str,
    entity: Entity,
    integration_id: &str,
) -> Result<Vec<(String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT r.id, r.state FROM records r
          WHERE r.workspace_id = $1 AND r.entity = $2 AND r.archived = TRUE
            AND EXISTS (SELECT 1 FROM record_links l
                         WHERE l.record_id = r.id AND l.integration_id = $3)
          ORDER BY r.id",
    )
    .bind(workspace_id)
    .bind(entity.as_str())
    .bind(integration_id)
    .fetch_all(pool)
    .await
    .map_err(store_err)?;
    let mut out = Vec::new();
    for row in rows {
        let state = parse(&row.try_get::<String, _>("state").map_err(store_err)?)?;
        if !state.app_archived {
            continue;
        }
        if let Some(link) = state.links.get(integration_id).filter(|l| l.is_active()) {
            out.push((
                row.try_get("id").map_err(store_err)?,
                link.remote_id.clone(),
            ));
        }
    }
    Ok(out)
}

/// The records of the entity actively linked to the integration, with the remote id
/// each is linked to (links the CRM's deletion already ended are left out).
pub async fn active_links(
    pool: &AnyPool,
    workspace_id: &str,
    entity: Entity,
    integration_id: &str,
) -> Result<Vec<(String, String)>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT r.id, r.state FROM records r JOIN record_links l ON l.record_id = r.id
          WHERE l.workspace_id = $1 AND l.integration_id = $2 AND r.workspace_id = $1
            AND r.entity = $3
          ORDER BY r.id",
    )
    .bind(workspace_id)
    .bind(integration_id)
    .bind(entity.as_str())
    .fetch_all(pool)
    .await
    .map_err(store_err)?;
    let mut out = Vec::new();
    for row in rows {
        let state = parse(&row.try_get::<String, _>("state").map_err(store_err)?)?;
        if let Some(link) = state.links.get(integration_id).filter(|l| l.is_active()) {
            out.push((
                row.try_get("id").map_err(store_err)?,
                link.remote_id.clone(),
            ));
        }
    }
    Ok(out)
}

/// Up to `limit` records of the entity, after `after` in id order, that owe this
/// integration a push: linked with pending values, or (when `creates`) not linked yet.
/// With `only`, just those record ids (a retry).
pub async fn owing_push(
    pool: &AnyPool,
    workspace_id: &str,
    entity: Entity,
    integration_id: &str,
    creates: bool,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, Known)>, ProjectionError> {
    let unlinked = if creates {
        "OR NOT EXISTS (SELECT 1 FROM record_links l
                         WHERE l.record_id = r.id AND l.integration_id = $3)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT r.id, r.state, r.version FROM records r
          WHERE r.workspace_id = $1 AND r.entity = $2 AND r.id > $4
            AND (EXISTS (SELECT 1 FROM record_links l
                          WHERE l.record_id = r.id AND l.integration_id = $3 AND l.pending_push > 0)
                 {unlinked})
          ORDER BY r.id LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(workspace_id)
        .bind(entity.as_str())
        .bind(integration_id)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await
        .map_err(store_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let state: String = row.try_get("state").map_err(store_err)?;
        out.push((
            row.try_get("id").map_err(store_err)?,
            Known {
                state: parse(&state)?,
                version: row.try_get("version").map_err(store_err)?,
            },
        ));
    }
    Ok(out)
}

/// The most recent runs of the integration that reached their end (completed or
/// partial), newest first, as replayed by the sync-runs read model.
pub async fn finished_runs(
    pool: &AnyPool,
    integration_id: &str,
    limit: i64,
) -> Result<Vec<SyncRun>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT state FROM sync_runs
          WHERE integration_id = $1 AND status IN ($2, $3)
          ORDER BY queued_at DESC LIMIT $4",
    )
    .bind(integration_id)
    .bind(RunStatus::Completed.as_str())
    .bind(RunStatus::Partial.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(store_err)?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state").map_err(store_err)?;
            serde_json::from_str(&state).map_err(|_| ProjectionError::Corrupt("sync run state"))
        })
        .collect()
}

/// Runs that are queued or running, oldest first: what a restarted worker resumes.
pub async fn active_runs(pool: &AnyPool) -> Result<Vec<ActiveRun>, ProjectionError> {
    let rows =
        sqlx::query("SELECT id, worker FROM sync_runs WHERE status IN ($1, $2) ORDER BY queued_at")
            .bind(RunStatus::Queued.as_str())
            .bind(RunStatus::Running.as_str())
            .fetch_all(pool)
            .await
            .map_err(store_err)?;
    rows.iter()
        .map(|r| {
            Ok(ActiveRun {
                id: r.try_get("id").map_err(store_err)?,
                execution: r.try_get("worker").map_err(store_err)?,
            })
        })
        .collect()
}

/// A queued or running run, and the execution that last started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveRun {
    pub id: String,
    /// `{worker}#{tag}` of the execution that last started the run; `None` while queued.
    pub execution: Option<String>,
}

impl ActiveRun {
    /// Whether the run was last started by an execution of `worker` (e.g. `serve:host`).
    pub fn started_by(&self, worker: &str) -> bool {
        self.execution
            .as_deref()
            .and_then(|e| e.rsplit_once('#'))
            .is_some_and(|(w, _)| w == worker)
    }
}

/// Runs no worker has started yet, oldest first.
pub async fn queued_runs(pool: &AnyPool) -> Result<Vec<String>, ProjectionError> {
    let rows = sqlx::query("SELECT id FROM sync_runs WHERE status = $1 ORDER BY queued_at")
        .bind(RunStatus::Queued.as_str())
        .fetch_all(pool)
        .await
        .map_err(store_err)?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(store_err))
        .collect()
}
