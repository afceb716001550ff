//! A sync run: one pull, push or two-way pass over an integration's records, from the
//! moment it is queued until it ends. Every page it commits is an event carrying the
//! cursor to resume from, so a worker that dies mid-run is replaced by one that starts
//! after the last committed page.
//!
//! queued → running → completed | partial | failed | cancelled | quota_exhausted.
//! `partial`: the run reached its end but some records failed (they can be retried);
//! `quota_exhausted`: the provider's daily quota stopped it — never reported as success.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::sync_config::{Direction, Entity, FieldError, SyncConfig};

/// What one run covers when it is narrower than its integration's sync config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// A subset of the integration's entities; `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<Entity>>,
    /// No wider than the integration's direction; `None`: the integration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// `false`: only records changed from the run's start on; its passes start from a
    /// cursor of "now" instead of importing the history.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub import_historical: bool,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            entities: None,
            direction: None,
            import_historical: true,
        }
    }
}

impl RunOptions {
    pub fn is_default(&self) -> bool {
        *self == RunOptions::default()
    }

    /// The options fit the integration: entities it syncs (at least one, none twice),
    /// a direction no wider than its own (a pull-only integration never pushes).
    pub fn validate(&self, config: &SyncConfig) -> Result<(), FieldError> {
        let bad = |field, message: String| Err(FieldError { field, message });
        if let Some(entities) = &self.entities {
            if entities.is_empty() {
                return bad("entities", "name at least one entity".into());
            }
            for (i, entity) in entities.iter().enumerate() {
                if !config.entities.contains(entity) {
                    return bad(
                        "entities",
                        format!(
                            "{} is not one of the integration's entities",
                            entity.as_str()
                        ),
                    );
                }
                if entities[..i].contains(entity) {
                    return bad("entities", format!("{} is named twice", entity.as_str()));
                }
            }
        }
        match (self.direction, config.direction) {
            (None, _) | (Some(_), Direction::Bidirectional) => Ok(()),
            (Some(asked), own) if asked == own => Ok(()),
            (Some(asked), own) => bad(
                "direction",
                format!(
                    "{} is wider than the integration's direction {}",
                    direction_str(asked),
                    direction_str(own)
                ),
            ),
        }
    }

    /// The entities the run syncs, in the integration's order.
    pub fn entities_of(&self, config: &SyncConfig) -> Vec<Entity> {
        config
            .entities
            .iter()
            .copied()
            .filter(|e| self.entities.as_ref().is_none_or(|only| only.contains(e)))
            .collect()
    }

    /// The direction the run syncs in.
    pub fn direction_of(&self, config: &SyncConfig) -> Direction {
        self.direction.unwrap_or(config.direction)
    }
}

fn direction_str(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "pull",
        Direction::Push => "push",
        Direction::Bidirectional => "bidirectional",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Full,
    Incremental,
    Push,
    /// The current mappings re-applied to the CRM data already fetched; no provider call.
    Reapply,
    /// Compensating events that reverse another run (see `rollback_of`).
    Rollback,
    /// Records handed over by a person or an automation (a CSV file, an inbound webhook
    /// delivery) for a CRM without an API, merged as a pull's would be; no provider call.
    Import,
}

impl SyncRunCommand {
    /// A page command carrying the provider's record count for its pass (other commands
    /// are returned as they are).
    #[must_use]
    pub fn with_total(mut self, count: Option<u64>) -> Self {
        if let SyncRunCommand::CommitPage { total, .. } = &mut self {
            *total = count;
        }
        self
    }
}

impl RunKind {
    /// Whether the run reads the CRM's changes: only such a run's pull passes leave a
    /// high-water mark an incremental run may start from (a reapply's pages walk the
    /// app's own records, a rollback's its target's).
    pub fn reads_the_crm(self) -> bool {
        matches!(self, RunKind::Full | RunKind::Incremental)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Scheduled,
    Webhook,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    #[default]
    Queued,
    Running,
    Completed,
    Partial,
    Failed,
    Cancelled,
    QuotaExhausted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Partial,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::QuotaExhausted,
    ];

    /// The status named `name` (as [`RunStatus::as_str`] writes it).
    pub fn parse(name: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::QuotaExhausted => "quota_exhausted",
        }
    }

    /// Queued or running: the integration's one active run.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// Which pass of a run a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pull,
    Deletions,
    Push,
    /// A rollback run's pages.
    Rollback,
}

/// Counters of a run (or of one page: a run's stats are the sum of its pages').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    pub processed: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    pub conflicts_detected: u64,
    pub conflicts_resolved: u64,
    pub api_calls: u64,
    /// The provider's 429 answers the run waited out before retrying (absent from
    /// events written before it was counted).
    #[serde(default)]
    pub rate_limited: u64,
}

