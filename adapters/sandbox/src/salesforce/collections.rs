//! sObject Collections: create, update, upsert and delete up to 200 records a
//! call, with per-record results in request order and `allOrNone` rollback.

use std::collections::{BTreeMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{parse_json, SfError};
use super::schema::{Field, SObject};
use super::sobjects::object;
use super::state::{AppState, SalesforceData};

const MAX_RECORDS: usize = 200;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    all_or_none: bool,
    #[serde(default)]
    records: Vec<Map<String, Value>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Create,
    Update,
    Upsert(SObject, &'static Field),
}

/// A record error: `{statusCode, message, fields}`.
struct Failure {
    code: &'static str,
    message: String,
    fields: Vec<String>,
}

fn fail(code: &'static str, message: impl Into<String>, fields: &[&str]) -> Failure {
    Failure {
        code,
        message: message.into(),
        fields: fields.iter().map(|f| (*f).to_string()).collect(),
    }
}

/// What one valid input will do.
struct Plan {
    object: SObject,
    existing: Option<String>,
    fields: BTreeMap<String, String>,
}

struct Outcome {
    id: Option<String>,
    created: Option<bool>,
    result: Result<(), Failure>,
}

fn too_many(count: usize) -> Result<(), SfError> {
    if count > MAX_RECORDS {
        return Err(SfError::bad_request(
            "EXCEEDED_ID_LIMIT",
            format!("record limit reached. cannot submit more than {MAX_RECORDS} records into this call"),
        ));
    }
    Ok(())
}

pub async fn create(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, SfError> {
    write(&s, Kind::Create, &body)
}

pub async fn update(State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, SfError> {
    write(&s, Kind::Update, &body)
}

pub async fn upsert(
    State(s): State<AppState>,
    Path((name, field)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let key = object.external_id_field(&field).ok_or_else(|| {
        SfError::bad_request(
            "INVALID_FIELD",
            format!(
                "Field name provided, {field} is not an External ID or indexed field for {}",
                object.name()
            ),
        )
    })?;
    write(&s, Kind::Upsert(object, key), &body)
}

fn write(s: &AppState, kind: Kind, body: &[u8]) -> Result<Json<Value>, SfError> {
    let body: Body = parse_json(body)?;
    too_many(body.records.len())?;
    let mut inner = s.lock();
    let fail_every = inner.faults.take_partial();
    let mut seen = HashSet::new();
    let plans: Vec<(Option<String>, Result<Plan, Failure>)> = body
        .records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let id = record.get("id").and_then(Value::as_str).map(String::from);
            if fail_every.is_some_and(|n| (i + 1) % n == 0) {
                let failure = fail(
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred (injected fault).",
                    &[],
                );
                return (id, Err(failure));
            }
            (id, plan(&inner, kind, record, &mut seen))
        })
        .collect();
    let any_failed = plans.iter().any(|(_, p)| p.is_err());
    let outcomes: Vec<Outcome> = plans
        .into_iter()
        .map(|(id, plan)| match plan {
            Err(failure) => Outcome {
                id: id.filter(|_| matches!(kind, Kind::Update)),
                created: None,
                result: Err(failure),
            },
            Ok(plan) if body.all_or_none && any_failed => Outcome {
                id: plan.existing,
                created: None,
                result: Err(rolled_back()),
            },
            Ok(plan) => apply(&mut inner, plan),
        })
        .collect();
    let upsert = matches!(kind, Kind::Upsert(..));
    Ok(Json(Value::Array(
        outcomes.into_iter().map(|o| render(o, upsert)).collect(),
    )))
}

fn rolled_back() -> Failure {
    fail(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
        &[],
    )
}

fn apply(inner: &mut SalesforceData, plan: Plan) -> Outcome {
    match plan.existing {
        Some(id) => {
            inner.update(plan.object, &id, plan.fields);
            Outcome {
                id: Some(id),
                created: Some(false),
                result: Ok(()),
            }
        }
        None => {
            let record = inner.create(plan.object, plan.fields);
            Outcome {
                id: Some(record.id),
                created: Some(true),
                result: Ok(()),
            }
        }
    }
}

fn render(outcome: Outcome, upsert: bool) -> Value {
    let errors = match &outcome.result {
        Ok(()) => json!([]),
        Err(f) => json!([{ "statusCode": f.code, "message": f.message, "fields": f.fields }]),
    };
    let mut out = json!({ "success": outcome.result.is_ok(), "errors": errors });
    if let Some(id) = outcome.id {
        out["id"] = json!(id);
    }
    if upsert {
        out["created"] = json!(outcome.created.unwrap_or(false));
    }
    out
}

/// Validates one input and decides whether it creates or updates.
fn plan(
    inner: &SalesforceData,
    kind: Kind,
    record: &Map<String, Value>,
    seen: &mut HashSet<String>,
) -> Result<Plan, Failure> {
    let declared = record
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str);
    let object = match (kind, declared) {
        (Kind::Upsert(object, _), None) => object,
        (Kind::Upsert(object, _), Some(t)) if SObject::parse(t) == Some(object) => object,
        (Kind::Upsert(..), Some(t)) => {
            return Err(fail(
                "INVALID_TYPE",
                format!("Wrong sObject type {t} for this upsert"),
                &[],
            ))
        }
        (_, Some(t)) => SObject::parse(t).ok_or_else(|| {
            fail(
                "INVALID_TYPE",
                format!("sObject type '{t}' is not supported."),
                &[],
            )
        })?,
        (_, None) => {
            return Err(fail(
                "INVALID_TYPE",
                "Must send a concrete entity type.",
                &[],
            ))
        }
    };
    let fields = field_values(object, record, kind)?;
    let existing = match kind {
        Kind::Create => {
            if record.contains_key("id") || record.contains_key("Id") {
                return Err(fail(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "cannot specify Id in an insert call",
                    &["Id"],
                ));
            }
            None
        }
        Kind::Update => {
            let id = record.get("id").and_then(Value::as_str).unwrap_or("");
            match inner.get(object, id) {
                Some(r) if r.deleted_ms.is_none() => Some(id.to_string()),
                Some(_) => return Err(fail("ENTITY_IS_DELETED", "entity is deleted", &[])),
                None if id.is_empty() => {
                    return Err(fail(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call",
                        &["Id"],
                    ))
                }
                None => {
                    return Err(fail(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &[],
                    ))
                }
            }
        }
        Kind::Upsert(_, key) => {
            let value = record_text(record, key.name).filter(|v| !v.is_empty());
            let Some(value) = value else {
                return Err(fail(
                    "MISSING_ARGUMENT",
                    format!("{} not specified", key.name),
                    &[key.name],
                ));
            };
            if !seen.insert(value.to_lowercase()) {
                return Err(fail(
                    "DUPLICATE_VALUE",
                    "Duplicate external id specified",
                    &[key.name],
                ));
            }
            if key.name == "Id" {
                Some(value).filter(|id| {
                    inner
                        .get(object, id)
                        .is_some_and(|r| r.deleted_ms.is_none())
                })
            } else {
                let found = inner.find_by(object, key.name, &value);
                if found.len() > 1 {
                    return Err(fail(
                        "DUPLICATE_EXTERNAL_ID",
                        format!("{} matches more than one record", key.name),
                        &[key.name],
                    ));
                }
                found.into_iter().next()
            }
        }
    };
    let required = object.required_field();
    let missing = match &existing {
        None => fields.get(required).is_none_or(String::is_empty),
        Some(_) => fields.get(required).is_some_and(String::is_empty),
    };
    if missing {
        return Err(fail(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{required}]"),
            &[required],
        ));
    }
    Ok(Plan {
        object,
        existing,
        fields,
    })
}

