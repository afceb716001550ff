//! Outgoing webhooks (admin): endpoints, their signing secrets, their deliveries, a
//! message sent again and a replay. Signed as Standard Webhooks describes.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use syncledger_domain::webhook::WebhookEndpoint;
use syncledger_engine::delivery::Attempt;
use syncledger_engine::webhook_endpoints::{EndpointInput, WithSecret};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where messages are POSTed: a public `https://` URL (loopback and private hosts
    /// only where the operator allows them).
    pub url: String,
    /// Event types of the catalogue (`WebhookEventType`) to send.
    #[schema(value_type = Vec<WebhookEventType>)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEndpoint {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<WebhookEventType>>)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The catalogue of event types an endpoint can subscribe to.
#[derive(Serialize, utoipa::ToSchema)]
pub enum WebhookEventType {
    /// A record was created, in the app or from a CRM record seen for the first time.
    #[serde(rename = "record.created")]
    RecordCreated,
    /// A record's field values changed (an app edit, a sync, a resolution, a rollback).
    #[serde(rename = "record.updated")]
    RecordUpdated,
    /// A record was archived: by the app, after its CRM record was deleted, or by a rollback.
    #[serde(rename = "record.archived")]
    RecordArchived,
    /// A field changed on both sides and waits for a person.
    #[serde(rename = "conflict.opened")]
    ConflictOpened,
    /// A queued conflict was resolved or ignored.
    #[serde(rename = "conflict.resolved")]
    ConflictResolved,
    /// A sync run ended with every record processed.
    #[serde(rename = "sync_run.completed")]
    SyncRunCompleted,
    /// A sync run ended with some records failed.
    #[serde(rename = "sync_run.partial")]
    SyncRunPartial,
    /// A sync run failed.
    #[serde(rename = "sync_run.failed")]
    SyncRunFailed,
    /// A sync run stopped because the CRM's API quota ran out.
    #[serde(rename = "sync_run.quota_exhausted")]
    SyncRunQuotaExhausted,
    /// An integration went into error.
    #[serde(rename = "integration.error")]
    IntegrationError,
    /// An integration must be connected again (its credentials were dropped).
    #[serde(rename = "integration.reconnect_needed")]
    IntegrationReconnectNeeded,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    #[schema(value_type = Vec<WebhookEventType>)]
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why it is off (by whom, or since when it kept failing).
    pub disabled_reason: Option<String>,
    pub created_at: Option<String>,
    /// The signing secret (`whsec_…`), shown only in the response that makes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        EndpointView {
            id: e.id.unwrap_or_default(),
            url: e.url,
            event_types: e
                .event_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            description: e.description,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            created_at: e
                .created_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            secret: None,
        }
    }
}

