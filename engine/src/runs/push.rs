//! The push pass: app-side values a CRM does not have yet, sent in the provider's batch
//! size, each result recorded on its record.
//!
//! A linked record sends its pending values (only fields a mapping pushes; the CRM's own
//! changes are never pending for it, so nothing echoes back). A record not linked yet is
//! created — as an upsert on the match key (email, domain) when the mapping pushes it,
//! so a batch sent again after a crash finds the records it created instead of making
//! them twice. Failures are per record: the rest of the batch still lands.

use std::collections::HashMap;

use chrono::Utc;
use syncledger_crm::leads::REFERENCE;
use syncledger_crm::{PushKind, PushOp, PushResult};
use syncledger_domain::merge::Fields;
use syncledger_domain::provider;
use syncledger_domain::provider_text::clean;
use syncledger_domain::record::{Record, RecordCommand};
use syncledger_domain::sync_run::{Phase, RecordFailure, RunStats};
use syncledger_domain::OnAppArchive;
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::NewEvent;

use super::committer::Commit;
use super::duplicates::{claim_key, duplicate_error, Owner, Owners};
use super::execution::{encode, Execution, Flow};
use super::lookup::{self, Known};
use super::reread::Remerged;
use super::PushCursor;
use super::Sent;
use crate::crashpoint;
use crate::mapping::Mapper;
use crate::EngineError;

/// What a push batch does with one record.
enum Plan {
    /// Nothing to send (its CRM record was deleted, or no mapping sends what it owes).
    Skip,
    /// Not sent, and a failure of the run for this reason.
    Refuse(String),
    Send {
        values: Fields,
        kind: PushKind,
        remote: Option<String>,
    },
}

/// What to record on one record after its push.
struct Outcome {
    record_id: String,
    known: Known,
    command: RecordCommand,
}

/// A push batch's results, ready to commit.
#[derive(Default)]
pub(super) struct Pushed {
    outcomes: Vec<Outcome>,
    pub(super) stats: RunStats,
    pub(super) failures: Vec<RecordFailure>,
    /// When the batch's push call started, and when it answered.
    pub(super) sent_at: Option<std::time::Instant>,
    pub(super) answered_at: Option<std::time::Instant>,
}

impl Pushed {
    /// Adds a re-read's calls, conflicts and failures to the batch's outcome.
    fn absorb(&mut self, merged: Remerged, run_id: &str) {
        self.stats = self.stats.plus(merged.stats);
        self.stats.failed += merged.failures.len() as u64;
        self.failures.extend(merged.failures);
        // The window is at least read → sent and at most read → answered (the write
        // lands at the provider somewhere in the call).
        if let (Some(read), Some(sent), Some(answered)) =
            (merged.read_at, self.sent_at, self.answered_at)
        {
            let micros = |t: std::time::Instant| {
                u64::try_from(t.saturating_duration_since(read).as_micros()).unwrap_or(u64::MAX)
            };
            tracing::debug!(
                run_id,
                window_min_us = micros(sent),
                window_max_us = micros(answered),
                "push window"
            );
        }
    }
}

impl Pushed {
    /// A record not sent (or not linked) for `error`: a failure of the run and of the
    /// record's push; nothing else about it changes.
    pub(super) fn refuse(
        &mut self,
        entity: Entity,
        integration_id: &str,
        run_id: &str,
        record_id: String,
        known: Known,
        error: String,
    ) {
        self.stats.failed += 1;
        self.failures.push(RecordFailure {
            entity,
            phase: Phase::Push,
            record_id: Some(record_id.clone()),
            remote_id: None,
            error: error.clone(),
            fetched: None,
        });
        self.outcomes.push(Outcome {
            record_id,
            known,
            command: RecordCommand::FailPush {
                integration_id: integration_id.to_owned(),
                run_id: run_id.to_owned(),
                error,
                at: Utc::now(),
            },
        });
    }
}

