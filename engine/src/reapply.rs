//! Re-applying an integration's current field mappings to the CRM data it already
//! fetched, without calling the provider.
//!
//! Every record linked to the integration keeps the CRM properties last fetched for it
//! (`Link::remote`). A reapply maps those again and merges the result like any fetched
//! version: same remote id and modification time, new mapped values. It is a sync run of
//! kind `reapply`: it holds the integration's one active-run slot, commits a page per batch
//! of records, and ends completed, or partial when some records could not be mapped.
//! Records the filter now leaves out are skipped, never deleted. A record whose mapped
//! values did not change writes nothing, so reapplying twice writes no record event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use syncledger_crm::RemoteRecord;
use syncledger_domain::merge::MergePolicy;
use syncledger_domain::record::{Record, RecordCommand, RecordEvent};
use syncledger_domain::sync_run::{
    Phase, RecordFailure, RunKind, RunStats, SyncRun, SyncRunCommand, Trigger,
};
use syncledger_domain::{Aggregate, Entity, Integration, IntegrationCommand};
use syncledger_projections::checkpoint;
use syncledger_projections::records::{linked_to, StoredRecord};
use syncledger_store::{CommandError, Cqrs, Metadata, Position, Store};
use tokio::sync::Notify;

use crate::error::EngineError;
use crate::mapping::{Mapped, Mapper, MappingError};

/// Records per committed page.
pub const BATCH: i64 = 500;
/// How long a reapply waits for the records read model to show every earlier fetch.
const CATCH_UP: Duration = Duration::from_secs(30);
const RECORDS_PROJECTION: &str = "records";

#[derive(Debug, thiserror::Error)]
pub enum ReapplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The stored mappings no longer compile; nothing was written.
    #[error("the stored mappings cannot be used: {0}")]
    Mapping(#[from] MappingError),
    /// The records read model did not catch up in time; the run failed without changes.
    #[error("the records read model is behind; retry shortly")]
    ReadModelBehind,
}

/// Runs reapplies. Cheap to build per request.
pub struct Reapply {
    store: Store,
    integrations: Cqrs<Integration>,
    records: Cqrs<Record>,
    runs: Cqrs<SyncRun>,
    worker: String,
    /// Pokes the projection runner while waiting for it.
    wake: Option<Arc<Notify>>,
}

/// What one record came to.
enum Outcome {
    Updated {
        conflicts: u64,
        resolved: u64,
    },
    Unchanged,
    Skipped,
    Failed {
        remote_id: Option<String>,
        error: String,
    },
}

fn store_error<E: std::error::Error>(e: CommandError<E>) -> EngineError {
    match e {
        CommandError::Conflict => EngineError::Conflict,
        other => EngineError::Store(other.to_string()),
    }
}

impl Reapply {
    pub fn new(store: &Store, worker: impl Into<String>) -> Self {
        Reapply {
            store: store.clone(),
            integrations: store.cqrs(),
            records: store.cqrs(),
            runs: store.cqrs(),
            worker: worker.into(),
            wake: None,
        }
    }

