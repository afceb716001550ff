//! Rolling back a sync run: which records it touched, what each looked like before it,
//! just after it and now, and the plan for each (see `syncledger_domain::rollback`).
//!
//! A run's events are found by their correlation id within the run's workspace ([`Scope`]):
//! every run writes its events under its own id (migration 0011 indexes it), and the
//! server mints every correlation id, but an event of another workspace is never a run's
//! whatever it carries (before correlation ids were minted, a client could send any). Reapply runs written before migration 0012 ran
//! under the id of the request that started them; their record events are found by the
//! run id in their payload, looked for only within the span of the run's own events.

use std::collections::BTreeMap;

use serde::Serialize;
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::rollback::{
    self, ChangedSince, CrmAccess, CrmRestore, Diverging, FieldRestore, Pushed, RecordPlan,
};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::written::Writer;
use syncledger_store::Store;

use crate::EngineError;

/// Records planned per page.
pub const PAGE: usize = 200;

/// Which run's events a rollback looks at: the run's, within the run's workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub workspace_id: String,
    pub run_id: String,
}

impl Scope {
    pub fn new(workspace_id: impl Into<String>, run_id: impl Into<String>) -> Self {
        Scope {
            workspace_id: workspace_id.into(),
            run_id: run_id.into(),
        }
    }

    /// Whether an event with this payload and metadata was written by the run.
    fn wrote(&self, payload: &serde_json::Value, metadata: &serde_json::Value) -> bool {
        let text =
            |v: &serde_json::Value, k: &str| v.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let run = Some(self.run_id.clone());
        text(metadata, "workspace_id").as_deref() == Some(self.workspace_id.as_str())
            && (text(metadata, "correlation_id") == run || text(payload, "run_id") == run)
    }
}

fn store_err(e: sqlx::Error) -> EngineError {
    EngineError::Store(e.to_string())
}

/// The run as a writer of the log: its id, workspace and how its events are marked.
async fn writer<'s>(store: &Store, scope: &'s Scope) -> Result<Writer<'s>, EngineError> {
    let marked = store
        .marking(syncledger_domain::sync_run::SyncRun::TYPE, &scope.run_id)
        .await
        .map_err(store_err)?;
    Ok(Writer {
        id: &scope.run_id,
        workspace_id: &scope.workspace_id,
        marked,
    })
}

