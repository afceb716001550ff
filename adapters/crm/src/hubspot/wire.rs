//! HubSpot's JSON shapes, and their mapping to the provider-neutral types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::types::{FieldInfo, Properties, RemoteRecord};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub properties: Properties,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub archived: bool,
}

impl From<Record> for RemoteRecord {
    fn from(r: Record) -> Self {
        RemoteRecord {
            id: r.id,
            properties: r.properties,
            created_at: r.created_at,
            updated_at: r.updated_at,
            archived: r.archived,
        }
    }
}

/// The response of list and search calls.
#[derive(Debug, Deserialize)]
pub struct Collection {
    pub results: Vec<Record>,
    #[serde(default)]
    pub paging: Option<Paging>,
    /// Search responses: how many records match (the list endpoint has none).
    #[serde(default)]
    pub total: Option<u64>,
}

impl Collection {
    pub fn next_after(&self) -> Option<String> {
        Some(self.paging.as_ref()?.next.as_ref()?.after.clone())
    }
}

#[derive(Debug, Deserialize)]
pub struct Paging {
    #[serde(default)]
    pub next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
pub struct NextPage {
    pub after: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest<'a> {
    pub filter_groups: Vec<FilterGroup<'a>>,
    pub sorts: [Sort<'a>; 1],
    pub properties: &'a [String],
    pub limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct FilterGroup<'a> {
    pub filters: Vec<Filter<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter<'a> {
    pub property_name: &'a str,
    pub operator: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<&'a [String]>,
}

impl<'a> Filter<'a> {
    pub fn compare(property_name: &'a str, operator: &'a str, value: String) -> Self {
        Self {
            property_name,
            operator,
            value: Some(value),
            values: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort<'a> {
    pub property_name: &'a str,
    pub direction: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct PropertiesResponse {
    pub results: Vec<Property>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub calculated: bool,
    #[serde(default)]
    pub modification_metadata: Option<ModificationMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModificationMetadata {
    #[serde(default)]
    pub read_only_value: bool,
}

impl From<Property> for FieldInfo {
    fn from(p: Property) -> Self {
        let read_only = p.calculated
            || p.modification_metadata
                .as_ref()
                .is_some_and(|m| m.read_only_value);
        FieldInfo {
            name: p.name,
            label: p.label,
            field_type: p.kind,
            // HubSpot has no required properties at the API level.
            required: false,
            writable: !read_only,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenInfo {
    pub hub_id: u64,
    #[serde(default)]
    pub user: Option<String>,
}

/// The response of batch writes (200, 201 and 207).
#[derive(Debug, Default, Deserialize)]
pub struct BatchResponse {
    #[serde(default)]
    pub results: Vec<BatchRecord>,
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub id: String,
    #[serde(default)]
    pub properties: Properties,
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BatchError {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub context: Option<ErrorContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorContext {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub object_write_trace_id: Vec<String>,
}
