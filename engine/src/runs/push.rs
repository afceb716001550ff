//! The push pass: app-side values a CRM does not have yet, sent in the provider's batch
//! size, each result recorded on its record.
//!
//! A linked record sends its pending values (only fields a mapping pushes; the CRM's own
//! changes are never pending for it, so nothing echoes back). A record not linked yet is
//! created — as an upsert on the match key (email, domain) when the mapping pushes it,
//! so a batch sent again after a crash finds the records it created instead of making
//! them twice. Failures are per record: the rest of the batch still lands.

use chrono::Utc;
use syncledger_crm::{PushKind, PushOp, PushResult};
use syncledger_domain::merge::Fields;
use syncledger_domain::provider_text::clean;
use syncledger_domain::record::{Record, RecordCommand};
use syncledger_domain::sync_run::{Phase, RecordFailure, RunStats};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::NewEvent;

use super::exec::{encode, Commit, Ctx, Flow};
use super::lookup::{self, Known};
use super::PushCursor;
use crate::crashpoint;
use crate::mapping::{match_key, Mapper};
use crate::EngineError;

/// What to record on one record after its push.
struct Outcome {
    record_id: String,
    known: Known,
    command: RecordCommand,
}

/// A push batch's results, ready to commit.
#[derive(Default)]
struct Pushed {
    outcomes: Vec<Outcome>,
    stats: RunStats,
    failures: Vec<RecordFailure>,
}

impl Ctx<'_> {
    pub(super) async fn push(&mut self, entity: Entity) -> Result<Flow, EngineError> {
        let Some(mut cursor) = self.id_cursor(entity, Phase::Push) else {
            return Ok(Flow::Continue);
        };
        let mapper = self.mapper(entity)?;
        let batch = self.session()?.adapter().push_batch_size().max(1);
        loop {
            let candidates = lookup::owing_push(
                &self.inner.store.any,
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
            let pushed = self.push_batch(entity, &mapper, candidates).await?;
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
            let mut states = lookup::states(&self.inner.store.any, &refs).await?;
            let candidates: Vec<(String, Known)> = chunk
                .iter()
                .filter_map(|id| states.remove(id).map(|k| (id.clone(), k)))
                .collect();
            let pushed = self.push_batch(entity, &mapper, candidates).await?;
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

    /// Builds the operations, sends them in one call, and pairs each result with its
    /// record.
    async fn push_batch(
        &mut self,
        entity: Entity,
        mapper: &Mapper,
        candidates: Vec<(String, Known)>,
    ) -> Result<Pushed, EngineError> {
        let integration_id = self.run.integration_id.clone();
        let key_field = mapper.push_rule(match_key(entity)).map(str::to_string);
        let mut out = Pushed::default();
        let mut ops = Vec::new();
        // (record, its state, the app values sent, the CRM properties sent, the remote id
        // for an update)
        let mut sent: Vec<(String, Known, Fields, Fields, Option<String>)> = Vec::new();
        for (record_id, known) in candidates {
            out.stats.processed += 1;
            let state = &known.state;
            let (values, kind, remote) = match state.links.get(&integration_id) {
                Some(link) => (
                    mapper.pushable(&link.pending_push),
                    PushKind::Update {
                        id: link.remote_id.clone(),
                    },
                    Some(link.remote_id.clone()),
                ),
                None => {
                    let values = mapper.pushable(&state.values());
                    let kind = match &key_field {
                        Some(k) if values.get(match_key(entity)).is_some_and(Option::is_some) => {
                            PushKind::Upsert {
                                key_property: k.clone(),
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
                out.stats.skipped += 1;
                continue;
            }
            let properties = mapper.to_crm(&values);
            ops.push(PushOp {
                kind,
                properties: properties.clone(),
            });
            sent.push((record_id, known, values, properties, remote));
        }
        if ops.is_empty() {
            return Ok(out);
        }
        let meta = self.meta.clone();
        let call = self
            .session()?
            .call(&meta, move |a, c| {
                let ops = ops.clone();
                Box::pin(async move { a.push_batch(c, entity, ops).await })
            })
            .await;
        out.stats.api_calls += self.take_calls();
        let results: Vec<PushResult> = match call {
            Ok(results) => results,
            Err(EngineError::Provider(e))
                if !matches!(e, syncledger_crm::CrmError::QuotaExhausted(_)) =>
            {
                // The whole call failed (after the adapter's retries): every record of
                // the batch failed with that reason and stays pending.
                let error = e.to_string();
                (0..sent.len())
                    .map(|index| PushResult {
                        index,
                        remote_id: None,
                        error: Some(error.clone()),
                    })
                    .collect()
            }
            Err(e) => return Err(e),
        };
        crashpoint::reach("push:sent");
        let mut by_index: Vec<Option<PushResult>> = vec![None; sent.len()];
        for r in results {
            if let Some(slot) = by_index.get_mut(r.index) {
                *slot = Some(r);
            }
        }
        let run_id = self.run.id.clone().unwrap_or_default();
        for ((record_id, known, values, properties, remote), result) in
            sent.into_iter().zip(by_index)
        {
            let error = match &result {
                None => Some("the provider returned no result for this record".to_string()),
                // Per-record errors are the provider's words: data, not a channel.
                Some(r) => r.error.as_deref().map(clean),
            };
            let remote_id = result.and_then(|r| r.remote_id).or(remote);
            let command = match (error, remote_id) {
                (None, Some(remote_id)) => {
                    if known.state.links.contains_key(&integration_id) {
                        out.stats.updated += 1;
                    } else {
                        out.stats.created += 1;
                    }
                    RecordCommand::ConfirmPush {
                        integration_id: integration_id.clone(),
                        remote_id,
                        fields: values,
                        sent: properties,
                        run_id: run_id.clone(),
                        at: Utc::now(),
                    }
                }
                (error, _) => {
                    let error =
                        error.unwrap_or_else(|| "the provider returned no record id".into());
                    out.stats.failed += 1;
                    out.failures.push(RecordFailure {
                        entity,
                        phase: Phase::Push,
                        record_id: Some(record_id.clone()),
                        remote_id: known
                            .state
                            .links
                            .get(&integration_id)
                            .map(|l| l.remote_id.clone()),
                        error: error.clone(),
                        fetched: None,
                    });
                    RecordCommand::FailPush {
                        integration_id: integration_id.clone(),
                        run_id: run_id.clone(),
                        error,
                        at: Utc::now(),
                    }
                }
            };
            out.outcomes.push(Outcome {
                record_id,
                known,
                command,
            });
        }
        Ok(out)
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
                    self.inner
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
