//! Use cases shared by the HTTP API and the CLI.

use crate::auth::{self, NewToken};
use crate::error::{ApiError, ApiResult};
use chrono::Utc;
use syncledger_domain::{Plan, Role, Workspace, WorkspaceCommand};
use syncledger_store::{Cqrs, Metadata, Store};

pub struct IssuedToken {
    pub id: String,
    pub bearer: String,
    pub role: Role,
    pub label: String,
    pub created_at: chrono::DateTime<Utc>,
}

/// Create a workspace and its first admin token.
pub async fn create_workspace(
    store: &Store,
    name: &str,
    plan: Plan,
) -> ApiResult<(String, IssuedToken)> {
    let workspace_id = uuid::Uuid::now_v7().to_string();
    let meta = Metadata::new("system", &workspace_id, uuid::Uuid::now_v7().to_string())
        .caused_by("cli:workspace-create");
    let cqrs: Cqrs<Workspace> = store.cqrs();
    cqrs.execute(
        &workspace_id,
        WorkspaceCommand::Create {
            workspace_id: workspace_id.clone(),
            name: name.to_string(),
            plan,
            at: Utc::now(),
        },
        &meta,
    )
    .await?;
    let token = issue_token(
        store,
        &cqrs,
        &workspace_id,
        Role::Admin,
        "initial admin token",
        &meta,
    )
    .await?;
    Ok((workspace_id, token))
}

/// Store the token's hash, then record its issue as an event. If the event is refused
/// the row is removed again, so no usable token exists without its audit record.
pub async fn issue_token(
    store: &Store,
    cqrs: &Cqrs<Workspace>,
    workspace_id: &str,
    role: Role,
    label: &str,
    meta: &Metadata,
) -> ApiResult<IssuedToken> {
    let NewToken {
        id,
        bearer,
        secret_hash,
    } = auth::mint();
    let created_at = Utc::now();
    sqlx::query(
        "INSERT INTO api_tokens (id, workspace_id, role, label, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(workspace_id)
    .bind(role.as_str())
    .bind(label)
    .bind(&secret_hash)
    .bind(created_at.to_rfc3339())
    .execute(&store.any)
    .await?;
    let command = WorkspaceCommand::IssueToken {
        token_id: id.clone(),
        role,
        label: label.to_string(),
        at: created_at,
    };
    if let Err(e) = cqrs.execute(workspace_id, command, meta).await {
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(&id)
            .execute(&store.any)
            .await?;
        return Err(ApiError::from(e));
    }
    Ok(IssuedToken {
        id,
        bearer,
        role,
        label: label.to_string(),
        created_at,
    })
}
