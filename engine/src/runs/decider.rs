//! The decider: a page of CRM records mapped, linked and merged into record events, for
//! the committer to append in one transaction together with the run's page event.
//!
//! The command path of cqrs-es (load each record's history, one insert per event) tops
//! out around 1,500 commands/s; a sync must do better. Here the record states come from
//! the `records` read model in a few set queries, each record is decided by the same pure
//! [`Record`] aggregate, and all events of the page are appended with their expected
//! sequences in one transaction. A stale state (the read model lagging, or a concurrent
//! writer) makes the append conflict; the page is then decided again record by record
//! on states loaded from the store, which is always right, only slower.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use syncledger_crm::RemoteRecord;
use syncledger_domain::merge::{Fields, MergePolicy};
use syncledger_domain::record::{Record, RecordCommand, RecordEvent};
use syncledger_domain::sync_run::{Phase, RecordFailure, RunStats};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::{append, AppendError, NewEvent};
use syncledger_store::{Cqrs, Metadata, Store};

use super::lookup::{self, Known};
use crate::mapping::{Mapped, Mapper};
use crate::EngineError;

/// How often a record is decided again after losing a race for its sequence.
const RETRIES: usize = 5;

/// Namespace of the ids of records created from CRM records (UUID v5): the same CRM
/// record always becomes the same record id, so a page fetched twice (after a crash, or
/// overlapping pages) cannot create a record twice: the second append conflicts.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d1f_3c0e_7a52_4b8e_9f61_2c4d_8e0a_b7f3);

/// Everything a page's records are decided with.
pub(crate) struct Decider<'a> {
    pub store: &'a Store,
    pub records: &'a Cqrs<Record>,
    pub workspace_id: &'a str,
    pub integration_id: &'a str,
    pub entity: Entity,
    pub run_id: &'a str,
    pub policy: &'a MergePolicy,
    pub mapper: &'a Mapper,
    pub meta: &'a Metadata,
}

/// A page decided: the events to append, and what happened.
#[derive(Default)]
pub(crate) struct Decided {
    pub events: Vec<NewEvent>,
    pub stats: RunStats,
    pub failures: Vec<RecordFailure>,
}

impl Decided {
    fn fail(
        &mut self,
        entity: Entity,
        record: &RemoteRecord,
        record_id: Option<String>,
        error: String,
    ) {
        self.stats.failed += 1;
        self.failures.push(RecordFailure {
            entity,
            phase: Phase::Pull,
            record_id,
            remote_id: Some(record.id.clone()),
            error,
            fetched: serde_json::to_value(record).ok(),
        });
    }
}

/// A fetched record mapped for the app.
struct Prepared<'r> {
    record: &'r RemoteRecord,
    fields: Fields,
    key: Option<String>,
}

fn encode(e: serde_json::Error) -> EngineError {
    EngineError::Store(format!("could not encode an event: {e}"))
}

