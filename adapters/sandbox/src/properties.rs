//! Property definitions per object type, and validation of written values.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::seed::{COLORS, LIFECYCLE, TIERS};
use crate::state::{AppState, ObjectType};

pub struct PropertyDef {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: &'static str,
    pub field_type: &'static str,
    pub group: &'static str,
    pub options: &'static [&'static str],
    pub read_only: bool,
    pub custom: bool,
}

const fn text(name: &'static str, label: &'static str, group: &'static str) -> PropertyDef {
    PropertyDef {
        name,
        label,
        kind: "string",
        field_type: "text",
        group,
        options: &[],
        read_only: false,
        custom: false,
    }
}

const fn number(name: &'static str, label: &'static str, group: &'static str) -> PropertyDef {
    PropertyDef {
        name,
        label,
        kind: "number",
        field_type: "number",
        group,
        options: &[],
        read_only: false,
        custom: false,
    }
}

const fn read_only(name: &'static str, label: &'static str, kind: &'static str) -> PropertyDef {
    let field_type = if matches!(kind.as_bytes(), b"number") {
        "number"
    } else {
        "date"
    };
    PropertyDef {
        name,
        label,
        kind,
        field_type,
        group: "system",
        options: &[],
        read_only: true,
        custom: false,
    }
}

const fn select(
    name: &'static str,
    label: &'static str,
    options: &'static [&'static str],
    custom: bool,
) -> PropertyDef {
    let field_type = if custom { "radio" } else { "select" };
    let group = if custom { "custom" } else { "information" };
    PropertyDef {
        name,
        label,
        kind: "enumeration",
        field_type,
        group,
        options,
        read_only: false,
        custom,
    }
}

const CONTACT: &[PropertyDef] = &[
    text("firstname", "First Name", "contactinformation"),
    text("lastname", "Last Name", "contactinformation"),
    text("email", "Email", "contactinformation"),
    text("phone", "Phone Number", "contactinformation"),
    text("company", "Company Name", "contactinformation"),
    text("jobtitle", "Job Title", "contactinformation"),
    text("city", "City", "contactinformation"),
    select("lifecyclestage", "Lifecycle Stage", LIFECYCLE, false),
    select("favorite_color", "Favorite color", COLORS, true),
    select("customer_tier", "Customer tier", TIERS, true),
    read_only("createdate", "Create Date", "datetime"),
    read_only("lastmodifieddate", "Last Modified Date", "datetime"),
    read_only("hs_object_id", "Record ID", "number"),
];

const COMPANY: &[PropertyDef] = &[
    text("name", "Name", "companyinformation"),
    text("domain", "Company Domain Name", "companyinformation"),
    text("phone", "Phone Number", "companyinformation"),
    text("city", "City", "companyinformation"),
    text("industry", "Industry", "companyinformation"),
    number(
        "numberofemployees",
        "Number of Employees",
        "companyinformation",
    ),
    number("annualrevenue", "Annual Revenue", "companyinformation"),
    select("lifecyclestage", "Lifecycle Stage", LIFECYCLE, false),
    select("customer_tier", "Customer tier", TIERS, true),
    read_only("createdate", "Create Date", "datetime"),
    read_only("hs_lastmodifieddate", "Last Modified Date", "datetime"),
    read_only("hs_object_id", "Record ID", "number"),
];

pub fn definitions(ty: ObjectType) -> &'static [PropertyDef] {
    match ty {
        ObjectType::Contacts => CONTACT,
        ObjectType::Companies => COMPANY,
    }
}

pub fn is_date(name: &str) -> bool {
    matches!(
        name,
        "createdate" | "lastmodifieddate" | "hs_lastmodifieddate"
    )
}

fn as_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks names and enumeration options; read-only properties are ignored, as HubSpot does.
pub fn validate(
    ty: ObjectType,
    input: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, value) in input {
        let Some(def) = definitions(ty).iter().find(|d| d.name == name) else {
            return Err(
                ApiError::validation(format!("Property \"{name}\" does not exist"))
                    .with(json!({"subCategory": "PROPERTY_DOESNT_EXIST"})),
            );
        };
        if def.read_only {
            continue;
        }
        let value = as_string(value);
        if !def.options.is_empty() && !value.is_empty() && !def.options.contains(&value.as_str()) {
            return Err(ApiError::validation(format!(
                "{value} was not one of the allowed options for {name}"
            ))
            .with(json!({"subCategory": "INVALID_OPTION"})));
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn def_json(ty: ObjectType, def: &PropertyDef) -> Value {
    let options: Vec<Value> = def
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| json!({"label": o, "value": o, "displayOrder": i, "hidden": false}))
        .collect();
    json!({
        "name": def.name,
        "label": def.label,
        "type": def.kind,
        "fieldType": def.field_type,
        "groupName": def.group,
        "description": "",
        "options": options,
        "hasUniqueValue": def.name == ty.unique_property(),
        "hubspotDefined": !def.custom,
        "calculated": false,
        "modificationMetadata": {"readOnlyValue": def.read_only, "archivable": def.custom, "readOnlyDefinition": !def.custom},
        "archived": false,
    })
}

pub async fn list(
    State(_): State<AppState>,
    Path(ty): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let results: Vec<Value> = definitions(ty).iter().map(|d| def_json(ty, d)).collect();
    Ok(Json(json!({ "results": results })))
}

pub fn parse_type(raw: &str) -> Result<ObjectType, ApiError> {
    ObjectType::parse(raw)
        .ok_or_else(|| ApiError::validation(format!("Unable to infer object type from: {raw}")))
}
