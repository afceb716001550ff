//! The audit chain: canonical bytes of an event and the SHA-256 link between rows.
//!
//! `hash = SHA-256(prev_hash_hex || canonical_bytes)`, where the canonical bytes are
//! compact JSON with object keys sorted recursively, so the hash does not depend on how
//! a database or serializer happened to order keys or space the text.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first row of every chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The stored facts of one event that the chain covers.
#[derive(Debug, Clone, Serialize)]
pub struct ChainedEvent<'a> {
    pub position: i64,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// Compact JSON with keys sorted at every depth.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    // Only whole UTF-8 texts are written (serde_json's own output and ASCII punctuation).
    String::from_utf8(out).unwrap_or_default()
}

/// Written straight into `out`, with no copy of the value and no text per scalar: the
/// audit projection hashes every event it applies.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            // serde_json's map iterates in key order unless its `preserve_order` feature is
            // on; sorting an ordered list is cheap, and keeps the form canonical either way.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

/// A string or scalar as compact JSON (as `Value::to_string` writes it).
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Serializing a string, number, boolean or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The canonical form of the event: the object `serde_json::to_value(event)` would give,
/// written with its keys in order (as [`canonical_json`] would), without building that
/// copy of the payload first.
pub fn canonical_bytes(event: &ChainedEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"aggregate_id\":");
    write_json(event.aggregate_id, &mut out);
    out.extend_from_slice(b",\"aggregate_type\":");
    write_json(event.aggregate_type, &mut out);
    out.extend_from_slice(b",\"event_type\":");
    write_json(event.event_type, &mut out);
    out.extend_from_slice(b",\"event_version\":");
    write_json(event.event_version, &mut out);
    out.extend_from_slice(b",\"metadata\":");
    write_canonical(event.metadata, &mut out);
    out.extend_from_slice(b",\"payload\":");
    write_canonical(event.payload, &mut out);
    out.extend_from_slice(b",\"position\":");
    write_json(&event.position, &mut out);
    out.extend_from_slice(b",\"sequence\":");
    write_json(&event.sequence, &mut out);
    out.push(b'}');
    out
}

pub fn chain_hash(prev_hash: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_canonical_form() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":null}}"#)
            .unwrap_or_default();
        let b = json!({"a": {"x": null, "y": [1, {"c": 3, "d": 2}]}, "b": 1});
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&b),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn hash_depends_on_previous_hash_and_bytes() {
        let h1 = chain_hash(GENESIS, b"event");
        assert_eq!(h1.len(), 64);
        assert_ne!(h1, chain_hash(&h1, b"event"));
        assert_ne!(h1, chain_hash(GENESIS, b"evenT"));
    }

    /// The form every stored chain was hashed with (before it was written without
    /// copies): each key and scalar as its own text.
    fn reference_json(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys
                    .into_iter()
                    .map(|k| format!("{}:{}", Value::String(k.clone()), reference_json(&map[k])))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(reference_json).collect();
                format!("[{}]", parts.join(","))
            }
            scalar => scalar.to_string(),
        }
    }

    /// ... of a copy of the event as a value.
    fn reference(event: &ChainedEvent<'_>) -> Vec<u8> {
        reference_json(&serde_json::to_value(event).unwrap_or(Value::Null)).into_bytes()
    }

    /// Any JSON: scalars (text with quotes, escapes and non-ASCII; integers and floats),
    /// arrays and objects, nested.
    fn json() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z\"\\\\\n\u{7f}é𝄞 ]{0,8}".prop_map(Value::String),
        ];
        scalar.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z_\"é]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The hashes of every chain already stored depend on these bytes staying the same.
        #[test]
        fn canonical_bytes_are_those_every_chain_was_hashed_with(
            payload in json(),
            metadata in json(),
            ids in "[a-z0-9\"-]{0,12}",
            position in any::<i64>(),
            sequence in any::<i64>(),
        ) {
            let event = ChainedEvent {
                position,
                aggregate_type: "record",
                aggregate_id: &ids,
                sequence,
                event_type: "FieldsChanged",
                event_version: "1.0",
                payload: &payload,
                metadata: &metadata,
            };
            prop_assert_eq!(canonical_bytes(&event), reference(&event));
            prop_assert_eq!(canonical_json(&payload), reference_json(&payload));
        }

        #[test]
        fn canonical_json_round_trips(keys in proptest::collection::btree_map("[a-z\"\\\\]{0,6}", any::<i64>(), 0..8)) {
            let v = serde_json::to_value(&keys).unwrap_or_default();
            let parsed: Value = serde_json::from_str(&canonical_json(&v)).unwrap_or_default();
            prop_assert_eq!(parsed, v);
        }
    }
}

/// Keys whose values are never shown outside the event store, at any depth.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "ciphertext",
    "nonce",
    "access_token",
    "refresh_token",
    "token",
    "password",
    "api_key",
    "client_secret",
];

/// A copy of an event payload fit for an API response or a bus message: every value under a
/// secret-bearing key is replaced by `"[redacted]"`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) {
                        Value::String("[redacted]".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = json!({"type": "credentials_stored", "secret": {"key_id": "k", "ciphertext": "abc"},
                       "list": [{"password": "p"}], "name": "kept"});
        let r = redact(&v);
        let text = r.to_string();
        assert!(!text.contains("abc") && !text.contains("\"p\""), "{text}");
        assert_eq!(r["name"], "kept");
        assert_eq!(r["secret"], "[redacted]");
    }
}

/// One app field an event changed, with its value before and after (`None`: no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields whose value differs between two states of a record, in field order. A field
/// that is absent and one that holds null both have no value.
pub fn field_changes(
    before: &crate::merge::Fields,
    after: &crate::merge::Fields,
) -> Vec<FieldChange> {
    let value = |f: &crate::merge::Fields, k: &str| f.get(k).cloned().flatten();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter_map(|k| {
            let (b, a) = (value(before, k), value(after, k));
            (b != a).then(|| FieldChange {
                field: k.clone(),
                before: b,
                after: a,
            })
        })
        .collect()
}

#[cfg(test)]
mod change_tests {
    use super::*;
    use crate::merge::Fields;

    fn fields(pairs: &[(&str, Option<&str>)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn changes_name_set_altered_and_cleared_fields_only() {
        let before = fields(&[
            ("a", Some("1")),
            ("b", Some("2")),
            ("c", None),
            ("d", Some("4")),
        ]);
        let after = fields(&[
            ("a", Some("1")),
            ("b", Some("3")),
            ("d", None),
            ("e", Some("5")),
        ]);
        let change = |f: &str, b: Option<&str>, a: Option<&str>| FieldChange {
            field: f.into(),
            before: b.map(Into::into),
            after: a.map(Into::into),
        };
        assert_eq!(
            field_changes(&before, &after),
            [
                change("b", Some("2"), Some("3")),
                change("d", Some("4"), None),
                change("e", None, Some("5")),
            ]
        );
        assert!(field_changes(&after, &after).is_empty());
    }
}
