//! The app's records: its own creates and edits, and what syncs brought in, with the
//! source and time of every value and the full history of each record.
//!
//! A single record is read from its events (always current); lists come from the
//! `records` read model, which commands wait for before answering.

use std::collections::BTreeMap;

use crate::auth::{Caller, Writer, READERS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{etag, Body, IfMatch, List, Page, Query};
use crate::routes::as_of::AsOf;
use crate::routes::integration_view::api_time;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use syncledger_domain::record::{FieldValue, Record, Source};
use syncledger_domain::Entity;
use syncledger_engine::records::{match_prefix, Filter};

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One field's value and where it came from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FieldView {
    pub value: Option<String>,
    /// `app` or `crm`.
    pub source: String,
    /// For CRM values: the integration that brought it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    /// For app values: who set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// For CRM values taken by resolving a conflict with `use_crm`: who decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    pub at: String,
}

impl From<&FieldValue> for FieldView {
    fn from(f: &FieldValue) -> Self {
        let (source, integration_id, actor, decided_by) = match &f.source {
            Source::App { actor } => ("app", None, Some(actor.clone()), None),
            Source::Crm {
                integration_id,
                decided_by,
            } => (
                "crm",
                Some(integration_id.clone()),
                None,
                decided_by.clone(),
            ),
        };
        FieldView {
            value: f.value.clone(),
            source: source.into(),
            integration_id,
            actor,
            decided_by,
            at: time(f.at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkView {
    pub integration_id: String,
    pub remote_id: String,
    /// `linked`; `deleted_in_crm` (the CRM record was deleted and the record archived:
    /// never pushed there again) or `unlinked` (deleted in the CRM, kept app-only: not
    /// created there again), per the integration's `on_crm_delete`.
    #[schema(example = "linked")]
    pub state: String,
    /// Fields whose app value has not reached this CRM yet.
    pub pending_push: Vec<String>,
    /// Why the last push to this CRM failed, until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_error: Option<String>,
    /// Fields a rollback left with different values here and in this CRM: neither pushed
    /// nor pulled until settled (`/v1/integrations/{id}/diverged`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diverged: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub id: String,
    /// contacts or companies.
    pub entity: String,
    pub fields: BTreeMap<String, FieldView>,
    pub links: Vec<LinkView>,
    /// A rollback undid the run that created this record: it is left out of lists.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    pub version: u64,
}

pub(crate) fn view(id: &str, r: &Record) -> RecordView {
    RecordView {
        id: id.to_owned(),
        entity: r.entity.map(Entity::as_str).unwrap_or_default().to_owned(),
        fields: r
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.into()))
            .collect(),
        links: r
            .links
            .iter()
            .map(|(integration_id, l)| LinkView {
                integration_id: integration_id.clone(),
                remote_id: l.remote_id.clone(),
                state: l.state.as_str().to_owned(),
                pending_push: l.owed().keys().cloned().collect(),
                push_error: l.push_error.clone(),
                diverged: l.diverged.keys().cloned().collect(),
            })
            .collect(),
        archived: r.archived,
        version: r.version,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecord {
    /// contacts or companies.
    pub entity: String,
    /// Field name → text value or null.
    #[serde(default)]
    pub fields: BTreeMap<String, Option<String>>,
}

/// Create a record as the app.
#[utoipa::path(post, path = "/v1/records", operation_id = "createRecord", tag = "records", security(("bearer" = [])), request_body = CreateRecord,
    responses((status = 201, body = RecordView), (status = 400, response = crate::error_docs::BadRequest)))]
pub async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Body(req): Body<CreateRecord>,
) -> ApiResult<(StatusCode, Json<RecordView>)> {
    let entity = crate::extract::entity("entity", Some(&req.entity))?;
    let (id, record) = state
        .engine
        .records()
        .create(&caller.metadata(), entity, req.fields)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&id, &record))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRecord {
    /// Fields to set (null clears a value); fields not named keep their value.
    pub fields: BTreeMap<String, Option<String>>,
}

/// Edit fields as the app. Unchanged values write nothing. With `If-Match` (the `ETag` a
/// read gave), only if the record is still at that version: 412 otherwise (a sync or
/// another editor changed it meanwhile).
#[utoipa::path(patch, path = "/v1/records/{id}", operation_id = "editRecord", tag = "records", security(("bearer" = [])), request_body = EditRecord,
    params(("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = RecordView, headers(("ETag" = String, description = "The new version"))), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict),
              (status = 412, response = crate::error_docs::PreconditionFailed)))]