impl Decider<'_> {
    /// The id a CRM record gets when it becomes a new record.
    pub(crate) fn new_record_id(&self, remote_id: &str) -> String {
        let name = [
            self.workspace_id,
            self.integration_id,
            self.entity.as_str(),
            remote_id,
        ]
        .join("/");
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
    }

    /// Maps the page; archived and filtered records are skipped, unmappable ones failed.
    fn prepare<'r>(&self, page: &'r [RemoteRecord], out: &mut Decided) -> Vec<Prepared<'r>> {
        let key_field = self.entity.match_field();
        let mut ready = Vec::with_capacity(page.len());
        for record in page {
            out.stats.processed += 1;
            if record.archived {
                out.stats.skipped += 1;
                continue;
            }
            match self.mapper.to_app(record) {
                Ok(Mapped::Filtered) => out.stats.skipped += 1,
                Ok(Mapped::Fields(fields)) => {
                    let key = fields
                        .get(key_field)
                        .cloned()
                        .flatten()
                        .map(|v| v.trim().to_lowercase())
                        .filter(|v| !v.is_empty());
                    ready.push(Prepared {
                        record,
                        fields,
                        key,
                    });
                }
                Err(e) => out.fail(self.entity, record, None, e.to_string()),
            }
        }
        ready
    }

    fn command(&self, record_id: &str, p: Prepared<'_>, at: DateTime<Utc>) -> RecordCommand {
        RecordCommand::Ingest {
            record_id: record_id.to_string(),
            workspace_id: self.workspace_id.to_string(),
            entity: self.entity,
            integration_id: self.integration_id.to_string(),
            remote_id: p.record.id.clone(),
            remote_updated_at: p.record.updated_at,
            remote: p.record.properties.clone(),
            fields: p.fields,
            policy: self.policy.clone(),
            run_id: self.run_id.to_string(),
            at,
        }
    }

    /// Decides one record on `known` and returns the rows to append with the events
    /// they hold. `known.version` advances; its state does not: the caller applies the
    /// events only if the record comes up again (most records of a page do not, and
    /// applying copies every field).
    fn decide_one(
        &self,
        record_id: &str,
        known: &mut Known,
        p: Prepared<'_>,
        out: &mut Decided,
    ) -> Result<(Vec<NewEvent>, Vec<RecordEvent>), EngineError> {
        let was_new = known.state.id.is_none();
        let record = p.record;
        let events = match known.state.decide(self.command(record_id, p, Utc::now())) {
            Ok(events) => events,
            Err(e) => {
                out.fail(
                    self.entity,
                    record,
                    Some(record_id.to_string()),
                    e.to_string(),
                );
                return Ok((vec![], vec![]));
            }
        };
        count(&events, was_new, &mut out.stats);
        let mut rows = Vec::with_capacity(events.len());
        for event in &events {
            known.version += 1;
            rows.push(
                NewEvent::of::<Record>(record_id, known.version, event, self.meta)
                    .map_err(encode)?,
            );
        }
        Ok((rows, events))
    }

    /// Decides a page on the read model's states. Nothing is written.
    pub(crate) async fn decide_page(&self, page: &[RemoteRecord]) -> Result<Decided, EngineError> {
        let mut out = Decided::default();
        let ready = self.prepare(page, &mut out);
        let pool = &self.store.any;
        let remote_ids: Vec<&str> = ready.iter().map(|p| p.record.id.as_str()).collect();
        let links = lookup::linked(
            pool,
            self.workspace_id,
            self.integration_id,
            self.entity,
            &remote_ids,
        )
        .await?;
        let keys: Vec<&str> = ready
            .iter()
            .filter(|p| !links.contains_key(&p.record.id))
            .filter_map(|p| p.key.as_deref())
            .collect();
        let mut by_key = if keys.is_empty() {
            HashMap::new()
        } else {
            lookup::by_match_key(
                pool,
                self.workspace_id,
                self.entity,
                self.integration_id,
                &keys,
            )
            .await?
        };
        let ids: Vec<&str> = links.values().map(String::as_str).collect();
        let mut known = lookup::states(pool, &ids).await?;
        // Events decided for a record but not yet applied to its state in `known`.
        let mut unapplied: HashMap<String, Vec<RecordEvent>> = HashMap::new();
        for p in ready {
            let record_id = match links.get(&p.record.id) {
                Some(id) => id.clone(),
                None => match p.key.as_ref().and_then(|k| by_key.remove(k)) {
                    // Converge on the record another CRM (or the app) made.
                    Some((id, k)) => {
                        known.entry(id.clone()).or_insert(k);
                        id
                    }
                    None => self.new_record_id(&p.record.id),
                },
            };
            let k = known.entry(record_id.clone()).or_insert_with(|| Known {
                state: Record::default(),
                version: 0,
            });
            // The same record again in this page (a CRM record listed twice, or two
            // matched by key): it is decided on the state its earlier events made.
            if let Some(events) = unapplied.remove(&record_id) {
                for e in &events {
                    k.state.apply(e);
                }
            }
            let (rows, events) = self.decide_one(&record_id, k, p, &mut out)?;
            out.events.extend(rows);
            if !events.is_empty() {
                unapplied.insert(record_id, events);
            }
        }
        Ok(out)
    }

    /// Ingests a page record by record on states loaded from the store, appending each
    /// record's events as it goes. For pages whose bulk append conflicted.
    pub(crate) async fn ingest_one_by_one(
        &self,
        page: &[RemoteRecord],
    ) -> Result<Decided, EngineError> {
        let mut out = Decided::default();
        let ready = self.prepare(page, &mut out);
        for p in ready {
            let mut attempt = 0;
            loop {
                let record_id = self.resolve(&p).await?;
                let (state, version) = self
                    .records
                    .load_versioned(&record_id)
                    .await
                    .map_err(|e| EngineError::Store(e.to_string()))?;
                let mut known = Known { state, version };
                let mut scratch = Decided::default();
                let prepared = Prepared {
                    record: p.record,
                    fields: p.fields.clone(),
                    key: None,
                };
                let (rows, _) = self.decide_one(&record_id, &mut known, prepared, &mut scratch)?;
                match append(&self.store.events, &rows).await {
                    Ok(()) => {
                        out.stats = out.stats.plus(scratch.stats);
                        out.failures.extend(scratch.failures);
                        break;
                    }
                    Err(AppendError::Conflict) if attempt < RETRIES => attempt += 1,
                    Err(AppendError::Conflict) => return Err(EngineError::Conflict),
                    Err(AppendError::Db(e)) => return Err(EngineError::Store(e.to_string())),
                }
            }
        }
        Ok(out)
    }

    /// The record a fetched record belongs to, from the read models.
    async fn resolve(&self, p: &Prepared<'_>) -> Result<String, EngineError> {
        let pool = &self.store.any;
        let links = lookup::linked(
            pool,
            self.workspace_id,
            self.integration_id,
            self.entity,
            &[p.record.id.as_str()],
        )
        .await?;
        if let Some(id) = links.get(&p.record.id) {
            return Ok(id.clone());
        }
        // A record this run created is found under its derived id even if the read
        // model has not caught up with it yet.
        let derived = self.new_record_id(&p.record.id);
        let (existing, _) = self
            .records
            .load_versioned(&derived)
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        if existing.id.is_some() {
            return Ok(derived);
        }
        if let Some(key) = &p.key {
            let found = lookup::by_match_key(
                pool,
                self.workspace_id,
                self.entity,
                self.integration_id,
                &[key.as_str()],
            )
            .await?;
            if let Some((id, _)) = found.into_values().next() {
                return Ok(id);
            }
        }
        Ok(derived)
    }
}

/// Adds what one record's events mean to the page's counters.
fn count(events: &[RecordEvent], was_new: bool, stats: &mut RunStats) {
    if events.is_empty() {
        stats.unchanged += 1;
        return;
    }
    if was_new {
        stats.created += 1;
    } else {
        stats.updated += 1;
    }
    for e in events {
        if let RecordEvent::RemoteMerged { conflicts, .. } = e {
            stats.conflicts_detected += conflicts.len() as u64;
            stats.conflicts_resolved +=
                conflicts.iter().filter(|c| c.winner.is_some()).count() as u64;
        }
    }
}
