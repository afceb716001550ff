//! The conflict review queue: conflicts the merges found, a person's resolution of each
//! (keep the app's value, take the CRM's, or set a merged one) or decision to ignore it,
//! and the per-integration "always use" rules that settle a field's conflicts unasked.
//!
//! Conflicts are read from the `conflicts` read model, which decisions wait for before
//! answering; decisions go through the record aggregate, rules through the integration.

use std::collections::BTreeMap;

use chrono::Utc;
use syncledger_domain::merge::Side;
use syncledger_domain::record::{FieldValue, Record, RecordCommand, Resolution};
use syncledger_domain::{Aggregate, Integration, IntegrationCommand};
use syncledger_projections::conflicts::{self, STATUSES};
pub use syncledger_projections::conflicts::{ConflictRow, Filter};
use syncledger_projections::integration_status;
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::error::EngineError;
use crate::records::MAX_VALUE_BYTES;

/// A conflict, with the record's current value of its field when asked for.
pub struct ConflictState {
    pub row: ConflictRow,
    pub current: Option<FieldValue>,
}

/// The conflicts use cases; see [`Engine::conflicts`].
pub struct Conflicts<'a>(&'a Engine);

impl Engine {
    pub fn conflicts(&self) -> Conflicts<'_> {
        Conflicts(self)
    }
}

fn not_open(why: String) -> EngineError {
    EngineError::NotNow {
        code: "conflict_not_open",
        message: why,
    }
}

