//! A record as the app sees it: one contact or company of a workspace, its field values
//! with the source and time of each, and its links to the CRM records it syncs with.
//!
//! Every change is an event that carries the values it set, so replaying the events up
//! to any point shows the record as it was then. Incoming CRM versions are merged field
//! by field against the values last synced with that CRM (see [`crate::merge`]): a
//! re-fetched record that changed nothing writes no event, one-sided changes flow to the
//! other side, conflicts are settled by the policy or queued.
//!
//! A queued conflict stays open on its link until a later merge settles or replaces it,
//! or a person resolves it (the record takes the chosen value, which is then owed to the
//! CRM) or ignores it (neither side changes, and the same pair of values is not raised
//! again).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::merge::{
    empty_as_none, merge, normalized, FieldConflict, Fields, MergeOutcome, MergePolicy, Side,
    Version,
};
use crate::sync_config::{Entity, OnCrmDelete};

/// Where a field's current value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    App {
        actor: String,
    },
    Crm {
        integration_id: String,
        /// Who took the CRM's value by resolving a conflict (`use_crm`); absent for
        /// values a sync run brought.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decided_by: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValue {
    pub value: Option<String>,
    pub source: Source,
    pub at: DateTime<Utc>,
}

/// Whether a link still syncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    #[default]
    Linked,
    /// The CRM record was deleted (`on_crm_delete: archive_record`): kept for the
    /// record's history, never pushed to again.
    DeletedInCrm,
    /// The CRM record was deleted (`on_crm_delete: unlink`): the record is app-only for
    /// this CRM and is not created there again by later runs.
    Unlinked,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Linked => "linked",
            LinkState::DeletedInCrm => "deleted_in_crm",
            LinkState::Unlinked => "unlinked",
        }
    }
}

/// The link between this record and one CRM record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub remote_id: String,
    /// Links stored before deletions were kept are all `linked`.
    #[serde(default, skip_serializing_if = "is_linked")]
    pub state: LinkState,
    /// The values both sides held after the last sync: the merge base.
    pub base: Fields,
    pub remote_updated_at: Option<DateTime<Utc>>,
    /// Values waiting to be pushed to this CRM.
    pub pending_push: Fields,
    /// Why the last push of this record to this CRM failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_error: Option<String>,
    /// The CRM record's properties as last fetched, before mapping: a changed mapping
    /// is re-applied to these without calling the provider.
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub remote: Fields,
    /// Conflicts waiting for a person, by field. Their fields keep their old base.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conflicts: BTreeMap<String, FieldConflict>,
    /// Conflicts closed without a change: the (app, CRM) values left as they were, by
    /// field. While both sides still hold exactly these, the field is not merged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ignored: BTreeMap<String, (Option<String>, Option<String>)>,
    /// Fields a rollback left different on the two sides, by field: neither pushed nor
    /// overwritten by a pull until an admin settles them (see [`Divergence`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub diverged: BTreeMap<String, Divergence>,
}

/// A field a rollback left with one value in the app and another in the CRM: the
/// rollback put the app (or the CRM) back, the other side kept the reversed run's value.
/// Syncing it either way would silently undo half of the rollback, so the field stays out
/// of merges and pushes until an admin chooses a side ([`RecordCommand::SettleDivergence`])
/// or someone edits it in the app (a new edit is a new decision, and is owed as usual).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// The app's value after the rollback.
    pub app: Option<String>,
    /// What the CRM holds after the rollback, as far as syncledger knows.
    pub crm: Option<String>,
    /// The rollback run that left it.
    pub rollback_run_id: String,
}

fn is_linked(state: &LinkState) -> bool {
    *state == LinkState::Linked
}

impl Link {
    /// Whether the link still syncs (its CRM record was not deleted).
    pub fn is_active(&self) -> bool {
        self.state == LinkState::Linked
    }

