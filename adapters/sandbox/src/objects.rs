//! Basic CRM v3 object endpoints: list, read, create, update, archive.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{parse_json, query_list, query_pairs, query_value, ApiError};
use crate::properties::{parse_type, validate};
use crate::state::{AppState, HubSpotData, ObjectType, RecordView};

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

#[derive(Deserialize)]
pub struct PropertiesInput {
    pub properties: Map<String, Value>,
}

fn parse_limit(raw: Option<&str>, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::validation(format!(
            "limit must be between 1 and {max}, got {raw}"
        ))),
    }
}

/// A page of the list endpoint, serialized straight from the stored records.
#[derive(serde::Serialize)]
struct ListPage<'a> {
    results: Vec<RecordView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<Value>,
}

pub async fn list(
    State(s): State<AppState>,
    Path(ty): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ty = parse_type(&ty)?;
    let pairs = query_pairs(q.as_deref());
    let limit = parse_limit(query_value(&pairs, "limit"), MAX_LIMIT)?;
    let after: u64 = match query_value(&pairs, "after") {
        None | Some("") => 0,
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::validation(format!("invalid after: {raw}")))?,
    };
    let archived = query_value(&pairs, "archived") == Some("true");
    let wanted = query_list(&pairs, "properties");
    let inner = s.lock();
    let mut page = inner
        .objects
        .get(&ty)
        .into_iter()
        .flat_map(|t| t.range(after..))
        .map(|(_, r)| r)
        .filter(|r| r.archived_ms.is_some() == archived);
    let results: Vec<&_> = page.by_ref().take(limit).collect();
    let mut paging = None;
    if let (Some(next), Some(_)) = (results.last().map(|r| r.id + 1), page.next()) {
        let mut link_query = vec![
            ("after".to_string(), next.to_string()),
            ("limit".into(), limit.to_string()),
        ];
        link_query.extend(
            pairs
                .iter()
                .filter(|(k, _)| k != "after" && k != "limit")
                .cloned(),
        );
        let encoded = serde_urlencoded::to_string(&link_query).unwrap_or_default();
        let link = format!("{}/crm/v3/objects/{}?{encoded}", s.base_url, ty.as_str());
        paging = Some(json!({"next": {"after": next.to_string(), "link": link}}));
    }
    let body = ListPage {
        results: results
            .iter()
            .map(|r| r.view(ty, wanted.as_deref()))
            .collect(),
        paging,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("encoding the page: {e}"),
        )
    })?;
    drop(inner);
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// Resolves `{id}` directly or through `idProperty` (e.g. `email`).
pub fn resolve_id(
    inner: &HubSpotData,
    ty: ObjectType,
    raw: &str,
    id_property: Option<&str>,
) -> Option<u64> {
    match id_property {
        Some(prop) if prop != "hs_object_id" => inner.find_by(ty, prop, raw),
        _ => raw.parse().ok().filter(|id| inner.get(ty, *id).is_some()),
    }
}

fn not_found(ty: ObjectType, id: &str) -> ApiError {
    ApiError::not_found(format!("resource not found: {} {id}", ty.as_str()))
}

pub async fn get_one(
    State(s): State<AppState>,
    Path((ty, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let pairs = query_pairs(q.as_deref());
    let archived = query_value(&pairs, "archived") == Some("true");
    let inner = s.lock();
    let record = resolve_id(&inner, ty, &id, query_value(&pairs, "idProperty"))
        .and_then(|rid| inner.get(ty, rid))
        .filter(|r| r.archived_ms.is_some() == archived)
        .ok_or_else(|| not_found(ty, &id))?;
    Ok(Json(
        record.to_json(ty, query_list(&pairs, "properties").as_deref()),
    ))
}

/// Contacts need a unique email and companies a unique domain, when given.
pub fn check_unique(
    inner: &HubSpotData,
    ty: ObjectType,
    props: &std::collections::BTreeMap<String, String>,
    own: Option<u64>,
) -> Result<(), ApiError> {
    let key = ty.unique_property();
    let Some(value) = props.get(key).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    match inner.find_by(ty, key, value) {
        Some(existing) if Some(existing) != own => Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("{} already exists. Existing ID: {existing}", ty.as_str()),
        )),
        _ => Ok(()),
    }
}

fn written(props: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    props.keys().cloned().collect()
}

pub async fn create(
    State(s): State<AppState>,
    Path(ty): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ty = parse_type(&ty)?;
    let input: PropertiesInput = parse_json(&body)?;
    let props = validate(ty, &input.properties)?;
    let mut inner = s.lock();
    check_unique(&inner, ty, &props, None)?;
    let keys = written(&props);
    let record = inner.create(ty, props);
    Ok((StatusCode::CREATED, Json(record.to_json(ty, Some(&keys)))))
}

pub async fn update(
    State(s): State<AppState>,
    Path((ty, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let pairs = query_pairs(q.as_deref());
    let input: PropertiesInput = parse_json(&body)?;
    let props = validate(ty, &input.properties)?;
    let mut inner = s.lock();
    let rid = resolve_id(&inner, ty, &id, query_value(&pairs, "idProperty"))
        .filter(|rid| inner.get(ty, *rid).is_some_and(|r| r.archived_ms.is_none()))
        .ok_or_else(|| not_found(ty, &id))?;
    check_unique(&inner, ty, &props, Some(rid))?;
    let keys = written(&props);
    let record = inner
        .update(ty, rid, props)
        .ok_or_else(|| not_found(ty, &id))?;
    Ok(Json(record.to_json(ty, Some(&keys))))
}

/// Archiving an unknown or already archived record is still a 204, as in HubSpot.
pub async fn archive(
    State(s): State<AppState>,
    Path((ty, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ty = parse_type(&ty)?;
    if let Ok(rid) = id.parse() {
        s.lock().archive(ty, rid);
    }
    Ok(StatusCode::NO_CONTENT)
}
