//! The v8 API: lists (mandatory `fields`, page/per_page to 2,000 rows then
//! `page_token`, `If-Modified-Since`, 204, 304), deleted records, writes with
//! per-record results (200, 207, 400), field metadata and the org.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::state::{iso, new_token, Continuation, Module, Record, ZohoData};
use super::{error, App, Refusal};
use crate::error::{query_pairs, query_value};

/// The most rows page numbers reach.
const PAGE_ROWS: usize = 2_000;
const MAX_PER_PAGE: usize = 200;
const MAX_FIELDS: usize = 50;
const MAX_WRITE: usize = 100;

fn invalid(param: &str, message: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "INVALID_DATA",
        message,
        json!({"param": param}),
    )
}

fn module(raw: &str) -> Result<Module, Refusal> {
    Module::parse(raw).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            json!({}),
        )
    })
}

pub async fn fallback() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "INVALID_URL_PATTERN",
        "Please check if the URL trying to access is a correct one",
        json!({}),
    )
}

pub async fn org(State(s): State<App>) -> Response {
    Json(json!({"org": [{
        "id": s.config.org_id.to_string(),
        "company_name": "Sandbox Org",
        "primary_email": "admin@example.com",
        "time_zone": "UTC",
        "domain_name": "org700100200",
    }]}))
    .into_response()
}

pub async fn fields(RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let Some(raw) = query_value(&pairs, "module") else {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "module"}),
        );
    };
    let module = match module(raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let fields: Vec<Value> = module
        .fields()
        .iter()
        .enumerate()
        .map(|(i, (api, label, ty, read_only))| {
            json!({
                "api_name": api, "field_label": label, "display_label": label,
                "data_type": ty, "json_type": if *ty == "lookup" || *ty == "ownerlookup" { "jsonobject" } else { "string" },
                "system_mandatory": *api == module.mandatory(), "read_only": read_only,
                "field_read_only": read_only, "id": (4_150_868_000_000_002_000u64 + i as u64).to_string(),
            })
        })
        .collect();
    Json(json!({ "fields": fields })).into_response()
}

/// `If-Modified-Since` in seconds; `Err` for a value that does not parse.
fn modified_since(headers: &HeaderMap) -> Result<Option<i64>, Refusal> {
    let Some(value) = headers.get("if-modified-since") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.trim()).ok())
        .map(|t| Some(t.timestamp()))
        .ok_or_else(|| invalid("If-Modified-Since", "invalid data"))
}

/// The asked page: `page` and `per_page` within their limits, or a `page_token`.
struct Paging {
    per_page: usize,
    /// The first row of the page, and whether a token named it.
    offset: usize,
    page: usize,
}

fn paging(
    data: &ZohoData,
    pairs: &[(String, String)],
    module: Module,
    signature: &str,
    token_allowed: bool,
) -> Result<Paging, Refusal> {
    let number = |name: &str, default: usize| -> Result<usize, Refusal> {
        match query_value(pairs, name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(name, "invalid data")),
        }
    };
    let per_page = number("per_page", MAX_PER_PAGE)?;
    if per_page > MAX_PER_PAGE {
        return Err(invalid("per_page", "per_page cannot be more than 200"));
    }
    let page_given = query_value(pairs, "page").is_some();
    if let Some(token) = query_value(pairs, "page_token").filter(|_| token_allowed) {
        if page_given {
            return Err(invalid(
                "page",
                "page and page_token cannot be given together",
            ));
        }
        let expected = data
            .page_tokens
            .get(token)
            .filter(|c| c.module == module && c.signature == signature)
            .ok_or_else(|| invalid("page_token", "invalid page_token"))?;
        return Ok(Paging {
            per_page,
            offset: expected.offset,
            page: expected.offset / per_page + 1,
        });
    }
    let page = number("page", 1)?;
    if page.saturating_mul(per_page) > PAGE_ROWS && token_allowed {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "cannot fetch more than 2000 records with page; use page_token",
            json!({"limit": PAGE_ROWS}),
        ));
    }
    Ok(Paging {
        per_page,
        offset: (page - 1).saturating_mul(per_page),
        page,
    })
}

fn info(
    paging: &Paging,
    count: usize,
    more: bool,
    token: Option<String>,
    sort: (&str, &str),
) -> Value {
    json!({
        "per_page": paging.per_page, "count": count, "page": paging.page,
        "more_records": more, "next_page_token": token, "previous_page_token": null,
        "page_token_expiry": token.as_ref().map(|_| iso(chrono::Utc::now().timestamp() + 86_400)),
        "sort_by": sort.0, "sort_order": sort.1,
    })
}

