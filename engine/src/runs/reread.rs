//! Conditional pushes: just before a push batch is sent, its linked CRM records are read
//! again and the versions changed since the pull are merged first, so that a CRM edit
//! made meanwhile is not overwritten. What is left is the window between the last read
//! and the write, logged per batch.

use std::collections::HashMap;

use chrono::Utc;
use syncledger_crm::RemoteRecord;
use syncledger_domain::sync_run::{RecordFailure, RunStats};
use syncledger_domain::{ConflictStrategy, Entity};

use super::execution::Execution;
use super::lookup::Known;
use crate::EngineError;

/// How many times a push batch is read again at most: a read that found changes is
/// followed by another once they are merged.
const REREADS: usize = 3;

/// What re-reading a push batch found and merged.
#[derive(Default)]
pub(super) struct Remerged {
    pub(super) stats: RunStats,
    pub(super) failures: Vec<RecordFailure>,
    /// When the re-read answered: the start of the window in which a CRM edit can still
    /// be overwritten (it ends when the push is sent).
    pub(super) read_at: Option<std::time::Instant>,
}

impl Execution<'_> {
    /// Re-reads the batch's linked CRM records just before the push and merges those
    /// changed since the pull (as a pull would, same policy), so that a CRM edit made
    /// meanwhile is not overwritten: under `manual_review` it becomes a conflict (and is
    /// held), under `crm_wins` / `last_write_wins` it may win. Only `app_wins` without
    /// "always use" rules skips it, since the app's value goes whatever the CRM holds.
    ///
    /// A read that found changes is followed by another once they are merged (up to
    /// [`REREADS`] reads), so the merging itself does not widen the window between the
    /// last read and the write. Answers the batch on its states after the merges, and
    /// what they did.
    pub(super) async fn reread(
        &mut self,
        entity: Entity,
        mut candidates: Vec<(String, Known)>,
    ) -> Result<(Vec<(String, Known)>, Remerged), EngineError> {
        let mut out = Remerged::default();
        if self.policy.strategy == ConflictStrategy::AppWins && self.policy.always.is_empty() {
            return Ok((candidates, out));
        }
        // CRM record → the modification time merged last (by the pull or a round here).
        let mut merged: HashMap<String, Option<chrono::DateTime<Utc>>> = HashMap::new();
        for _ in 0..REREADS {
            let changed = self
                .read_changed(entity, &candidates, &mut merged, &mut out)
                .await?;
            if changed.is_empty() {
                break;
            }
            candidates = self
                .merge_changed(entity, candidates, &changed, &mut out)
                .await?;
        }
        Ok((candidates, out))
    }

    /// Reads the batch's linked CRM records that would be sent something; answers those
    /// modified since they were last merged.
    async fn read_changed(
        &mut self,
        entity: Entity,
        candidates: &[(String, Known)],
        merged: &mut HashMap<String, Option<chrono::DateTime<Utc>>>,
        out: &mut Remerged,
    ) -> Result<Vec<RemoteRecord>, EngineError> {
        let integration_id = &self.run.integration_id;
        // Only records that would send something: a create has no CRM version yet.
        for l in candidates
            .iter()
            .filter_map(|(_, k)| k.state.links.get(integration_id))
            .filter(|l| l.is_active() && !l.owed().is_empty())
        {
            let seen = merged
                .entry(l.remote_id.clone())
                .or_insert(l.remote_updated_at);
            *seen = (*seen).max(l.remote_updated_at);
        }
        let ids: Vec<String> = candidates
            .iter()
            .filter_map(|(_, k)| k.state.links.get(integration_id))
            .filter(|l| l.is_active() && !l.owed().is_empty())
            .map(|l| l.remote_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let meta = self.meta.clone();
        let read = self
            .session()?
            .call(&meta, move |a, c| {
                let ids = ids.clone();
                Box::pin(async move { a.read_records(c, entity, &ids).await })
            })
            .await?;
        self.charge(&mut out.stats);
        let Some(fresh) = read else {
            return Ok(vec![]);
        };
        out.read_at = Some(std::time::Instant::now());
        let changed: Vec<RemoteRecord> = fresh
            .into_iter()
            .filter(|r| {
                merged
                    .get(&r.id)
                    .is_some_and(|seen| *seen < Some(r.updated_at))
            })
            .collect();
        for r in &changed {
            merged.insert(r.id.clone(), Some(r.updated_at));
        }
        Ok(changed)
    }

    /// Merges the changed CRM versions into their records and answers the batch on
    /// their new states; a record whose version could not be merged leaves the batch
    /// (it is not pushed over a version nobody merged).
    async fn merge_changed(
        &mut self,
        entity: Entity,
        mut candidates: Vec<(String, Known)>,
        changed: &[RemoteRecord],
        out: &mut Remerged,
    ) -> Result<Vec<(String, Known)>, EngineError> {
        let mapper = self.mapper(entity)?;
        let run_id = self.run_id();
        let decided = self
            .decider(entity, &mapper, &run_id)
            .ingest_one_by_one(changed)
            .await?;
        out.stats.conflicts_detected += decided.stats.conflicts_detected;
        out.stats.conflicts_resolved += decided.stats.conflicts_resolved;
        let unmerged: Vec<String> = decided
            .failures
            .iter()
            .filter_map(|f| f.remote_id.clone())
            .collect();
        out.failures.extend(decided.failures);
        let integration_id = self.run.integration_id.clone();
        let remote_of = |k: &Known| {
            k.state
                .links
                .get(&integration_id)
                .map(|l| l.remote_id.clone())
        };
        candidates.retain(|(_, k)| remote_of(k).is_none_or(|r| !unmerged.contains(&r)));
        let changed_ids: Vec<&str> = changed.iter().map(|r| r.id.as_str()).collect();
        for (record_id, known) in &mut candidates {
            if remote_of(known).is_some_and(|r| changed_ids.contains(&r.as_str())) {
                let (state, version) = self
                    .services
                    .records
                    .load_versioned(record_id)
                    .await
                    .map_err(|e| EngineError::Store(e.to_string()))?;
                *known = Known { state, version };
            }
        }
        Ok(candidates)
    }
}
