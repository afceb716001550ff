//! Rolling back a sync run, record by record, as pure planning.
//!
//! For each record a run touched, three states are compared: `before` (replayed up to the
//! run's first event on the record), `after` (up to its last) and `now`. Whatever the run
//! changed goes back to its `before` value, unless it has changed again since (`now`
//! differs from `after`): such fields are reported as conflicts and left alone.
//!
//! - A field the run changed is restored with its old value, source and time.
//! - A CRM link the run changed is restored part by part (merge base, pending pushes and
//!   fetched properties key by key, open conflicts), each part only if nothing changed it
//!   since; a link the run removed (the CRM record was deleted) is restored, and a link
//!   the run made by matching is removed again, if untouched since. A link made by the run's
//!   own push to a new CRM record is kept: that CRM record exists, and forgetting its id
//!   would create it twice on the next push.
//! - A record the run created is archived (hidden, its events kept), unless it has been
//!   edited since.
//! - Where the run wrote to a CRM, the CRM properties it sent are written back with the
//!   values the link knew before the run.
//!
//! Rolling back a rollback applies the same rules to the rollback's own events, which
//! brings the original run's effect back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::merge::Fields;
use crate::record::{FieldValue, Link, Record, RecordEvent};

/// A field the rollback sets back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRestore {
    pub field: String,
    pub now: Option<String>,
    pub before: Option<String>,
}

/// A field the run changed that has changed again since: reported, not overwritten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedSince {
    pub field: String,
    /// The value the run left.
    pub run_value: Option<String>,
    pub now: Option<String>,
    pub before: Option<String>,
}

/// CRM properties to write back on one CRM record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmRestore {
    pub integration_id: String,
    pub remote_id: String,
    /// Property → the value to write back (what the CRM held before the run).
    pub properties: Fields,
    /// Property → what the CRM holds now, as far as syncledger knows.
    pub now: Fields,
}

/// The compensation for one record: what the rollback writes.
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

/// What rolling back one run does to one record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPlan {
    /// The run created this record.
    pub created: bool,
    /// The record becomes archived (`Some(true)`) or visible again (`Some(false)`).
    pub archive: Option<bool>,
    pub restore: Vec<FieldRestore>,
    pub conflicts: Vec<ChangedSince>,
    /// Links put back as they were (`None`: removed).
    pub links: BTreeMap<String, Option<Link>>,
    /// Links the run removed (their CRM record was deleted) that come back.
    pub relinked: Vec<String>,
    /// Links that changed again since the run: left as they are.
    pub links_changed_since: Vec<String>,
    /// CRM records the run created by pushing: left in the CRM, and linked.
    pub remote_created: Vec<(String, String)>,
    /// CRM properties the run wrote that changed again since: left as they are.
    pub crm_changed_since: Vec<String>,
    pub crm: Vec<CrmRestore>,
}

impl RecordPlan {
    /// Whether the rollback changes anything in the app or a CRM for this record.
    pub fn changes_something(&self) -> bool {
        self.archive.is_some() || !self.restore.is_empty() || !self.links.is_empty()
    }

    /// The compensation to append (the CRM writes go separately).
    pub fn compensation(
        &self,
        before: &Record,
        run_id: &str,
        reverts_run_id: &str,
        reverses: Vec<i64>,
        at: DateTime<Utc>,
    ) -> Compensation {
        Compensation {
            run_id: run_id.to_owned(),
            reverts_run_id: reverts_run_id.to_owned(),
            reverses,
            fields: self
                .restore
                .iter()
                .map(|r| (r.field.clone(), before.fields.get(&r.field).cloned()))
                .collect(),
            links: self.links.clone(),
            archived: self.archive,
            at,
        }
    }
}

fn value(record: &Record, field: &str) -> Option<String> {
    record.fields.get(field).and_then(|f| f.value.clone())
}

