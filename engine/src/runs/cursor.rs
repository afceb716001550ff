//! Where a pass resumes: the cursors stored in the run's page events, and where a new
//! pass starts (the previous run's high-water mark, for an incremental pull).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use syncledger_crm::Cursor;
use syncledger_domain::sync_run::{Phase, RunKind, SyncRun};
use syncledger_domain::Entity;

use super::execution::{from_json, Execution};
use super::lookup;
use crate::EngineError;

/// A pull or deletions pass's resume point, stored in the run's page events.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PullCursor {
    /// The provider's cursor of the next page; `None` before the first and after the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Cursor>,
    /// Records modified at or after this instant (inclusive: the boundary overlaps and
    /// the merge deduplicates, so records sharing the last timestamp are never skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The latest modification time seen so far: the next incremental run starts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<DateTime<Utc>>,
    /// The remote ids of the records modified exactly at `high_water` seen so far;
    /// `None` when unknown or more than [`MAX_AT_HIGH_WATER`]. The next incremental
    /// run asks the provider to leave these out of its inclusive boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_high_water: Option<Vec<String>>,
    /// The ids this pass asked the provider to leave out at `since` (fixed for the
    /// pass: every page of one search must ask the same).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
}

/// How many records sharing the last modification time a cursor names; more,
/// and the next run's boundary repeats them (deduplicated, at a few calls' cost).
pub(crate) const MAX_AT_HIGH_WATER: usize = 100;

impl PullCursor {
    /// A fresh pass: from the previous run's high-water mark (incremental), or
    /// from the beginning.
    pub(crate) fn starting(previous: Option<(DateTime<Utc>, Option<Vec<String>>)>) -> Self {
        match previous {
            Some((since, at)) => Self {
                page: None,
                since: Some(since),
                high_water: Some(since),
                seen: at.clone().unwrap_or_default(),
                at_high_water: at,
            },
            None => Self {
                at_high_water: Some(Vec::new()),
                ..Self::default()
            },
        }
    }

    /// Moves the high-water mark past a fetched (not archived) record.
    pub(crate) fn note(&mut self, remote_id: &str, modified: DateTime<Utc>) {
        match self.high_water.cmp(&Some(modified)) {
            std::cmp::Ordering::Less => {
                self.high_water = Some(modified);
                self.at_high_water = Some(vec![remote_id.to_owned()]);
            }
            std::cmp::Ordering::Equal => {
                if let Some(ids) = &mut self.at_high_water {
                    if !ids.iter().any(|id| id == remote_id) {
                        if ids.len() >= MAX_AT_HIGH_WATER {
                            self.at_high_water = None;
                        } else {
                            ids.push(remote_id.to_owned());
                        }
                    }
                }
            }
            std::cmp::Ordering::Greater => {}
        }
    }
}

/// A push pass's resume point: records are pushed in id order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PushCursor {
    pub after: String,
}

/// How far the previous runs are searched for a high-water mark.
const HISTORY: i64 = 50;

impl Execution<'_> {
    /// Where the last finished run left the pass's high-water mark, and which
    /// records it had seen at that instant.
    async fn previous_high_water(
        &self,
        entity: Entity,
        phase: Phase,
    ) -> Result<Option<(chrono::DateTime<Utc>, Option<Vec<String>>)>, EngineError> {
        let runs =
            lookup::finished_runs(&self.services.store.any, &self.run.integration_id, HISTORY)
                .await?;
        // A run of an older version has no kind: it pulled.
        let pulled = |run: &SyncRun| run.kind.is_none_or(RunKind::reads_the_crm);
        for run in runs.iter().filter(|r| pulled(r)) {
            if let Some(cursor) = lookup::ended_pass(run, entity, phase) {
                let c: PullCursor = from_json(cursor)?;
                if let Some(high_water) = c.high_water {
                    return Ok(Some((high_water, c.at_high_water)));
                }
            }
        }
        Ok(None)
    }

    /// The pass's saved cursor, or a fresh one.
    pub(super) async fn pull_cursor(
        &self,
        entity: Entity,
        phase: Phase,
        incremental: bool,
    ) -> Result<Option<PullCursor>, EngineError> {
        match self.run.pass(entity, phase) {
            Some(p) if p.done => Ok(None),
            Some(p) => match &p.cursor {
                Some(c) => Ok(Some(from_json(c)?)),
                None => Ok(Some(PullCursor::default())),
            },
            None => {
                let previous = if !self.run.options.import_historical {
                    // No history: the pass starts at the run's start ("now"), so it reads
                    // only what changes from then on and leaves that as its high water.
                    Some((self.run.queued_at.unwrap_or_else(Utc::now), None))
                } else if incremental {
                    self.previous_high_water(entity, phase).await?
                } else {
                    None
                };
                Ok(Some(PullCursor::starting(previous)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
    }

    #[test]
    fn the_cursor_names_what_it_saw_at_its_high_water_mark() {
        let mut c = PullCursor::starting(None);
        c.note("a", at(5));
        c.note("b", at(9));
        c.note("c", at(9));
        c.note("b", at(9));
        c.note("d", at(7));
        assert_eq!(c.high_water, Some(at(9)));
        assert_eq!(c.at_high_water, Some(vec!["b".to_owned(), "c".to_owned()]));
        // The next pass starts there and asks to leave exactly those out.
        let next = PullCursor::starting(Some((at(9), c.at_high_water.clone())));
        assert_eq!(next.seen, ["b", "c"]);
        assert_eq!(next.since, Some(at(9)));
    }

    #[test]
    fn too_many_at_one_instant_are_forgotten_until_a_later_one() -> serde_json::Result<()> {
        let mut c = PullCursor::starting(None);
        for i in 0..=MAX_AT_HIGH_WATER {
            c.note(&i.to_string(), at(1));
        }
        assert_eq!(c.at_high_water, None, "over the bound: unknown");
        c.note("x", at(1));
        assert_eq!(c.at_high_water, None);
        c.note("later", at(2));
        assert_eq!(c.at_high_water, Some(vec!["later".to_owned()]));
        // An old cursor (before the field existed) knows nothing: nothing is left out.
        let old: PullCursor = serde_json::from_str(r#"{"high_water":"1970-01-01T00:00:00.002Z"}"#)?;
        assert_eq!(old.high_water, Some(at(2)));
        let next = PullCursor::starting(old.high_water.map(|h| (h, old.at_high_water)));
        assert!(next.seen.is_empty());
        Ok(())
    }
}
