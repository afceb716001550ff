//! Batch endpoints: read, create, update, upsert, archive, with 207 partial failures.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{parse_json, ApiError};
use crate::objects::{check_unique, resolve_id};
use crate::properties::{parse_type, validate};
use crate::state::{iso, AppState, HubSpotData, ObjectType};

const MAX_INPUTS: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchInput {
    id: Option<Value>,
    #[serde(default)]
    properties: Map<String, Value>,
    id_property: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    inputs: Vec<BatchInput>,
    properties: Option<Vec<String>>,
    id_property: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Create,
    Update,
    Upsert,
    Archive,
}

impl Op {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "read" => Self::Read,
            "create" => Self::Create,
            "update" => Self::Update,
            "upsert" => Self::Upsert,
            "archive" => Self::Archive,
            _ => return None,
        })
    }
}

impl BatchInput {
    fn id_text(&self) -> String {
        match &self.id {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }
}

pub async fn batch(
    State(s): State<AppState>,
    Path((ty, op)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ty = parse_type(&ty)?;
    let op = Op::parse(&op)
        .ok_or_else(|| ApiError::not_found(format!("unknown batch operation {op}")))?;
    let request: BatchRequest = parse_json(&body)?;
    if request.inputs.len() > MAX_INPUTS {
        let message = format!(
            "Batch input cannot exceed {MAX_INPUTS} inputs, got {}",
            request.inputs.len()
        );
        return Err(ApiError::validation(message));
    }
    let mut inner = s.lock();
    let started = inner.now_ms();
    if op == Op::Archive {
        for input in &request.inputs {
            if let Ok(id) = input.id_text().parse() {
                inner.archive(ty, id);
            }
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let fail_every = if op == Op::Read {
        None
    } else {
        inner.faults.take_partial()
    };
    let (mut results, mut errors) = (Vec::new(), Vec::new());
    for (i, input) in request.inputs.iter().enumerate() {
        let outcome = if fail_every.is_some_and(|n| (i + 1) % n == 0) {
            Err(ApiError::validation("Injected partial batch failure"))
        } else {
            apply(&mut inner, ty, op, &request, input)
        };
        match outcome {
            Ok(result) => results.push(result),
            Err(e) => errors.push(batch_error(&e, input, i)),
        }
    }
    let completed = inner.now_ms();
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": iso(started),
        "startedAt": iso(started),
        "completedAt": iso(completed),
    });
    let status = if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    } else if op == Op::Create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

fn batch_error(e: &ApiError, input: &BatchInput, index: usize) -> Value {
    let id = input
        .id
        .as_ref()
        .map_or_else(|| index.to_string(), |_| input.id_text());
    let mut error = json!({
        "status": "error",
        "category": e.category,
        "message": e.message,
        "context": {"ids": [id]},
    });
    if let Some(sub) = e.extra.as_ref().and_then(|x| x.get("subCategory")) {
        error["subCategory"] = sub.clone();
    }
    error
}

fn missing(ty: ObjectType, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Could not find {} {id}; it may be deleted or not exist",
        ty.as_str()
    ))
}

fn apply(
    inner: &mut HubSpotData,
    ty: ObjectType,
    op: Op,
    req: &BatchRequest,
    input: &BatchInput,
) -> Result<Value, ApiError> {
    let id = input.id_text();
    match op {
        Op::Read => {
            let rid = resolve_id(inner, ty, &id, req.id_property.as_deref());
            let record = rid
                .and_then(|r| inner.get(ty, r))
                .filter(|r| r.archived_ms.is_none());
            Ok(record
                .ok_or_else(|| missing(ty, &id))?
                .to_json(ty, req.properties.as_deref()))
        }
        Op::Create => {
            let props = validate(ty, &input.properties)?;
            check_unique(inner, ty, &props, None)?;
            let keys: Vec<String> = props.keys().cloned().collect();
            Ok(inner.create(ty, props).to_json(ty, Some(&keys)))
        }
        Op::Update => {
            let rid = resolve_id(inner, ty, &id, input.id_property.as_deref())
                .filter(|r| {
                    inner
                        .get(ty, *r)
                        .is_some_and(|rec| rec.archived_ms.is_none())
                })
                .ok_or_else(|| missing(ty, &id))?;
            write(inner, ty, rid, &input.properties)
        }
        Op::Upsert => upsert(inner, ty, input, &id),
        Op::Archive => Ok(Value::Null),
    }
}

fn write(
    inner: &mut HubSpotData,
    ty: ObjectType,
    rid: u64,
    input: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let props = validate(ty, input)?;
    check_unique(inner, ty, &props, Some(rid))?;
    let keys: Vec<String> = props.keys().cloned().collect();
    let record = inner
        .update(ty, rid, props)
        .ok_or_else(|| missing(ty, &rid.to_string()))?;
    Ok(record.to_json(ty, Some(&keys)))
}

/// Updates the record whose `idProperty` equals `id`, or creates it; reports which with `new`.
fn upsert(
    inner: &mut HubSpotData,
    ty: ObjectType,
    input: &BatchInput,
    id: &str,
) -> Result<Value, ApiError> {
    let prop = input.id_property.as_deref().unwrap_or("hs_object_id");
    let (mut result, new) = match resolve_id(inner, ty, id, Some(prop)) {
        Some(rid) => (write(inner, ty, rid, &input.properties)?, false),
        None if prop == "hs_object_id" => return Err(missing(ty, id)),
        None => {
            let mut props = validate(ty, &input.properties)?;
            props.insert(prop.to_string(), id.to_string());
            check_unique(inner, ty, &props, None)?;
            let keys: Vec<String> = props.keys().cloned().collect();
            (inner.create(ty, props).to_json(ty, Some(&keys)), true)
        }
    };
    result["new"] = Value::Bool(new);
    Ok(result)
}