/// Plans the rollback of one record. `pushed` names, per integration, the CRM properties
/// the run sent for this record.
pub fn plan(
    before: &Record,
    after: &Record,
    now: &Record,
    pushed: &BTreeMap<String, BTreeSet<String>>,
) -> RecordPlan {
    let mut plan = RecordPlan {
        created: before.id.is_none(),
        ..RecordPlan::default()
    };
    let names: BTreeSet<&String> = before.fields.keys().chain(after.fields.keys()).collect();
    for name in names {
        // Presence counts: a field set to nothing is not a field that does not exist.
        let held = |r: &Record| r.fields.get(name.as_str()).map(|f| f.value.clone());
        if held(before) == held(after) {
            continue;
        }
        let (b, a, n) = (value(before, name), value(after, name), value(now, name));
        if held(now) != held(after) {
            plan.conflicts.push(ChangedSince {
                field: name.clone(),
                run_value: a,
                now: n,
                before: b,
            });
        } else if !plan.created {
            plan.restore.push(FieldRestore {
                field: name.clone(),
                now: n,
                before: b,
            });
        }
    }
    // Not existing counts as archived: a record the run created goes away.
    let was_archived = plan.created || before.archived;
    // A created record edited since stays visible: archiving would hide the edit.
    let edited_since = plan.created && !plan.conflicts.is_empty();
    if was_archived != after.archived && now.archived == after.archived && !edited_since {
        plan.archive = Some(was_archived);
    }
    if plan.created {
        return plan;
    }
    let integrations: BTreeSet<&String> = before.links.keys().chain(after.links.keys()).collect();
    for id in integrations {
        let (b, a, n) = (before.links.get(id), after.links.get(id), now.links.get(id));
        if b == a {
            continue;
        }
        match (b, a) {
            (None, Some(a)) if pushed.contains_key(id) => {
                plan.remote_created.push((id.clone(), a.remote_id.clone()));
            }
            // Linked by the run (a match), or unlinked by it (a CRM deletion): undone
            // only while nothing else has touched the link since.
            (None, _) | (_, None) => {
                if n == a {
                    plan.links.insert(id.clone(), b.cloned());
                    if b.is_some() {
                        plan.relinked.push(id.clone());
                    }
                } else {
                    plan.links_changed_since.push(id.clone());
                }
            }
            (Some(b), Some(a)) => {
                let Some(n) = n else {
                    plan.links_changed_since.push(id.clone());
                    continue;
                };
                let restored = restore_link(b, a, n);
                if n != a {
                    plan.links_changed_since.push(id.clone());
                }
                if let Some(props) = pushed.get(id) {
                    crm_restore(&mut plan, id, b, a, n, props);
                }
                if &restored != n {
                    plan.links.insert(id.clone(), Some(restored));
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;

/// One value three ways: back to `before` if the run changed it and nothing since.
fn restore_value<T: PartialEq + Clone>(before: &T, after: &T, now: &T) -> T {
    if before != after && now == after {
        before.clone()
    } else {
        now.clone()
    }
}

/// A map key by key, as [`restore_value`] (an absent key is a value too).
fn restore_map<V: PartialEq + Clone>(
    before: &BTreeMap<String, V>,
    after: &BTreeMap<String, V>,
    now: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    let mut out = now.clone();
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        match restore_value(&before.get(k), &after.get(k), &now.get(k)) {
            Some(v) => out.insert(k.clone(), v.clone()),
            None => out.remove(k),
        };
    }
    out
}

/// The link with every part the run changed, and nothing changed since, put back.
fn restore_link(b: &Link, a: &Link, n: &Link) -> Link {
    Link {
        remote_id: restore_value(&b.remote_id, &a.remote_id, &n.remote_id),
        state: restore_value(&b.state, &a.state, &n.state),
        base: restore_map(&b.base, &a.base, &n.base),
        remote_updated_at: restore_value(
            &b.remote_updated_at,
            &a.remote_updated_at,
            &n.remote_updated_at,
        ),
        pending_push: restore_map(&b.pending_push, &a.pending_push, &n.pending_push),
        push_error: restore_value(&b.push_error, &a.push_error, &n.push_error),
        remote: restore_map(&b.remote, &a.remote, &n.remote),
        conflicts: restore_map(&b.conflicts, &a.conflicts, &n.conflicts),
        ignored: restore_map(&b.ignored, &a.ignored, &n.ignored),
    }
}

/// The CRM properties the run sent that the CRM still holds (as far as syncledger
/// knows), to be written back with the value known before the run.
fn crm_restore(
    plan: &mut RecordPlan,
    id: &str,
    b: &Link,
    a: &Link,
    n: &Link,
    props: &BTreeSet<String>,
) {
    let mut properties = Fields::new();
    let mut now_values = Fields::new();
    for p in props {
        let Some(old) = b.remote.get(p) else { continue };
        let (sent, held) = (a.remote.get(p), n.remote.get(p));
        if sent == Some(old) {
            continue;
        }
        if held != sent {
            plan.crm_changed_since.push(p.clone());
            continue;
        }
        properties.insert(p.clone(), old.clone());
        now_values.insert(p.clone(), held.cloned().flatten());
    }
    if !properties.is_empty() {
        plan.crm.push(CrmRestore {
            integration_id: id.to_owned(),
            remote_id: b.remote_id.clone(),
            properties,
            now: now_values,
        });
    }
}
