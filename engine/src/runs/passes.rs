//! The passes of a run in their order (pull, deletions, push, entity by entity; a
//! retry run's own), and the pull pass's pipeline: the feeder fetches and decides pages
//! while the committer appends them.

use syncledger_crm::{CrmError, RemoteRecord};
use syncledger_domain::sync_config::Direction;
use syncledger_domain::sync_run::{Phase, RecordFailure, RunKind, RunStats};
use syncledger_domain::Entity;

use super::decider::Decider;
use super::execution::{store_err, to_json, Execution, Flow};
use super::feeder::Feeder;
use crate::EngineError;

impl Execution<'_> {
    /// Runs the passes the run has left, in their order: a rollback or a retry run its
    /// own; else every pull pass, then (when none failed a record) every deletions pass,
    /// then every push pass, as the run's kind and direction allow.
    pub(super) async fn drive(&mut self) -> Result<Flow, EngineError> {
        // The run's own options narrow the integration's config (validated when queued).
        let entities = self.run.options.entities_of(&self.integration.sync_config);
        let direction = self.run.options.direction_of(&self.integration.sync_config);
        let kind = self.run.kind.unwrap_or(RunKind::Incremental);
        if kind == RunKind::Rollback {
            return self.rollback().await;
        }
        if let Some(original) = self.run.retry_of.clone() {
            return self.retry(&original).await;
        }
        if kind == RunKind::Import {
            return self.import(&entities).await;
        }
        let pulls = kind != RunKind::Push && direction != Direction::Push;
        let pushes = direction != Direction::Pull;
        if pulls {
            self.catch_up().await?;
            for &entity in &entities {
                if self.pull(entity, kind).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
            // Deletions only after every pull pass ended cleanly: a partial run never
            // deletes (a record that failed to load might look deleted). An entity the
            // provider does not offer lost no record, and has nothing to delete.
            if self.run.records_failed() == 0 {
                for entity in self.offered(&entities) {
                    if self.deletions(entity).await? == Flow::Stopped {
                        return Ok(Flow::Stopped);
                    }
                }
            }
        }
        if pushes {
            self.catch_up().await?;
            // Writes to an entity the provider just said it lacks would each be refused.
            for entity in self.offered(&entities) {
                if self.push(entity).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Pulls every page of the pass, with the provider, this process and the database
    /// all at work at once: the next page is fetched (on its own task) while the last
    /// one is decided, and decided pages are committed on the side. A commit takes every
    /// page decided while the previous commit was in flight (up to [`super::feeder::AHEAD`] records),
    /// so when the database is the slowest stage, its fixed cost per transaction is
    /// shared out.
    ///
    /// Decisions read only the records read model, which commits do not touch, so
    /// deciding a page before the previous ones are committed decides it on the same
    /// states; commits stay in page order, and a decision made stale by a commit makes
    /// its own append conflict (and be decided again record by record), as with any
    /// other writer.
    async fn pull(&mut self, entity: Entity, kind: RunKind) -> Result<Flow, EngineError> {
        let Some(cursor) = self
            .pull_cursor(entity, Phase::Pull, kind == RunKind::Incremental)
            .await?
        else {
            return Ok(Flow::Continue);
        };
        let start = cursor.clone();
        let mapper = self.mapper(entity)?;
        let run_id = self.run_id();
        let (services, meta, policy) = (self.services, self.meta.clone(), self.policy.clone());
        let (workspace_id, integration_id) = (
            self.run.workspace_id.clone(),
            self.run.integration_id.clone(),
        );
        let decider = Decider {
            store: &services.store,
            records: &services.records,
            workspace_id: &workspace_id,
            integration_id: &integration_id,
            entity,
            run_id: &run_id,
            policy: &policy,
            mapper: &mapper,
            meta: &meta,
        };
        // A provider without a deletion feed: the ids of a pass read from its first
        // page in this execution tell the deletions pass what is gone.
        let scans = self.run.pass(entity, Phase::Pull).is_none()
            && self.session()?.adapter().deletes_by_absence(entity);
        let mut feeder = Feeder::new(self.session.take(), self.usage_seen, meta.clone(), entity);
        feeder.scanned = scans.then(std::collections::HashSet::new);
        let (pages, decided) = tokio::sync::mpsc::unbounded_channel();
        let (fed, committed) = tokio::join!(
            feeder.feed(&decider, cursor, pages),
            self.commit_pages(entity, &decider, decided)
        );
        self.session = feeder.settle().await;
        self.usage_seen = feeder.usage_seen();
        // The commits' outcome first: a stopped run stops the feed, which then ends
        // quietly; a feed that failed lets the commits finish what it had decided.
        if committed? == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
        if let Err(EngineError::Provider(CrmError::Unavailable(why))) = fed {
            return self.unavailable(entity, &start, why).await;
        }
        fed?;
        if let Some(ids) = feeder.scanned.take() {
            self.scanned.insert(entity, ids);
        }
        Ok(Flow::Continue)
    }

    /// Of `entities`, those the provider has not said (in this run) that it lacks.
    fn offered(&self, entities: &[Entity]) -> Vec<Entity> {
        let run = &self.run;
        entities
            .iter()
            .copied()
            .filter(|&e| !run.unavailable(e))
            .collect()
    }

    /// Ends the pull pass of an entity the provider does not offer to the account (an
    /// edition or feature it lacks) with that as its one failure: the run goes on with
    /// the other entities and ends partial, saying why. The pass keeps the cursor it
    /// started from, so the next run's high-water mark is where it was.
    async fn unavailable(
        &mut self,
        entity: Entity,
        start: &super::PullCursor,
        why: String,
    ) -> Result<Flow, EngineError> {
        tracing::warn!(entity = entity.as_str(), reason = %why, "the provider does not offer this entity to the account");
        let mut stats = RunStats {
            failed: 1,
            ..RunStats::default()
        };
        self.charge(&mut stats);
        let failure = RecordFailure::unavailable(entity, why);
        let cursor = to_json(start)?;
        self.commit_run_only(entity, Phase::Pull, cursor, true, stats, vec![failure])
            .await
    }

    /// A retry run: the original run's failed records only. Fetched records that failed
    /// to ingest are ingested again from the copy kept in the failure (no provider call);
    /// records that failed to push are pushed again.
    async fn retry(&mut self, original: &str) -> Result<Flow, EngineError> {
        let orig = self.services.runs.load(original).await.map_err(store_err)?;
        let run_id = self.run_id();
        let entities = self.integration.sync_config.entities.clone();
        for &entity in &entities {
            if !self.run.pass(entity, Phase::Pull).is_some_and(|p| p.done) {
                let fetched: Vec<RemoteRecord> = orig
                    .failures
                    .iter()
                    .filter(|f| f.entity == entity && f.phase == Phase::Pull)
                    .filter_map(|f| f.fetched.as_ref())
                    .filter_map(|v| serde_json::from_value(v.clone()).ok())
                    .collect();
                let mapper = self.mapper(entity)?;
                let decided = self
                    .decider(entity, &mapper, &run_id)
                    .ingest_one_by_one(&fetched)
                    .await?;
                let flow = self
                    .commit_run_only(
                        entity,
                        Phase::Pull,
                        serde_json::json!({}),
                        true,
                        decided.stats,
                        decided.failures,
                    )
                    .await?;
                if flow == Flow::Stopped {
                    return Ok(flow);
                }
            }
            if !self.run.pass(entity, Phase::Push).is_some_and(|p| p.done) {
                let ids: Vec<String> = orig
                    .failures
                    .iter()
                    .filter(|f| f.entity == entity && f.phase == Phase::Push)
                    .filter_map(|f| f.record_id.clone())
                    .collect();
                // An import's retry has no provider session, and nothing was pushed.
                if ids.is_empty() && self.session.is_none() {
                    continue;
                }
                self.catch_up().await?;
                if self.push_records(entity, ids).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            }
        }
        Ok(Flow::Continue)
    }
}
