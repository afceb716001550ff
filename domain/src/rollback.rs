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
//!   values the link knew before the run (when the CRM cannot be written now, because the
//!   integration is disconnected, those write-backs are owed and the link keeps saying
//!   what the CRM holds).
//! - What the link knows of the CRM is never rolled back: its fetched properties, and the
//!   base of every field the run merged from the CRM, stay what the CRM holds, because
//!   undoing a pull changes the app, not the CRM.
//! - Conflicts the run opened stay open (the CRM still disagrees), and conflicts it
//!   settled are opened again.
//! - Every field the run touched ends in one of three states: agreed (nothing owed), an
//!   open conflict, or *diverged*: the app and the CRM hold different values because the
//!   rollback put one side back. A diverged field is neither pushed nor pulled until an
//!   admin chooses a side, so the next run cannot silently undo half of the rollback.
//!
//! Rolling back a rollback applies the same rules to the rollback's own events, which
//! brings the original run's effect back.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::merge::Fields;
pub use crate::record::Compensation;
use crate::record::{Link, Record};

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
    /// The app fields whose values the run sent, with what the CRM holds for them once
    /// written back (their base).
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub fields: Fields,
}

/// A field the rollback leaves diverged on one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diverging {
    pub integration_id: String,
    pub field: String,
    /// The app's value after the rollback.
    pub app: Option<String>,
    /// What the CRM holds after the rollback, as far as syncledger knows.
    pub crm: Option<String>,
}

/// What the reversed run wrote to one CRM for this record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// The CRM properties it sent.
    pub properties: BTreeSet<String>,
    /// The app fields whose values it sent.
    pub fields: BTreeSet<String>,
}

/// Whether the rollback can write to the run's CRM now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrmAccess {
    #[default]
    Writable,
    /// The integration cannot reach its CRM (disconnected): the app side is compensated
    /// and the CRM write-backs are owed.
    Owed,
}

impl CrmAccess {
    /// Whether a rollback on an integration in this status can write to its CRM: a
    /// paused or failing integration still has its credentials; a disconnected one has
    /// none.
    pub fn for_status(status: crate::Status) -> Self {
        match status {
            crate::Status::Disconnected | crate::Status::PendingAuth => CrmAccess::Owed,
            _ => CrmAccess::Writable,
        }
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
    /// The CRM write-backs in `crm` cannot be made now (see [`CrmAccess::Owed`]): a
    /// rollback of the same run makes them once the CRM is reachable again.
    pub crm_owed: bool,
    /// Fields left diverged, for an admin to settle.
    pub diverged: Vec<Diverging>,
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
            links: self
                .links
                .iter()
                .map(|(id, link)| {
                    let mut link = link.clone();
                    for d in link.iter_mut().flat_map(|l| l.diverged.values_mut()) {
                        if d.rollback_run_id.is_empty() {
                            d.rollback_run_id = run_id.to_owned();
                        }
                    }
                    (id.clone(), link)
                })
                .collect(),
            archived: self.archive,
            at,
        }
    }
}

fn value(record: &Record, field: &str) -> Option<String> {
    record.fields.get(field).and_then(|f| f.value.clone())
}

