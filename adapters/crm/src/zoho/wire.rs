//! Zoho CRM v8 bodies: list and deleted-records pages, field metadata, write results,
//! error bodies and token responses. Everything here is provider input: nothing
//! panics on it, and a value of an unexpected shape becomes `Malformed`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::types::{FieldInfo, Properties, RemoteRecord};

/// `info` of a list page (OAS `Info`).
#[derive(Debug, Default, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub more_records: bool,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `GET /crm/v8/{module}` and `/{module}/deleted`.
#[derive(Debug, Deserialize)]
pub struct ListPage {
    #[serde(default)]
    pub data: Vec<Value>,
    #[serde(default)]
    pub info: Info,
}

/// One entry of `/{module}/deleted` (OAS `Deleted_Record`).
#[derive(Debug, Deserialize)]
pub struct Deleted {
    pub id: Value,
    #[serde(default)]
    pub deleted_time: Option<String>,
}

/// `GET /crm/v8/settings/fields?module=…`.
#[derive(Debug, Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub fields: Vec<FieldMeta>,
}

#[derive(Debug, Deserialize)]
pub struct FieldMeta {
    pub api_name: String,
    #[serde(default)]
    pub field_label: Option<String>,
    #[serde(default)]
    pub display_label: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub system_mandatory: bool,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub field_read_only: bool,
}

impl FieldMeta {
    pub fn info(&self) -> FieldInfo {
        FieldInfo {
            name: self.api_name.clone(),
            label: self
                .field_label
                .clone()
                .or_else(|| self.display_label.clone())
                .unwrap_or_else(|| self.api_name.clone()),
            field_type: self.data_type.clone().unwrap_or_else(|| "text".into()),
            required: self.system_mandatory,
            writable: !self.read_only && !self.field_read_only,
        }
    }
}

/// `GET /crm/v8/org`.
#[derive(Debug, Deserialize)]
pub struct Org {
    #[serde(default)]
    pub org: Vec<OrgEntry>,
}

#[derive(Debug, Deserialize)]
pub struct OrgEntry {
    pub id: Value,
    #[serde(default)]
    pub primary_email: Option<String>,
}

/// The results of a write: one per record, in input order.
#[derive(Debug, Deserialize)]
pub struct WriteResults {
    pub data: Vec<WriteResult>,
}

#[derive(Debug, Deserialize)]
pub struct WriteResult {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<Value>,
}

impl WriteResult {
    /// The written record's id, or the provider's reason it was refused.
    pub fn outcome(&self) -> Result<String, String> {
        let success = self.status.as_deref() == Some("success");
        let id = self
            .details
            .as_ref()
            .and_then(|d| d.get("id"))
            .and_then(text);
        match (success, id) {
            (true, Some(id)) => Ok(id),
            (true, None) => Err("the provider reported success without a record id".into()),
            (false, _) => {
                let code = self.code.as_deref().unwrap_or("ERROR");
                let message = self.message.as_deref().unwrap_or("refused");
                let field = self
                    .details
                    .as_ref()
                    .and_then(|d| d.get("api_name"))
                    .and_then(Value::as_str);
                Err(match field {
                    Some(field) => format!("{code}: {message} ({field})"),
                    None => format!("{code}: {message}"),
                })
            }
        }
    }
}

/// Zoho's error body: `{"code": "INVALID_TOKEN", "details": {}, "message": …, "status": "error"}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The accounts server's token response. An `error` member means no token, whatever
/// the HTTP status (Zoho answers throttling with 200 and `"error": "Access Denied"`).
#[derive(Debug, Default, Deserialize)]
pub struct TokenBody {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<Value>,
    #[serde(default)]
    pub api_domain: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A string or number as text (ids are numeric strings, sometimes numbers).
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Modified_Time` and friends: ISO 8601 with an offset.
pub fn time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let raw = value?.as_str()?;
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A field value as text: lookups (`{"name", "id"}`) by their name, lists and other
/// objects as JSON, null as unset.
fn property(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Object(map) => match map.get("name") {
            Some(Value::String(name)) => Some(name.clone()),
            _ => Some(value.to_string()),
        },
        Value::Array(_) => Some(value.to_string()),
    }
}

/// One listed record.
pub fn record(raw: &Value) -> Result<RemoteRecord, String> {
    let object = raw.as_object().ok_or("a record is not an object")?;
    let id = object
        .get("id")
        .and_then(text)
        .ok_or("a record without an id")?;
    let updated_at = time(object.get("Modified_Time")).ok_or("a record without Modified_Time")?;
    let created_at = time(object.get("Created_Time")).unwrap_or(updated_at);
    let properties: Properties = object
        .iter()
        .filter(|(name, _)| name.as_str() != "id")
        .map(|(name, value)| (name.clone(), property(value)))
        .collect();
    Ok(RemoteRecord {
        id,
        properties,
        created_at,
        updated_at,
        archived: false,
    })
}

/// One deleted record.
pub fn deleted(raw: Deleted) -> Result<RemoteRecord, String> {
    let id = text(&raw.id).ok_or("a deleted record without an id")?;
    let at = raw
        .deleted_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or("a deleted record without deleted_time")?;
    Ok(RemoteRecord {
        id,
        properties: Properties::new(),
        created_at: at,
        updated_at: at,
        archived: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_flatten_lookups_and_keep_their_times() {
        let raw = json!({"id": "4150868000000224005", "Last_Name": "Lovelace", "Email": null,
            "Account_Name": {"name": "Analytical", "id": "41"}, "Tag": [],
            "Modified_Time": "2019-07-25T15:26:49+05:30", "Created_Time": "2019-07-25T15:26:49+05:30"});
        let record = record(&raw).expect("a record");
        assert_eq!(record.id, "4150868000000224005");
        assert_eq!(
            record.properties["Account_Name"].as_deref(),
            Some("Analytical")
        );
        assert_eq!(record.properties["Email"], None);
        assert_eq!(record.updated_at.to_rfc3339(), "2019-07-25T09:56:49+00:00");
        for hostile in [
            json!(7),
            json!({"id": "1"}),
            json!({"id": {}, "Modified_Time": "x"}),
        ] {
            assert!(super::record(&hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn write_results_say_why_a_record_was_refused() {
        let ok: WriteResult =
            serde_json::from_value(json!({"code": "SUCCESS", "status": "success",
            "details": {"id": "5"}}))
            .expect("parses");
        assert_eq!(ok.outcome(), Ok("5".into()));
        let refused: WriteResult = serde_json::from_value(json!({"code": "MANDATORY_NOT_FOUND",
            "status": "error", "message": "required field not found",
            "details": {"api_name": "Last_Name"}}))
        .expect("parses");
        assert_eq!(
            refused.outcome(),
            Err("MANDATORY_NOT_FOUND: required field not found (Last_Name)".into())
        );
    }
}
