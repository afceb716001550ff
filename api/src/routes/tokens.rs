use crate::auth::{Admin, Caller, ADMINS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::routes::integration_view::api_time;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use syncledger_domain::Role;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// admin, operator, viewer or auditor.
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
    #[serde(default)]
    pub label: String,
    /// When the token stops working (RFC 3339, in the future); absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// When it stops working; null: never.
    pub expires_at: Option<String>,
    /// The bearer token, shown only in the response that issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Issue a token with a role (admin only). The secret is shown once.
#[utoipa::path(post, path = "/v1/tokens", operation_id = "createToken", tag = "tokens", security(("bearer" = [])), request_body = NewTokenRequest,
    responses((status = 201, body = TokenView), (status = 400, response = crate::error_docs::BadRequest), (status = 403, response = crate::error_docs::Forbidden)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::invalid_field("expires_at", "must be an RFC 3339 time"))
        })
        .transpose()?;
    let t = state
        .engine
        .tokens()
        .issue(&caller.metadata(), req.role, &req.label, expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenView {
            id: t.id,
            role: t.role.as_str().into(),
            label: t.label,
            created_at: t
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revoked_at: None,
            expires_at: t
                .expires_at
                .map(|e| e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            token: Some(t.bearer),
        }),
    ))
}

/// The workspace's tokens, without secrets (admin only).
#[utoipa::path(get, path = "/v1/tokens", operation_id = "listTokens", tag = "tokens", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<TokenView>))))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<TokenView>>> {
    caller.require(ADMINS)?;
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = state
        .engine
        .tokens()
        .list(&caller.workspace_id, &after, limit + 1)
        .await?;
    let views = rows
        .into_iter()
        .map(|r| TokenView {
            id: r.id,
            role: r.role,
            label: r.label,
            created_at: api_time(r.created_at).unwrap_or_default(),
            revoked_at: api_time(r.revoked_at),
            expires_at: api_time(r.expires_at),
            token: None,
        })
        .collect();
    Ok(Json(List::page(views, limit, |t| t.id.clone())))
}

/// Revoke a token (admin only). It stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "revokeToken", tag = "tokens", security(("bearer" = [])),
    responses((status = 204, description = "The token is revoked"), (status = 404, response = crate::error_docs::NotFound),
        (status = 409, description = "the workspace's last active admin token (`last_admin_token`)",
         body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(ADMINS)?;
    state
        .engine
        .tokens()
        .revoke(&caller.metadata(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
