//! Pipedrive's JSON shapes and their mapping to provider-neutral records.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use syncledger_domain::Entity;

use super::fields::FieldMap;
use crate::types::{Properties, RemoteRecord};

/// `{success, data, additional_data}`, the envelope of every API answer.
#[derive(Debug, Deserialize)]
pub struct Envelope<T, A = Value> {
    pub data: Option<T>,
    #[serde(default = "Option::default")]
    pub additional_data: Option<A>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CursorData {
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct V1Additional {
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Pagination {
    #[serde(default)]
    pub more_items_in_collection: bool,
    #[serde(default)]
    pub next_start: Option<u64>,
}

impl V1Additional {
    /// The `start` of the next page, if there is one.
    pub fn next_start(&self) -> Option<u64> {
        let p = self.pagination.as_ref()?;
        p.more_items_in_collection.then_some(p.next_start).flatten()
    }
}

#[derive(Debug, Deserialize)]
pub struct Me {
    #[serde(default)]
    pub company_id: Option<Value>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SearchData {
    #[serde(default)]
    pub items: Vec<SearchHit>,
}

#[derive(Debug, Deserialize)]
pub struct SearchHit {
    pub item: SearchItem,
}

#[derive(Debug, Deserialize)]
pub struct SearchItem {
    pub id: Value,
}

/// An entry of `/v1/recents`: `{item, id, data}`.
#[derive(Debug, Deserialize)]
pub struct Recent {
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub data: Option<Value>,
}

/// A scalar as text: ids and numbers are rendered, objects give their `value`
/// (addresses, monetary fields) or `id` (owner references in v1).
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => map
            .get("value")
            .or_else(|| map.get("id"))
            .and_then(text)
            .or_else(|| Some(value.to_string())),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(_) => Some(value.to_string()),
    }
}

/// The primary entry of an `emails`/`phones` array, else the first.
fn primary(value: Option<&Value>) -> Option<String> {
    let items = value?.as_array()?;
    let chosen = items
        .iter()
        .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| items.first())?;
    chosen.get("value").and_then(text)
}

/// Accepts RFC 3339 (v2) and `YYYY-MM-DD HH:MM:SS` UTC (v1).
pub fn parse_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let raw = value?.as_str()?.trim();
    DateTime::parse_from_rfc3339(raw)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// A v2 person or organization as a [`RemoteRecord`]; custom fields the
/// catalogue does not know are reported in the error.
pub fn record(entity: Entity, fields: &FieldMap, raw: &Value) -> Result<RemoteRecord, String> {
    let id = raw.get("id").and_then(text).ok_or("a record without id")?;
    let updated_at = parse_time(raw.get("update_time")).ok_or("a record without update_time")?;
    let created_at = parse_time(raw.get("add_time")).unwrap_or(updated_at);
    let mut properties = Properties::new();
    let get = |k: &str| raw.get(k).and_then(text);
    match entity {
        Entity::Contacts => {
            for key in ["name", "first_name", "last_name", "org_id", "owner_id"] {
                properties.insert(key.to_owned(), get(key));
            }
            properties.insert("email".into(), primary(raw.get("emails")));
            properties.insert("phone".into(), primary(raw.get("phones")));
        }
        Entity::Companies => {
            for key in ["name", "address", "owner_id"] {
                properties.insert(key.to_owned(), get(key));
            }
        }
    }
    if let Some(Value::Object(custom)) = raw.get("custom_fields") {
        for (hash, value) in custom {
            let name = fields
                .name_of(hash)
                .ok_or_else(|| format!("unknown custom field {hash}"))?;
            properties.insert(name.to_owned(), text(value));
        }
    }
    Ok(RemoteRecord {
        id,
        properties,
        created_at,
        updated_at,
        archived: raw.get("is_deleted").and_then(Value::as_bool) == Some(true),
    })
}

fn integer(name: &str, value: Option<&String>) -> Result<Value, String> {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(Value::Null),
        Some(v) => v
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("{name} must be a numeric id")),
    }
}

fn contact_list(value: Option<&String>) -> Value {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        // Writing the list replaces it: the pushed value becomes the only, primary one.
        Some(v) => json!([{ "value": v, "primary": true, "label": "work" }]),
        None => json!([]),
    }
}

/// The v2 write body for readable properties; unknown names are an error.
pub fn body(entity: Entity, fields: &FieldMap, properties: &Properties) -> Result<Value, String> {
    let mut out = Map::new();
    let mut custom = Map::new();
    for (name, value) in properties {
        match (entity, name.as_str()) {
            (_, "name") | (Entity::Contacts, "first_name" | "last_name") => {
                out.insert(name.clone(), json!(value));
            }
            (_, "owner_id") | (Entity::Contacts, "org_id") => {
                out.insert(name.clone(), integer(name, value.as_ref())?);
            }
            (Entity::Contacts, "email") => {
                out.insert("emails".into(), contact_list(value.as_ref()));
            }
            (Entity::Contacts, "phone") => {
                out.insert("phones".into(), contact_list(value.as_ref()));
            }
            (Entity::Companies, "address") => {
                out.insert("address".into(), json!({ "value": value }));
            }
            _ => {
                let hash = fields
                    .hash_of(name)
                    .ok_or_else(|| format!("unknown property {name}"))?;
                custom.insert(hash.to_owned(), json!(value));
            }
        }
    }
    if !custom.is_empty() {
        out.insert("custom_fields".into(), Value::Object(custom));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_flatten_to_text() {
        assert_eq!(text(&json!(12)), Some("12".into()));
        assert_eq!(
            text(&json!({"value": "Main St 1"})),
            Some("Main St 1".into())
        );
        assert_eq!(text(&json!({"id": 7, "name": "Ann"})), Some("7".into()));
        assert_eq!(text(&Value::Null), None);
        let emails = json!([{"value": "a@x", "primary": false}, {"value": "b@x", "primary": true}]);
        assert_eq!(primary(Some(&emails)), Some("b@x".into()));
    }

    #[test]
    fn both_timestamp_formats_parse() {
        let v2 = parse_time(Some(&json!("2024-01-01T00:00:05Z")));
        let v1 = parse_time(Some(&json!("2024-01-01 00:00:05")));
        assert!(v2.is_some());
        assert_eq!(v1, v2);
    }

    #[test]
    fn bodies_reject_unknown_properties_and_bad_ids() {
        let map = FieldMap::default();
        let mut props = Properties::new();
        props.insert("org_id".into(), Some("abc".into()));
        assert!(body(Entity::Contacts, &map, &props).is_err());
        props.insert("org_id".into(), Some("5".into()));
        props.insert("email".into(), Some("a@x.io".into()));
        let body = body(Entity::Contacts, &map, &props).unwrap_or_default();
        assert_eq!(body["org_id"], json!(5));
        assert_eq!(body["emails"][0]["value"], json!("a@x.io"));
        props.insert("nope".into(), None);
        assert!(super::body(Entity::Contacts, &map, &props).is_err());
    }
}
