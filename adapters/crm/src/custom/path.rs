//! The JSON path subset custom specs use: dotted member names with optional array
//! indexes, e.g. `data.items`, `attributes.email`, `emails[0].value`. An empty
//! path or `$` is the document itself.
//!
//! A deliberately small language instead of full RFC 9535: every path names at
//! most one value, so a spec can neither fan out nor filter, and evaluation is a
//! plain walk that cannot panic or run long on any input.

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `a.b[0].c`; the error says what is wrong, for spec validation.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let text = text.trim();
        let text = text
            .strip_prefix("$.")
            .or_else(|| (text == "$").then_some(""))
            .unwrap_or(text);
        let mut steps = Vec::new();
        if text.is_empty() {
            return Ok(JsonPath { steps });
        }
        for part in text.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            if name.is_empty() && rest.is_empty() {
                return Err(format!("empty segment in `{text}`"));
            }
            if !name.is_empty() {
                if name.contains(']') {
                    return Err(format!("unbalanced `]` in `{text}`"));
                }
                steps.push(Step::Key(name.to_owned()));
            }
            while !rest.is_empty() {
                let inner = rest
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .ok_or_else(|| format!("malformed index in `{text}`"))?;
                let index = inner
                    .0
                    .parse::<usize>()
                    .map_err(|_| format!("index `{}` is not a number in `{text}`", inner.0))?;
                steps.push(Step::Index(index));
                rest = inner.1;
            }
        }
        Ok(JsonPath { steps })
    }

    /// The value the path names, if present.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.steps.iter().try_fold(value, |at, step| match step {
            Step::Key(k) => at.as_object()?.get(k),
            Step::Index(i) => at.as_array()?.get(*i),
        })
    }

    /// Whether the path has only member names (and can therefore be written).
    pub fn is_writable(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| matches!(s, Step::Key(_)))
    }

    /// Sets `value` at the path inside `root`, creating objects on the way.
    /// Returns `false` when the path is not writable or crosses a non-object.
    pub fn set(&self, root: &mut Map<String, Value>, value: Value) -> bool {
        let Some((last, parents)) = self.steps.split_last() else {
            return false;
        };
        let mut at = root;
        for step in parents {
            let Step::Key(key) = step else { return false };
            let entry = at
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else {
                return false;
            };
            at = next;
        }
        match last {
            Step::Key(key) => {
                at.insert(key.clone(), value);
                true
            }
            Step::Index(_) => false,
        }
    }
}

/// A scalar as the string the engine stores; `None` for null, objects and arrays.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_members_and_indexes() {
        let doc = json!({"data": {"items": [{"emails": [{"value": "a@b"}]}]}});
        let path = JsonPath::parse("data.items[0].emails[0].value");
        assert_eq!(
            path.ok().and_then(|p| p.get(&doc).cloned()),
            Some(json!("a@b"))
        );
        assert_eq!(
            JsonPath::parse("$").ok().and_then(|p| p.get(&doc).cloned()),
            Some(doc.clone())
        );
        assert!(JsonPath::parse("data.missing[3]")
            .ok()
            .and_then(|p| p.get(&doc).cloned())
            .is_none());
    }

    #[test]
    fn rejects_malformed_paths_without_panicking() {
        for bad in ["a..b", "a[", "a[x]", "a]b", "[", "a[1", "."] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sets_nested_members() {
        let mut root = Map::new();
        let ok = JsonPath::parse("attributes.email")
            .map(|p| p.set(&mut root, json!("x@y")))
            .unwrap_or(false);
        assert!(ok);
        assert_eq!(Value::Object(root), json!({"attributes": {"email": "x@y"}}));
    }
}
