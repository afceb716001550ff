//! `describe`, and the replication endpoints `deleted` (15 days) and `updated` (30 days).

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::SfError;
use super::schema::{self, SObject};
use super::state::{parse_time, sf_time, AppState};

const DAY_MS: i64 = 86_400_000;

pub fn object(name: &str) -> Result<SObject, SfError> {
    SObject::parse(name)
        .ok_or_else(|| SfError::not_found(format!("The requested resource does not exist: {name}")))
}

pub async fn describe(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    Ok(Json(schema::describe(object, &s.data_path())))
}

/// The `start`/`end` window of a replication call, checked against how far back
/// the org remembers (`days`).
fn window(raw: Option<&str>, now: i64, days: i64) -> Result<(i64, i64), SfError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    let get = |key: &str| {
        let text = pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str());
        text.and_then(parse_time).ok_or_else(|| {
            SfError::bad_request(
                "MISSING_ARGUMENT",
                format!("{key} must be a valid date time"),
            )
        })
    };
    let (start, end) = (get("start")?, get("end")?);
    if start > end {
        return Err(SfError::bad_request(
            "INVALID_REPLICATION_DATE",
            "end date cannot be before start date",
        ));
    }
    if start < now - days * DAY_MS {
        return Err(SfError::bad_request(
            "INVALID_REPLICATION_DATE",
            format!("start date cannot be more than {days} days ago"),
        ));
    }
    Ok((start, end))
}

/// `GET /sobjects/{S}/deleted/?start=&end=`.
pub async fn deleted(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let mut inner = s.lock();
    let now = inner.now_ms();
    let (start, end) = window(raw.as_deref(), now, 15)?;
    let table = inner.table(object);
    let mut found: Vec<(i64, String)> = table
        .values()
        .filter_map(|r| r.deleted_ms.map(|at| (at, r.id.clone())))
        .filter(|(at, _)| (start..=end).contains(at))
        .collect();
    found.sort();
    let earliest = table
        .values()
        .filter_map(|r| r.deleted_ms)
        .filter(|at| *at >= now - 15 * DAY_MS)
        .min()
        .unwrap_or(start);
    let records: Vec<Value> = found
        .into_iter()
        .map(|(at, id)| json!({ "id": id, "deletedDate": sf_time(at) }))
        .collect();
    Ok(Json(json!({
        "deletedRecords": records,
        "earliestDateAvailable": sf_time(earliest),
        "latestDateCovered": sf_time(end.min(now)),
    })))
}

/// `GET /sobjects/{S}/updated/?start=&end=`.
pub async fn updated(
    State(s): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SfError> {
    let object = object(&name)?;
    let mut inner = s.lock();
    let now = inner.now_ms();
    let (start, end) = window(raw.as_deref(), now, 30)?;
    let ids: Vec<String> = inner
        .table(object)
        .values()
        .filter(|r| r.deleted_ms.is_none() && (start..=end).contains(&r.modstamp_ms))
        .map(|r| r.id.clone())
        .collect();
    Ok(Json(
        json!({ "ids": ids, "latestDateCovered": sf_time(end.min(now)) }),
    ))
}
