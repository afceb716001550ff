//! `GET /query?q=SOQL` and `GET /query/{locator}`: SOQL over the live records,
//! paged through server-side cursors as Salesforce pages them.

use std::cmp::Ordering;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::error::SfError;
use super::schema::SObject;
use super::soql::{self, Condition, Literal, Op};
use super::state::{parse_time, AppState, Locator, Record};

const MIN_BATCH: usize = 200;
const MAX_BATCH: usize = 2000;

pub async fn query(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SfError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let text = pairs
        .iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| SfError::bad_request("MALFORMED_QUERY", "A query string is required"))?;
    let parsed = soql::parse(text).map_err(|e| SfError::bad_request("MALFORMED_QUERY", e))?;
    let object = SObject::parse(&parsed.object).ok_or_else(|| {
        SfError::bad_request(
            "INVALID_TYPE",
            format!("sObject type '{}' is not supported.", parsed.object),
        )
    })?;
    let named = parsed
        .fields
        .iter()
        .chain(parsed.conditions.iter().map(|c| &c.field))
        .chain(parsed.order.iter().map(|(f, _)| f));
    for field in named {
        if object.field(field).is_none() {
            return Err(SfError::bad_request(
                "INVALID_FIELD",
                format!("No such column '{field}' on entity '{}'.", object.name()),
            ));
        }
    }
    let batch = batch_size(&headers, s.config.max_batch_size);
    let mut inner = s.lock();
    let table = inner.table(object);
    let mut matched: Vec<&Record> = table
        .values()
        .filter(|r| r.deleted_ms.is_none())
        .filter(|r| parsed.conditions.iter().all(|c| matches(r, c)))
        .collect();
    matched.sort_by(|a, b| {
        parsed
            .order
            .iter()
            .map(|(field, asc)| {
                let ord = compare_fields(a, b, field);
                if *asc {
                    ord
                } else {
                    ord.reverse()
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.id.cmp(&b.id))
    });
    let limit = parsed.limit.unwrap_or(usize::MAX);
    let ids: Vec<String> = matched.iter().take(limit).map(|r| r.id.clone()).collect();
    let locator = Locator {
        object,
        fields: parsed.fields,
        ids,
        batch,
    };
    let key = inner.open_locator(locator);
    Ok(Json(page(&s, &inner, &key, 0)))
}

/// `Sforce-Query-Options: batchSize=N`, clamped to what Salesforce allows.
fn batch_size(headers: &HeaderMap, default: usize) -> usize {
    let requested = headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|part| part.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("batchSize"))
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        });
    requested.unwrap_or(default).clamp(MIN_BATCH, MAX_BATCH)
}

/// Renders the page at `offset` of an open cursor. Cursors stay open, so a
/// client may ask for the same `nextRecordsUrl` again after a lost response.
fn page(s: &AppState, inner: &super::state::SalesforceData, key: &str, offset: usize) -> Value {
    let Some(locator) = inner.locators.get(key) else {
        return json!({ "totalSize": 0, "done": true, "records": [] });
    };
    let end = offset.saturating_add(locator.batch).min(locator.ids.len());
    let records: Vec<Value> = locator
        .ids
        .get(offset..end)
        .unwrap_or_default()
        .iter()
        .filter_map(|id| inner.get(locator.object, id))
        .map(|r| r.to_json(locator.object, &locator.fields, &s.data_path()))
        .collect();
    let total = locator.ids.len();
    let done = end >= total;
    let mut body = json!({ "totalSize": total, "done": done, "records": records });
    if !done {
        body["nextRecordsUrl"] = json!(format!("{}/query/{key}-{end}", s.data_path()));
    }
    body
}

/// `GET /query/{locator}-{offset}`: the next page of an open cursor.
pub async fn more(
    State(s): State<AppState>,
    Path(locator): Path<String>,
) -> Result<Json<Value>, SfError> {
    let invalid = || {
        SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let (key, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let inner = s.lock();
    let open = inner
        .locators
        .get(key)
        .is_some_and(|l| offset <= l.ids.len());
    if !open {
        return Err(invalid());
    }
    Ok(Json(page(&s, &inner, key, offset)))
}

fn compare_fields(a: &Record, b: &Record, field: &str) -> Ordering {
    let key = |r: &Record| r.value(field).map(sort_key);
    key(a).cmp(&key(b))
}

/// Datetimes compare as instants, everything else as text.
fn sort_key(value: Value) -> (i64, String) {
    match value {
        Value::String(s) => (parse_time(&s).unwrap_or(i64::MIN), s.to_lowercase()),
        other => (i64::MIN, other.to_string()),
    }
}

fn matches(record: &Record, condition: &Condition) -> bool {
    let value = record.value(&condition.field);
    let ordering = match (&value, &condition.value) {
        (None | Some(Value::Null), Literal::Null) => Some(Ordering::Equal),
        (_, Literal::Null) => Some(Ordering::Greater),
        (None | Some(Value::Null), _) => None,
        (Some(Value::Bool(b)), Literal::Bool(l)) => Some(b.cmp(l)),
        (Some(Value::String(s)), Literal::Time(t)) => parse_time(s).map(|ms| ms.cmp(t)),
        (Some(Value::String(s)), Literal::Number(n)) => {
            s.parse::<f64>().ok().and_then(|v| v.partial_cmp(n))
        }
        (Some(Value::String(s)), Literal::Text(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
        _ => None,
    };
    match ordering {
        Some(o) => condition.op.holds(o),
        // A null never matches a comparison except `!= value`.
        None => condition.op == Op::Ne,
    }
}
