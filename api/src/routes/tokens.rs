use crate::auth::{Admin, Caller, ADMINS};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::routes::integration_view::api_time;
use crate::services;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use syncledger_domain::{Role, WorkspaceCommand};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// admin, operator, viewer or auditor.
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
    #[serde(default)]
    pub label: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub role: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// The bearer token, shown only in the response that issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Issue a token with a role (admin only). The secret is shown once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])), request_body = NewTokenRequest,
    responses((status = 201, body = TokenView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let t = services::issue_token(
        &state.store,
        &state.workspaces,
        &caller.workspace_id,
        req.role,
        &req.label,
        &caller.metadata(),
    )
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
            token: Some(t.bearer),
        }),
    ))
}

/// The workspace's tokens, without secrets (admin only).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<TokenView>))))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<TokenView>>> {
    caller.require(ADMINS)?;
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = sqlx::query(
        "SELECT id, role, label, created_at, revoked_at FROM api_tokens
          WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(&caller.workspace_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.store.any)
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in rows {
        views.push(TokenView {
            id: r.try_get("id")?,
            role: r.try_get("role")?,
            label: r.try_get("label")?,
            created_at: api_time(r.try_get("created_at")?).unwrap_or_default(),
            revoked_at: api_time(r.try_get("revoked_at")?),
            token: None,
        });
    }
    Ok(Json(List::page(views, limit, |t| t.id.clone())))
}

/// Revoke a token (admin only). It stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "the workspace's last active admin token (`last_admin_token`)",
         body = crate::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(ADMINS)?;
    let revoked_at: Option<Option<String>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE id = $1 AND workspace_id = $2")
            .bind(&id)
            .bind(&caller.workspace_id)
            .fetch_optional(&state.store.any)
            .await?;
    let Some(revoked_at) = revoked_at else {
        return Err(ApiError::not_found("token"));
    };
    // The event decides; the token row follows. A retry after a failure between the two
    // finishes the job instead of leaving a revoked-in-the-log token usable.
    let live_in_log = state
        .workspaces
        .load(&caller.workspace_id)
        .await?
        .tokens
        .contains_key(&id);
    if !live_in_log && revoked_at.is_some() {
        return Err(ApiError::not_found("token"));
    }
    let now = Utc::now();
    if live_in_log {
        let command = WorkspaceCommand::RevokeToken {
            token_id: id.clone(),
            at: now,
        };
        state
            .workspaces
            .execute(&caller.workspace_id, command, &caller.metadata())
            .await?;
    }
    sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1")
        .bind(&id)
        .bind(now.to_rfc3339())
        .execute(&state.store.any)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
