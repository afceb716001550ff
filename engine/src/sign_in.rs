//! People signing in to the dashboard: with an API token, or with a one-time link made by
//! the operator (`syncledger dashboard link`, `syncledger workspace create`). Either starts
//! a server-side session; the browser holds only the session's random id, never a token.
//!
//! This module owns the `sign_in_links` and `dashboard_sessions` tables. Only SHA-256
//! digests of link codes and session ids are stored. A link is claimed by one atomic
//! `UPDATE … WHERE used_at IS NULL AND expires_at > now`, so two browsers racing for the
//! same link get one session between them. Issuing a link is an event on the workspace
//! (`SignInLinkIssued`), so the audit trail shows who could sign in with which role.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::RngCore;
use sqlx::Row;
use subtle::ConstantTimeEq;
use syncledger_domain::Workspace;
use syncledger_domain::{Role, WorkspaceCommand};
use syncledger_store::{Cqrs, Metadata, Store};

use crate::error::EngineError;
use crate::workspaces::{authenticate, hash_secret, parse_token, token_is_live};

/// How long a sign-in link can be used.
pub const LINK_LIFETIME: Duration = Duration::minutes(15);
/// The longest a session lasts however active it is; then the person signs in again.
pub const SESSION_MAX_AGE: Duration = Duration::hours(12);
/// A session's last-seen time is written at most this often (not on every page view).
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// A link just made: `code` goes into the URL once and is stored nowhere.
#[derive(Debug)]
pub struct IssuedLink {
    pub id: String,
    pub code: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// A signed-in person, as the dashboard sees them on each request.
#[derive(Clone, Debug)]
pub struct Session {
    pub workspace_id: String,
    pub role: Role,
    /// `token:<id>` or `link:<id>`: the actor named in the events this person causes.
    pub actor: String,
    /// The API token the session was started with, if any.
    pub token_id: Option<String>,
    /// The session's form token (CSRF): every state-changing form must carry it.
    pub csrf: String,
}

impl Session {
    /// The id rate limits and stream caps count against: the token's, or the link's.
    pub fn principal_id(&self) -> &str {
        self.actor
            .split_once(':')
            .map(|(_, id)| id)
            .unwrap_or(&self.actor)
    }

    /// Whether `presented` is this session's form token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        same_secret(&self.csrf, presented)
    }
}

/// Whether `presented` is `expected` (a non-empty secret), compared in constant time.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// A session just started: `id` is the cookie's value, shown to nobody else.
#[derive(Debug)]
pub struct Started {
    pub id: String,
    pub session: Session,
}

/// The dashboard sign-in use cases; see [`crate::Engine::sign_in`].
pub struct SignIn<'a>(&'a crate::Engine);

