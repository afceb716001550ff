//! Bodies of the `/_sandbox/` control endpoints, shared by every simulator: each has a
//! fixed shape and an unknown key is refused with serde's message, which names it
//! (`unknown field `colour`, expected …`), before anything changes.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::faults::FaultSpec;

/// A control body of a fixed shape (its type denies unknown fields).
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// `POST /_sandbox/faults`: one fault, or a list of them; all or nothing.
pub(crate) fn faults(body: &[u8]) -> Result<Vec<FaultSpec>, String> {
    match parse::<Value>(body)? {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| serde_json::from_value(item).map_err(|e| format!("fault {i}: {e}")))
            .collect(),
        one => serde_json::from_value(one)
            .map(|spec| vec![spec])
            .map_err(|e| e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// An endpoint that takes no parameters: no body, or `{}`; any key is refused.
pub(crate) fn nothing(body: &[u8]) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse::<Nothing>(body).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fault_keys_are_named() {
        let err = faults(br#"{"kind":"status","status":503,"cuont":2}"#).expect_err("refused");
        assert!(err.contains("unknown field `cuont`"), "{err}");
        let err = faults(br#"[{"kind":"slow","millis":5},{"kind":"timeout","hold":1}]"#)
            .expect_err("refused");
        assert!(err.starts_with("fault 1: unknown field `hold`"), "{err}");
        let ok = faults(br#"[{"kind":"partial_batch","fail_every":2,"count":1}]"#);
        assert_eq!(ok.map(|v| v.len()), Ok(1));
    }

    #[test]
    fn parameterless_endpoints_take_nothing_or_an_empty_object() {
        assert_eq!(nothing(b""), Ok(()));
        assert_eq!(nothing(b" {} "), Ok(()));
        let err = nothing(br#"{"scopes":["x"]}"#).expect_err("refused");
        assert!(err.contains("unknown field `scopes`"), "{err}");
    }
}