impl RunStats {
    /// Field-wise sum; saturates rather than wrapping.
    #[must_use]
    pub fn plus(self, o: RunStats) -> RunStats {
        RunStats {
            processed: self.processed.saturating_add(o.processed),
            created: self.created.saturating_add(o.created),
            updated: self.updated.saturating_add(o.updated),
            unchanged: self.unchanged.saturating_add(o.unchanged),
            skipped: self.skipped.saturating_add(o.skipped),
            failed: self.failed.saturating_add(o.failed),
            conflicts_detected: self.conflicts_detected.saturating_add(o.conflicts_detected),
            conflicts_resolved: self.conflicts_resolved.saturating_add(o.conflicts_resolved),
            api_calls: self.api_calls.saturating_add(o.api_calls),
            rate_limited: self.rate_limited.saturating_add(o.rate_limited),
        }
    }

    /// Charges this step with `api_calls` requests to the provider, `rate_limited` of
    /// which were answered 429 and waited out.
    pub fn charge(&mut self, api_calls: u64, rate_limited: u64) {
        self.api_calls = self.api_calls.saturating_add(api_calls);
        self.rate_limited = self.rate_limited.saturating_add(rate_limited);
    }
}

/// One record a run could not sync, and why. Retrying a run retries these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub entity: Entity,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    pub error: String,
    /// For a fetched record that could not be ingested: the record as fetched, so a
    /// retry ingests it again without calling the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched: Option<serde_json::Value>,
}

impl RecordFailure {
    /// A pull pass that could not read `entity` at all because the provider does not
    /// offer it to the account (an edition or feature it lacks): a failure naming no
    /// record, counted once, with the provider's answer and why in `error`.
    pub fn unavailable(entity: Entity, error: String) -> Self {
        RecordFailure {
            entity,
            phase: Phase::Pull,
            record_id: None,
            remote_id: None,
            error,
            fetched: None,
        }
    }

    /// Whether this is [`RecordFailure::unavailable`]: every failure of a record names
    /// the record (its app id or its CRM id).
    pub fn is_unavailable(&self) -> bool {
        self.phase == Phase::Pull && self.record_id.is_none() && self.remote_id.is_none()
    }
}

