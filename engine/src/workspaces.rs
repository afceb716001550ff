//! Workspaces and their API tokens: create a workspace with its first admin token, issue,
//! list, revoke and check tokens. This module owns the `api_tokens` table; the workspace
//! aggregate holds the audited record of each token, the table only what a request needs
//! to authenticate (the SHA-256 of the secret, never the secret).
//!
//! A bearer token is `slk_<token id>_<secret>`; reading it from a header is the HTTP
//! layer's, checking it is [`authenticate`].

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use subtle::ConstantTimeEq;
use syncledger_domain::{Plan, Role, Workspace, WorkspaceCommand, WorkspaceError};
use syncledger_projections::statement::Statement;
use syncledger_store::{Cqrs, Metadata, Store};

use crate::error::EngineError;

/// A token just issued: `bearer` is shown once and stored nowhere.
pub struct IssuedToken {
    pub id: String,
    pub bearer: String,
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its secret.
pub struct TokenRow {
    pub id: String,
    pub role: String,
    pub label: String,
    pub created_at: Option<String>,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
}

/// Who a valid token speaks for.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub workspace_id: String,
    pub role: Role,
}

/// A fresh token: its id, the bearer text to hand out, and the hash to store.
pub struct NewToken {
    pub id: String,
    pub bearer: String,
    pub secret_hash: String,
}

