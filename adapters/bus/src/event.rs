//! The shape of an event on the bus.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncledger_store::{Metadata, Position, StoredEvent};

/// A committed event as published to subscribers. The payload is redacted: no secret-bearing
/// key of the stored payload leaves the process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusEvent {
    /// The global position (unique). Also the `Nats-Msg-Id` of the NATS message.
    pub position: i64,
    /// The commit transaction id (PostgreSQL); 0 on SQLite.
    #[serde(default)]
    pub tx: i64,
    pub workspace_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    #[serde(default)]
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    pub payload: Value,
}

impl BusEvent {
    pub fn from_stored(ev: &StoredEvent) -> BusEvent {
        let meta = Metadata::from_json(&ev.metadata);
        BusEvent {
            position: ev.position.pos,
            tx: ev.position.tx,
            workspace_id: ev.workspace_id().to_string(),
            aggregate_type: ev.aggregate_type.clone(),
            aggregate_id: ev.aggregate_id.clone(),
            sequence: ev.sequence,
            event_type: ev.event_type.clone(),
            event_version: ev.event_version.clone(),
            recorded_at: ev.recorded_at,
            actor: meta.actor,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            payload: syncledger_domain::audit::redact(&ev.payload),
        }
    }

    /// The event's id on an event stream (SSE `id`): its place in the global order, as
    /// `pos` on SQLite (where `tx` is 0) and `tx:pos` on PostgreSQL, where the order is by
    /// commit transaction first. [`parse_stream_id`] reads it back for a resume.
    pub fn stream_id(&self) -> String {
        if self.tx == 0 {
            self.position.to_string()
        } else {
            format!("{}:{}", self.tx, self.position)
        }
    }

    /// The event's place in the global order.
    pub fn feed_position(&self) -> Position {
        Position {
            tx: self.tx,
            pos: self.position,
        }
    }
}

/// The place in the global order a stream id ([`BusEvent::stream_id`]) names; `None`
/// for anything else (a client's `Last-Event-ID` is input like any other).
pub fn parse_stream_id(id: &str) -> Option<Position> {
    let id = id.trim();
    let (tx, pos) = match id.split_once(':') {
        Some((tx, pos)) => (tx.parse::<i64>().ok()?, pos.parse::<i64>().ok()?),
        None => (0, id.parse::<i64>().ok()?),
    };
    (tx >= 0 && pos >= 0).then_some(Position { tx, pos })
}

/// One NATS subject token made from free text: `.`, `*`, `>`, whitespace and control
/// characters become `_`; an empty string becomes `_`.
pub fn subject_token(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> StoredEvent {
        StoredEvent {
            position: Position { tx: 7, pos: 42 },
            aggregate_type: "integration".into(),
            aggregate_id: "int-1".into(),
            sequence: 3,
            event_type: "CredentialsStored".into(),
            event_version: "1".into(),
            payload: json!({"CredentialsStored": {"secret": {"ciphertext": "abc", "key_id": "k"},
                            "access_token": "tok", "name": "kept"}}),
            metadata: json!({"actor": "tok-1", "workspace_id": "ws-1", "correlation_id": "c-1",
                             "causation_id": "e-0", "time": "2024-01-01T00:00:00Z"}),
            recorded_at: DateTime::parse_from_rfc3339("2024-01-01T00:00:01Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn from_stored_copies_metadata_and_redacts_payload() {
        let ev = BusEvent::from_stored(&stored());
        assert_eq!(ev.position, 42);
        assert_eq!(ev.tx, 7);
        assert_eq!(ev.workspace_id, "ws-1");
        assert_eq!(ev.actor, "tok-1");
        assert_eq!(ev.correlation_id, "c-1");
        assert_eq!(ev.causation_id.as_deref(), Some("e-0"));
        assert_eq!(ev.feed_position(), Position { tx: 7, pos: 42 });
        let text = serde_json::to_string(&ev).unwrap_or_default();
        assert!(!text.contains("abc"), "{text}");
        assert!(!text.contains("\"tok\""), "{text}");
        assert!(text.contains("kept"), "{text}");
        assert!(
            text.contains("\"recorded_at\":\"2024-01-01T00:00:01Z\""),
            "{text}"
        );
    }

    #[test]
    fn bus_event_round_trips_through_json() {
        let ev = BusEvent::from_stored(&stored());
        let bytes = serde_json::to_vec(&ev).unwrap_or_default();
        let back: BusEvent = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, ev);
    }

    #[test]
    fn subject_tokens_are_sanitized() {
        assert_eq!(subject_token(""), "_");
        assert_eq!(subject_token("ws-1"), "ws-1");
        assert_eq!(subject_token("a.b*c>d e\tf\ng"), "a_b_c_d_e_f_g");
        assert_eq!(subject_token("écrit"), "écrit");
    }
}

#[cfg(test)]
mod stream_id_tests {
    use super::*;

    #[test]
    fn stream_ids_read_back_and_refuse_anything_else() {
        assert_eq!(parse_stream_id("42"), Some(Position { tx: 0, pos: 42 }));
        assert_eq!(parse_stream_id("7:42"), Some(Position { tx: 7, pos: 42 }));
        for bad in [
            "",
            "x",
            "-1",
            "1:",
            ":2",
            "1:2:3",
            "1.5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_stream_id(bad), None, "{bad:?}");
        }
    }
}
