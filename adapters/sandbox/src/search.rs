//! `POST /crm/v3/objects/{type}/search`: filter groups, one sort, offset paging, 10,000 cap.

use std::cmp::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_json, ApiError};
use crate::properties::{is_date, parse_type};
use crate::state::{parse_time, AppState, ObjectType, Record};

const MAX_LIMIT: usize = 200;
const MAX_RESULTS: usize = 10_000;
const MAX_GROUPS: usize = 5;
/// The filter operators the sandbox understands.
const OPERATORS: [&str; 12] = [
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    property_name: String,
    operator: String,
    value: Option<Value>,
    high_value: Option<Value>,
    values: Option<Vec<Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FilterGroup {
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sort {
    property_name: String,
    #[serde(default)]
    direction: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    #[serde(default)]
    filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    sorts: Vec<Sort>,
    properties: Option<Vec<String>>,
    limit: Option<usize>,
    after: Option<Value>,
    query: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Dates compare as instants, numbers as numbers, anything else case-insensitively.
fn compare(prop: &str, actual: &str, expected: &str) -> Ordering {
    if is_date(prop) {
        if let (Some(a), Some(b)) = (parse_time(actual), parse_time(expected)) {
            return a.cmp(&b);
        }
    }
    if let (Ok(a), Ok(b)) = (actual.parse::<f64>(), expected.parse::<f64>()) {
        return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    }
    actual.to_lowercase().cmp(&expected.to_lowercase())
}

/// Dates compare on the stored instant, without formatting and re-parsing.
fn compare_to(ty: ObjectType, record: &Record, prop: &str, expected: &str) -> Option<Ordering> {
    if let Some(ms) = record.time(ty, prop) {
        return parse_time(expected).map(|e| ms.cmp(&e));
    }
    let actual = record.prop(ty, prop).filter(|v| !v.is_empty())?;
    Some(compare(prop, &actual, expected))
}

fn matches(ty: ObjectType, record: &Record, f: &Filter) -> Result<bool, ApiError> {
    let prop = f.property_name.as_str();
    let value = f.value.as_ref().map(text).unwrap_or_default();
    let cmp = |v: &str| compare_to(ty, record, prop, v);
    let is = |want: &[Ordering]| cmp(&value).is_some_and(|o| want.contains(&o));
    let in_list = || {
        f.values
            .iter()
            .flatten()
            .any(|v| cmp(&text(v)) == Some(Ordering::Equal))
    };
    let present = || record.prop(ty, prop).is_some_and(|v| !v.is_empty());
    Ok(match f.operator.as_str() {
        "EQ" => is(&[Ordering::Equal]),
        "NEQ" => !is(&[Ordering::Equal]),
        "LT" => is(&[Ordering::Less]),
        "LTE" => is(&[Ordering::Less, Ordering::Equal]),
        "GT" => is(&[Ordering::Greater]),
        "GTE" => is(&[Ordering::Greater, Ordering::Equal]),
        "BETWEEN" => {
            let high = f.high_value.as_ref().map(text).unwrap_or_default();
            is(&[Ordering::Greater, Ordering::Equal])
                && cmp(&high).is_some_and(|o| o != Ordering::Greater)
        }
        "IN" => in_list(),
        "NOT_IN" => !in_list(),
        "HAS_PROPERTY" => present(),
        "NOT_HAS_PROPERTY" => !present(),
        "CONTAINS_TOKEN" => {
            let token = value.to_lowercase().replace('*', "");
            record
                .prop(ty, prop)
                .is_some_and(|a| a.to_lowercase().contains(&token))
        }
        other => {
            return Err(ApiError::validation(format!(
                "Unsupported filter operator: {other}"
            )))
        }
    })
}

/// The free-text `query`, matched against the default searchable properties.
fn matches_query(ty: ObjectType, record: &Record, query: &str) -> bool {
    let needle = query.to_lowercase();
    ["firstname", "lastname", "email", "phone", "name", "domain"]
        .iter()
        .filter_map(|p| record.prop(ty, p))
        .any(|v| v.to_lowercase().contains(&needle))
}

fn keep(ty: ObjectType, record: &Record, groups: &[FilterGroup]) -> Result<bool, ApiError> {
    if groups.is_empty() {
        return Ok(true);
    }
    for group in groups {
        let mut all = true;
        for f in &group.filters {
            // The first filter that fails settles the group (operators were checked
            // before the scan, so skipping the rest hides no error).
            if !matches(ty, record, f)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

fn parse_after(after: Option<&Value>) -> Result<usize, ApiError> {
    match after {
        None | Some(Value::Null) => Ok(0),
        Some(v) => text(v)
            .parse()
            .map_err(|_| ApiError::validation(format!("invalid after: {v}"))),
    }
}

pub async fn search(
    State(s): State<AppState>,
    Path(ty): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ty = parse_type(&ty)?;
    let req: SearchRequest = if body.is_empty() {
        SearchRequest::default()
    } else {
        parse_json(&body)?
    };
    let limit = req.limit.unwrap_or(10);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    if req.filter_groups.len() > MAX_GROUPS {
        return Err(ApiError::validation(format!(
            "at most {MAX_GROUPS} filterGroups are allowed"
        )));
    }
    let after = parse_after(req.after.as_ref())?;
    if after + limit > MAX_RESULTS {
        return Err(ApiError::validation(format!(
            "Search can page through at most {MAX_RESULTS} results; after={after} with limit={limit} goes beyond it"
        )));
    }
    for f in req.filter_groups.iter().flat_map(|g| &g.filters) {
        if !OPERATORS.contains(&f.operator.as_str()) {
            return Err(ApiError::validation(format!(
                "Unsupported filter operator: {}",
                f.operator
            )));
        }
    }
    let inner = s.lock();
    let mut hits = Vec::new();
    for record in inner.objects.get(&ty).into_iter().flat_map(|t| t.values()) {
        let text_ok = req
            .query
            .as_deref()
            .is_none_or(|q| matches_query(ty, record, q));
        if record.archived_ms.is_none() && text_ok && keep(ty, record, &req.filter_groups)? {
            hits.push(record);
        }
    }
    if let Some(sort) = req.sorts.first() {
        sort_hits(ty, &mut hits, sort);
    }
    let total = hits.len();
    let results: Vec<Value> = hits
        .iter()
        .skip(after)
        .take(limit)
        .map(|r| r.to_json(ty, req.properties.as_deref()))
        .collect();
    let mut body = json!({ "total": total, "results": results });
    if after + limit < total {
        body["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Ok(Json(body))
}

/// Orders by the sort property, then by id so pages are stable.
fn sort_hits(ty: ObjectType, hits: &mut [&Record], sort: &Sort) {
    let prop = sort.property_name.as_str();
    let descending = sort.direction.as_deref() == Some("DESCENDING");
    let by_value = |a: &Record, b: &Record| match (a.time(ty, prop), b.time(ty, prop)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (a.prop(ty, prop), b.prop(ty, prop)) {
            (Some(x), Some(y)) => compare(prop, &x, &y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        },
    };
    hits.sort_by(|a, b| {
        let order = by_value(a, b);
        let order = if descending { order.reverse() } else { order };
        order.then(a.id.cmp(&b.id))
    });
}