impl crate::Engine {
    pub fn sign_in(&self) -> SignIn<'_> {
        SignIn(self)
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A link code is `sil_<link id>_<secret>`.
fn parse_code(code: &str) -> Option<(&str, &str)> {
    let (id, secret) = code.trim().strip_prefix("sil_")?.split_once('_')?;
    let sane =
        |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (sane(id) && sane(secret)).then_some((id, secret))
}

/// Make a one-time sign-in link for `workspace_id` with `role`, valid for
/// [`LINK_LIFETIME`] (also used by the CLI, which has a store but no engine). The row is stored first and removed again if the workspace
/// refuses the event (unknown workspace), so no usable link exists without its audit
/// record.
pub async fn issue_link(
    store: &Store,
    workspaces: &Cqrs<Workspace>,
    meta: &Metadata,
    workspace_id: &str,
    role: Role,
) -> Result<IssuedLink, EngineError> {
    let pool = &store.any;
    let now = Utc::now();
    let expires_at = now + LINK_LIFETIME;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let secret = random_hex();
    sqlx::query("DELETE FROM sign_in_links WHERE expires_at < $1")
        .bind(stamp(now))
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO sign_in_links (id, workspace_id, role, code_hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(workspace_id)
    .bind(role.as_str())
    .bind(hash_secret(&secret))
    .bind(stamp(now))
    .bind(stamp(expires_at))
    .execute(pool)
    .await?;
    let command = WorkspaceCommand::IssueSignInLink {
        link_id: id.clone(),
        role,
        expires_at,
        at: now,
    };
    if let Err(e) = workspaces.execute(workspace_id, command, meta).await {
        sqlx::query("DELETE FROM sign_in_links WHERE id = $1")
            .bind(&id)
            .execute(pool)
            .await?;
        return Err(e.into());
    }
    Ok(IssuedLink {
        code: format!("sil_{id}_{secret}"),
        id,
        role,
        expires_at,
    })
}

impl SignIn<'_> {
    /// Make a one-time sign-in link; see [`issue_link`].
    pub async fn issue_link(
        &self,
        meta: &Metadata,
        workspace_id: &str,
        role: Role,
    ) -> Result<IssuedLink, EngineError> {
        issue_link(&self.0.store, &self.0.workspaces, meta, workspace_id, role).await
    }

    /// Start a session with an API token's text (`slk_…`). `None` for anything that is not
    /// a live token: the caller cannot tell unknown from revoked from mistyped.
    pub async fn with_token(&self, token: &str) -> Result<Option<Started>, EngineError> {
        let Some((id, secret)) = parse_token(token) else {
            return Ok(None);
        };
        let Some(found) = authenticate(&self.0.store.any, id, secret).await? else {
            return Ok(None);
        };
        let session = Session {
            workspace_id: found.workspace_id,
            role: found.role,
            actor: format!("token:{id}"),
            token_id: Some(id.to_string()),
            csrf: random_hex(),
        };
        self.start(session).await.map(Some)
    }

    /// Start a session with a sign-in link's code, using the link up. `None` when the code
    /// is malformed, unknown, expired or already used (indistinguishable on purpose).
    pub async fn with_link(&self, code: &str) -> Result<Option<Started>, EngineError> {
        let Some((id, secret)) = parse_code(code) else {
            return Ok(None);
        };
        let pool = &self.0.store.any;
        let row =
            sqlx::query("SELECT workspace_id, role, code_hash FROM sign_in_links WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("code_hash")?;
        if !bool::from(stored.as_bytes().ct_eq(hash_secret(secret).as_bytes())) {
            return Ok(None);
        }
        let Some(role) = Role::parse(&row.try_get::<String, _>("role")?) else {
            return Ok(None);
        };
        let now = stamp(Utc::now());
        let claimed = sqlx::query(
            "UPDATE sign_in_links SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(&now)
        .bind(id)
        .execute(pool)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        let session = Session {
            workspace_id: row.try_get("workspace_id")?,
            role,
            actor: format!("link:{id}"),
            token_id: None,
            csrf: random_hex(),
        };
        self.start(session).await.map(Some)
    }

    async fn start(&self, session: Session) -> Result<Started, EngineError> {
        let pool = &self.0.store.any;
        let now = Utc::now();
        // Sessions idle for longer than any configuration allows are dropped as new ones
        // start, so the table does not grow without bound.
        sqlx::query(
            "DELETE FROM dashboard_sessions WHERE last_seen_at < $1 OR ended_at IS NOT NULL",
        )
        .bind(stamp(now - SESSION_MAX_AGE))
        .execute(pool)
        .await?;
        let id = random_hex();
        sqlx::query(
            "INSERT INTO dashboard_sessions
               (id_hash, workspace_id, role, actor, token_id, csrf, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(hash_secret(&id))
        .bind(&session.workspace_id)
        .bind(session.role.as_str())
        .bind(&session.actor)
        .bind(&session.token_id)
        .bind(&session.csrf)
        .bind(stamp(now))
        .execute(pool)
        .await?;
        Ok(Started { id, session })
    }

    /// The live session whose cookie value is `id`: not ended, used within `idle`, younger
    /// than [`SESSION_MAX_AGE`], and (when started with a token) its token not revoked.
    /// Marks it as seen now (at most once a minute).
    pub async fn resume(&self, id: &str, idle: Duration) -> Result<Option<Session>, EngineError> {
        self.lookup(id, idle, true).await
    }

    /// Whether the session is still live, without counting this as activity (a page left
    /// open with a live stream does not keep its session alive).
    pub async fn is_live(&self, id: &str, idle: Duration) -> Result<bool, EngineError> {
        Ok(self.lookup(id, idle, false).await?.is_some())
    }

    async fn lookup(
        &self,
        id: &str,
        idle: Duration,
        touch: bool,
    ) -> Result<Option<Session>, EngineError> {
        if id.is_empty() || id.len() > 128 {
            return Ok(None);
        }
        let pool = &self.0.store.any;
        let id_hash = hash_secret(id);
        let row = sqlx::query(
            "SELECT workspace_id, role, actor, token_id, csrf, created_at, last_seen_at
               FROM dashboard_sessions WHERE id_hash = $1 AND ended_at IS NULL",
        )
        .bind(&id_hash)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let now = Utc::now();
        let created: String = row.try_get("created_at")?;
        let seen: String = row.try_get("last_seen_at")?;
        let (Ok(created), Ok(seen)) = (
            DateTime::parse_from_rfc3339(&created),
            DateTime::parse_from_rfc3339(&seen),
        ) else {
            return Ok(None);
        };
        if now - created.with_timezone(&Utc) > SESSION_MAX_AGE
            || now - seen.with_timezone(&Utc) > idle
        {
            return Ok(None);
        }
        let Some(role) = Role::parse(&row.try_get::<String, _>("role")?) else {
            return Ok(None);
        };
        let token_id: Option<String> = row.try_get("token_id")?;
        if let Some(token) = &token_id {
            if !token_is_live(pool, token).await? {
                return Ok(None);
            }
        }
        if touch && now - seen.with_timezone(&Utc) > TOUCH_EVERY {
            sqlx::query("UPDATE dashboard_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(stamp(now))
                .bind(&id_hash)
                .execute(pool)
                .await?;
        }
        Ok(Some(Session {
            workspace_id: row.try_get("workspace_id")?,
            role,
            actor: row.try_get("actor")?,
            token_id,
            csrf: row.try_get("csrf")?,
        }))
    }

    /// End the session whose cookie value is `id` (signing out). Ending an unknown or
    /// ended session is not an error.
    pub async fn end(&self, id: &str) -> Result<(), EngineError> {
        sqlx::query(
            "UPDATE dashboard_sessions SET ended_at = $1 WHERE id_hash = $2 AND ended_at IS NULL",
        )
        .bind(stamp(Utc::now()))
        .bind(hash_secret(id))
        .execute(&self.0.store.any)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_codes_parse_only_in_their_own_shape() {
        assert_eq!(parse_code("sil_abc_def"), Some(("abc", "def")));
        for bad in [
            "",
            "sil_",
            "sil_abc",
            "sil__def",
            "slk_abc_def",
            "sil_a b_c",
            "sil_abc_d;ef",
        ] {
            assert!(parse_code(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever text is presented as a form token, only the session's own matches.
        #[test]
        fn only_the_sessions_own_form_token_matches(presented in ".{0,80}") {
            let session = Session {
                workspace_id: "w".into(),
                role: Role::Viewer,
                actor: "link:x".into(),
                token_id: None,
                csrf: "0123456789abcdef".into(),
            };
            proptest::prop_assert_eq!(session.csrf_matches(&presented), presented == session.csrf);
            proptest::prop_assert!(session.csrf_matches("0123456789abcdef"));
        }
    }
}
