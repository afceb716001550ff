//! The ways in for a CRM that publishes no API (Dubsado, HoneyBook, 17hats, Studio
//! Ninja, Pixieset, Iris Works): a CSV import, and the integration's inbound webhook
//! that Zapier or Make call. Each becomes a sync run of kind `import` (the rules are
//! `syncledger_engine::imports`). The inbound webhook has no bearer token: its secret,
//! in the path or in `Authorization: Bearer`, authenticates the delivery.

use crate::auth::Writer;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::routes::integration_view::IntegrationView;
use crate::routes::sync_runs::{view, RunView};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use syncledger_domain::sync_run::SyncRun;
use syncledger_engine::imports::ImportOptions;

/// The largest body a CSV import takes: the body is the file, so the file's limit.
pub const CSV_BODY_LIMIT: usize = syncledger_domain::import::MAX_CSV_BYTES;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    /// contacts (default) or companies: one of the integration's entities.
    pub entity: Option<String>,
    /// The column (field) holding the CRM's id of a record; default `id`. A record
    /// without one is told apart by its email (domain for companies).
    pub id_field: Option<String>,
}

impl ImportQuery {
    fn options(self) -> ImportOptions {
        ImportOptions {
            entity: self.entity,
            id_field: self.id_field,
        }
    }
}

/// A run that ended answers 201; one still going after the wait answers 202 (follow it
/// at `GET /v1/sync-runs/{id}`).
fn answer(run: &SyncRun) -> (StatusCode, Json<RunView>) {
    let status = if run.status.is_active() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    (status, Json(view(run)))
}

fn is_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("text/csv") || v.eq_ignore_ascii_case("application/csv")
        })
}

/// Import a CSV file (the body, `text/csv`, UTF-8, a header line naming the columns,
/// up to 20 MiB and 100,000 rows) into an integration of a CRM without an API. Columns
/// are mapped with the integration's field mapping; records are told apart by the
/// `id_field` column, else by email, so importing again updates. The import is a sync
/// run of kind `import`: it answers 201 with the run once it ended (202 while it still
/// runs after 20 s). A bad file is 400 naming its line, and nothing is written.
#[utoipa::path(post, path = "/v1/integrations/{id}/imports", operation_id = "importCsv", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "The integration"), ImportQuery),
    request_body(content = String, description = "The CSV file", content_type = "text/csv"),
    responses((status = 201, body = RunView, description = "The import run, ended"),
              (status = 202, body = RunView, description = "The import run, still running"),
              (status = 400, response = crate::error_docs::BadRequest), (status = 401, response = crate::error_docs::Unauthorized),
              (status = 403, response = crate::error_docs::Forbidden), (status = 404, response = crate::error_docs::NotFound),
              (status = 409, response = crate::error_docs::Conflict), (status = 413, response = crate::error_docs::PayloadTooLarge),
              (status = 415, response = crate::error_docs::UnsupportedMediaType)))]
pub async fn csv(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    if !is_csv(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as the body, with content-type text/csv",
        ));
    }
    let run = state
        .engine
        .imports()
        .csv(&caller.metadata(), &id, &body, &q.options())
        .await?;
    Ok(answer(&run))
}

/// The inbound webhook's URL and secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InboundWebhookView {
    /// Where Zapier or Make post records (the secret goes in `Authorization: Bearer`).
    pub url: String,
    /// The same URL with the secret in its path, for tools that cannot set a header.
    /// Treat it as a secret.
    pub url_with_secret: String,
    /// Shown only in this answer; stored sealed. Making a new one replaces it.
    pub secret: String,
    pub integration: IntegrationView,
}

/// Make (or replace) the inbound webhook of an integration of a CRM without an API:
/// Zapier's or Make's "Webhooks" step posts one record as a JSON object, or an array
/// of up to 500, to its URL. The secret is shown in this answer only; the one before
/// stops working at once.
#[utoipa::path(post, path = "/v1/integrations/{id}/inbound-webhook", operation_id = "createInboundWebhook", tag = "imports", security(("bearer" = [])),
    params(("id" = String, Path, description = "The integration")),
    responses((status = 201, body = InboundWebhookView), (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, response = crate::error_docs::Unauthorized), (status = 403, response = crate::error_docs::Forbidden),
              (status = 404, response = crate::error_docs::NotFound), (status = 409, response = crate::error_docs::Conflict)))]
pub async fn create_inbound(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<InboundWebhookView>)> {
    let (secret, integration) = state
        .engine
        .imports()
        .new_inbound_secret(&caller.metadata(), &id)
        .await?;
    let url = format!("{}/v1/inbound/{id}", state.public_url);
    let view = InboundWebhookView {
        url_with_secret: format!("{url}/{}", secret.expose_secret()),
        url,
        secret: secret.expose_secret().to_owned(),
        integration: IntegrationView::from(integration),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A delivery to an integration's inbound webhook, the secret in `Authorization:
/// Bearer`: one record as a JSON object, or an array of up to 500 (1 MiB at most),
/// imported as a sync run of kind `import` (trigger `webhook`). 201 with the run once
/// it ended (202 while it still runs); 401 for a missing or wrong secret, and nothing
/// changes.
#[utoipa::path(post, path = "/v1/inbound/{id}", operation_id = "receiveInboundWebhook", tag = "imports",
    params(("id" = String, Path, description = "The integration"), ImportQuery),
    request_body(content = Object, description = "A record, or an array of records, as flat JSON objects", content_type = "application/json"),
    responses((status = 201, body = RunView, description = "The import run, ended"),
              (status = 202, body = RunView, description = "The import run, still running"),
              (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, description = "The secret is missing or wrong", body = crate::error::ErrorBody),
              (status = 413, response = crate::error_docs::PayloadTooLarge),
              (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let run = state
        .engine
        .imports()
        .deliver(&id, bearer(&headers), &body, &q.options())
        .await?;
    Ok(answer(&run))
}

/// A delivery to an integration's inbound webhook with the secret in the path (for
/// tools that cannot set a header); otherwise as `POST /v1/inbound/{id}`.
#[utoipa::path(post, path = "/v1/inbound/{id}/{secret}", operation_id = "receiveInboundWebhookWithSecret", tag = "imports",
    params(("id" = String, Path, description = "The integration"), ("secret" = String, Path, description = "The inbound webhook's secret"), ImportQuery),
    request_body(content = Object, description = "A record, or an array of records, as flat JSON objects", content_type = "application/json"),
    responses((status = 201, body = RunView, description = "The import run, ended"),
              (status = 202, body = RunView, description = "The import run, still running"),
              (status = 400, response = crate::error_docs::BadRequest),
              (status = 401, description = "The secret is missing or wrong", body = crate::error::ErrorBody),
              (status = 413, response = crate::error_docs::PayloadTooLarge),
              (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn receive_with_secret(
    State(state): State<AppState>,
    Path((id, secret)): Path<(String, String)>,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let run = state
        .engine
        .imports()
        .deliver(&id, Some(&secret), &body, &q.options())
        .await?;
    Ok(answer(&run))
}