/// `GET /crm/v8/{module}`.
pub async fn list(
    State(s): State<App>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    let Some(fields) = query_value(&pairs, "fields").filter(|f| !f.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "fields"}),
        );
    };
    let fields: Vec<String> = fields.split(',').map(|f| f.trim().to_owned()).collect();
    if fields.len() > MAX_FIELDS {
        return invalid("fields", "more than 50 fields").into_response();
    }
    let since = match modified_since(&headers) {
        Ok(since) => since,
        Err(r) => return r.into_response(),
    };
    let sort_by = query_value(&pairs, "sort_by").unwrap_or("id");
    let sort_order = query_value(&pairs, "sort_order").unwrap_or("desc");
    if !matches!(sort_by, "id" | "Created_Time" | "Modified_Time") {
        return invalid("sort_by", "invalid data").into_response();
    }
    if !matches!(sort_order, "asc" | "desc") {
        return invalid("sort_order", "invalid data").into_response();
    }
    let ids: Option<Vec<u64>> = query_value(&pairs, "ids").map(|raw| {
        raw.split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect()
    });
    let signature = format!("{since:?}|{sort_by}|{sort_order}|{}", fields.join(","));
    let mut data = s.lock();
    let paging = match paging(&data, &pairs, module, &signature, true) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let table = data.records.get(&module);
    let mut rows: Vec<&Record> = table.map(|t| t.values().collect()).unwrap_or_default();
    if let Some(ids) = &ids {
        rows.retain(|r| ids.contains(&r.id));
    }
    if let Some(since) = since {
        // Modified after the given time (whole seconds).
        rows.retain(|r| r.modified_s > since);
        if rows.is_empty() {
            return StatusCode::NOT_MODIFIED.into_response();
        }
    }
    let key = |r: &Record| match sort_by {
        "Modified_Time" => (r.modified_s, r.id),
        "Created_Time" => (r.created_s, r.id),
        _ => (0, r.id),
    };
    rows.sort_by_key(|r| key(r));
    if sort_order == "desc" {
        rows.reverse();
    }
    if rows.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let end = paging
        .offset
        .saturating_add(paging.per_page)
        .min(rows.len());
    let page: Vec<Value> = rows
        .get(paging.offset..end)
        .unwrap_or_default()
        .iter()
        .map(|r| r.to_json(Some(&fields)))
        .collect();
    if page.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let more = end < rows.len();
    let token = more.then(|| {
        let token = new_token("pt");
        data.page_tokens.insert(
            token.clone(),
            Continuation {
                module,
                signature,
                offset: end,
            },
        );
        token
    });
    let count = page.len();
    Json(json!({"data": page, "info": info(&paging, count, more, token, (sort_by, sort_order))}))
        .into_response()
}