/// Up to `limit` ids of records the run wrote events to, after `after`, in id order;
/// with `entity`, only records of that entity (told by the record's first event).
pub async fn touched(
    store: &Store,
    scope: &Scope,
    entity: Option<Entity>,
    after: &str,
    limit: usize,
) -> Result<Vec<String>, EngineError> {
    let writer = writer(store, scope).await?;
    store
        .written_to(
            &writer,
            Record::TYPE,
            entity.map(|e| ("entity", e.as_str())),
            after,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await
        .map_err(store_err)
}

/// One stored record event.
struct Stored {
    sequence: i64,
    event: RecordEvent,
    by_run: bool,
}

async fn events_of(
    store: &Store,
    scope: &Scope,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<Stored>>, EngineError> {
    let mut out: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    for raw in store
        .raw_events_of(Record::TYPE, ids)
        .await
        .map_err(store_err)?
    {
        let by_run = scope.wrote(&raw.payload, &raw.metadata);
        let event: RecordEvent = serde_json::from_value(raw.payload)
            .map_err(|_| EngineError::Corrupt("a record event"))?;
        out.entry(raw.aggregate_id).or_default().push(Stored {
            sequence: raw.sequence,
            event,
            by_run,
        });
    }
    Ok(out)
}

/// One record's rollback, with what the rollback run needs to write it.
pub struct Planned {
    pub record_id: String,
    pub plan: RecordPlan,
    /// The record before the run, where restored values come from.
    pub before: Record,
    /// The record just after the run's last event on it.
    pub after: Record,
    pub now: Record,
    /// What the run sent to each CRM for this record.
    pub pushed: BTreeMap<String, Pushed>,
    /// The record's sequence now: compensations are appended after it.
    pub version: i64,
    /// The sequences of the run's events on the record.
    pub reverses: Vec<i64>,
}

/// Plans the rollback of the scope's run for these records (ids the run touched).
pub async fn plan_records(
    store: &Store,
    scope: &Scope,
    ids: &[String],
    access: CrmAccess,
) -> Result<Vec<Planned>, EngineError> {
    let events = events_of(store, scope, ids).await?;
    let mut out = Vec::with_capacity(events.len());
    for (record_id, events) in events {
        let reverses: Vec<i64> = events
            .iter()
            .filter(|e| e.by_run)
            .map(|e| e.sequence)
            .collect();
        let (Some(&first), Some(&last)) = (reverses.first(), reverses.last()) else {
            continue;
        };
        let (mut before, mut after, mut now) =
            (Record::default(), Record::default(), Record::default());
        let mut pushed: BTreeMap<String, Pushed> = BTreeMap::new();
        for e in &events {
            if e.sequence < first {
                before.apply(&e.event);
            }
            if e.sequence <= last {
                after.apply(&e.event);
            }
            now.apply(&e.event);
            if let (
                true,
                RecordEvent::RemotePushed {
                    integration_id,
                    fields,
                    sent,
                    ..
                },
            ) = (e.by_run, &e.event)
            {
                let p = pushed.entry(integration_id.clone()).or_default();
                p.properties.extend(sent.keys().cloned());
                p.fields.extend(fields.keys().cloned());
            }
        }
        let plan = rollback::plan(&before, &after, &now, &pushed, access);

        out.push(Planned {
            record_id,
            plan,
            before,
            after,
            version: events.last().map_or(0, |e| e.sequence),
            now,
            pushed,
            reverses,
        });
    }
    Ok(out)
}

impl Planned {
    /// Plans the record again knowing that its CRM record holds `fresh` (read just now)
    /// where the link believed otherwise: a property changed in the CRM since the run,
    /// including one the sync never reads back (mapped push-only), is then not written
    /// over, and the link learns its value.
    pub fn replan_with_crm(&mut self, integration_id: &str, fresh: &Fields, access: CrmAccess) {
        let Some(link) = self.now.links.get_mut(integration_id) else {
            return;
        };
        link.remote.extend(fresh.clone());
        self.plan = rollback::plan(&self.before, &self.after, &self.now, &self.pushed, access);
    }
}

/// What a rollback would do to one record.
#[derive(Debug, Serialize)]
pub struct RecordPreview {
    pub record_id: String,
    pub entity: String,
    /// `restore`, `archive` (the run created it), `unarchive`, `conflicts_only` or `nothing`.
    pub action: String,
    /// Fields set back: value now → value before the run.
    pub restore: Vec<FieldRestore>,
    /// Fields the run changed that have changed again since: left as they are.
    pub conflicts: Vec<ChangedSince>,
    /// CRM links the run removed (the CRM record was deleted) that come back.
    pub relinked: Vec<String>,
    /// CRM links that changed again since the run: left as they are.
    pub links_changed_since: Vec<String>,
    /// CRM properties written back, per CRM record.
    pub crm: Vec<CrmRestore>,
    /// CRM properties the run wrote that changed again since: left as they are.
    pub crm_changed_since: Vec<String>,
    /// CRM records the run created: left in the CRM (syncledger never deletes CRM data).
    pub remote_created: Vec<String>,
    /// Fields the app and the CRM will hold differently after the rollback: held (neither
    /// pushed nor pulled) until an admin keeps the app's or the CRM's value.
    pub diverged: Vec<Diverging>,
    /// The CRM write-backs cannot be made now (the integration is disconnected): the app
    /// side is rolled back, and `crm` lists what a rollback of the same run writes back
    /// once it is connected again.
    pub crm_owed: bool,
}

impl RecordPreview {
    pub fn of(p: &Planned) -> Self {
        let plan = &p.plan;
        let action = match plan.archive {
            Some(true) => "archive",
            Some(false) => "unarchive",
            None if plan.changes_something() => "restore",
            None if !plan.conflicts.is_empty() || !plan.links_changed_since.is_empty() => {
                "conflicts_only"
            }
            None => "nothing",
        };
        RecordPreview {
            record_id: p.record_id.clone(),
            entity: p
                .now
                .entity
                .map(|e| e.as_str())
                .unwrap_or_default()
                .to_owned(),
            action: action.into(),
            restore: plan.restore.clone(),
            conflicts: plan.conflicts.clone(),
            relinked: plan.relinked.clone(),
            links_changed_since: plan.links_changed_since.clone(),
            crm: plan.crm.clone(),
            crm_changed_since: plan.crm_changed_since.clone(),
            remote_created: plan
                .remote_created
                .iter()
                .map(|(_, remote)| remote.clone())
                .collect(),
            diverged: plan.diverged.clone(),
            crm_owed: plan.crm_owed,
        }
    }
}

/// Totals of a preview.
#[derive(Debug, Default, Serialize)]
pub struct PreviewSummary {
    pub records: u64,
    pub fields_restored: u64,
    pub conflicts: u64,
    /// Records the run created, to be archived.
    pub archived: u64,
    pub unarchived: u64,
    /// Records whose deleted CRM link comes back.
    pub restored_links: u64,
    pub crm_properties: u64,
    /// Fields left diverged, for an admin to settle.
    pub diverged: u64,
    /// CRM properties whose write-back is owed (the integration is disconnected).
    pub crm_properties_owed: u64,
}

/// Everything a rollback of `run_id` would do, record by record.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub run_id: String,
    pub summary: PreviewSummary,
    pub records: Vec<RecordPreview>,
}

/// Plans the whole rollback of the scope's run without writing anything.
pub async fn preview(
    store: &Store,
    scope: &Scope,
    access: CrmAccess,
) -> Result<Preview, EngineError> {
    let mut records = Vec::new();
    let mut summary = PreviewSummary::default();
    let mut after = String::new();
    loop {
        let ids = touched(store, scope, None, &after, PAGE).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        for p in plan_records(store, scope, &ids, access).await? {
            let r = RecordPreview::of(&p);
            summary.records += 1;
            summary.fields_restored += r.restore.len() as u64;
            summary.conflicts += r.conflicts.len() as u64;
            summary.archived += u64::from(r.action == "archive");
            summary.unarchived += u64::from(r.action == "unarchive");
            summary.restored_links += u64::from(!r.relinked.is_empty());
            let properties = r.crm.iter().map(|c| c.properties.len() as u64).sum::<u64>();
            if r.crm_owed {
                summary.crm_properties_owed += properties;
            } else {
                summary.crm_properties += properties;
            }
            summary.diverged += r.diverged.len() as u64;
            records.push(r);
        }
        if ids.len() < PAGE {
            break;
        }
        after = last;
    }
    Ok(Preview {
        run_id: scope.run_id.clone(),
        summary,
        records,
    })
}
