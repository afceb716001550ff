//! The deletions pass: records the CRM lists as deleted are unlinked or archived as the
//! integration's `on_crm_delete` says, a page at a time.

use chrono::Utc;
use syncledger_crm::Page;
use syncledger_domain::record::{RecordCommand, RecordError};
use syncledger_domain::sync_run::{Phase, RecordFailure, RunStats};
use syncledger_domain::Entity;
use syncledger_store::CommandError;

use super::execution::{to_json, Execution, Flow};
use super::feeder::fetch;
use super::{lookup, PullCursor};
use crate::EngineError;

impl Execution<'_> {
    /// Fetches the deletions page `cursor` names.
    async fn fetch(
        &mut self,
        entity: Entity,
        phase: Phase,
        cursor: &PullCursor,
    ) -> Result<Page, EngineError> {
        let meta = self.meta.clone();
        fetch(self.session()?, &meta, entity, phase, cursor).await
    }

    /// The deletions pass of `entity`, from its saved cursor or the previous run's
    /// high-water mark.
    pub(super) async fn deletions(&mut self, entity: Entity) -> Result<Flow, EngineError> {
        if self.session()?.adapter().deletes_by_absence(entity) {
            return self.deletions_by_absence(entity).await;
        }
        let Some(mut cursor) = self.pull_cursor(entity, Phase::Deletions, true).await? else {
            return Ok(Flow::Continue);
        };
        let run_id = self.run_id();
        loop {
            let page = self.fetch(entity, Phase::Deletions, &cursor).await?;
            let mut stats = RunStats::default();
            self.charge(&mut stats);
            let mut failures = Vec::new();
            let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
            let links = lookup::linked(
                &self.services.store.any,
                &self.run.workspace_id,
                &self.run.integration_id,
                entity,
                &ids,
            )
            .await?;
            for r in &page.records {
                stats.processed += 1;
                cursor.note(&r.id, r.updated_at);
                let Some(record_id) = links.get(&r.id) else {
                    stats.skipped += 1;
                    continue;
                };
                if let Some(failure) = self
                    .delete_linked(entity, record_id, &r.id, &run_id, &mut stats)
                    .await
                {
                    failures.push(failure);
                }
            }
            cursor.page = page.next.clone();
            let done = page.next.is_none();
            let flow = self
                .commit_run_only(
                    entity,
                    Phase::Deletions,
                    to_json(&cursor)?,
                    done,
                    stats,
                    failures,
                )
                .await?;
            if flow == Flow::Stopped || done {
                return Ok(flow);
            }
        }
    }

    /// The deletions pass of a provider without a deletion feed: the records linked to
    /// the integration that this execution's complete pull did not list, as far as the
    /// provider confirms them gone, in one page. Without a complete pull in this
    /// execution (a resumed run), or when the pull listed nothing at all (a wrong
    /// account looks like that too), nothing is deleted.
    async fn deletions_by_absence(&mut self, entity: Entity) -> Result<Flow, EngineError> {
        if self
            .run
            .pass(entity, Phase::Deletions)
            .is_some_and(|p| p.done)
        {
            return Ok(Flow::Continue);
        }
        let scanned = self.scanned.remove(&entity).unwrap_or_default();
        let mut missing = Vec::new();
        if !scanned.is_empty() {
            let links = lookup::active_links(
                &self.services.store.any,
                &self.run.workspace_id,
                entity,
                &self.run.integration_id,
            )
            .await?;
            missing = links
                .into_iter()
                .filter(|(_, remote_id)| !scanned.contains(remote_id))
                .collect();
        }
        let gone = if missing.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<String> = missing.iter().map(|(_, r)| r.clone()).collect();
            let meta = self.meta.clone();
            self.session()?
                .call(&meta, move |a, c| {
                    let ids = ids.clone();
                    Box::pin(async move { a.confirm_absent(c, entity, &ids).await })
                })
                .await?
        };
        let run_id = self.run_id();
        let mut stats = RunStats::default();
        self.charge(&mut stats);
        let mut failures = Vec::new();
        for (record_id, remote_id) in &missing {
            stats.processed += 1;
            if !gone.contains(remote_id) {
                stats.skipped += 1;
                continue;
            }
            if let Some(failure) = self
                .delete_linked(entity, record_id, remote_id, &run_id, &mut stats)
                .await
            {
                failures.push(failure);
            }
        }
        let cursor = serde_json::json!({ "by_absence": true });
        self.commit_run_only(entity, Phase::Deletions, cursor, true, stats, failures)
            .await
    }

    /// Applies the CRM's deletion of `remote_id` to its linked record, counting it in
    /// `stats`; the failure to list when it could not be applied.
    async fn delete_linked(
        &self,
        entity: Entity,
        record_id: &str,
        remote_id: &str,
        run_id: &str,
        stats: &mut RunStats,
    ) -> Option<RecordFailure> {
        let command = RecordCommand::RemoteDelete {
            integration_id: self.run.integration_id.clone(),
            run_id: run_id.to_owned(),
            on_delete: self.integration.sync_config.on_crm_delete,
            at: Utc::now(),
        };
        match self
            .services
            .records
            .execute(record_id, command, &self.meta)
            .await
        {
            Ok(()) => stats.updated += 1,
            // Already unlinked or marked deleted (a page applied again after a
            // crash, or a deletion the provider keeps listing).
            Err(CommandError::Domain(RecordError::NotLinked(_))) => stats.unchanged += 1,
            Err(e) => {
                stats.failed += 1;
                return Some(RecordFailure {
                    entity,
                    phase: Phase::Deletions,
                    record_id: Some(record_id.to_owned()),
                    remote_id: Some(remote_id.to_owned()),
                    error: e.to_string(),
                    fetched: None,
                });
            }
        }
        None
    }
}