    /// The values owed to this CRM now: nothing once the CRM record is gone, and never a
    /// field whose conflict waits for a person (the CRM holds a value nobody chose
    /// to overwrite yet) or that a rollback left diverged (an admin chooses the side).
    pub fn owed(&self) -> Fields {
        if !self.is_active() {
            return Fields::new();
        }
        self.pending_push
            .iter()
            .filter(|(name, _)| {
                !self.conflicts.contains_key(*name) && !self.diverged.contains_key(*name)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// How a person settles a queued conflict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Keep the app's current value; it goes to the CRM.
    UseApp,
    /// Take the CRM's value.
    UseCrm,
    /// A value of the person's choosing (`None` clears the field); it goes to the CRM.
    Value(Option<String>),
}

/// Which way a conflict was resolved, as the event records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedWith {
    UseApp,
    UseCrm,
    Merged,
}

/// Where a resolved value comes from: the CRM's value taken with `use_crm` has the CRM as
/// its source, with the resolver named as the one who decided; any other resolution is the
/// resolver's own app edit.
fn resolved_source(resolution: ResolvedWith, integration_id: &str, actor: &str) -> Source {
    match resolution {
        ResolvedWith::UseCrm => Source::Crm {
            integration_id: integration_id.to_owned(),
            decided_by: Some(actor.to_owned()),
        },
        ResolvedWith::UseApp | ResolvedWith::Merged => Source::App {
            actor: actor.to_owned(),
        },
    }
}

impl ResolvedWith {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedWith::UseApp => "use_app",
            ResolvedWith::UseCrm => "use_crm",
            ResolvedWith::Merged => "merged",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordEvent {
    RecordCreated {
        record_id: String,
        workspace_id: String,
        entity: Entity,
        at: DateTime<Utc>,
    },
    /// A CRM record seen for the first time became a new record: created, linked and
    /// filled in one event (the bulk-ingestion path writes one row per new record).
    RecordImported {
        record_id: String,
        workspace_id: String,
        entity: Entity,
        integration_id: String,
        remote_id: String,
        remote_updated_at: DateTime<Utc>,
        /// The CRM properties as fetched.
        remote: Fields,
        /// The values mapped to app fields.
        fields: Fields,
        run_id: String,
        at: DateTime<Utc>,
    },
    /// The record is now linked to a CRM record.
    RemoteLinked {
        integration_id: String,
        remote_id: String,
        at: DateTime<Utc>,
    },
    /// Field values changed; `source` says who changed them. With `run_id`, a sync
    /// run made the change.
    FieldsChanged {
        fields: Fields,
        source: Source,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// A CRM version was merged: the new base for that CRM, what still has to be pushed
    /// to it, and the conflicts found.
    RemoteMerged {
        integration_id: String,
        run_id: String,
        remote_updated_at: DateTime<Utc>,
        base: Fields,
        pending_push: Fields,
        conflicts: Vec<FieldConflict>,
        /// The CRM properties as fetched (absent in events written before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<Fields>,
        at: DateTime<Utc>,
    },
    /// Values reached the CRM. `fields` are app fields (their base moves); `sent` are
    /// the CRM properties as sent, so the link knows what the CRM holds (and a rollback
    /// knows what to put back).
    RemotePushed {
        integration_id: String,
        run_id: String,
        fields: Fields,
        #[serde(default, skip_serializing_if = "Fields::is_empty")]
        sent: Fields,
        at: DateTime<Utc>,
    },
    /// The CRM refused this record's push; the values stay pending.
    RemotePushFailed {
        integration_id: String,
        run_id: String,
        error: String,
        at: DateTime<Utc>,
    },
    /// The CRM record was deleted; `outcome` is what the integration's `on_crm_delete`
    /// made of it (events written before the setting existed dropped the link).
    RemoteDeleted {
        integration_id: String,
        run_id: String,
        #[serde(default = "recreated")]
        outcome: OnCrmDelete,
        at: DateTime<Utc>,
    },
    /// The app archived the record (left out of lists, its history kept).
    RecordArchived { actor: String, at: DateTime<Utc> },
    /// A sync run deleted the CRM record because the app archived the record
    /// (`on_app_archive: delete_in_crm`); the link stays, marked deleted in the CRM.
    RemoteRecordDeleted {
        integration_id: String,
        run_id: String,
        at: DateTime<Utc>,
    },
    /// An app edit met a field whose CRM value nobody accepted yet (an open conflict, or
    /// an ignored one): the edit is held for review instead of pushed, as this conflict.
    ConflictRaised {
        integration_id: String,
        conflict: FieldConflict,
        at: DateTime<Utc>,
    },
    /// A person resolved a queued conflict: the record takes `value`, and the CRM is
    /// known to hold `crm_value` (the field's new base), so a difference is owed to it.
    ConflictResolved {
        integration_id: String,
        field: String,
        value: Option<String>,
        crm_value: Option<String>,
        resolution: ResolvedWith,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A person closed a queued conflict leaving both sides as they are.
    ConflictIgnored {
        integration_id: String,
        field: String,
        app_value: Option<String>,
        crm_value: Option<String>,
        actor: String,
        at: DateTime<Utc>,
    },
    /// An admin settled fields a rollback had left diverged: with `keep: App` the app's
    /// values (as they are now) are owed to the CRM; with `keep: Crm` the record takes the
    /// CRM's values (their source is the CRM; `actor` decided).
    DivergenceSettled {
        integration_id: String,
        keep: Side,
        settled: BTreeMap<String, Divergence>,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A compensating event: sync run `run_id` (a rollback) reverses what run
    /// `reverts_run_id` did to this record. `reverses` are the sequences of the reversed
    /// events on this record. Fields and links take back the values they had before the
    /// reversed run (`None`: the field or link did not exist); `archived` hides a record the
    /// reversed run created (or shows again one that a reversed rollback hid).
    RolledBack {
        run_id: String,
        reverts_run_id: String,
        reverses: Vec<i64>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        fields: BTreeMap<String, Option<FieldValue>>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        links: BTreeMap<String, Option<Link>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived: Option<bool>,
        at: DateTime<Utc>,
    },
}

/// What a `RemoteDeleted` written before `on_crm_delete` existed did.
fn recreated() -> OnCrmDelete {
    OnCrmDelete::KeepAndRecreate
}

impl DomainEvent for RecordEvent {
    fn event_type(&self) -> &'static str {
        match self {
            RecordEvent::RecordCreated { .. } => "RecordCreated",
            RecordEvent::RecordImported { .. } => "RecordImported",
            RecordEvent::RemoteLinked { .. } => "RemoteLinked",
            RecordEvent::FieldsChanged { .. } => "FieldsChanged",
            RecordEvent::RemoteMerged { .. } => "RemoteMerged",
            RecordEvent::RemotePushed { .. } => "RemotePushed",
            RecordEvent::RemotePushFailed { .. } => "RemotePushFailed",
            RecordEvent::RemoteDeleted { .. } => "RemoteDeleted",
            RecordEvent::ConflictRaised { .. } => "ConflictRaised",
            RecordEvent::RecordArchived { .. } => "RecordArchived",
            RecordEvent::RemoteRecordDeleted { .. } => "RemoteRecordDeleted",
            RecordEvent::ConflictResolved { .. } => "ConflictResolved",
            RecordEvent::ConflictIgnored { .. } => "ConflictIgnored",
            RecordEvent::RolledBack { .. } => "RolledBack",
            RecordEvent::DivergenceSettled { .. } => "DivergenceSettled",
        }
    }

    fn summary(&self) -> String {
        let names = |f: &Fields| f.keys().cloned().collect::<Vec<_>>().join(", ");
        match self {
            RecordEvent::RecordCreated { entity, .. } => {
                format!("{} record created", entity.as_str())
            }
            RecordEvent::RecordImported {
                entity,
                remote_id,
                fields,
                ..
            } => format!(
                "{} record imported from CRM record {remote_id} with {}",
                entity.as_str(),
                names(fields)
            ),
            RecordEvent::RemoteLinked { remote_id, .. } => {
                format!("linked to CRM record {remote_id}")
            }
            RecordEvent::FieldsChanged { fields, source, .. } => match source {
                Source::App { actor } => format!("{actor} changed {}", names(fields)),
                Source::Crm { .. } => format!("CRM changed {}", names(fields)),
            },
            RecordEvent::RemoteMerged {
                conflicts,
                pending_push,
                ..
            } => {
                // Each conflict by field and how it was settled; never its values.
                let mut text = format!(
                    "CRM version merged: {} field(s) to push, {} conflict(s)",
                    pending_push.len(),
                    conflicts.len()
                );
                for c in conflicts {
                    let settled = match c.winner {
                        None => "queued for review",
                        Some(Side::App) => "kept the app value",
                        Some(Side::Crm) => "kept the CRM value",
                    };
                    text.push_str(&format!("; conflict on {}: {settled}", c.field));
                }
                text
            }
            RecordEvent::RemotePushed { fields, .. } => {
                format!("pushed {} to the CRM", names(fields))
            }
            RecordEvent::RemotePushFailed { error, .. } => {
                format!("push to the CRM failed: {error}")
            }
            RecordEvent::RemoteDeleted { outcome, .. } => match outcome {
                OnCrmDelete::ArchiveRecord => {
                    "deleted in the CRM: record archived, never pushed there again".into()
                }
                OnCrmDelete::Unlink => "deleted in the CRM: unlinked, kept in the app only".into(),
                OnCrmDelete::KeepAndRecreate => {
                    "deleted in the CRM: link dropped, to be created there again".into()
                }
            },
            RecordEvent::RecordArchived { actor, .. } => format!("{actor} archived the record"),
            RecordEvent::RemoteRecordDeleted { .. } => {
                "deleted in the CRM because the record was archived in the app".into()
            }
            RecordEvent::ConflictRaised { conflict, .. } => format!(
                "conflict on {}: the app's edit waits for review (not pushed)",
                conflict.field
            ),
            // Field names only: values may be personal data.
            RecordEvent::ConflictResolved {
                field,
                resolution,
                actor,
                ..
            } => {
                let kept = match resolution {
                    ResolvedWith::UseApp => "kept the app value",
                    ResolvedWith::UseCrm => "kept the CRM value",
                    ResolvedWith::Merged => "set a merged value",
                };
                format!("conflict on {field} resolved by {actor}: {kept}")
            }
            RecordEvent::DivergenceSettled {
                keep,
                settled,
                actor,
                ..
            } => {
                let kept = match keep {
                    Side::App => "the app's values go to the CRM",
                    Side::Crm => "the record takes the CRM's values",
                };
                format!(
                    "divergence after a rollback settled by {actor} for {}: {kept}",
                    settled.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
            RecordEvent::ConflictIgnored { field, actor, .. } => {
                format!("conflict on {field} ignored by {actor}: both values kept as they are")
            }
            RecordEvent::RolledBack {
                reverts_run_id,
                reverses,
                fields,
                links,
                archived,
                ..
            } => {
                let mut parts = Vec::new();
                if !fields.is_empty() {
                    parts.push(format!(
                        "restored {}",
                        fields.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                if !links.is_empty() {
                    parts.push(format!("restored {} CRM link(s)", links.len()));
                }
                match archived {
                    Some(true) => parts.push("archived the record".into()),
                    Some(false) => parts.push("restored the archived record".into()),
                    None => {}
                }
                format!(
                    "rollback of sync run {reverts_run_id} ({} event(s) reversed): {}",
                    reverses.len(),
                    if parts.is_empty() {
                        "nothing changed".into()
                    } else {
                        parts.join("; ")
                    }
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RecordCommand {
    /// The app creates a record.
    Create {
        record_id: String,
        workspace_id: String,
        entity: Entity,
        fields: Fields,
        actor: String,
        at: DateTime<Utc>,
    },
    /// The app edits fields.
    Edit {
        fields: Fields,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A CRM version of the record, already mapped to app fields. Creates the record
    /// when it does not exist yet.
    Ingest {
        record_id: String,
        workspace_id: String,
        entity: Entity,
        integration_id: String,
        remote_id: String,
        remote_updated_at: DateTime<Utc>,
        /// The CRM properties as fetched, before mapping.
        remote: Fields,
        /// The same, mapped to app fields.
        fields: Fields,
        policy: MergePolicy,
        run_id: String,
        at: DateTime<Utc>,
    },
    /// Values (and, for a created CRM record, its id) reached the CRM.
    ConfirmPush {
        integration_id: String,
        remote_id: String,
        fields: Fields,
        /// The CRM properties as sent.
        sent: Fields,
        run_id: String,
        at: DateTime<Utc>,
    },
    /// The CRM refused the record's push.
    FailPush {
        integration_id: String,
        run_id: String,
        error: String,
        at: DateTime<Utc>,
    },
    /// The app archives the record.
    Archive { actor: String, at: DateTime<Utc> },
    /// A sync run deleted the CRM record of an archived record.
    ConfirmRemoteDelete {
        integration_id: String,
        run_id: String,
        at: DateTime<Utc>,
    },
    /// The CRM record was deleted; `on_delete` is the integration's setting.
    RemoteDelete {
        integration_id: String,
        run_id: String,
        on_delete: OnCrmDelete,
        at: DateTime<Utc>,
    },
    /// A person settles the open conflict on `field` with this integration.
    ResolveConflict {
        integration_id: String,
        field: String,
        resolution: Resolution,
        actor: String,
        at: DateTime<Utc>,
    },
    /// A person closes the open conflict on `field` without changing either side.
    IgnoreConflict {
        integration_id: String,
        field: String,
        actor: String,
        at: DateTime<Utc>,
    },
    /// Reverse what a run did to this record (the rollback plan computes it).
    RollBack(Compensation),
    /// An admin settles fields a rollback left diverged with `integration_id` (all of
    /// them with `fields: None`): `keep: App` owes the app's values to the CRM, `keep:
    /// Crm` gives the app the CRM's.
    SettleDivergence {
        integration_id: String,
        fields: Option<Vec<String>>,
        keep: Side,
        actor: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record already exists")]
    AlreadyExists,
    #[error("record not found")]
    NotFound,
    #[error("the record belongs to {0}, not to this entity")]
    WrongEntity(&'static str),
    #[error("the record is not linked to integration {0}")]
    NotLinked(String),
    #[error("no open conflict on {field} with integration {integration_id}")]
    NoSuchConflict {
        integration_id: String,
        field: String,
    },
    #[error("no field diverged from integration {integration_id}{}", field.as_ref().map(|f| format!(" named {f}")).unwrap_or_default())]
    NotDiverged {
        integration_id: String,
        field: Option<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: Option<String>,
    pub workspace_id: String,
    pub entity: Option<Entity>,
    pub fields: BTreeMap<String, FieldValue>,
    pub links: BTreeMap<String, Link>,
    /// When the app last edited the record (the app side's time in last-write-wins).
    pub app_modified_at: Option<DateTime<Utc>>,
    /// Hidden from lists: a rollback undid the run that created it. Its events stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// Archived by the app itself (not by a rollback or a CRM deletion): what
    /// `on_app_archive: delete_in_crm` deletes in the CRM.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub app_archived: bool,
    #[serde(default)]
    pub version: u64,
}

impl Record {
    /// The current values, without provenance.
    pub fn values(&self) -> Fields {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    /// The app's current value of one field (`None` when it has none).
    fn value(&self, field: &str) -> Option<String> {
        self.fields.get(field).and_then(|f| f.value.clone())
    }

    /// The conflict on `field` with `integration_id` that waits for a person.
    fn open_conflict(
        &self,
        integration_id: &str,
        field: &str,
    ) -> Result<&FieldConflict, RecordError> {
        self.links
            .get(integration_id)
            .and_then(|l| l.conflicts.get(field))
            .ok_or_else(|| RecordError::NoSuchConflict {
                integration_id: integration_id.to_owned(),
                field: field.to_owned(),
            })
    }

    /// The app's values and the CRM's, without the fields whose ignored pair both sides
    /// still hold: those stay out of the merge. A CRM version that does not mention such a
    /// field has not changed it.
    fn merge_inputs(&self, link: &Link, crm: &Fields) -> (Fields, Fields) {
        let (mut app, mut crm) = (self.values(), crm.clone());
        for name in link.diverged.keys() {
            app.remove(name);
            crm.remove(name);
        }
        for (name, (app_value, crm_value)) in &link.ignored {
            let crm_now = crm.get(name).unwrap_or(crm_value);
            if self.value(name) == *app_value && crm_now == crm_value {
                app.remove(name);
                crm.remove(name);
            }
        }
        (app, crm)
    }

    /// The conflicts an app edit of `changed` raises: on each linked CRM, a field whose
    /// conflict is open keeps waiting with the app's new value, and a field whose
    /// conflict was ignored opens one again (the ignore covered only the values it was
    /// made for; the CRM still holds a value nobody accepted). Either way the edit is
    /// not pushed until a person decides.
    fn held_for_review(&self, changed: &Fields, at: DateTime<Utc>) -> Vec<RecordEvent> {
        let mut events = Vec::new();
        for (integration_id, link) in self.links.iter().filter(|(_, l)| l.is_active()) {
            for (name, value) in changed {
                let conflict = match (link.conflicts.get(name), link.ignored.get(name)) {
                    (Some(open), _) => FieldConflict {
                        app: value.clone(),
                        ..open.clone()
                    },
                    (None, Some((_, crm))) => FieldConflict {
                        field: name.clone(),
                        base: link.base.get(name).cloned().flatten(),
                        app: value.clone(),
                        crm: crm.clone(),
                        winner: None,
                    },
                    (None, None) => continue,
                };
                // The app came round to the CRM's value: nothing left to review.
                if empty_as_none(conflict.app.clone()) == empty_as_none(conflict.crm.clone()) {
                    continue;
                }
                events.push(RecordEvent::ConflictRaised {
                    integration_id: integration_id.clone(),
                    conflict,
                    at,
                });
            }
        }
        events
    }

    /// The CRM record behind `integration_id`'s link was deleted.
    fn remote_deleted(&mut self, integration_id: &str, outcome: OnCrmDelete) {
        let state = match outcome {
            OnCrmDelete::KeepAndRecreate => {
                self.links.remove(integration_id);
                return;
            }
            OnCrmDelete::ArchiveRecord => LinkState::DeletedInCrm,
            OnCrmDelete::Unlink => LinkState::Unlinked,
        };
        let Some(link) = self.links.get_mut(integration_id) else {
            return;
        };
        link.state = state;
        link.pending_push.clear();
        link.conflicts.clear();
        link.ignored.clear();
        if outcome == OnCrmDelete::ArchiveRecord {
            self.archived = true;
        }
    }

    /// The fields of `proposed` whose value differs from the current one.
    fn changed(&self, proposed: &Fields) -> Fields {
        proposed
            .iter()
            .filter(|(k, v)| self.fields.get(*k).map(|f| &f.value) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The record takes the chosen value as an app edit would; for the conflict's CRM the
    /// base becomes what the CRM holds, so the next pull sees only the app's side move and
    /// pushes the difference instead of raising the conflict again.
    fn resolve(
        &mut self,
        integration_id: &str,
        field: &str,
        value: &Option<String>,
        crm_value: &Option<String>,
        source: Source,
        at: DateTime<Utc>,
    ) {
        let app_changed = self.value(field) != *value;
        self.fields.insert(
            field.to_owned(),
            FieldValue {
                value: value.clone(),
                source,
                at,
            },
        );
        self.app_modified_at = Some(at);
        for (id, link) in &mut self.links {
            if id == integration_id {
                link.conflicts.remove(field);
                link.ignored.remove(field);
                link.base.insert(field.to_owned(), crm_value.clone());
                if value == crm_value {
                    link.pending_push.remove(field);
                } else {
                    link.pending_push.insert(field.to_owned(), value.clone());
                }
            } else if app_changed {
                // Owed to the other CRMs, as any app edit is.
                link.ignored.remove(field);
                link.pending_push.insert(field.to_owned(), value.clone());
            }
        }
    }

    /// Ends divergences: the link's base becomes what the CRM holds, and the side not
    /// kept takes the other's value (owed to the CRM, or set in the app from the CRM).
    fn settle(
        &mut self,
        integration_id: &str,
        keep: Side,
        settled: &BTreeMap<String, Divergence>,
        actor: &str,
        at: DateTime<Utc>,
    ) {
        let mut taken = Fields::new();
        if let Some(link) = self.links.get_mut(integration_id) {
            for (name, d) in settled {
                link.diverged.remove(name);
                link.base.insert(name.clone(), d.crm.clone());
                match keep {
                    Side::App => {
                        let app = self.fields.get(name).and_then(|f| f.value.clone());
                        if app == d.crm {
                            link.pending_push.remove(name);
                        } else {
                            link.pending_push.insert(name.clone(), app);
                        }
                    }
                    Side::Crm => {
                        link.pending_push.remove(name);
                        taken.insert(name.clone(), d.crm.clone());
                    }
                }
            }
        }
        let taken = self.changed(&taken);
        for (name, value) in &taken {
            self.fields.insert(
                name.clone(),
                FieldValue {
                    value: value.clone(),
                    source: Source::Crm {
                        integration_id: integration_id.to_owned(),
                        decided_by: Some(actor.to_owned()),
                    },
                    at,
                },
            );
        }
        // A value the app takes from one CRM is owed to the others, as a resolution's is.
        for (id, link) in &mut self.links {
            if id != integration_id {
                for (name, value) in &taken {
                    link.ignored.remove(name);
                    link.pending_push.insert(name.clone(), value.clone());
                }
            }
        }
    }

    fn ingest(&self, command: RecordCommand) -> Result<Vec<RecordEvent>, RecordError> {
        let RecordCommand::Ingest {
            record_id,
            workspace_id,
            entity,
            integration_id,
            remote_id,
            remote_updated_at,
            remote,
            fields,
            policy,
            run_id,
            at,
        } = command
        else {
            return Ok(vec![]);
        };
        // The app keeps one meaning of empty: a CRM's "" arrives as null.
        let fields = normalized(&fields);
        let mut events = Vec::new();
        if self.id.is_none() {
            return Ok(vec![RecordEvent::RecordImported {
                record_id,
                workspace_id,
                entity,
                integration_id,
                remote_id,
                remote_updated_at,
                remote,
                fields,
                run_id,
                at,
            }]);
        } else if self.entity != Some(entity) {
            return Err(RecordError::WrongEntity(
                self.entity.map_or("none", Entity::as_str),
            ));
        }
        let link = self.links.get(&integration_id);
        // A CRM record fetched again after its deletion was restored there: it syncs again.
        if link.is_none_or(|l| l.remote_id != remote_id || !l.is_active()) {
            events.push(RecordEvent::RemoteLinked {
                integration_id: integration_id.clone(),
                remote_id,
                at,
            });
        }
        let empty = Link::default();
        let link = link.unwrap_or(&empty);
        let (app, crm) = self.merge_inputs(link, &fields);
        let outcome = merge(
            &link.base,
            Version {
                fields: &app,
                modified_at: self.app_modified_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            },
            Version {
                fields: &crm,
                modified_at: remote_updated_at,
            },
            &policy,
        );
        let to_app = self.changed(&outcome.to_app);
        if !to_app.is_empty() {
            events.push(RecordEvent::FieldsChanged {
                fields: to_app,
                source: Source::Crm {
                    integration_id: integration_id.clone(),
                    decided_by: None,
                },
                run_id: Some(run_id.clone()),
                at,
            });
        }
        // Values still on their way to the CRM are not agreed yet: their base stays
        // what the CRM holds until the push is confirmed. Moving it early would make a
        // re-fetch of the unchanged CRM record look like a CRM change and revert the
        // app's edit.
        let mut base = outcome.base.clone();
        for name in outcome.to_crm.keys() {
            match link.base.get(name) {
                Some(old) => base.insert(name.clone(), old.clone()),
                None => base.remove(name),
            };
        }
        let pending = pending_after(&link.pending_push, &outcome);
        // A conflict already open with the same values is not news; nor is a version
        // that changes nothing the link holds, even with a newer modification time or
        // other unmapped properties: that is how the echo of our own push comes back.
        // (The fetched properties are kept with the next version that changes something.)
        let open: BTreeMap<String, FieldConflict> = outcome
            .queued()
            .map(|c| (c.field.clone(), c.clone()))
            .collect();
        let unchanged = base == link.base
            && pending == link.pending_push
            && open == link.conflicts
            && outcome.conflicts.iter().all(|c| c.winner.is_none());
        if !(unchanged && events.is_empty()) {
            events.push(RecordEvent::RemoteMerged {
                integration_id,
                run_id,
                remote_updated_at,
                base,
                pending_push: pending,
                conflicts: outcome.conflicts,
                remote: Some(remote),
                at,
            });
        }
        Ok(events)
    }
}

/// What is owed to the CRM after a merge: what was owed, plus what the merge sends, minus
/// the fields where the app just took the CRM's value (nothing of the app's is left to
/// send) and the fields of queued conflicts (held until a person decides).
fn pending_after(owed: &Fields, outcome: &MergeOutcome) -> Fields {
    let mut pending = owed.clone();
    pending.extend(outcome.to_crm.clone());
    for name in outcome
        .to_app
        .keys()
        .chain(outcome.queued().map(|c| &c.field))
    {
        pending.remove(name);
    }
    pending
}

impl Aggregate for Record {
    const TYPE: &'static str = "record";
    type Command = RecordCommand;
    type Event = RecordEvent;
    type Error = RecordError;

    fn decide(&self, command: RecordCommand) -> Result<Vec<RecordEvent>, RecordError> {
        use RecordCommand as C;
        use RecordEvent as E;
        match command {
            C::Create {
                record_id,
                workspace_id,
                entity,
                fields,
                actor,
                at,
            } => {
                if self.id.is_some() {
                    return Err(RecordError::AlreadyExists);
                }
                let mut events = vec![E::RecordCreated {
                    record_id,
                    workspace_id,
                    entity,
                    at,
                }];
                if !fields.is_empty() {
                    events.push(E::FieldsChanged {
                        fields,
                        source: Source::App { actor },
                        run_id: None,
                        at,
                    });
                }
                Ok(events)
            }
            ingest @ C::Ingest { .. } => self.ingest(ingest),
            _ if self.id.is_none() => Err(RecordError::NotFound),
            C::Edit { fields, actor, at } => {
                let changed = self.changed(&fields);
                if changed.is_empty() {
                    return Ok(vec![]);
                }
                let held = self.held_for_review(&changed, at);
                let mut events = vec![E::FieldsChanged {
                    fields: changed,
                    source: Source::App { actor },
                    run_id: None,
                    at,
                }];
                events.extend(held);
                Ok(events)
            }
            C::ConfirmPush {
                integration_id,
                remote_id,
                fields,
                sent,
                run_id,
                at,
            } => {
                let mut events = Vec::new();
                if self.links.get(&integration_id).map(|l| &l.remote_id) != Some(&remote_id) {
                    events.push(E::RemoteLinked {
                        integration_id: integration_id.clone(),
                        remote_id,
                        at,
                    });
                }
                events.push(E::RemotePushed {
                    integration_id,
                    run_id,
                    fields,
                    sent,
                    at,
                });
                Ok(events)
            }
            C::FailPush {
                integration_id,
                run_id,
                error,
                at,
            } => Ok(vec![E::RemotePushFailed {
                integration_id,
                run_id,
                error,
                at,
            }]),
            C::RemoteDelete {
                integration_id,
                run_id,
                on_delete,
                at,
            } => {
                // A link already marked deleted no longer syncs: the deletion was recorded
                // (a page applied again after a crash, or a provider listing it again).
                if !self.links.get(&integration_id).is_some_and(Link::is_active) {
                    return Err(RecordError::NotLinked(integration_id));
                }
                Ok(vec![E::RemoteDeleted {
                    integration_id,
                    run_id,
                    outcome: on_delete,
                    at,
                }])
            }
            C::ResolveConflict {
                integration_id,
                field,
                resolution,
                actor,
                at,
            } => {
                let crm_value = self.open_conflict(&integration_id, &field)?.crm.clone();
                let (value, resolution) = match resolution {
                    Resolution::UseApp => (self.value(&field), ResolvedWith::UseApp),
                    Resolution::UseCrm => (crm_value.clone(), ResolvedWith::UseCrm),
                    Resolution::Value(value) => (value, ResolvedWith::Merged),
                };
                Ok(vec![E::ConflictResolved {
                    integration_id,
                    field,
                    value,
                    crm_value,
                    resolution,
                    actor,
                    at,
                }])
            }
            C::RollBack(c) => Ok(c.into_event().into_iter().collect()),
            C::SettleDivergence {
                integration_id,
                fields,
                keep,
                actor,
                at,
            } => {
                let diverged = self.links.get(&integration_id).map(|l| &l.diverged);
                let settled: BTreeMap<String, Divergence> = match (&fields, diverged) {
                    (_, None) => BTreeMap::new(),
                    (None, Some(d)) => d.clone(),
                    (Some(names), Some(d)) => {
                        let mut out = BTreeMap::new();
                        for name in names {
                            let Some(v) = d.get(name) else {
                                return Err(RecordError::NotDiverged {
                                    integration_id,
                                    field: Some(name.clone()),
                                });
                            };
                            out.insert(name.clone(), v.clone());
                        }
                        out
                    }
                };
                if settled.is_empty() {
                    return Err(RecordError::NotDiverged {
                        integration_id,
                        field: None,
                    });
                }
                Ok(vec![E::DivergenceSettled {
                    integration_id,
                    keep,
                    settled,
                    actor,
                    at,
                }])
            }
            C::Archive { actor, at } => Ok(if self.archived {
                vec![]
            } else {
                vec![E::RecordArchived { actor, at }]
            }),
            C::ConfirmRemoteDelete {
                integration_id,
                run_id,
                at,
            } => match self.links.get(&integration_id) {
                None => Err(RecordError::NotLinked(integration_id)),
                Some(link) if !link.is_active() => Ok(vec![]),
                Some(_) => Ok(vec![E::RemoteRecordDeleted {
                    integration_id,
                    run_id,
                    at,
                }]),
            },
            C::IgnoreConflict {
                integration_id,
                field,
                actor,
                at,
            } => {
                let crm_value = self.open_conflict(&integration_id, &field)?.crm.clone();
                Ok(vec![E::ConflictIgnored {
                    app_value: self.value(&field),
                    integration_id,
                    field,
                    crm_value,
                    actor,
                    at,
                }])
            }
        }
    }

    fn apply(&mut self, event: &RecordEvent) {
        self.version += 1;
        match event {
            RecordEvent::RecordCreated {
                record_id,
                workspace_id,
                entity,
                ..
            } => {
                self.id = Some(record_id.clone());
                self.workspace_id.clone_from(workspace_id);
                self.entity = Some(*entity);
            }
            RecordEvent::RecordImported {
                record_id,
                workspace_id,
                entity,
                integration_id,
                remote_id,
                remote_updated_at,
                remote,
                fields,
                run_id: _,
                at,
            } => {
                self.id = Some(record_id.clone());
                self.workspace_id.clone_from(workspace_id);
                self.entity = Some(*entity);
                let source = Source::Crm {
                    integration_id: integration_id.clone(),
                    decided_by: None,
                };
                for (name, value) in fields {
                    self.fields.insert(
                        name.clone(),
                        FieldValue {
                            value: value.clone(),
                            source: source.clone(),
                            at: *at,
                        },
                    );
                }
                self.links.insert(
                    integration_id.clone(),
                    Link {
                        remote_id: remote_id.clone(),
                        base: fields.clone(),
                        remote_updated_at: Some(*remote_updated_at),
                        pending_push: Fields::new(),
                        push_error: None,
                        remote: remote.clone(),
                        ..Link::default()
                    },
                );
            }
            RecordEvent::RemoteLinked {
                integration_id,
                remote_id,
                ..
            } => {
                let link = self.links.entry(integration_id.clone()).or_default();
                link.remote_id.clone_from(remote_id);
                link.state = LinkState::Linked;
            }
            RecordEvent::FieldsChanged {
                fields, source, at, ..
            } => {
                for (name, value) in fields {
                    self.fields.insert(
                        name.clone(),
                        FieldValue {
                            value: value.clone(),
                            source: source.clone(),
                            at: *at,
                        },
                    );
                }
                for link in self.links.values_mut() {
                    // The app side moved: an ignored pair no longer holds, and a field a
                    // rollback left diverged has a new value someone chose.
                    link.ignored.retain(|name, _| !fields.contains_key(name));
                    link.diverged.retain(|name, _| !fields.contains_key(name));
                }
                if matches!(source, Source::App { .. }) {
                    self.app_modified_at = Some(*at);
                    // App edits are owed to every linked CRM (whose record still exists).
                    for link in self.links.values_mut().filter(|l| l.is_active()) {
                        link.pending_push.extend(fields.clone());
                    }
                }
            }
            RecordEvent::RemoteMerged {
                integration_id,
                remote_updated_at,
                base,
                pending_push,
                conflicts,
                remote,
                ..
            } => {
                let link = self.links.entry(integration_id.clone()).or_default();
                if let Some(remote) = remote {
                    link.remote.clone_from(remote);
                }
                let old_base = std::mem::replace(&mut link.base, base.clone());
                let old_pending = std::mem::replace(&mut link.pending_push, pending_push.clone());
                link.remote_updated_at = Some(*remote_updated_at);
                // The merge looked at every field: a queued conflict opens (or replaces) its
                // field's entry, and every other open conflict was settled by it.
                link.conflicts = conflicts
                    .iter()
                    .filter(|c| c.winner.is_none())
                    .map(|c| (c.field.clone(), c.clone()))
                    .collect();
                // An ignored pair lasts while merges leave its field alone.
                link.ignored.retain(|name, _| {
                    conflicts.iter().all(|c| &c.field != name)
                        && base.get(name) == old_base.get(name)
                        && pending_push.get(name) == old_pending.get(name)
                });
            }
            RecordEvent::RemotePushed {
                integration_id,
                fields,
                sent,
                ..
            } => {
                let link = self.links.entry(integration_id.clone()).or_default();
                link.push_error = None;
                link.remote.extend(sent.clone());
                for (name, value) in fields {
                    link.base.insert(name.clone(), value.clone());
                    if link.pending_push.get(name) == Some(value) {
                        link.pending_push.remove(name);
                    }
                }
            }
            RecordEvent::RemotePushFailed {
                integration_id,
                error,
                ..
            } => {
                if let Some(link) = self.links.get_mut(integration_id) {
                    link.push_error = Some(error.clone());
                }
            }
            RecordEvent::RemoteDeleted {
                integration_id,
                outcome,
                ..
            } => self.remote_deleted(integration_id, *outcome),
            RecordEvent::RecordArchived { .. } => {
                self.archived = true;
                self.app_archived = true;
            }
            RecordEvent::RemoteRecordDeleted { integration_id, .. } => {
                self.remote_deleted(integration_id, OnCrmDelete::ArchiveRecord);
            }
            RecordEvent::ConflictRaised {
                integration_id,
                conflict,
                ..
            } => {
                if let Some(link) = self.links.get_mut(integration_id) {
                    link.ignored.remove(&conflict.field);
                    link.pending_push.remove(&conflict.field);
                    link.conflicts
                        .insert(conflict.field.clone(), conflict.clone());
                }
            }
            RecordEvent::ConflictResolved {
                integration_id,
                field,
                value,
                crm_value,
                resolution,
                actor,
                at,
            } => {
                let source = resolved_source(*resolution, integration_id, actor);
                self.resolve(integration_id, field, value, crm_value, source, *at)
            }
            RecordEvent::ConflictIgnored {
                integration_id,
                field,
                app_value,
                crm_value,
                ..
            } => {
                if let Some(link) = self.links.get_mut(integration_id) {
                    // Both sides stay as they are: an app edit made since is not pushed.
                    link.conflicts.remove(field);
                    link.pending_push.remove(field);
                    link.ignored
                        .insert(field.clone(), (app_value.clone(), crm_value.clone()));
                }
            }
            RecordEvent::DivergenceSettled {
                integration_id,
                keep,
                settled,
                actor,
                at,
            } => self.settle(integration_id, *keep, settled, actor, *at),
            RecordEvent::RolledBack {
                fields,
                links,
                archived,
                ..
            } => {
                for (name, value) in fields {
                    match value {
                        Some(v) => self.fields.insert(name.clone(), v.clone()),
                        None => self.fields.remove(name),
                    };
                }
                for (integration_id, link) in links {
                    match link {
                        Some(l) => self.links.insert(integration_id.clone(), l.clone()),
                        None => self.links.remove(integration_id),
                    };
                }
                if let Some(a) = archived {
                    self.archived = *a;
                    self.app_archived &= *a;
                }
            }
        }
        // A push error describes values still owed; once nothing is (pushed, overwritten
        // by the CRM, resolved, ignored), it no longer applies.
        for link in self.links.values_mut() {
            if link.push_error.is_some() && link.owed().is_empty() {
                link.push_error = None;
            }
        }
    }
}

/// The compensation for one record: what a rollback writes (planned by the rollback
/// module).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    pub run_id: String,
    pub reverts_run_id: String,
    pub reverses: Vec<i64>,
    pub fields: BTreeMap<String, Option<FieldValue>>,
    pub links: BTreeMap<String, Option<Link>>,
    pub archived: Option<bool>,
    pub at: DateTime<Utc>,
}

impl Compensation {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.links.is_empty() && self.archived.is_none()
    }

    /// The compensating event, or none when there is nothing to change.
    pub fn into_event(self) -> Option<RecordEvent> {
        if self.is_empty() {
            return None;
        }
        Some(RecordEvent::RolledBack {
            run_id: self.run_id,
            reverts_run_id: self.reverts_run_id,
            reverses: self.reverses,
            fields: self.fields,
            links: self.links,
            archived: self.archived,
            at: self.at,
        })
    }
}

#[cfg(test)]
mod tests;