impl Execution<'_> {
    pub(super) async fn push(&mut self, entity: Entity) -> Result<Flow, EngineError> {
        let Some(mut cursor) = self.id_cursor(entity, Phase::Push) else {
            return Ok(Flow::Continue);
        };
        let mapper = self.mapper(entity)?;
        let batch = self.session()?.adapter().push_batch_size().max(1);
        // Archived records' CRM records go first, once per pass (a resumed pass did it).
        let mut deleted = if self.run.pass(entity, Phase::Push).is_none() {
            self.delete_archived(entity, batch).await?
        } else {
            Remerged::default()
        };
        loop {
            let candidates = lookup::owing_push(
                &self.services.store.any,
                &self.run.workspace_id,
                entity,
                &self.run.integration_id,
                true,
                &cursor.after,
                batch,
            )
            .await?;
            let done = candidates.len() < batch;
            if let Some((last, _)) = candidates.last() {
                cursor.after.clone_from(last);
            }
            let (candidates, merged) = self.reread(entity, candidates).await?;
            let mut pushed = self.push_batch(entity, &mapper, candidates).await?;
            pushed.absorb(merged, &self.run_id());
            pushed.absorb(std::mem::take(&mut deleted), &self.run_id());
            let cursor_json = serde_json::to_value(&cursor).map_err(encode)?;
            if self
                .record_pushed(entity, cursor_json, done, pushed)
                .await?
                == Flow::Stopped
            {
                return Ok(Flow::Stopped);
            }
            if done {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Where a pass over records in id order resumes; `None` once it ended.
    pub(super) fn id_cursor(&self, entity: Entity, phase: Phase) -> Option<PushCursor> {
        match self.run.pass(entity, phase) {
            Some(p) if p.done => None,
            Some(p) => Some(
                p.cursor
                    .as_ref()
                    .and_then(|c| serde_json::from_value(c.clone()).ok())
                    .unwrap_or_default(),
            ),
            None => Some(PushCursor::default()),
        }
    }

    /// Pushes exactly these records (a retry), in batches.
    pub(super) async fn push_records(
        &mut self,
        entity: Entity,
        ids: Vec<String>,
    ) -> Result<Flow, EngineError> {
        let mapper = self.mapper(entity)?;
        let batch = self.session()?.adapter().push_batch_size().max(1);
        let chunks: Vec<Vec<String>> = ids.chunks(batch).map(<[String]>::to_vec).collect();
        let total = chunks.len();
        if total == 0 {
            return self
                .commit_run_only(
                    entity,
                    Phase::Push,
                    serde_json::json!({}),
                    true,
                    RunStats::default(),
                    vec![],
                )
                .await;
        }
        for (i, chunk) in chunks.into_iter().enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let mut states = lookup::states(&self.services.store.any, &refs).await?;
            let candidates: Vec<(String, Known)> = chunk
                .iter()
                .filter_map(|id| states.remove(id).map(|k| (id.clone(), k)))
                .collect();
            let (candidates, merged) = self.reread(entity, candidates).await?;
            let mut pushed = self.push_batch(entity, &mapper, candidates).await?;
            pushed.absorb(merged, &self.run_id());
            let done = i + 1 == total;
            if self
                .record_pushed(entity, serde_json::json!({}), done, pushed)
                .await?
                == Flow::Stopped
            {
                return Ok(Flow::Stopped);
            }
        }
        Ok(Flow::Continue)
    }

    /// Deletes in the CRM the records the app archived, when the integration says
    /// `on_app_archive: delete_in_crm`, in the provider's batch size; each deletion is
    /// recorded on its record (the link stays, marked deleted in the CRM). A deletion
    /// sent again after a crash finds the record already gone, which counts as deleted.
    async fn delete_archived(
        &mut self,
        entity: Entity,
        batch: usize,
    ) -> Result<Remerged, EngineError> {
        let mut out = Remerged::default();
        if self.integration.sync_config.on_app_archive != OnAppArchive::DeleteInCrm {
            return Ok(out);
        }
        let targets = lookup::archived_linked(
            &self.services.store.any,
            &self.run.workspace_id,
            entity,
            &self.run.integration_id,
        )
        .await?;
        for chunk in targets.chunks(batch) {
            let ids: Vec<String> = chunk.iter().map(|(_, remote)| remote.clone()).collect();
            let meta = self.meta.clone();
            let results = self
                .session()?
                .call(&meta, move |a, c| {
                    let ids = ids.clone();
                    Box::pin(async move { a.delete_records(c, entity, &ids).await })
                })
                .await?;
            self.charge(&mut out.stats);
            let Some(results) = results else {
                return Err(EngineError::Unsupported(
                    "this provider cannot delete records: set on_app_archive to nothing".into(),
                ));
            };
            for r in results {
                let Some((record_id, remote_id)) = chunk.get(r.index) else {
                    continue;
                };
                self.record_deletion(entity, record_id, remote_id, r.error, &mut out)
                    .await?;
            }
        }
        Ok(out)
    }

    /// Records one CRM deletion's outcome on its record and in the counters.
    async fn record_deletion(
        &self,
        entity: Entity,
        record_id: &str,
        remote_id: &str,
        error: Option<String>,
        out: &mut Remerged,
    ) -> Result<(), EngineError> {
        out.stats.processed += 1;
        if let Some(error) = error {
            out.failures.push(RecordFailure {
                entity,
                phase: Phase::Push,
                record_id: Some(record_id.to_owned()),
                remote_id: Some(remote_id.to_owned()),
                error: clean(&error),
                fetched: None,
            });
            return Ok(());
        }
        let command = RecordCommand::ConfirmRemoteDelete {
            integration_id: self.run.integration_id.clone(),
            run_id: self.run_id(),
            at: Utc::now(),
        };
        self.services
            .records
            .execute(record_id, command, &self.meta)
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
        out.stats.updated += 1;
        Ok(())
    }

    /// Builds the operations, sends them in one call, and pairs each result with its
    /// record.
    async fn push_batch(
        &mut self,
        entity: Entity,
        mapper: &Mapper,
        candidates: Vec<(String, Known)>,
    ) -> Result<Pushed, EngineError> {
        let mut out = Pushed::default();
        let (ops, sent) = self
            .plan_batch(entity, mapper, candidates, &mut out)
            .await?;
        if ops.is_empty() {
            return Ok(out);
        }
        let results = self.send_batch(entity, ops, &mut out).await?;
        crashpoint::reach("push:sent");
        let mut by_index: Vec<Option<PushResult>> = vec![None; sent.len()];
        for r in results {
            if let Some(slot) = by_index.get_mut(r.index) {
                *slot = Some(r);
            }
        }
        let mut owners = self.created_owners(entity, &sent, &by_index).await?;
        for (sent, result) in sent.into_iter().zip(by_index) {
            self.record_result(entity, sent, result, &mut owners, &mut out);
        }
        Ok(out)
    }

    /// The batch's operations, and its records as sent; records skipped or refused are
    /// counted in `out`.
    async fn plan_batch(
        &self,
        entity: Entity,
        mapper: &Mapper,
        candidates: Vec<(String, Known)>,
        out: &mut Pushed,
    ) -> Result<(Vec<PushOp>, Vec<Sent>), EngineError> {
        let key_field = mapper.push_rule(entity.match_field()).map(str::to_string);
        let mut taken = self.keys_taken(entity, &candidates).await?;
        let leads_only = provider::leads_only(&self.integration.provider);
        let (mut ops, mut sent) = (Vec::new(), Vec::new());
        for (record_id, known) in candidates {
            out.stats.processed += 1;
            let plan = self.plan_one(
                entity,
                mapper,
                key_field.as_deref(),
                &mut taken,
                &record_id,
                &known,
            );
            match plan {
                Plan::Skip => out.stats.skipped += 1,
                Plan::Refuse(error) => {
                    let integration_id = &self.run.integration_id;
                    out.refuse(
                        entity,
                        integration_id,
                        &self.run_id(),
                        record_id,
                        known,
                        error,
                    );
                }
                Plan::Send {
                    values,
                    kind,
                    remote,
                } => {
                    let properties = mapper.to_crm(&values);
                    let mut op = PushOp {
                        kind,
                        properties: properties.clone(),
                    };
                    if leads_only {
                        // The lead's reference: the vendor's duplicate check, and the
                        // remote id recorded (these vendors answer with none). Not a
                        // property of the CRM record, so not recorded as sent.
                        op.properties
                            .insert(REFERENCE.to_owned(), Some(record_id.clone()));
                    }
                    ops.push(op);
                    sent.push((record_id, known, values, properties, remote));
                }
            }
        }
        Ok((ops, sent))
    }

    /// What to do with one record of the batch: update its CRM record with the values it
    /// owes, create it (an upsert on its match key when the mapping pushes the key), or
    /// nothing.
    fn plan_one(
        &self,
        entity: Entity,
        mapper: &Mapper,
        key_field: Option<&str>,
        taken: &mut HashMap<String, Owner>,
        record_id: &str,
        known: &Known,
    ) -> Plan {
        let state = &known.state;
        let (values, kind, remote) = match state.links.get(&self.run.integration_id) {
            // Its CRM record was deleted: never pushed there again.
            Some(link) if !link.is_active() => return Plan::Skip,
            // A lead already sent: the vendor takes no changes to it.
            Some(_) if provider::leads_only(&self.integration.provider) => return Plan::Skip,
            Some(link) => (
                mapper.pushable(&link.owed()),
                PushKind::Update {
                    id: link.remote_id.clone(),
                },
                Some(link.remote_id.clone()),
            ),
            None => {
                if let Some(owner) = claim_key(taken, record_id, &state.values(), entity) {
                    return Plan::Refuse(duplicate_error(entity, &owner));
                }
                let values = mapper.pushable(&state.values());
                let kind = match key_field {
                    Some(k)
                        if values
                            .get(entity.match_field())
                            .is_some_and(Option::is_some) =>
                    {
                        PushKind::Upsert {
                            key_property: k.to_owned(),
                        }
                    }
                    _ => PushKind::Create,
                };
                (values, kind, None)
            }
        };
        if values.is_empty() {
            // Nothing a mapping sends: leave it (pending values of fields the
            // mapping does not push stay until a mapping pushes them).
            return Plan::Skip;
        }
        Plan::Send {
            values,
            kind,
            remote,
        }
    }

    /// Sends the operations in one call; a call that failed as a whole (after the
    /// adapter's retries) fails every record of the batch with its reason.
    async fn send_batch(
        &mut self,
        entity: Entity,
        ops: Vec<PushOp>,
        out: &mut Pushed,
    ) -> Result<Vec<PushResult>, EngineError> {
        let count = ops.len();
        let meta = self.meta.clone();
        out.sent_at = Some(std::time::Instant::now());
        let call = self
            .session()?
            .call(&meta, move |a, c| {
                let ops = ops.clone();
                Box::pin(async move { a.push_batch(c, entity, ops).await })
            })
            .await;
        out.answered_at = Some(std::time::Instant::now());
        self.charge(&mut out.stats);
        match call {
            Ok(results) => Ok(results),
            Err(EngineError::Provider(e))
                if !matches!(e, syncledger_crm::CrmError::QuotaExhausted(_)) =>
            {
                // Every record of the batch failed with that reason and stays pending.
                let error = e.to_string();
                Ok((0..count)
                    .map(|index| PushResult {
                        index,
                        remote_id: None,
                        error: Some(error.clone()),
                    })
                    .collect())
            }
            Err(e) => Err(e),
        }
    }

    /// The outcome to record for one record sent, from its result.
    fn record_result(
        &self,
        entity: Entity,
        (record_id, known, values, properties, remote): Sent,
        result: Option<PushResult>,
        owners: &mut Owners,
        out: &mut Pushed,
    ) {
        let integration_id = &self.run.integration_id;
        let run_id = self.run_id();
        let error = match &result {
            None => Some("the provider returned no result for this record".to_string()),
            // Per-record errors are the provider's words: data, not a channel.
            Some(r) => r.error.as_deref().map(clean),
        };
        let is_create = remote.is_none();
        let remote_id = result.and_then(|r| r.remote_id).or(remote);
        // A create the provider matched to a CRM record another app record is
        // linked to (its key was not known here): that link stays the only one.
        if is_create && error.is_none() {
            if let Some(owner) = remote_id.as_ref().and_then(|r| owners.claim(r, &record_id)) {
                let error = duplicate_error(entity, &owner);
                out.refuse(entity, integration_id, &run_id, record_id, known, error);
                return;
            }
        }
        let command = match (error, remote_id) {
            (None, Some(remote_id)) => {
                if known.state.links.contains_key(integration_id) {
                    out.stats.updated += 1;
                } else {
                    out.stats.created += 1;
                }
                RecordCommand::ConfirmPush {
                    integration_id: integration_id.clone(),
                    remote_id,
                    fields: values,
                    sent: properties,
                    run_id,
                    at: Utc::now(),
                }
            }
            (error, _) => {
                let error = error.unwrap_or_else(|| "the provider returned no record id".into());
                self.push_failed(entity, &record_id, &known, error, out)
            }
        };
        out.outcomes.push(Outcome {
            record_id,
            known,
            command,
        });
    }

    /// Counts a record the CRM did not take as a failure of the run, and returns the
    /// command that records it on the record (its values stay pending).
    fn push_failed(
        &self,
        entity: Entity,
        record_id: &str,
        known: &Known,
        error: String,
        out: &mut Pushed,
    ) -> RecordCommand {
        let integration_id = &self.run.integration_id;
        out.stats.failed += 1;
        out.failures.push(RecordFailure {
            entity,
            phase: Phase::Push,
            record_id: Some(record_id.to_owned()),
            remote_id: known
                .state
                .links
                .get(integration_id)
                .map(|l| l.remote_id.clone()),
            error: error.clone(),
            fetched: None,
        });
        RecordCommand::FailPush {
            integration_id: integration_id.clone(),
            run_id: self.run_id(),
            error,
            at: Utc::now(),
        }
    }

    /// Records the batch's outcomes on the records and commits the page. The provider
    /// already has the values: when a record changed meanwhile, its outcome is decided
    /// again on fresh state rather than dropped.
    async fn record_pushed(
        &mut self,
        entity: Entity,
        cursor: serde_json::Value,
        done: bool,
        pushed: Pushed,
    ) -> Result<Flow, EngineError> {
        let mut rows: Vec<NewEvent> = Vec::new();
        for o in &pushed.outcomes {
            let mut state = o.known.state.clone();
            let events = state
                .decide(o.command.clone())
                .map_err(|e| EngineError::Store(e.to_string()))?;
            for (i, e) in events.iter().enumerate() {
                state.apply(e);
                rows.push(
                    NewEvent::of::<Record>(
                        &o.record_id,
                        o.known.version + 1 + i as i64,
                        e,
                        &self.meta,
                    )
                    .map_err(encode)?,
                );
            }
        }
        let commit = self
            .commit(
                entity,
                Phase::Push,
                cursor.clone(),
                done,
                pushed.stats,
                pushed.failures.clone(),
                rows,
            )
            .await?;
        let flow = match commit {
            Commit::Done => Flow::Continue,
            Commit::Stopped => Flow::Stopped,
            Commit::Conflict => {
                for o in &pushed.outcomes {
                    self.services
                        .records
                        .execute(&o.record_id, o.command.clone(), &self.meta)
                        .await
                        .map_err(|e| EngineError::Store(e.to_string()))?;
                }
                self.commit_run_only(
                    entity,
                    Phase::Push,
                    cursor,
                    done,
                    pushed.stats,
                    pushed.failures,
                )
                .await?
            }
        };
        if flow == Flow::Continue {
            crashpoint::reach("push:committed");
        }
        Ok(flow)
    }
}