pub async fn edit(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Body(req): Body<EditRecord>,
) -> ApiResult<impl IntoResponse> {
    let record = state
        .engine
        .records()
        .edit(&caller.metadata(), &id, req.fields, expected)
        .await?;
    Ok(with_etag(view(&id, &record)))
}

/// Archive a record as the app: it leaves lists (its history stays). For an integration
/// with `on_app_archive: delete_in_crm`, the next push deletes its CRM record there.
/// Archiving an archived record writes nothing.
#[utoipa::path(post, path = "/v1/records/{id}/archive", operation_id = "archiveRecord", tag = "records", security(("bearer" = [])),
    responses((status = 200, body = RecordView), (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn archive(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordView>> {
    let record = state
        .engine
        .records()
        .archive(&caller.metadata(), &id)
        .await?;
    Ok(Json(view(&id, &record)))
}

/// One record with every value's source and time, and its CRM links; with `as_of`, as it
/// was at that instant.
#[utoipa::path(get, path = "/v1/records/{id}", operation_id = "getRecord", tag = "records", security(("bearer" = [])), params(AsOf),
    responses((status = 200, body = RecordView, headers(("ETag" = String, description = "The version, for If-Match on PATCH"))), (status = 400, response = crate::error_docs::BadRequest),
              (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> ApiResult<impl IntoResponse> {
    caller.require(READERS)?;
    let records = state.engine.records();
    let record = match q.instant()? {
        Some(t) => records.as_of(&caller.workspace_id, &id, t).await?,
        None => records.get(&caller.workspace_id, &id).await?,
    };
    Ok(with_etag(view(&id, &record)))
}

/// A record's view with its `ETag`.
fn with_etag(view: RecordView) -> impl IntoResponse {
    (
        etag(i64::try_from(view.version).unwrap_or(i64::MAX)),
        Json(view),
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// contacts or companies.
    pub entity: Option<String>,
    /// Only records linked to this integration.
    pub integration_id: Option<String>,
    /// Only records changed at or after this instant (RFC 3339).
    pub updated_since: Option<String>,
    /// Include records a rollback archived (default false).
    pub include_archived: Option<bool>,
    /// Search: only records whose match key (email for contacts, domain for companies)
    /// starts with this text, ignoring case and surrounding spaces; `%` and `_` are
    /// ordinary characters. At most 200 characters; empty: no search. The results come
    /// in match-key order (then id), paged like the list.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The workspace's records, least recently changed first; with `q`, those whose match key
/// starts with it, by match key.
#[utoipa::path(get, path = "/v1/records", operation_id = "listRecords", tag = "records", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = inline(List<RecordView>)), (status = 400, response = crate::error_docs::BadRequest)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<List<RecordView>>> {
    caller.require(READERS)?;
    let page = Page {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let (after_time, after_id) = page.keyset()?;
    let updated_since = q
        .updated_since
        .as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| time(t.with_timezone(&Utc)))
                .map_err(|_| ApiError::invalid_field("updated_since", "must be an RFC 3339 time"))
        })
        .transpose()?;
    let entity = q
        .entity
        .as_deref()
        .map(|e| crate::extract::entity("entity", Some(e)))
        .transpose()?;
    let filter = Filter {
        entity,
        integration: q.integration_id,
        updated_since,
        include_archived: q.include_archived == Some(true),
        match_prefix: match_prefix("q", q.q.as_deref())?,
    };
    let rows = state
        .engine
        .records()
        .list(
            &caller.workspace_id,
            &filter,
            (&after_time, &after_id),
            limit + 1,
        )
        .await?;
    let page = List::page(rows, limit, |r| r.cursor.clone());
    Ok(Json(page.map(|r| view(&r.id, &r.state))))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub summary: String,
    /// The values this event set, if it set any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, Option<String>>>,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub at: Option<String>,
}

/// Every change of the record, oldest first.
#[utoipa::path(get, path = "/v1/records/{id}/history", operation_id = "getRecordHistory", tag = "records", security(("bearer" = [])),
    responses((status = 200, body = inline(List<HistoryEntry>)), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<List<HistoryEntry>>> {
    caller.require(READERS)?;
    let entries = state
        .engine
        .records()
        .history(&caller.workspace_id, &id)
        .await?;
    let data = entries
        .into_iter()
        .map(|e| HistoryEntry {
            sequence: e.sequence,
            event_type: e.event_type,
            summary: e.summary,
            fields: e.fields,
            actor: e.actor,
            correlation_id: e.correlation_id,
            at: api_time(e.at),
        })
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}