fn record_text(record: &Map<String, Value>, name: &str) -> Option<String> {
    record
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| text(v))
}

/// Values as stored: null clears a field (empty string), scalars become text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        _ => None,
    }
}

/// Checks every given field exists, is writable and holds a valid value;
/// returns them under their canonical names.
fn field_values(
    object: SObject,
    record: &Map<String, Value>,
    kind: Kind,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for (name, value) in record {
        if name == "attributes"
            || (name.eq_ignore_ascii_case("id") && !matches!(kind, Kind::Create))
        {
            continue;
        }
        let Some(field) = object.field(name) else {
            return Err(fail(
                "INVALID_FIELD",
                format!(
                    "No such column '{name}' on sobject of type {}",
                    object.name()
                ),
                &[name],
            ));
        };
        if !field.writable {
            return Err(fail(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!("Unable to create/update fields: {}.", field.name),
                &[field.name],
            ));
        }
        let Some(value) = text(value) else {
            return Err(fail(
                "JSON_PARSER_ERROR",
                format!("Cannot deserialize value of field {}", field.name),
                &[field.name],
            ));
        };
        if field.kind == "email" && !value.is_empty() && !valid_email(&value) {
            return Err(fail(
                "INVALID_EMAIL_ADDRESS",
                format!("Email: invalid email address: {value}"),
                &[field.name],
            ));
        }
        if u32::try_from(value.chars().count()).unwrap_or(u32::MAX) > field.length {
            return Err(fail(
                "STRING_TOO_LONG",
                format!("{}: data value too large", field.label),
                &[field.name],
            ));
        }
        out.insert(field.name.to_string(), value);
    }
    Ok(out)
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces.
fn valid_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.contains(char::is_whitespace)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteParams {
    #[serde(default)]
    ids: String,
    #[serde(default)]
    all_or_none: bool,
}

/// `DELETE /composite/sobjects?ids=..&allOrNone=`.
pub async fn delete(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SfError> {
    let params: DeleteParams = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| SfError::bad_request("INVALID_QUERY_FILTER_OPERATOR", e.to_string()))?;
    let ids: Vec<&str> = params
        .ids
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    too_many(ids.len())?;
    let mut inner = s.lock();
    let target = |inner: &SalesforceData, id: &str| -> Result<SObject, Failure> {
        let object = [SObject::Account, SObject::Contact]
            .into_iter()
            .find(|o| id.starts_with(o.key_prefix()))
            .ok_or_else(|| fail("MALFORMED_ID", format!("malformed id {id}"), &[]))?;
        match inner.get(object, id) {
            Some(r) if r.deleted_ms.is_none() => Ok(object),
            Some(_) => Err(fail("ENTITY_IS_DELETED", "entity is deleted", &[])),
            None => Err(fail(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            )),
        }
    };
    let checked: Vec<(String, Result<SObject, Failure>)> = ids
        .iter()
        .map(|id| (id.to_string(), target(&inner, id)))
        .collect();
    let any_failed = checked.iter().any(|(_, r)| r.is_err());
    let outcomes = checked.into_iter().map(|(id, result)| {
        let result = match result {
            Ok(_) if params.all_or_none && any_failed => Err(rolled_back()),
            Ok(object) => {
                inner.delete(object, &id);
                Ok(())
            }
            Err(f) => Err(f),
        };
        Outcome {
            id: Some(id),
            created: None,
            result,
        }
    });
    let rendered: Vec<Value> = outcomes.map(|o| render(o, false)).collect();
    Ok(Json(Value::Array(rendered)))
}

#[derive(Deserialize)]
struct RetrieveParams {
    #[serde(default)]
    ids: String,
    #[serde(default)]
    fields: String,
}

/// sObject Collections retrieve: up to 200 records of one object by id, with the
/// named fields, in request order; an id with no live record answers `null`.
pub async fn retrieve(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let params: RetrieveParams = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| SfError::bad_request("INVALID_QUERY_FILTER_OPERATOR", e.to_string()))?;
    let split = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (ids, fields) = (split(&params.ids), split(&params.fields));
    too_many(ids.len())?;
    if fields.is_empty() {
        return Err(SfError::bad_request(
            "MISSING_ARGUMENT",
            "fields is required",
        ));
    }
    let base = s.data_path();
    let inner = s.lock();
    let records = ids
        .iter()
        .map(|id| {
            inner
                .get(object, id)
                .filter(|r| r.deleted_ms.is_none())
                .map_or(Value::Null, |r| r.to_json(object, &fields, &base))
        })
        .collect();
    Ok(Json(Value::Array(records)))
}