impl From<WithSecret> for EndpointView {
    fn from(w: WithSecret) -> Self {
        EndpointView {
            secret: Some(w.secret.expose_secret().to_owned()),
            ..EndpointView::from(w.endpoint)
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The message's `webhook-id`: the same on every attempt and replay.
    pub message_id: String,
    pub attempt: i64,
    #[schema(value_type = WebhookEventType)]
    pub event_type: String,
    /// `delivered`, `retrying` (see `next_attempt_at`) or `failed`.
    pub status: String,
    /// The endpoint's HTTP status, if it answered.
    pub response_code: Option<i64>,
    pub error: Option<String>,
    pub attempted_at: String,
    pub next_attempt_at: Option<String>,
}

impl From<Attempt> for DeliveryView {
    fn from(a: Attempt) -> Self {
        let time = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        DeliveryView {
            message_id: a.message_id,
            attempt: a.attempt,
            event_type: a.event_type,
            status: a.status,
            response_code: a.response_code,
            error: a.error,
            attempted_at: time(a.attempted_at),
            next_attempt_at: a.next_attempt_at.map(time),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// RFC 3339: every subscribed event recorded since then is sent again.
    pub since: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplayView {
    /// The instant the replay starts from.
    pub since: String,
}

/// Create an endpoint (admin). The signing secret is in this response only.
#[utoipa::path(post, path = "/v1/webhook-endpoints", operation_id = "createWebhookEndpoint", tag = "webhooks", security(("bearer" = [])), request_body = NewEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, response = crate::error_docs::BadRequest)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    let input = EndpointInput {
        url: Some(req.url),
        event_types: Some(req.event_types),
        description: req.description,
        enabled: req.enabled,
    };
    let made = state
        .engine
        .webhook_endpoints()
        .create(&caller.metadata(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// The workspace's endpoints, by id (admin).
#[utoipa::path(get, path = "/v1/webhook-endpoints", operation_id = "listWebhookEndpoints", tag = "webhooks", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<EndpointView>))))]
pub async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<EndpointView>>> {
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = state
        .engine
        .webhook_endpoints()
        .list(&caller.workspace_id, &after, limit + 1)
        .await?;
    let views = rows.into_iter().map(EndpointView::from).collect();
    Ok(Json(List::page(views, limit, |v| v.id.clone())))
}

/// One endpoint (admin).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", operation_id = "getWebhookEndpoint", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    let e = state
        .engine
        .webhook_endpoints()
        .get(&caller.workspace_id, &id)
        .await?;
    Ok(Json(e.into()))
}

/// Change the URL, event types, description or whether it is on (admin). Turning an
/// endpoint on again resumes from where it stopped.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", operation_id = "updateWebhookEndpoint", tag = "webhooks", security(("bearer" = [])), request_body = ChangeEndpoint,
    responses((status = 200, body = EndpointView), (status = 400, response = crate::error_docs::BadRequest), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Body(req): Body<ChangeEndpoint>,
) -> ApiResult<Json<EndpointView>> {
    let input = EndpointInput {
        url: req.url,
        event_types: req.event_types,
        description: req.description,
        enabled: req.enabled,
    };
    let e = state
        .engine
        .webhook_endpoints()
        .change(&caller.metadata(), &id, input)
        .await?;
    Ok(Json(e.into()))
}

/// Delete an endpoint (admin): nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", operation_id = "deleteWebhookEndpoint", tag = "webhooks", security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .webhook_endpoints()
        .delete(&caller.metadata(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret (admin), in this response only; the previous one also signs for
/// 24 hours, so receivers can switch without losing messages.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", operation_id = "rotateWebhookSecret", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    let made = state
        .engine
        .webhook_endpoints()
        .rotate_secret(&caller.metadata(), &id)
        .await?;
    Ok(Json(made.into()))
}

/// The endpoint's delivery attempts, newest first (admin).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", operation_id = "listWebhookDeliveries", tag = "webhooks", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<DeliveryView>)), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<DeliveryView>>> {
    let limit = page.limit()?;
    let before = match page.cursor()? {
        None => None,
        Some(c) => Some(parse_cursor(&c)?),
    };
    let mut rows = state
        .engine
        .webhook_endpoints()
        .deliveries(&caller.workspace_id, &id, before, limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    // The cursor names the last attempt shown.
    let next_cursor = rows.last().filter(|_| more).map(|a| {
        let key = format!(
            "{}|{}|{}",
            a.attempted_at.timestamp_millis(),
            a.attempt,
            a.message_id
        );
        crate::extract::encode_cursor(&key)
    });
    Ok(Json(List {
        data: rows.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

fn parse_cursor(c: &str) -> ApiResult<(i64, String, i64)> {
    let bad = || ApiError::invalid_field("cursor", "not a cursor this list gave");
    let mut parts = c.splitn(3, '|');
    let at = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let attempt = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?.to_owned();
    Ok((at, id, attempt))
}

/// Send one message again now, once (admin); the attempt is recorded and returned.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{message_id}/resend", operation_id = "resendWebhookMessage", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn resend(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryView>> {
    let attempt = state
        .engine
        .webhook_endpoints()
        .resend(&caller.metadata(), &id, &message_id)
        .await?;
    Ok(Json(attempt.into()))
}

/// Send again every subscribed event recorded since an instant (admin), in order, with
/// the same `webhook-id`s, so receivers that deduplicate see each once.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/replay", operation_id = "replayWebhooks", tag = "webhooks", security(("bearer" = [])), request_body = ReplayRequest,
    responses((status = 202, body = ReplayView), (status = 400, response = crate::error_docs::BadRequest), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn replay(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Body(req): Body<ReplayRequest>,
) -> ApiResult<(StatusCode, Json<ReplayView>)> {
    let since = chrono::DateTime::parse_from_rfc3339(&req.since)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| ApiError::invalid_field("since", "must be an RFC 3339 time"))?;
    state
        .engine
        .webhook_endpoints()
        .replay(&caller.metadata(), &id, since)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayView {
            since: since.to_rfc3339(),
        }),
    ))
}
