//! Executing a rollback run: page by page over the records the reversed run touched, each
//! page's compensating events and its `PageCommitted` in one transaction. Where the
//! reversed run wrote to the CRM, the old values are sent first; a record whose CRM write
//! fails gets no compensation at all (it is a failure of the run, and a new rollback of
//! the same run picks it up), so the app and the CRM never disagree about it.
//!
//! A crash between the CRM write and the commit is harmless: the page is planned again
//! from the stored events (which still show the run's values) and the same values are sent
//! again.

use chrono::Utc;
use syncledger_crm::{PushKind, PushOp, PushResult};
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordCommand};
use syncledger_domain::rollback::CrmAccess;
use syncledger_domain::sync_run::{Phase, RecordFailure, RunStats};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::NewEvent;

use super::committer::Commit;
use super::execution::{encode, Execution, Flow};
use crate::crashpoint;
use crate::rollback::{plan_records, touched, Planned, Scope};
use crate::EngineError;

/// Attempts at a page whose records changed while it was being written.
const ATTEMPTS: usize = 5;

impl Execution<'_> {
    pub(super) async fn rollback(&mut self) -> Result<Flow, EngineError> {
        let Some(target) = self.run.rollback_of.clone() else {
            return Err(EngineError::Store(
                "a rollback run names no run to reverse".into(),
            ));
        };
        // Only the reversed run's events, and only within this run's workspace.
        let scope = Scope::new(self.run.workspace_id.clone(), target);
        for entity in [Entity::Contacts, Entity::Companies] {
            if self.rollback_pass(entity, &scope).await? == Flow::Stopped {
                return Ok(Flow::Stopped);
            }
        }
        Ok(Flow::Continue)
    }

    async fn rollback_pass(&mut self, entity: Entity, scope: &Scope) -> Result<Flow, EngineError> {
        let Some(mut cursor) = self.id_cursor(entity, Phase::Rollback) else {
            return Ok(Flow::Continue);
        };
        let access = self.crm_access();
        let page = match (&self.session, access) {
            (Some(session), CrmAccess::Writable) => session
                .adapter()
                .push_batch_size()
                .clamp(1, crate::rollback::PAGE),
            _ => crate::rollback::PAGE,
        };
        loop {
            let ids = touched(
                &self.services.store,
                scope,
                Some(entity),
                &cursor.after,
                page,
            )
            .await?;
            let done = ids.len() < page;
            if let Some(last) = ids.last() {
                cursor.after.clone_from(last);
            }
            let cursor_json = serde_json::to_value(&cursor).map_err(encode)?;
            let mut attempt = 0;
            let flow = loop {
                attempt += 1;
                let planned: Vec<Planned> = plan_records(&self.services.store, scope, &ids, access)
                    .await?
                    .into_iter()
                    .filter(|p| p.now.entity == Some(entity))
                    .collect();
                let (rows, stats, failures) =
                    self.compensate(entity, &scope.run_id, planned).await?;
                match self
                    .commit(
                        entity,
                        Phase::Rollback,
                        cursor_json.clone(),
                        done,
                        stats,
                        failures,
                        rows,
                    )
                    .await?
                {
                    Commit::Done => break Flow::Continue,
                    Commit::Stopped => break Flow::Stopped,
                    Commit::Conflict if attempt < ATTEMPTS => continue,
                    Commit::Conflict => return Err(EngineError::Conflict),
                }
            };
            if flow == Flow::Stopped {
                return Ok(flow);
            }
            crashpoint::reach("rollback:committed");
            if done {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Reads the CRM records about to be written back and plans again those whose CRM
    /// values moved since the run, as far as syncledger knew (a later edit of a property
    /// mapped push-only is never read back otherwise): such a record's CRM values are
    /// left as they are. A provider that cannot read by id is written back as planned.
    async fn recheck_crm(
        &mut self,
        entity: Entity,
        planned: &mut [Planned],
        stats: &mut RunStats,
    ) -> Result<(), EngineError> {
        let integration_id = self.run.integration_id.clone();
        // (CRM id, what the link believes it holds, what goes back) of each write-back.
        let targets = |p: &Planned| -> Option<(String, Fields, Fields)> {
            p.plan
                .crm
                .iter()
                .find(|c| c.integration_id == integration_id && !p.plan.crm_owed)
                .map(|c| (c.remote_id.clone(), c.now.clone(), c.properties.clone()))
        };
        let ids: Vec<String> = planned
            .iter()
            .filter_map(|p| targets(p).map(|(id, _, _)| id))
            .collect();
        if ids.is_empty() || self.session.is_none() {
            return Ok(());
        }
        let meta = self.meta.clone();
        let read = self
            .session()?
            .call(&meta, move |a, c| {
                let ids = ids.clone();
                Box::pin(async move { a.read_records(c, entity, &ids).await })
            })
            .await?;
        self.charge(stats);
        let Some(fresh) = read else { return Ok(()) };
        let fresh: std::collections::HashMap<String, Fields> =
            fresh.into_iter().map(|r| (r.id, r.properties)).collect();
        let access = self.crm_access();
        for p in planned.iter_mut() {
            let Some((remote_id, believed, back)) = targets(p) else {
                continue;
            };
            let Some(held) = fresh.get(&remote_id) else {
                continue;
            };
            // A value already back where it goes is this rollback's own write (sent before
            // a crash, then resumed), not a CRM edit: it is written again, harmlessly.
            let moved: Fields = believed
                .iter()
                .filter_map(|(k, v)| {
                    let now = held.get(k).cloned().flatten();
                    let already_back = back.get(k).is_some_and(|b| *b == now);
                    (now != *v && !already_back).then(|| (k.clone(), now))
                })
                .collect();
            if !moved.is_empty() {
                p.replan_with_crm(&integration_id, &moved, access);
            }
        }
        Ok(())
    }

    /// Whether this rollback can write to the CRM: not without a session (disconnected).
    fn crm_access(&self) -> CrmAccess {
        match self.session {
            Some(_) => CrmAccess::for_status(self.integration.status),
            None => CrmAccess::Owed,
        }
    }

    /// Writes the page's CRM values back, then builds the compensating events of every
    /// record whose CRM write (if any) landed. When the CRM's part is owed, every record
    /// gets its app-side compensation, and each owed write-back is listed as a failure of
    /// the run (a rollback of the same run makes it once the CRM is reachable).
    async fn compensate(
        &mut self,
        entity: Entity,
        target: &str,
        planned: Vec<Planned>,
    ) -> Result<(Vec<NewEvent>, RunStats, Vec<RecordFailure>), EngineError> {
        let integration_id = self.run.integration_id.clone();
        let run_id = self.run.id.clone().unwrap_or_default();
        let mut stats = RunStats::default();
        let mut failures = Vec::new();
        let mut planned = planned;
        self.recheck_crm(entity, &mut planned, &mut stats).await?;
        let crm_error = self.write_back(entity, &planned, &mut stats).await?;
        let mut rows = Vec::new();
        for (p, error) in planned.into_iter().zip(crm_error) {
            stats.processed += 1;
            stats.conflicts_detected += p.plan.conflicts.len() as u64;
            let failure = |error: String| RecordFailure {
                entity,
                phase: Phase::Rollback,
                record_id: Some(p.record_id.clone()),
                remote_id: p
                    .now
                    .links
                    .get(&integration_id)
                    .map(|l| l.remote_id.clone()),
                error,
                fetched: None,
            };
            if p.plan.crm_owed {
                let properties: Vec<String> = p
                    .plan
                    .crm
                    .iter()
                    .flat_map(|c| c.properties.keys().cloned())
                    .collect();
                stats.failed += 1;
                failures.push(failure(format!(
                    "owed to the CRM: writing back {} (the integration is not connected; a \
                     rollback of sync run {target} writes it back once it is)",
                    properties.join(", ")
                )));
            }
            if let Some(error) = error {
                stats.failed += 1;
                failures.push(failure(error));
                continue;
            }
            if !p.plan.changes_something() {
                stats.skipped += 1;
                continue;
            }
            stats.updated += 1;
            rows.extend(self.compensation_rows(&p, &run_id, target)?);
        }
        Ok((rows, stats, failures))
    }

    /// Writes back, in one batch, what the rollback puts back in the CRM of this
    /// integration (when it is reachable); per planned record, the CRM's error if its
    /// write failed.
    async fn write_back(
        &mut self,
        entity: Entity,
        planned: &[Planned],
        stats: &mut RunStats,
    ) -> Result<Vec<Option<String>>, EngineError> {
        let integration_id = self.run.integration_id.clone();
        // (index into `planned`, remote id, properties) of each CRM write.
        let mut writes: Vec<(usize, String, Fields)> = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            for c in &p.plan.crm {
                if c.integration_id == integration_id && !p.plan.crm_owed {
                    writes.push((i, c.remote_id.clone(), c.properties.clone()));
                }
            }
        }
        let mut crm_error: Vec<Option<String>> = vec![None; planned.len()];
        if !writes.is_empty() {
            let ops: Vec<PushOp> = writes
                .iter()
                .map(|(_, remote_id, properties)| PushOp {
                    kind: PushKind::Update {
                        id: remote_id.clone(),
                    },
                    properties: properties.clone(),
                })
                .collect();
            let meta = self.meta.clone();
            let results: Vec<PushResult> = self
                .session()?
                .call(&meta, move |a, c| {
                    let ops = ops.clone();
                    Box::pin(async move { a.push_batch(c, entity, ops).await })
                })
                .await?;
            self.charge(stats);
            let mut answered = vec![false; writes.len()];
            for r in results {
                if let Some(flag) = answered.get_mut(r.index) {
                    *flag = true;
                }
                if let (Some(error), Some((i, _, _))) = (r.error, writes.get(r.index)) {
                    crm_error[*i] = Some(error);
                }
            }
            for (n, (i, _, _)) in writes.iter().enumerate() {
                if !answered[n] && crm_error[*i].is_none() {
                    crm_error[*i] = Some("the provider returned no result for this record".into());
                }
            }
            crashpoint::reach("rollback:sent");
        }
        Ok(crm_error)
    }

    /// The events of one record's compensation: its `RolledBack`, and the CRM writes it
    /// confirms, decided on the record's current state with their sequences.
    fn compensation_rows(
        &self,
        p: &Planned,
        run_id: &str,
        target: &str,
    ) -> Result<Vec<NewEvent>, EngineError> {
        let integration_id = &self.run.integration_id;
        let mut rows = Vec::new();
        let at = Utc::now();
        let mut commands = vec![RecordCommand::RollBack(p.plan.compensation(
            &p.before,
            run_id,
            target,
            p.reverses.clone(),
            at,
        ))];
        for c in p
            .plan
            .crm
            .iter()
            .filter(|c| c.integration_id == *integration_id && !p.plan.crm_owed)
        {
            commands.push(RecordCommand::ConfirmPush {
                integration_id: integration_id.to_owned(),
                remote_id: c.remote_id.clone(),
                fields: c.fields.clone(),
                sent: c.properties.clone(),
                run_id: run_id.to_owned(),
                at,
            });
        }
        let mut state = p.now.clone();
        let mut seq = p.version;
        for command in commands {
            let events = state
                .decide(command)
                .map_err(|e| EngineError::Store(e.to_string()))?;
            for e in &events {
                seq += 1;
                state.apply(e);
                rows.push(
                    NewEvent::of::<Record>(&p.record_id, seq, e, &self.meta).map_err(encode)?,
                );
            }
        }
        Ok(rows)
    }
}