/// Mint a token: a UUIDv7 id and 32 random bytes of secret.
pub fn mint() -> NewToken {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    NewToken {
        bearer: format!("slk_{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// The token id and secret in a token's text (`slk_<id>_<secret>`), surrounding blanks
/// ignored; `None` for any other shape.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let (id, secret) = text.trim().strip_prefix("slk_")?.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Create a workspace and its first admin token.
pub async fn create_workspace(
    store: &Store,
    name: &str,
    plan: Plan,
) -> Result<(String, IssuedToken), EngineError> {
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
        (Role::Admin, "initial admin token", None),
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
    (role, label, expires_at): (Role, &str, Option<DateTime<Utc>>),
    meta: &Metadata,
) -> Result<IssuedToken, EngineError> {
    let NewToken {
        id,
        bearer,
        secret_hash,
    } = mint();
    let created_at = Utc::now();
    if expires_at.is_some_and(|e| e <= created_at) {
        return Err(WorkspaceError::InvalidTokenExpiry.into());
    }
    sqlx::query(
        "INSERT INTO api_tokens (id, workspace_id, role, label, secret_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(workspace_id)
    .bind(role.as_str())
    .bind(label)
    .bind(&secret_hash)
    .bind(created_at.to_rfc3339())
    .bind(expires_at.map(|e| e.to_rfc3339()))
    .execute(&store.any)
    .await?;
    let command = WorkspaceCommand::IssueToken {
        token_id: id.clone(),
        role,
        label: label.to_string(),
        at: created_at,
        expires_at,
    };
    if let Err(e) = cqrs.execute(workspace_id, command, meta).await {
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(&id)
            .execute(&store.any)
            .await?;
        return Err(e.into());
    }
    Ok(IssuedToken {
        id,
        bearer,
        role,
        label: label.to_string(),
        created_at,
        expires_at,
    })
}

/// The workspace and role of the live token `id` whose secret is `secret`; `None` for
/// any other token (unknown, revoked, wrong secret: the caller cannot tell which).
pub async fn authenticate(
    pool: &AnyPool,
    id: &str,
    secret: &str,
) -> Result<Option<Authenticated>, EngineError> {
    let row = sqlx::query(
        "SELECT workspace_id, role, secret_hash, expires_at FROM api_tokens
          WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if expired(row.try_get("expires_at")?) {
        return Ok(None);
    }
    let stored: String = row.try_get("secret_hash")?;
    let presented = hash_secret(secret);
    if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
        return Ok(None);
    }
    let role: String = row.try_get("role")?;
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Authenticated {
        workspace_id: row.try_get("workspace_id")?,
        role,
    }))
}

/// Whether the token `id` exists and is not revoked (checked by any process on this
/// database, e.g. for a live event stream).
pub async fn token_is_live(pool: &AnyPool, id: &str) -> Result<bool, EngineError> {
    let live: Option<Option<String>> = sqlx::query_scalar(
        "SELECT expires_at FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(live.is_some_and(|expires_at| !expired(expires_at)))
}

/// Whether a token with this `expires_at` (RFC 3339, as stored) has expired. Compared as
/// instants, not as text; a value that does not parse counts as expired (fail closed).
fn expired(expires_at: Option<String>) -> bool {
    expires_at.is_some_and(|e| {
        DateTime::parse_from_rfc3339(&e).map_or(true, |e| e.with_timezone(&Utc) <= Utc::now())
    })
}

/// What [`list_tokens`] runs: by id, served by the index on `(workspace_id, id)` (the
/// query-plan test checks it beside the read models' lists).
pub fn list_tokens_statement(workspace_id: &str, after: &str, limit: i64) -> Statement {
    let mut s = Statement::new(
        "SELECT id, role, label, created_at, revoked_at, expires_at FROM api_tokens
          WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    );
    s.arg(workspace_id);
    s.arg(after);
    s.arg(limit);
    s
}

/// Up to `limit` of the workspace's tokens after id `after`, by id, without secrets.
pub async fn list_tokens(
    pool: &AnyPool,
    workspace_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<TokenRow>, EngineError> {
    let statement = list_tokens_statement(workspace_id, after, limit);
    let rows = statement.query().fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                id: r.try_get("id")?,
                role: r.try_get("role")?,
                label: r.try_get("label")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .collect()
}

/// Revoke a token of `meta`'s workspace: it stops working at once. The event decides;
/// the token row follows. A retry after a failure between the two finishes the job
/// instead of leaving a revoked-in-the-log token usable.
pub async fn revoke_token(
    store: &Store,
    cqrs: &Cqrs<Workspace>,
    meta: &Metadata,
    id: &str,
) -> Result<(), EngineError> {
    let revoked_at: Option<Option<String>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE id = $1 AND workspace_id = $2")
            .bind(id)
            .bind(&meta.workspace_id)
            .fetch_optional(&store.any)
            .await?;
    let Some(revoked_at) = revoked_at else {
        return Err(EngineError::Missing("token"));
    };
    let live_in_log = cqrs.load(&meta.workspace_id).await?.tokens.contains_key(id);
    if !live_in_log && revoked_at.is_some() {
        return Err(EngineError::Missing("token"));
    }
    let now = Utc::now();
    if live_in_log {
        let command = WorkspaceCommand::RevokeToken {
            token_id: id.to_string(),
            at: now,
        };
        cqrs.execute(&meta.workspace_id, command, meta).await?;
    }
    sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now.to_rfc3339())
        .execute(&store.any)
        .await?;
    Ok(())
}

/// The token use cases of one workspace; see [`crate::Engine::tokens`].
pub struct Tokens<'a>(&'a crate::Engine);

impl crate::Engine {
    pub fn tokens(&self) -> Tokens<'_> {
        Tokens(self)
    }
}

impl Tokens<'_> {
    /// Issue a token with a role in `meta`'s workspace; its secret is in the answer only.
    pub async fn issue(
        &self,
        meta: &Metadata,
        role: Role,
        label: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, EngineError> {
        issue_token(
            &self.0.store,
            &self.0.workspaces,
            &meta.workspace_id,
            (role, label, expires_at),
            meta,
        )
        .await
    }

    /// Up to `limit` of the workspace's tokens after id `after`, without secrets.
    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<TokenRow>, EngineError> {
        list_tokens(&self.0.store.any, workspace_id, after, limit).await
    }

    /// Revoke a token of `meta`'s workspace.
    pub async fn revoke(&self, meta: &Metadata, id: &str) -> Result<(), EngineError> {
        revoke_token(&self.0.store, &self.0.workspaces, meta, id).await
    }
}