    /// Wake the projection runner with `wake` while waiting for the read model.
    #[must_use]
    pub fn waking(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Re-applies the integration's mappings for `entity` as one sync run and answers the
    /// ended run. Fails without writing anything when the mappings do not compile or
    /// another run is active (`IntegrationError::RunActive`).
    #[tracing::instrument(skip_all, fields(integration_id = %integration_id, entity = entity.as_str()), err)]
    pub async fn run(
        &self,
        integration_id: &str,
        entity: Entity,
        meta: &Metadata,
    ) -> Result<SyncRun, ReapplyError> {
        let integration = self
            .integrations
            .load(integration_id)
            .await
            .map_err(EngineError::from)?;
        if integration.id.is_none() {
            return Err(EngineError::NotFound.into());
        }
        let (mappings, filter) = crate::mapping::effective_mappings(&integration, entity);
        // Compiling evaluates nothing but may take a while on large expressions.
        let mapper =
            tokio::task::spawn_blocking(move || Mapper::compile(&mappings, filter.as_deref()))
                .await
                .map_err(|e| EngineError::Store(format!("compiling the mappings failed: {e}")))??;
        let run_id = uuid::Uuid::now_v7().to_string();
        let begin = IntegrationCommand::BeginSyncRun {
            run_id: run_id.clone(),
            rollback: false,
            at: Utc::now(),
        };
        self.integrations
            .execute(integration_id, begin, meta)
            .await
            .map_err(EngineError::from)?;
        // The run's own events and the records it writes carry the run's id as their
        // correlation id, as a worker's run does (rollback finds a run's events by it);
        // the request that started it is their cause.
        let run_meta = Metadata {
            correlation_id: run_id.clone(),
            causation_id: Some(meta.correlation_id.clone()),
            ..meta.clone()
        };
        let outcome = self
            .drive(&integration, entity, &mapper, &run_id, &run_meta)
            .await;
        if let Err(e) = &outcome {
            self.fail(&run_id, e, &run_meta).await;
        }
        let finish = IntegrationCommand::FinishSyncRun {
            run_id: run_id.clone(),
            at: Utc::now(),
        };
        self.integrations
            .execute(integration_id, finish, meta)
            .await
            .map_err(EngineError::from)?;
        outcome?;
        Ok(self.runs.load(&run_id).await.map_err(store_error)?)
    }

    /// Ends the run as failed; best effort, since the run may not even be queued.
    async fn fail(&self, run_id: &str, error: &ReapplyError, meta: &Metadata) {
        let fail = SyncRunCommand::Fail {
            reason: error.to_string(),
            at: Utc::now(),
        };
        if let Err(e) = self.runs.execute(run_id, fail, meta).await {
            tracing::warn!(error = %e, run_id, "could not mark the reapply run failed");
        }
    }

    async fn drive(
        &self,
        integration: &Integration,
        entity: Entity,
        mapper: &Mapper,
        run_id: &str,
        meta: &Metadata,
    ) -> Result<(), ReapplyError> {
        let integration_id = integration.id.clone().unwrap_or_default();
        let queue = SyncRunCommand::Queue {
            run_id: run_id.to_owned(),
            integration_id: integration_id.clone(),
            workspace_id: integration.workspace_id.clone(),
            kind: RunKind::Reapply,
            trigger: Trigger::Manual,
            retry_of: None,
            rollback_of: None,
            options: Default::default(),
            at: Utc::now(),
        };
        self.runs
            .execute(run_id, queue, meta)
            .await
            .map_err(store_error)?;
        let start = SyncRunCommand::Start {
            worker: self.worker.clone(),
            at: Utc::now(),
        };
        self.runs
            .execute(run_id, start, meta)
            .await
            .map_err(store_error)?;
        self.records_caught_up(&integration_id).await?;
        let policy = integration.merge_policy();
        let plan = Plan {
            integration_id,
            workspace_id: integration.workspace_id.clone(),
            entity,
            mapper: mapper.clone(),
            policy,
            run_id: run_id.to_owned(),
        };
        self.pass(&plan, meta).await?;
        self.runs
            .execute(run_id, SyncRunCommand::Finish { at: Utc::now() }, meta)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Waits until the records read model has applied the integration's latest event (the
    /// `SyncRunBegun` of this run). Every fetch of an earlier run of this integration was
    /// committed before that run released the slot this run now holds, so the read model
    /// then shows each record's last fetched properties.
    async fn records_caught_up(&self, integration_id: &str) -> Result<(), ReapplyError> {
        let feed = self.store.feed();
        let target = feed
            .last_position_of(Integration::TYPE, integration_id)
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?
            .unwrap_or(Position::START);
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        let mut delay = Duration::from_millis(2);
        loop {
            if let Some(wake) = &self.wake {
                wake.notify_waiters();
            }
            let cp = checkpoint::read(&self.store.any, RECORDS_PROJECTION)
                .await
                .map_err(|e| EngineError::Store(e.to_string()))?;
            if cp.is_some_and(|c| c.position >= target) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ReapplyError::ReadModelBehind);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}

/// How one linked record is re-mapped: everything the pure part of a pass needs, owned,
/// so a batch can be mapped off the async runtime (CEL evaluation blocks).
#[derive(Clone)]
struct Plan {
    integration_id: String,
    workspace_id: String,
    entity: Entity,
    mapper: Mapper,
    policy: MergePolicy,
    run_id: String,
}

/// What to do with one record.
enum Step {
    Done(Outcome),
    /// Write `command`, which on the read model's state decides `events`.
    Write {
        record_id: String,
        remote_id: String,
        command: Box<RecordCommand>,
        events: Vec<RecordEvent>,
    },
}

impl Plan {
    fn step(&self, row: &StoredRecord) -> Step {
        let record = match &row.state {
            Ok(record) => record,
            Err(e) => {
                return Step::Done(Outcome::Failed {
                    remote_id: None,
                    error: format!("the stored record cannot be read: {e}"),
                })
            }
        };
        let command = match self.ingest(&row.id, record) {
            Ok(command) => command,
            Err(outcome) => return Step::Done(outcome),
        };
        // Decided on the read model's state first: a record whose values did not change
        // is not written at all. The slot this run holds keeps other runs of the
        // integration from moving the link meanwhile; the write itself is decided again
        // on the stored events.
        match record.decide(command.clone()) {
            Ok(events) if events.is_empty() => Step::Done(Outcome::Unchanged),
            Ok(events) => Step::Write {
                record_id: row.id.clone(),
                remote_id: self.remote_id(record).unwrap_or_default(),
                command: Box::new(command),
                events,
            },
            Err(e) => Step::Done(self.failed(record, e.to_string())),
        }
    }

    fn remote_id(&self, record: &Record) -> Option<String> {
        record
            .links
            .get(&self.integration_id)
            .map(|l| l.remote_id.clone())
    }

    fn failed(&self, record: &Record, error: String) -> Outcome {
        Outcome::Failed {
            remote_id: self.remote_id(record),
            error,
        }
    }

    /// The ingest of the record's stored CRM version under the current mappings, or the
    /// record's outcome when there is nothing to merge: skipped when nothing was kept to
    /// re-map or the filter now leaves the record out, failed when mapping fails.
    fn ingest(&self, record_id: &str, record: &Record) -> Result<RecordCommand, Outcome> {
        let link = record
            .links
            .get(&self.integration_id)
            .ok_or(Outcome::Skipped)?;
        // Records fetched before the properties were kept have nothing to re-map.
        let remote_updated_at = link
            .remote_updated_at
            .filter(|_| !link.remote.is_empty())
            .ok_or(Outcome::Skipped)?;
        let remote = RemoteRecord {
            id: link.remote_id.clone(),
            properties: link.remote.clone(),
            created_at: remote_updated_at,
            updated_at: remote_updated_at,
            archived: false,
        };
        let fields = match self.mapper.to_app(&remote) {
            Ok(Mapped::Fields(fields)) => fields,
            Ok(Mapped::Filtered) => return Err(Outcome::Skipped),
            Err(e) => return Err(self.failed(record, e.to_string())),
        };
        Ok(RecordCommand::Ingest {
            record_id: record_id.to_owned(),
            workspace_id: self.workspace_id.clone(),
            entity: self.entity,
            integration_id: self.integration_id.clone(),
            remote_id: remote.id,
            remote_updated_at,
            remote: remote.properties,
            fields,
            policy: self.policy.clone(),
            run_id: self.run_id.clone(),
            at: Utc::now(),
        })
    }
}

/// A page's counters and failures.
#[derive(Default)]
struct Tally {
    stats: RunStats,
    failures: Vec<RecordFailure>,
}

impl Tally {
    fn add(&mut self, entity: Entity, record_id: &str, outcome: Outcome) {
        self.stats.processed += 1;
        match outcome {
            Outcome::Updated {
                conflicts,
                resolved,
            } => {
                self.stats.updated += 1;
                self.stats.conflicts_detected += conflicts;
                self.stats.conflicts_resolved += resolved;
            }
            Outcome::Unchanged => self.stats.unchanged += 1,
            Outcome::Skipped => self.stats.skipped += 1,
            Outcome::Failed { remote_id, error } => {
                self.stats.failed += 1;
                self.failures.push(RecordFailure {
                    entity,
                    phase: Phase::Pull,
                    record_id: Some(record_id.to_owned()),
                    remote_id: remote_id.filter(|r| !r.is_empty()),
                    error,
                    fetched: None,
                });
            }
        }
    }
}

fn updated(events: &[RecordEvent]) -> Outcome {
    let (mut conflicts, mut resolved) = (0, 0);
    for e in events {
        if let RecordEvent::RemoteMerged {
            conflicts: found, ..
        } = e
        {
            conflicts += found.len() as u64;
            resolved += found.iter().filter(|c| c.winner.is_some()).count() as u64;
        }
    }
    Outcome::Updated {
        conflicts,
        resolved,
    }
}

impl Reapply {
    /// Every linked record of the plan's entity, a committed page per batch.
    async fn pass(&self, plan: &Plan, meta: &Metadata) -> Result<(), ReapplyError> {
        let mut after = String::new();
        loop {
            let mut rows = linked_to(
                &self.store.any,
                &plan.workspace_id,
                &plan.integration_id,
                plan.entity,
                &after,
                BATCH + 1,
            )
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?;
            let more = rows.len() as i64 > BATCH;
            rows.truncate(BATCH as usize);
            let last = rows.last().map(|r| r.id.clone());
            let mapping = plan.clone();
            let steps = tokio::task::spawn_blocking(move || {
                rows.iter()
                    .map(|row| (row.id.clone(), mapping.step(row)))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| EngineError::Store(format!("mapping a batch failed: {e}")))?;
            let mut tally = Tally::default();
            for (record_id, step) in steps {
                let outcome = self.write(step, meta).await?;
                tally.add(plan.entity, &record_id, outcome);
            }
            let page = SyncRunCommand::CommitPage {
                entity: plan.entity,
                phase: Phase::Pull,
                cursor: last.clone().map(serde_json::Value::from),
                done: !more,
                stats: tally.stats,
                failures: tally.failures,
                total: None,
                at: Utc::now(),
            };
            self.runs
                .execute(&plan.run_id, page, meta)
                .await
                .map_err(store_error)?;
            match last {
                Some(last) if more => after = last,
                _ => return Ok(()),
            }
        }
    }

    /// Carries out one step. A store failure ends the run; a refusal of this record
    /// alone is its failure.
    async fn write(&self, step: Step, meta: &Metadata) -> Result<Outcome, EngineError> {
        let (record_id, remote_id, command, events) = match step {
            Step::Done(outcome) => return Ok(outcome),
            Step::Write {
                record_id,
                remote_id,
                command,
                events,
            } => (record_id, remote_id, command, events),
        };
        let failed = |error: String| Outcome::Failed {
            remote_id: Some(remote_id.clone()),
            error,
        };
        match self.records.execute(&record_id, *command, meta).await {
            Ok(()) => Ok(updated(&events)),
            Err(CommandError::Domain(e)) => Ok(failed(e.to_string())),
            Err(CommandError::Conflict | CommandError::Stale { .. }) => {
                Ok(failed("the record was changed concurrently".into()))
            }
            Err(e @ CommandError::Store(_)) => Err(EngineError::Store(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};
    use syncledger_domain::integration::{FieldMapping, MappingDirection};
    use syncledger_domain::merge::Fields;
    use syncledger_domain::ConflictStrategy;

    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_default()
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    /// A contact imported from CRM record 7 with `remote`, mapped by the defaults.
    fn imported(remote: &[(&str, &str)], mapped: &[(&str, &str)]) -> StoredRecord {
        let mut record = Record::default();
        record.apply(&RecordEvent::RecordImported {
            record_id: "r1".into(),
            workspace_id: "ws1".into(),
            entity: Entity::Contacts,
            integration_id: "int1".into(),
            remote_id: "7".into(),
            remote_updated_at: at(),
            remote: fields(remote),
            fields: fields(mapped),
            run_id: "run0".into(),
            at: at(),
        });
        StoredRecord {
            id: "r1".into(),
            state: Ok(record),
        }
    }

    fn plan(transform: Option<&str>, filter: Option<&str>) -> Plan {
        let mappings = vec![
            FieldMapping {
                crm_field: "email".into(),
                app_field: "email".into(),
                direction: MappingDirection::Both,
                transform: None,
            },
            FieldMapping {
                crm_field: "firstname".into(),
                app_field: "first_name".into(),
                direction: MappingDirection::Both,
                transform: transform.map(str::to_owned),
            },
        ];
        Plan {
            integration_id: "int1".into(),
            workspace_id: "ws1".into(),
            entity: Entity::Contacts,
            mapper: Mapper::compile(&mappings, filter).expect("compiles"),
            policy: MergePolicy {
                strategy: ConflictStrategy::ManualReview,
                always: Default::default(),
            },
            run_id: "run1".into(),
        }
    }

    fn row() -> StoredRecord {
        imported(
            &[("email", "ada@x.io"), ("firstname", "Ada")],
            &[("email", "ada@x.io"), ("first_name", "Ada")],
        )
    }

    #[test]
    fn a_changed_transform_writes_the_new_values_from_the_stored_properties() {
        let Step::Write {
            record_id,
            remote_id,
            command,
            events,
        } = plan(Some("value.upperAscii()"), None).step(&row())
        else {
            panic!("expected a write");
        };
        assert_eq!((record_id.as_str(), remote_id.as_str()), ("r1", "7"));
        let RecordCommand::Ingest {
            remote_updated_at,
            remote,
            fields: mapped,
            ..
        } = *command
        else {
            panic!("expected an ingest");
        };
        assert_eq!(remote_updated_at, at(), "the stored CRM time is kept");
        assert_eq!(
            remote,
            fields(&[("email", "ada@x.io"), ("firstname", "Ada")])
        );
        assert_eq!(mapped.get("first_name"), Some(&Some("ADA".to_string())));
        assert!(events.iter().any(|e| matches!(
            e,
            RecordEvent::FieldsChanged { fields, .. }
                if fields.get("first_name") == Some(&Some("ADA".to_string()))
        )));
    }

    #[test]
    fn the_same_mappings_change_nothing() {
        assert!(matches!(
            plan(None, None).step(&row()),
            Step::Done(Outcome::Unchanged)
        ));
    }

    #[test]
    fn records_the_filter_leaves_out_or_without_stored_properties_are_skipped() {
        assert!(matches!(
            plan(
                Some("value.upperAscii()"),
                Some("record.firstname == 'Bob'")
            )
            .step(&row()),
            Step::Done(Outcome::Skipped)
        ));
        let bare = imported(&[], &[("email", "ada@x.io")]);
        assert!(matches!(
            plan(Some("value.upperAscii()"), None).step(&bare),
            Step::Done(Outcome::Skipped)
        ));
    }

    #[test]
    fn a_mapping_that_fails_on_a_record_fails_that_record() {
        let step = plan(Some("value + record.missing"), None).step(&row());
        let Step::Done(Outcome::Failed { remote_id, error }) = step else {
            panic!("expected a failure");
        };
        assert_eq!(remote_id.as_deref(), Some("7"));
        assert!(error.contains("firstname"), "{error}");
        let unreadable = StoredRecord {
            id: "r2".into(),
            state: Err("bad json".into()),
        };
        assert!(matches!(
            plan(None, None).step(&unreadable),
            Step::Done(Outcome::Failed {
                remote_id: None,
                ..
            })
        ));
    }

    #[test]
    fn tallies_count_each_outcome_and_name_failed_records() {
        let mut tally = Tally::default();
        tally.add(
            Entity::Contacts,
            "r1",
            Outcome::Updated {
                conflicts: 2,
                resolved: 1,
            },
        );
        tally.add(Entity::Contacts, "r2", Outcome::Unchanged);
        tally.add(Entity::Contacts, "r3", Outcome::Skipped);
        tally.add(
            Entity::Contacts,
            "r4",
            Outcome::Failed {
                remote_id: Some("9".into()),
                error: "boom".into(),
            },
        );
        let s = tally.stats;
        assert_eq!(
            (s.processed, s.updated, s.unchanged, s.skipped, s.failed),
            (4, 1, 1, 1, 1)
        );
        assert_eq!((s.conflicts_detected, s.conflicts_resolved), (2, 1));
        assert_eq!(tally.failures.len(), 1);
        assert_eq!(tally.failures[0].record_id.as_deref(), Some("r4"));
        assert_eq!(tally.failures[0].remote_id.as_deref(), Some("9"));
    }
}