/// Plans the rollback of one record. `pushed` names, per integration, what the run sent
/// for this record; `access` says whether the run's CRM can be written back now.
pub fn plan(
    before: &Record,
    after: &Record,
    now: &Record,
    pushed: &BTreeMap<String, Pushed>,
    access: CrmAccess,
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
        // Changed since: another value, or the same one set again since (an edit that
        // changed it and back is a newer decision too).
        if now.fields.get(name.as_str()) != after.fields.get(name.as_str()) {
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
                let none = Pushed::default();
                let sent = pushed.get(id).unwrap_or(&none);
                let goes_back = !sent.properties.is_empty()
                    && crm_restore(&mut plan, id, b, a, n, &sent.properties);
                plan.crm_owed |= goes_back && access == CrmAccess::Owed;
                let written_back = match access {
                    CrmAccess::Writable if goes_back => sent,
                    // Nothing goes back to the CRM (now): the link keeps what it holds.
                    _ => &none,
                };
                let mut restored = restore_link(b, a, n, &written_back.fields);
                // A field whose app value changed since the run (an edit, a resolution)
                // keeps what the link says of it now: its pending value and base are part
                // of that newer decision.
                for field in changed_since(after, now) {
                    for (restored, now) in [
                        (&mut restored.pending_push, &n.pending_push),
                        (&mut restored.base, &n.base),
                    ] {
                        match now.get(&field) {
                            Some(v) => restored.insert(field.clone(), v.clone()),
                            None => restored.remove(&field),
                        };
                    }
                }
                if n != a {
                    plan.links_changed_since.push(id.clone());
                }
                if let Some(c) = plan.crm.iter_mut().find(|c| &c.integration_id == id) {
                    c.fields = written_back
                        .fields
                        .iter()
                        .map(|f| (f.clone(), restored.base.get(f).cloned().flatten()))
                        .collect();
                }
                let touched = touched_fields(&plan, (after, now), (b, a, n), &restored, sent);
                settle_touched(&mut plan, id, now, &mut restored, touched);
                // A field owed or in a conflict since is someone's newer decision: a
                // divergence the reversed run ended does not come back over it.
                let newer: Vec<String> = restored
                    .diverged
                    .keys()
                    .filter(|f| {
                        restored.pending_push.contains_key(*f)
                            || restored.conflicts.contains_key(*f)
                    })
                    .cloned()
                    .collect();
                for f in newer {
                    restored.diverged.remove(&f);
                    plan.diverged.retain(|d| d.field != f);
                }
                if &restored != n {
                    plan.links.insert(id.clone(), Some(restored));
                }
            }
        }
    }
    plan
}

/// The app fields set since `after` (another value or presence, or the same value set
/// again).
fn changed_since(after: &Record, now: &Record) -> Vec<String> {
    let names: BTreeSet<&String> = after.fields.keys().chain(now.fields.keys()).collect();
    names
        .into_iter()
        .filter(|f| after.fields.get(*f) != now.fields.get(*f))
        .cloned()
        .collect()
}

/// The app fields of one link the run touched: restored in the app, sent to the CRM,
/// merged from it, or whose pending push it changed; without those changed again since
/// (their later state is someone's newer decision, owed or not).
fn touched_fields(
    plan: &RecordPlan,
    (after, now): (&Record, &Record),
    (b, a, n): (&Link, &Link, &Link),
    restored: &Link,
    sent: &Pushed,
) -> BTreeSet<String> {
    let known = |f: &String| restored.base.contains_key(f) || restored.pending_push.contains_key(f);
    let mut touched: BTreeSet<String> = plan
        .restore
        .iter()
        .map(|r| r.field.clone())
        .filter(known)
        .collect();
    touched.extend(sent.fields.iter().cloned());
    for (map_b, map_a) in [(&b.base, &a.base), (&b.pending_push, &a.pending_push)] {
        let keys: BTreeSet<&String> = map_b.keys().chain(map_a.keys()).collect();
        touched.extend(
            keys.into_iter()
                .filter(|k| map_b.get(*k) != map_a.get(*k))
                .cloned(),
        );
    }
    touched.retain(|f| {
        after.fields.get(f) == now.fields.get(f)
            && a.pending_push.get(f) == n.pending_push.get(f)
            && a.base.get(f) == n.base.get(f)
    });
    touched
}