impl Conflicts<'_> {
    async fn find(&self, workspace_id: &str, id: &str) -> Result<ConflictRow, EngineError> {
        conflicts::Query(&self.0.store.any)
            .get(workspace_id, id)
            .await?
            .ok_or(EngineError::Missing("conflict"))
    }

    async fn record(&self, id: &str) -> Result<Record, EngineError> {
        Ok(self.0.records.load(id).await?)
    }

    /// The conflict, with the record's current value of its field.
    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<ConflictState, EngineError> {
        let row = self.find(workspace_id, id).await?;
        let record = self.record(&row.record_id).await?;
        let current = record.fields.get(&row.field).cloned();
        Ok(ConflictState { row, current })
    }

    /// Up to `limit` conflicts matching `filter`, oldest detected first, after the
    /// conflict at `after` (`(detected_at, id)`).
    pub async fn list(
        &self,
        workspace_id: &str,
        filter: &Filter,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<ConflictRow>, EngineError> {
        if let Some(s) = filter.status.as_deref().filter(|s| !STATUSES.contains(s)) {
            return Err(EngineError::invalid(
                "status",
                format!("{s:?} is not one of {}", STATUSES.join(", ")),
            ));
        }
        Ok(conflicts::Query(&self.0.store.any)
            .list(workspace_id, filter, after, limit)
            .await?)
    }

    /// The conflict if a person may still decide it: open in the read model, and the
    /// record still holds the very conflict the row shows (a later sync may have
    /// replaced or settled it since the person looked).
    async fn open(&self, workspace_id: &str, id: &str) -> Result<ConflictRow, EngineError> {
        let conflict = self.find(workspace_id, id).await?;
        if conflict.status != "open" {
            return Err(not_open(format!(
                "the conflict is {}; only open conflicts can be decided",
                conflict.status
            )));
        }
        let record = self.record(&conflict.record_id).await?;
        let held = record
            .links
            .get(&conflict.integration_id)
            .and_then(|l| l.conflicts.get(&conflict.field));
        let same = held.is_some_and(|c| {
            (&c.base, &c.app, &c.crm)
                == (
                    &conflict.base_value,
                    &conflict.app_value,
                    &conflict.crm_value,
                )
        });
        if !same {
            return Err(not_open(
                "a later sync replaced or settled this conflict; list the open conflicts again"
                    .into(),
            ));
        }
        Ok(conflict)
    }

    /// The conflict after a decision: from the read model once it shows it, else as the
    /// decision left it.
    async fn decided(
        &self,
        meta: &Metadata,
        before: ConflictRow,
        status: &str,
        resolution: &str,
    ) -> Result<ConflictRow, EngineError> {
        self.0
            .fresh
            .settle(conflicts::TABLE, Record::TYPE, &before.record_id)
            .await?;
        let now = self.find(&meta.workspace_id, &before.id).await?;
        if now.status != "open" {
            return Ok(now);
        }
        let record = self.record(&before.record_id).await?;
        let value = (status == "resolved")
            .then(|| {
                record
                    .fields
                    .get(&before.field)
                    .and_then(|f| f.value.clone())
            })
            .flatten();
        Ok(ConflictRow {
            status: status.into(),
            resolved_at: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            resolved_by: Some(meta.actor.clone()),
            resolution: Some(resolution.into()),
            resolved_value: value,
            ..before
        })
    }

    /// Decide an open conflict. A merged value is at most [`MAX_VALUE_BYTES`].
    pub async fn resolve(
        &self,
        meta: &Metadata,
        id: &str,
        resolution: Resolution,
    ) -> Result<ConflictRow, EngineError> {
        if let Resolution::Value(Some(v)) = &resolution {
            if v.len() > MAX_VALUE_BYTES {
                return Err(EngineError::invalid(
                    "value",
                    format!("is at most {MAX_VALUE_BYTES} bytes"),
                ));
            }
        }
        let kind = match &resolution {
            Resolution::UseApp => "use_app",
            Resolution::UseCrm => "use_crm",
            Resolution::Value(_) => "merged",
        };
        let decision = |c: &ConflictRow| RecordCommand::ResolveConflict {
            integration_id: c.integration_id.clone(),
            field: c.field.clone(),
            resolution,
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.decide(meta, id, decision, ("resolved", kind)).await
    }

    /// Leave an open conflict as it is, for good.
    pub async fn ignore(&self, meta: &Metadata, id: &str) -> Result<ConflictRow, EngineError> {
        let decision = |c: &ConflictRow| RecordCommand::IgnoreConflict {
            integration_id: c.integration_id.clone(),
            field: c.field.clone(),
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.decide(meta, id, decision, ("ignored", "ignored"))
            .await
    }

    /// Put a person's decision on an open conflict to its record, and answer with the
    /// conflict after it (`outcome`: the status and resolution it ends in).
    async fn decide(
        &self,
        meta: &Metadata,
        id: &str,
        decision: impl FnOnce(&ConflictRow) -> RecordCommand,
        (status, resolution): (&str, &str),
    ) -> Result<ConflictRow, EngineError> {
        let conflict = self.open(&meta.workspace_id, id).await?;
        let command = decision(&conflict);
        self.0
            .records
            .execute(&conflict.record_id, command, meta)
            .await?;
        self.decided(meta, conflict, status, resolution).await
    }

    /// The integration's "always use" rules, by field.
    pub async fn rules(
        &self,
        workspace_id: &str,
        integration_id: &str,
    ) -> Result<BTreeMap<String, Side>, EngineError> {
        // From the status read model: folding the aggregate reads every event it has, and
        // it gains some with every run (rule changes are waited for there before they
        // answer).
        let integration = integration_status::Query(&self.0.store.any)
            .state(workspace_id, integration_id)
            .await?
            .ok_or(EngineError::NotFound)?;
        Ok(integration.conflict_rules)
    }

    async fn change_rule(
        &self,
        meta: &Metadata,
        integration_id: &str,
        field: String,
        side: Option<Side>,
    ) -> Result<BTreeMap<String, Side>, EngineError> {
        let command = IntegrationCommand::SetConflictRule {
            field,
            side,
            at: Utc::now(),
        };
        self.0
            .integrations
            .execute(integration_id, command, meta)
            .await
            .map_err(EngineError::command)?;
        self.0
            .fresh
            .settle(integration_status::TABLE, Integration::TYPE, integration_id)
            .await?;
        self.rules(&meta.workspace_id, integration_id).await
    }

    /// Always use `side` for `field`'s conflicts with the integration. The conflicts
    /// already waiting on the field are settled now, as a merge would.
    pub async fn set_rule(
        &self,
        meta: &Metadata,
        integration_id: &str,
        field: &str,
        side: Side,
    ) -> Result<BTreeMap<String, Side>, EngineError> {
        self.0
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        let rules = self
            .change_rule(meta, integration_id, field.to_string(), Some(side))
            .await?;
        self.0
            .fresh
            .settle(conflicts::TABLE, Integration::TYPE, integration_id)
            .await?;
        crate::rules::settle_open_conflicts(&self.0.store, integration_id, field, side, meta)
            .await?;
        Ok(rules)
    }

    /// Stop always using a side for `field`.
    pub async fn remove_rule(
        &self,
        meta: &Metadata,
        integration_id: &str,
        field: &str,
    ) -> Result<BTreeMap<String, Side>, EngineError> {
        let rules = self.rules(&meta.workspace_id, integration_id).await?;
        if !rules.contains_key(field) {
            return Err(EngineError::Missing("conflict rule"));
        }
        self.change_rule(meta, integration_id, field.to_string(), None)
            .await
    }
}
