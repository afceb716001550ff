//! Salesforce's JSON shapes, and their mapping to the provider-neutral types.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::types::{FieldInfo, Properties, RemoteRecord};

/// One entry of an error array.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error_code: String,
}

#[derive(Debug, Deserialize)]
pub struct UserInfo {
    pub organization_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Describe {
    pub fields: Vec<DescribeField>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeField {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default = "yes")]
    pub nillable: bool,
    #[serde(default)]
    pub defaulted_on_create: bool,
}

fn yes() -> bool {
    true
}

impl From<DescribeField> for FieldInfo {
    fn from(f: DescribeField) -> Self {
        FieldInfo {
            // A field the server fills in on create is not the client's to supply.
            required: !f.nillable && f.createable && !f.defaulted_on_create,
            writable: f.updateable || f.createable,
            name: f.name,
            label: f.label,
            field_type: f.kind,
        }
    }
}

/// A page of `/query` results.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    /// How many records the query matches, on every page.
    #[serde(default)]
    pub total_size: Option<u64>,
    pub done: bool,
    #[serde(default)]
    pub next_records_url: Option<String>,
    pub records: Vec<Map<String, Value>>,
}

/// Salesforce writes datetimes as `2024-01-01T00:00:00.000+0000`.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Properties as strings (null stays `None`), without the `attributes` block;
/// timestamps from `SystemModstamp` and `CreatedDate`.
pub fn record(mut fields: Map<String, Value>) -> Result<RemoteRecord, String> {
    fields.remove("attributes");
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let id = text("Id").ok_or("a record without Id")?.to_owned();
    let updated_at = text("SystemModstamp")
        .or(text("LastModifiedDate"))
        .and_then(parse_time)
        .ok_or_else(|| format!("record {id} has no readable SystemModstamp"))?;
    let created_at = text("CreatedDate")
        .and_then(parse_time)
        .unwrap_or(updated_at);
    let archived = fields
        .get("IsDeleted")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let properties: Properties = fields
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (name, value)
        })
        .collect();
    Ok(RemoteRecord {
        id,
        properties,
        created_at,
        updated_at,
        archived,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    #[serde(default)]
    pub deleted_records: Vec<DeletedRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    pub id: String,
    pub deleted_date: String,
}

/// One entry of an sObject Collections response.
#[derive(Debug, Deserialize)]
pub struct SaveResult {
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<SaveError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveError {
    #[serde(default)]
    pub status_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}