/// Leaves every touched field of the restored link agreed (nothing owed), in an open
/// conflict, or diverged: never owed to the CRM, which would undo the rollback.
fn settle_touched(
    plan: &mut RecordPlan,
    integration_id: &str,
    now: &Record,
    link: &mut Link,
    touched: BTreeSet<String>,
) {
    let app_after = |field: &str| match plan.restore.iter().find(|r| r.field == field) {
        Some(r) => r.before.clone(),
        None => value(now, field),
    };
    for field in touched {
        if link.conflicts.contains_key(&field) {
            link.pending_push.remove(&field);
            continue;
        }
        let app = app_after(&field);
        // The base is what the CRM holds: the run's merges left it there, and a
        // write-back puts it back to its value before the run.
        let crm = link.base.get(&field).cloned().flatten();
        link.pending_push.remove(&field);
        if app == crm {
            link.diverged.remove(&field);
            continue;
        }
        let divergence = crate::record::Divergence {
            app: app.clone(),
            crm: crm.clone(),
            rollback_run_id: String::new(),
        };
        link.diverged.insert(field.clone(), divergence);
        plan.diverged.push(Diverging {
            integration_id: integration_id.to_owned(),
            field,
            app,
            crm,
        });
    }
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

/// The link with every part the run changed, and nothing changed since, put back, except
/// what it knows of the CRM: its fetched properties and modification time, and the base of
/// the fields the run did not write back (`written_back`: the app fields whose pushed
/// values go back to the CRM).
fn restore_link(b: &Link, a: &Link, n: &Link, written_back: &BTreeSet<String>) -> Link {
    let mut base = n.base.clone();
    for field in written_back {
        match restore_value(&b.base.get(field), &a.base.get(field), &n.base.get(field)) {
            Some(v) => base.insert(field.clone(), v.clone()),
            None => base.remove(field),
        };
    }
    // Conflicts the run settled open again; the ones it opened stay open.
    let mut conflicts = restore_map(&b.conflicts, &a.conflicts, &n.conflicts);
    for (field, c) in &n.conflicts {
        conflicts.entry(field.clone()).or_insert_with(|| c.clone());
    }
    Link {
        remote_id: restore_value(&b.remote_id, &a.remote_id, &n.remote_id),
        state: restore_value(&b.state, &a.state, &n.state),
        base,
        remote_updated_at: n.remote_updated_at,
        pending_push: restore_map(&b.pending_push, &a.pending_push, &n.pending_push),
        push_error: restore_value(&b.push_error, &a.push_error, &n.push_error),
        remote: n.remote.clone(),
        conflicts,
        ignored: restore_map(&b.ignored, &a.ignored, &n.ignored),
        diverged: restore_map(&b.diverged, &a.diverged, &n.diverged),
    }
}

/// The CRM properties the run sent, to be written back with the value known before the
/// run; whether they all go back. A record's write-back is all or nothing: when one
/// property changed again since, or its value before the run is unknown (the run was the
/// first to send it), none is written back and all are reported as left as they are, so
/// the link never has to guess which app field a property holds.
fn crm_restore(
    plan: &mut RecordPlan,
    id: &str,
    b: &Link,
    a: &Link,
    n: &Link,
    props: &BTreeSet<String>,
) -> bool {
    let mut properties = Fields::new();
    let mut now_values = Fields::new();
    let mut kept = Vec::new();
    for p in props {
        let (sent, held) = (a.remote.get(p), n.remote.get(p));
        let Some(old) = b.remote.get(p) else {
            kept.push(p.clone());
            continue;
        };
        if sent == Some(old) {
            continue;
        }
        if held != sent {
            kept.push(p.clone());
            continue;
        }
        properties.insert(p.clone(), old.clone());
        now_values.insert(p.clone(), held.cloned().flatten());
    }
    if !kept.is_empty() {
        plan.crm_changed_since.extend(kept);
        plan.crm_changed_since.extend(properties.into_keys());
        return false;
    }
    if !properties.is_empty() {
        plan.crm.push(CrmRestore {
            integration_id: id.to_owned(),
            remote_id: b.remote_id.clone(),
            properties,
            now: now_values,
            fields: Fields::new(),
        });
    }
    true
}
