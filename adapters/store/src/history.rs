//! Point-in-time reads: one aggregate as it was at an instant, folded from its events.
//!
//! # The instant an event counts from
//!
//! Its `recorded_at`, in microseconds:
//! - PostgreSQL: the server clock when the transaction that wrote the event began
//!   (`now()`).
//! - SQLite, whose clock has only milliseconds: the `time` of the event's metadata, which
//!   the store stamps as it writes the event (on each attempt of [`crate::Cqrs::execute`],
//!   and in [`crate::append::append`], so a sync run's shared metadata does not carry the
//!   run's start), raised if need be to the previous event's instant (migration 0010).
//!
//! On both backends the instant is taken before the event commits, so an event answered to
//! a client always counts at any instant the client reads afterwards.
//!
//! An event that states its own time (`at`, to the microsecond as the API shows it)
//! counts from that time when it is earlier: it is the time a record shows for the values
//! the event set, so asking as of a value's own timestamp shows that value (inclusive),
//! instead of nothing because the event was recorded a few microseconds later.
//!
//! # As of an instant
//!
//! The state after the longest prefix, in sequence order, of the aggregate's events whose
//! instants are at or before `as_of`. The first event recorded later ends the prefix, even
//! if a later one has an earlier instant: the answer is always a state that existed.
//! No event in the prefix (before the aggregate's creation) is an empty history; an
//! instant in the future gives every event, i.e. the current state.

use crate::feed::{lite_row, pg_row, StoredEvent};
use crate::{EventPool, Store};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use syncledger_domain::Aggregate;

const PG_AS_OF: &str = "
SELECT transaction_id::text AS tx, global_position, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload::text AS payload, metadata::text AS metadata, recorded_at
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
 ORDER BY sequence";

const LITE_AS_OF: &str = "
SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version,
       payload, metadata, recorded_at
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2
 ORDER BY sequence";

impl Store {
    /// The aggregate's events that make its state as of `as_of` (see the module's rule).
    pub async fn events_as_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let events = match &self.events {
            EventPool::Postgres(pool) => {
                let rows = sqlx::query(PG_AS_OF)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(pg_row)
                    .collect::<Result<Vec<_>, _>>()?
            }
            EventPool::Sqlite(pool) => {
                let rows = sqlx::query(LITE_AS_OF)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter()
                    .map(lite_row)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(prefix(
            events
                .into_iter()
                .filter(|e| counts_from(e) <= as_of)
                .collect(),
        ))
    }
}

/// The instant an event counts from: when it was recorded, or the time it states
/// (`at`, truncated to the microsecond) when that is earlier.
pub fn counts_from(event: &StoredEvent) -> DateTime<Utc> {
    let stated = event
        .payload
        .get("at")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6));
    stated.map_or(event.recorded_at, |t| t.min(event.recorded_at))
}

/// The events up to the first missing sequence: sequences run 1, 2, 3… and an event
/// recorded after the instant leaves a gap.
fn prefix(mut events: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let end = events
        .iter()
        .zip(1..)
        .position(|(e, n)| e.sequence != n)
        .unwrap_or(events.len());
    events.truncate(end);
    events
}

/// The aggregate's state after `events`, evolved by its own `apply`.
pub fn fold<A: Aggregate>(events: &[StoredEvent]) -> Result<A, serde_json::Error> {
    let mut state = A::default();
    for e in events {
        state.apply(&A::Event::deserialize(&e.payload)?);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Position;

    fn event(sequence: i64) -> StoredEvent {
        StoredEvent {
            position: Position::START,
            aggregate_type: "t".into(),
            aggregate_id: "a".into(),
            sequence,
            event_type: "E".into(),
            event_version: "1".into(),
            payload: serde_json::Value::Null,
            metadata: serde_json::Value::Null,
            recorded_at: DateTime::<Utc>::MIN_UTC,
        }
    }

    fn sequences(events: &[StoredEvent]) -> Vec<i64> {
        events.iter().map(|e| e.sequence).collect()
    }

    #[test]
    fn the_prefix_ends_at_the_first_event_recorded_later() {
        let all = |s: &[i64]| s.iter().copied().map(event).collect::<Vec<_>>();
        assert_eq!(sequences(&prefix(all(&[1, 2, 3]))), [1, 2, 3]);
        assert_eq!(sequences(&prefix(all(&[1, 2, 4, 5]))), [1, 2]);
        assert_eq!(sequences(&prefix(all(&[2, 3]))), Vec::<i64>::new());
        assert_eq!(sequences(&prefix(all(&[]))), Vec::<i64>::new());
    }

    #[test]
    fn an_event_counts_from_its_own_time_when_that_is_earlier() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let mut e = event(1);
        e.recorded_at = at("2024-05-06T07:08:09.123500Z");
        e.payload = serde_json::json!({"type": "x", "at": "2024-05-06T07:08:09.123456789Z"});
        assert_eq!(counts_from(&e), at("2024-05-06T07:08:09.123456Z"));
        e.payload = serde_json::json!({"at": "2024-05-06T07:08:10Z"});
        assert_eq!(counts_from(&e), e.recorded_at);
        e.payload = serde_json::json!({"at": 5});
        assert_eq!(counts_from(&e), e.recorded_at);
    }
}