/// Where a pass stands: its resume cursor (opaque to the domain) and whether it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassState {
    pub cursor: Option<serde_json::Value>,
    pub pages: u64,
    pub done: bool,
    /// Records the pass has processed so far.
    #[serde(default)]
    pub processed: u64,
    /// How many records the whole pass lists, when the provider said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The pass's own counters (the run's are the sum over its passes). Zero in states
    /// folded before passes counted; a replay of the projections fills them in.
    #[serde(default)]
    pub stats: RunStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncRunEvent {
    RunQueued {
        run_id: String,
        integration_id: String,
        workspace_id: String,
        kind: RunKind,
        trigger: Trigger,
        /// The run whose failed records this run retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<String>,
        /// The run this rollback run reverses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollback_of: Option<String>,
        /// Entities, direction and history asked for this run (absent: the integration's).
        #[serde(default, skip_serializing_if = "RunOptions::is_default")]
        options: RunOptions,
        at: DateTime<Utc>,
    },
    RunStarted {
        worker: String,
        at: DateTime<Utc>,
    },
    PageCommitted {
        entity: Entity,
        phase: Phase,
        /// Where the next page starts; `None` with `done`.
        cursor: Option<serde_json::Value>,
        done: bool,
        stats: RunStats,
        /// The records of this page that failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<RecordFailure>,
        /// How many records the whole pass lists, when the provider says (pull passes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        at: DateTime<Utc>,
    },
    RunEnded {
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for SyncRunEvent {
    fn event_type(&self) -> &'static str {
        match self {
            SyncRunEvent::RunQueued { .. } => "RunQueued",
            SyncRunEvent::RunStarted { .. } => "RunStarted",
            SyncRunEvent::PageCommitted { .. } => "PageCommitted",
            SyncRunEvent::RunEnded { .. } => "RunEnded",
        }
    }

    fn summary(&self) -> String {
        match self {
            SyncRunEvent::RunQueued { kind, trigger, .. } => {
                format!("{kind:?} sync run queued ({trigger:?} trigger)").to_lowercase()
            }
            SyncRunEvent::RunStarted { worker, .. } => format!("sync run started on {worker}"),
            SyncRunEvent::PageCommitted {
                entity,
                phase,
                stats,
                ..
            } => format!(
                "{} {:?} page: {} processed, {} created, {} updated, {} failed",
                entity.as_str(),
                phase,
                stats.processed,
                stats.created,
                stats.updated,
                stats.failed
            )
            .to_lowercase(),
            SyncRunEvent::RunEnded { status, reason, .. } => match reason {
                Some(r) => format!("sync run {}: {r}", status.as_str()),
                None => format!("sync run {}", status.as_str()),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SyncRunCommand {
    Queue {
        run_id: String,
        integration_id: String,
        workspace_id: String,
        kind: RunKind,
        trigger: Trigger,
        retry_of: Option<String>,
        rollback_of: Option<String>,
        options: RunOptions,
        at: DateTime<Utc>,
    },
    /// A worker takes the run; a running run may be taken over (its worker died).
    Start {
        worker: String,
        at: DateTime<Utc>,
    },
    CommitPage {
        entity: Entity,
        phase: Phase,
        cursor: Option<serde_json::Value>,
        done: bool,
        stats: RunStats,
        failures: Vec<RecordFailure>,
        /// How many records the whole pass lists, when the provider says.
        total: Option<u64>,
        at: DateTime<Utc>,
    },
    /// The run reached its end: completed, or partial when records failed.
    Finish {
        at: DateTime<Utc>,
    },
    Fail {
        reason: String,
        at: DateTime<Utc>,
    },
    ExhaustQuota {
        detail: String,
        at: DateTime<Utc>,
    },
    Cancel {
        by: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRunError {
    #[error("sync run already exists")]
    AlreadyExists,
    #[error("sync run not found")]
    NotFound,
    #[error("the sync run is {}: it cannot {action}", status.as_str())]
    InvalidTransition {
        status: RunStatus,
        action: &'static str,
    },
    #[error("the {entity} {phase} pass already ended")]
    PassEnded {
        entity: &'static str,
        phase: &'static str,
    },
}

/// The state of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: Option<String>,
    pub integration_id: String,
    pub workspace_id: String,
    pub kind: Option<RunKind>,
    pub trigger: Option<Trigger>,
    pub status: RunStatus,
    pub worker: Option<String>,
    pub stats: RunStats,
    /// Resume points per pass, keyed `"<entity>/<phase>"`.
    pub passes: BTreeMap<String, PassState>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    #[serde(default)]
    pub retry_of: Option<String>,
    #[serde(default)]
    pub rollback_of: Option<String>,
    #[serde(default)]
    pub options: RunOptions,
    /// Every record that failed, in the order the pages were committed.
    #[serde(default)]
    pub failures: Vec<RecordFailure>,
}

/// The key of a pass in [`SyncRun::passes`].
pub fn pass_key(entity: Entity, phase: Phase) -> String {
    format!("{}/{}", entity.as_str(), phase_str(phase))
}

fn phase_str(phase: Phase) -> &'static str {
    match phase {
        Phase::Pull => "pull",
        Phase::Deletions => "deletions",
        Phase::Push => "push",
        Phase::Rollback => "rollback",
    }
}

impl SyncRun {
    /// The pass to resume, if it started and has not ended.
    pub fn pass(&self, entity: Entity, phase: Phase) -> Option<&PassState> {
        self.passes.get(&pass_key(entity, phase))
    }

    /// Whether the provider told this run it does not offer `entity` to the account
    /// (see [`RecordFailure::unavailable`]): its later passes have nothing to work on.
    pub fn unavailable(&self, entity: Entity) -> bool {
        self.failures
            .iter()
            .any(|f| f.entity == entity && f.is_unavailable())
    }

    /// Records that failed so far, leaving out entities the provider does not offer:
    /// such an entity lost no record, so it does not hold back the other entities'
    /// deletions.
    pub fn records_failed(&self) -> u64 {
        let unavailable = self.failures.iter().filter(|f| f.is_unavailable()).count();
        self.stats
            .failed
            .saturating_sub(u64::try_from(unavailable).unwrap_or(u64::MAX))
    }

    /// The pull passes' records to go through, when the provider said for every pull
    /// pass begun so far (HubSpot's search, Salesforce's queries); `None` otherwise.
    pub fn records_total(&self) -> Option<u64> {
        let pulls: Vec<&PassState> = self
            .passes
            .iter()
            .filter(|(key, _)| key.ends_with("/pull"))
            .map(|(_, p)| p)
            .collect();
        if pulls.is_empty() {
            return None;
        }
        pulls.iter().map(|p| p.total).sum()
    }

    /// How far the pull passes are, in percent of [`SyncRun::records_total`] (a
    /// provider's count can move while the run reads, so it is capped at 100).
    pub fn progress_percent(&self) -> Option<u8> {
        let total = self.records_total()?;
        let processed: u64 = self
            .passes
            .iter()
            .filter(|(key, _)| key.ends_with("/pull"))
            .map(|(_, p)| p.processed)
            .sum();
        let percent = match total {
            0 => 100,
            t => (processed.saturating_mul(100) / t).min(100),
        };
        u8::try_from(percent).ok()
    }

    /// How long the run took (or has taken until `now`).
    pub fn duration(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let start = self.started_at?;
        Some(self.ended_at.unwrap_or(now) - start)
    }

    fn refuse(&self, action: &'static str) -> SyncRunError {
        SyncRunError::InvalidTransition {
            status: self.status,
            action,
        }
    }

    fn end(&self, status: RunStatus, reason: Option<String>, at: DateTime<Utc>) -> SyncRunEvent {
        SyncRunEvent::RunEnded { status, reason, at }
    }
}

impl Aggregate for SyncRun {
    const TYPE: &'static str = "sync_run";
    type Command = SyncRunCommand;
    type Event = SyncRunEvent;
    type Error = SyncRunError;

    fn decide(&self, command: SyncRunCommand) -> Result<Vec<SyncRunEvent>, SyncRunError> {
        use SyncRunCommand as C;
        use SyncRunEvent as E;
        if let C::Queue {
            run_id,
            integration_id,
            workspace_id,
            kind,
            trigger,
            retry_of,
            rollback_of,
            options,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(SyncRunError::AlreadyExists);
            }
            return Ok(vec![E::RunQueued {
                run_id,
                integration_id,
                workspace_id,
                kind,
                trigger,
                retry_of,
                rollback_of,
                options,
                at,
            }]);
        }
        if self.id.is_none() {
            return Err(SyncRunError::NotFound);
        }
        let status = self.status;
        let event = match command {
            C::Queue { .. } => return Err(SyncRunError::AlreadyExists),
            C::Start { worker, at } if status.is_active() => E::RunStarted { worker, at },
            C::Start { .. } => return Err(self.refuse("start")),
            C::CommitPage {
                entity,
                phase,
                cursor,
                done,
                stats,
                failures,
                total,
                at,
            } => {
                if status != RunStatus::Running {
                    return Err(self.refuse("commit a page"));
                }
                if self.pass(entity, phase).is_some_and(|p| p.done) {
                    return Err(SyncRunError::PassEnded {
                        entity: entity.as_str(),
                        phase: phase_str(phase),
                    });
                }
                E::PageCommitted {
                    entity,
                    phase,
                    cursor,
                    done,
                    stats,
                    failures,
                    total,
                    at,
                }
            }
            C::Finish { at } if status == RunStatus::Running => {
                let outcome = if self.stats.failed > 0 {
                    RunStatus::Partial
                } else {
                    RunStatus::Completed
                };
                self.end(outcome, None, at)
            }
            C::Finish { .. } => return Err(self.refuse("finish")),
            C::Fail { reason, at } if status.is_active() => {
                self.end(RunStatus::Failed, Some(reason), at)
            }
            C::Fail { .. } => return Err(self.refuse("fail")),
            C::ExhaustQuota { detail, at } if status.is_active() => {
                self.end(RunStatus::QuotaExhausted, Some(detail), at)
            }
            C::ExhaustQuota { .. } => return Err(self.refuse("stop for the quota")),
            C::Cancel { by, at } if status.is_active() => {
                self.end(RunStatus::Cancelled, Some(format!("cancelled by {by}")), at)
            }
            C::Cancel { .. } => return Err(self.refuse("be cancelled")),
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &SyncRunEvent) {
        match event {
            SyncRunEvent::RunQueued {
                run_id,
                integration_id,
                workspace_id,
                kind,
                trigger,
                retry_of,
                rollback_of,
                options,
                at,
            } => {
                self.id = Some(run_id.clone());
                self.retry_of.clone_from(retry_of);
                self.rollback_of.clone_from(rollback_of);
                self.options.clone_from(options);
                self.integration_id.clone_from(integration_id);
                self.workspace_id.clone_from(workspace_id);
                self.kind = Some(*kind);
                self.trigger = Some(*trigger);
                self.status = RunStatus::Queued;
                self.queued_at = Some(*at);
            }
            SyncRunEvent::RunStarted { worker, at } => {
                self.status = RunStatus::Running;
                self.worker = Some(worker.clone());
                self.started_at.get_or_insert(*at);
            }
            SyncRunEvent::PageCommitted {
                entity,
                phase,
                cursor,
                done,
                stats,
                failures,
                total,
                ..
            } => {
                self.stats = self.stats.plus(*stats);
                self.failures.extend(failures.iter().cloned());
                let pass = self.passes.entry(pass_key(*entity, *phase)).or_default();
                pass.cursor.clone_from(cursor);
                pass.pages += 1;
                pass.done = *done;
                pass.processed = pass.processed.saturating_add(stats.processed);
                pass.stats = pass.stats.plus(*stats);
                if total.is_some() {
                    pass.total = *total;
                }
            }
            SyncRunEvent::RunEnded { status, reason, at } => {
                self.status = *status;
                self.reason.clone_from(reason);
                self.ended_at = Some(*at);
            }
        }
    }
}

#[cfg(test)]
mod tests;
