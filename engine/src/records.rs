//! The app's records: its own creates, edits and archives, what syncs brought in, each
//! record as it was at an instant, and the full history of each.
//!
//! A single record is read from its events (always current); lists come from the
//! `records` read model, which commands wait for before answering.

use chrono::{DateTime, Utc};
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordCommand, RecordEvent};
use syncledger_domain::{Aggregate, DomainEvent, Entity};
use syncledger_projections::records;
pub use syncledger_projections::records::{Filter, Listed};
use syncledger_store::{history, Metadata};

use crate::app::Engine;
use crate::error::EngineError;

/// Fields a create or an edit may set at once.
pub const MAX_FIELDS: usize = 200;
/// The largest value a field may hold.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The longest search by match key, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A search text as a match-key prefix: trimmed and in lower case, as match keys are
/// made; `None` when empty (no search). Longer than [`MAX_SEARCH_CHARS`] is refused,
/// naming `field`.
pub fn match_prefix(field: &str, q: Option<&str>) -> Result<Option<String>, EngineError> {
    let q = q.unwrap_or_default().trim();
    if q.chars().count() > MAX_SEARCH_CHARS {
        return Err(EngineError::invalid(
            field,
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(Entity::match_key(Some(q)))
}

/// Field names are `a-z`, `0-9` and `_`, 1 to 100 characters; at most [`MAX_FIELDS`]
/// fields, values at most [`MAX_VALUE_BYTES`].
pub fn check_fields(fields: &Fields) -> Result<(), EngineError> {
    if fields.len() > MAX_FIELDS {
        return Err(EngineError::invalid(
            "fields",
            format!("at most {MAX_FIELDS} fields"),
        ));
    }
    for (name, value) in fields {
        let ok_name = (1..=100).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok_name {
            return Err(EngineError::invalid(
                "fields",
                format!("{name:?} is not a field name (a-z, 0-9 and _, 1 to 100 characters)"),
            ));
        }
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(EngineError::invalid(
                "fields",
                format!("{name}: values are at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// One event of a record's history, as a person reads it.
pub struct HistoryEntry {
    pub sequence: i64,
    pub event_type: String,
    pub summary: String,
    /// The fields a change set (`FieldsChanged` only).
    pub fields: Option<Fields>,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    /// When it happened (RFC 3339, as recorded).
    pub at: Option<String>,
}

/// The records use cases; see [`Engine::records`].
pub struct Records<'a>(&'a Engine);

impl Engine {
    pub fn records(&self) -> Records<'_> {
        Records(self)
    }
}

impl Records<'_> {
    /// The record, if it exists and belongs to the workspace.
    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<Record, EngineError> {
        let record = self.0.records.load(id).await?;
        if record.id.is_none() || record.workspace_id != workspace_id {
            return Err(EngineError::Missing("record"));
        }
        Ok(record)
    }

    /// The record as it was at `t`, folded from its events recorded by then (before its
    /// first event it did not exist; a future instant gives the current state).
    pub async fn as_of(
        &self,
        workspace_id: &str,
        id: &str,
        t: DateTime<Utc>,
    ) -> Result<Record, EngineError> {
        let events = self.0.store.events_as_of(Record::TYPE, id, t).await?;
        let record: Record =
            history::fold(&events).map_err(|_| EngineError::Corrupt("a record's events"))?;
        if record.id.is_none() || record.workspace_id != workspace_id {
            return Err(EngineError::Missing("record"));
        }
        Ok(record)
    }

    async fn execute(
        &self,
        meta: &Metadata,
        id: &str,
        command: RecordCommand,
    ) -> Result<Record, EngineError> {
        self.execute_at(meta, id, command, None).await
    }

    /// [`Self::execute`], only if the record is at version `expected` when given
    /// (`EngineError::Stale` otherwise, nothing written).
    async fn execute_at(
        &self,
        meta: &Metadata,
        id: &str,
        command: RecordCommand,
        expected: Option<i64>,
    ) -> Result<Record, EngineError> {
        match expected {
            Some(version) => {
                self.0
                    .records
                    .execute_at(id, command, meta, version)
                    .await?
            }
            None => self.0.records.execute(id, command, meta).await?,
        }
        self.0
            .fresh
            .settle(records::TABLE, Record::TYPE, id)
            .await?;
        self.get(&meta.workspace_id, id).await
    }

    /// Create a record in `meta`'s workspace; answers its id and state.
    pub async fn create(
        &self,
        meta: &Metadata,
        entity: Entity,
        fields: Fields,
    ) -> Result<(String, Record), EngineError> {
        check_fields(&fields)?;
        let id = uuid::Uuid::now_v7().to_string();
        let command = RecordCommand::Create {
            record_id: id.clone(),
            workspace_id: meta.workspace_id.clone(),
            entity,
            fields,
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        let record = self.execute(meta, &id, command).await?;
        Ok((id, record))
    }

    /// Set fields of a record (`None` clears one).
    pub async fn edit(
        &self,
        meta: &Metadata,
        id: &str,
        fields: Fields,
        expected: Option<i64>,
    ) -> Result<Record, EngineError> {
        check_fields(&fields)?;
        self.get(&meta.workspace_id, id).await?;
        let command = RecordCommand::Edit {
            fields,
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.execute_at(meta, id, command, expected).await
    }

    /// Archive a record in the app (what that does in the CRM is the integration's
    /// `on_app_archive`).
    pub async fn archive(&self, meta: &Metadata, id: &str) -> Result<Record, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let command = RecordCommand::Archive {
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.execute(meta, id, command).await
    }

    /// Up to `limit` records matching `filter`, least recently updated first (by match
    /// key when searching), after the record at `after` (the two parts of a
    /// [`Listed::cursor`]).
    pub async fn list(
        &self,
        workspace_id: &str,
        filter: &Filter,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<Listed>, EngineError> {
        Ok(records::Query(&self.0.store.any)
            .list(workspace_id, filter, after, limit)
            .await?)
    }

    /// Every event of the record, oldest first.
    pub async fn history(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Vec<HistoryEntry>, EngineError> {
        self.get(workspace_id, id).await?;
        let events = self.0.store.feed().events_of(Record::TYPE, id).await?;
        let meta = |e: &syncledger_store::StoredEvent, key: &str| {
            e.metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Ok(events
            .iter()
            .map(|e| {
                let decoded: Option<RecordEvent> = serde::Deserialize::deserialize(&e.payload).ok();
                let fields = match &decoded {
                    Some(RecordEvent::FieldsChanged { fields, .. }) => Some(fields.clone()),
                    _ => None,
                };
                HistoryEntry {
                    sequence: e.sequence,
                    event_type: e.event_type.clone(),
                    summary: decoded.map_or_else(|| e.event_type.clone(), |d| d.summary()),
                    fields,
                    actor: meta(e, "actor"),
                    correlation_id: meta(e, "correlation_id"),
                    at: meta(e, "time"),
                }
            })
            .collect())
    }
}