/// `GET /crm/v8/{module}/deleted?type=all|recycle|permanent`.
pub async fn deleted(
    State(s): State<App>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let pairs = query_pairs(q.as_deref());
    let kind = query_value(&pairs, "type").unwrap_or("all");
    if !matches!(kind, "all" | "recycle" | "permanent") {
        return invalid("type", "invalid data").into_response();
    }
    let since = match modified_since(&headers) {
        Ok(since) => since,
        Err(r) => return r.into_response(),
    };
    let data = s.lock();
    let paging = match paging(&data, &pairs, module, "", false) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let rows: Vec<Value> = data
        .deleted
        .get(&module)
        .map(|d| {
            d.iter()
                .filter(|e| kind == "all" || e.kind == kind)
                .filter(|e| since.is_none_or(|t| e.deleted_s > t))
                .map(super::state::Deleted::to_json)
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return if since.is_some() {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        };
    }
    let end = paging
        .offset
        .saturating_add(paging.per_page)
        .min(rows.len());
    let page = rows.get(paging.offset..end).unwrap_or_default().to_vec();
    if page.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let count = page.len();
    Json(json!({"data": page, "info": info(&paging, count, end < rows.len(), None, ("deleted_time", "desc"))}))
        .into_response()
}

/// A write's records and its `duplicate_check_fields`.
type WriteBody = (Vec<Map<String, Value>>, Option<Vec<String>>);

/// The `data` of a write body, at most 100 objects.
fn write_body(body: &Bytes) -> Result<WriteBody, Refusal> {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(body) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "body must be a JSON object",
            json!({}),
        ));
    };
    let Some(Value::Array(items)) = body.remove("data") else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "data"}),
        ));
    };
    if items.is_empty() || items.len() > MAX_WRITE {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "a write carries 1 to 100 records",
            json!({"limit": MAX_WRITE}),
        ));
    }
    let records = items
        .into_iter()
        .map(|item| match item {
            Value::Object(map) => Ok(map),
            _ => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "each record is an object",
                json!({}),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = match body.remove("duplicate_check_fields") {
        None => None,
        Some(Value::Array(keys)) => Some(
            keys.into_iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
        ),
        Some(_) => {
            return Err(invalid("duplicate_check_fields", "invalid data"));
        }
    };
    Ok((records, keys))
}

fn failure(code: &str, message: &str, details: Value) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

fn success(record: &Record, action: &str, duplicate_field: Option<&str>) -> Value {
    json!({
        "code": "SUCCESS", "status": "success", "action": action,
        "duplicate_field": duplicate_field,
        "message": if action == "insert" { "record added" } else { "record updated" },
        "details": {
            "id": record.id.to_string(), "Modified_Time": iso(record.modified_s),
            "Created_Time": iso(record.created_s),
            "Modified_By": {"name": "Sandbox User", "id": "4150868000000225013"},
            "Created_By": {"name": "Sandbox User", "id": "4150868000000225013"},
        },
    })
}

/// The fields of a write: known and writable, else the name refused.
fn writable(module: Module, mut record: Map<String, Value>) -> Result<Map<String, Value>, Value> {
    record.remove("id");
    if let Some(name) = record.keys().find(|k| !module.writable(k)) {
        return Err(failure(
            "INVALID_DATA",
            "invalid data",
            json!({"api_name": name}),
        ));
    }
    Ok(record)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Insert,
    Update,
    Upsert,
}

/// HTTP status of a write: 200/201 when every record was written, 207 when some were,
/// 400 when none was.
fn answer(results: Vec<Value>, all_ok: StatusCode) -> Response {
    let ok = results.iter().filter(|r| r["status"] == "success").count();
    let status = match ok {
        n if n == results.len() => all_ok,
        0 => StatusCode::BAD_REQUEST,
        _ => StatusCode::MULTI_STATUS,
    };
    (status, Json(json!({ "data": results }))).into_response()
}

fn write_one(
    data: &mut ZohoData,
    module: Module,
    mode: Mode,
    keys: &[String],
    raw: Map<String, Value>,
) -> Value {
    if data.partial_failure() == Some(true) {
        return failure(
            "INVALID_DATA",
            "invalid data",
            json!({"api_name": "sandbox_fault"}),
        );
    }
    let id = raw.get("id").and_then(|v| match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    });
    if mode == Mode::Update && id.is_none() {
        return failure(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "id"}),
        );
    }
    let fields = match writable(module, raw) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let existing = match (mode, id) {
        (Mode::Update, Some(id)) => {
            if !data.table(module).contains_key(&id) {
                return failure(
                    "INVALID_DATA",
                    "the related id given seems to be invalid",
                    json!({"api_name": "id"}),
                );
            }
            Some((id, None))
        }
        (Mode::Upsert, _) => keys.iter().find_map(|key| {
            let value = fields.get(key)?.as_str()?.to_lowercase();
            data.table(module)
                .values()
                .find(|r| {
                    r.fields
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_lowercase)
                        == Some(value.clone())
                })
                .map(|r| (r.id, Some(key.as_str())))
        }),
        _ => None,
    };
    match existing {
        Some((id, key)) => match data.patch(module, id, fields, None) {
            Some(record) => success(&record, "update", key),
            None => failure("INVALID_DATA", "invalid data", json!({"api_name": "id"})),
        },
        None => {
            let mandatory = module.mandatory();
            if fields
                .get(mandatory)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return failure(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    json!({"api_name": mandatory, "json_path": format!("$.data[0].{mandatory}")}),
                );
            }
            let record = data.insert(module, fields, None);
            success(&record, "insert", None)
        }
    }
}

async fn write(s: App, raw: String, body: Bytes, mode: Mode) -> Response {
    let module = match module(&raw) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let (records, keys) = match write_body(&body) {
        Ok(parsed) => parsed,
        Err(r) => return r.into_response(),
    };
    let keys = keys.unwrap_or_else(|| vec![module.system_key().to_owned()]);
    let mut data = s.lock();
    let results: Vec<Value> = records
        .into_iter()
        .map(|record| write_one(&mut data, module, mode, &keys, record))
        .collect();
    let all_ok = if mode == Mode::Insert {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    answer(results, all_ok)
}

/// `POST /crm/v8/{module}/upsert`.
pub async fn upsert(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    write(s, raw, body, Mode::Upsert).await
}

/// `POST /crm/v8/{module}`.
pub async fn insert(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    write(s, raw, body, Mode::Insert).await
}

/// `PUT /crm/v8/{module}`.
pub async fn update(State(s): State<App>, Path(raw): Path<String>, body: Bytes) -> Response {
    write(s, raw, body, Mode::Update).await
}
