//! Three-way, field-by-field merge of one record's app side and CRM side against the
//! values both sides last agreed on (the base).
//!
//! For each field:
//! - changed on neither side: nothing to do;
//! - changed on one side only: that side's value wins and goes to the other side —
//!   a one-sided change is never lost, whatever the strategy;
//! - changed on both sides to the same value: already converged;
//! - changed on both sides to different values: a conflict, settled by the field's
//!   "always use" rule if it has one, else by the integration's strategy —
//!   `crm_wins`, `app_wins`, `last_write_wins` (the later modification time; the CRM on
//!   a tie, as the system of record) — or queued for review with `manual_review`.
//!
//! A side that does not mention a field has not changed it. An empty text and a null are
//! the same value (see [`empty_as_none`]): a CRM that stores a cleared field as `""`
//! (HubSpot does) has not changed it. Pure: no clock, no IO.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sync_config::ConflictStrategy;

/// Field values by app field name; `None` is an explicit null.
pub type Fields = BTreeMap<String, Option<String>>;

/// One side of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    App,
    Crm,
}

/// How conflicts are settled for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergePolicy {
    pub strategy: ConflictStrategy,
    /// "Always use" rules: a field listed here is always settled for that side.
    pub always: BTreeMap<String, Side>,
}

/// One side's current values and when that side last modified the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    pub fields: &'a Fields,
    pub modified_at: DateTime<Utc>,
}

/// A field changed on both sides to different values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldConflict {
    pub field: String,
    pub base: Option<String>,
    pub app: Option<String>,
    pub crm: Option<String>,
    /// The side whose value was kept; `None` when queued for manual review.
    pub winner: Option<Side>,
}

/// What the merge decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Values the app side must take.
    pub to_app: Fields,
    /// Values the CRM side must take (to push).
    pub to_crm: Fields,
    /// The new base: every field both sides now agree on, after applying the above.
    /// Queued conflicts keep their old base.
    pub base: Fields,
    pub conflicts: Vec<FieldConflict>,
}

impl MergeOutcome {
    /// Conflicts waiting for a person.
    pub fn queued(&self) -> impl Iterator<Item = &FieldConflict> {
        self.conflicts.iter().filter(|c| c.winner.is_none())
    }
}

/// The one meaning of "empty": `""` and null are the same value. Providers differ in how
/// they store a cleared field (HubSpot answers `""`, Salesforce and Pipedrive `null`), so
/// every comparison between the two sides goes through this; the app's own values keep
/// whatever the app wrote.
pub fn empty_as_none(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Every value of `fields` with empty text read as null.
pub fn normalized(fields: &Fields) -> Fields {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), empty_as_none(v.clone())))
        .collect()
}

fn settle(
    policy: &MergePolicy,
    field: &str,
    app_at: DateTime<Utc>,
    crm_at: DateTime<Utc>,
) -> Option<Side> {
    if let Some(side) = policy.always.get(field) {
        return Some(*side);
    }
    match policy.strategy {
        ConflictStrategy::CrmWins => Some(Side::Crm),
        ConflictStrategy::AppWins => Some(Side::App),
        ConflictStrategy::LastWriteWins if app_at > crm_at => Some(Side::App),
        ConflictStrategy::LastWriteWins => Some(Side::Crm),
        ConflictStrategy::ManualReview => None,
    }
}

/// A value as the sides are compared: empty text read as null (see [`empty_as_none`]),
/// borrowed, so that only what the outcome keeps is copied.
fn compared(value: Option<&Option<String>>) -> Option<&str> {
    value.and_then(|v| v.as_deref()).filter(|v| !v.is_empty())
}

type Side3<'a> = std::iter::Peekable<std::collections::btree_map::Iter<'a, String, Option<String>>>;

/// The next field name of the union of the three sides' (sorted) names, with each side's
/// value of it; `None` when every side is exhausted. One walk of the three maps, in name
/// order, instead of a set of the names and a look-up per name and side.
fn next_field<'a>(
    sides: &mut [Side3<'a>; 3],
) -> Option<(&'a String, [Option<&'a Option<String>>; 3])> {
    let name = sides
        .iter_mut()
        .filter_map(|s| s.peek().map(|e| e.0))
        .min()?;
    let take = |s: &mut Side3<'a>| match s.peek() {
        Some(e) if e.0 == name => s.next().map(|e| e.1),
        _ => None,
    };
    let [b, a, c] = sides;
    Some((name, [take(b), take(a), take(c)]))
}

/// Merges one record. `base` holds the values last synced to both sides.
pub fn merge(
    base: &Fields,
    app: Version<'_>,
    crm: Version<'_>,
    policy: &MergePolicy,
) -> MergeOutcome {
    let mut out = MergeOutcome {
        base: base.clone(),
        ..MergeOutcome::default()
    };
    let owned = |v: Option<&str>| v.map(str::to_owned);
    let mut sides = [
        base.iter().peekable(),
        app.fields.iter().peekable(),
        crm.fields.iter().peekable(),
    ];
    while let Some((name, [b, a, c])) = next_field(&mut sides) {
        let was = compared(b);
        // A side that does not mention the field still holds the base value.
        let a = a.map_or(was, |v| compared(Some(v)));
        let c = c.map_or(was, |v| compared(Some(v)));
        let (app_changed, crm_changed) = (a != was, c != was);
        let agreed = match (app_changed, crm_changed) {
            (false, false) => continue,
            (true, false) => {
                out.to_crm.insert(name.clone(), owned(a));
                a
            }
            (false, true) => {
                out.to_app.insert(name.clone(), owned(c));
                c
            }
            (true, true) if a == c => a,
            (true, true) => {
                let winner = settle(policy, name, app.modified_at, crm.modified_at);
                out.conflicts.push(FieldConflict {
                    field: name.clone(),
                    base: owned(was),
                    app: owned(a),
                    crm: owned(c),
                    winner,
                });
                match winner {
                    Some(Side::App) => {
                        out.to_crm.insert(name.clone(), owned(a));
                        a
                    }
                    Some(Side::Crm) => {
                        out.to_app.insert(name.clone(), owned(c));
                        c
                    }
                    None => continue,
                }
            }
        };
        out.base.insert(name.clone(), owned(agreed));
    }
    out
}

#[cfg(test)]
mod tests;
