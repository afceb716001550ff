//! Connecting an integration through the provider's OAuth 2.0 code flow with PKCE, and
//! using what it gives: the connection test and the field catalogue.
//!
//! [`OAuth::connect`] binds a random `state` to the workspace and integration and keeps
//! the sealed PKCE verifier in `oauth_states` (this module owns that table); the provider
//! sends the browser back to the callback, and [`OAuth::callback`] claims the state once,
//! checks the issuer (RFC 9207), exchanges the code and stores the sealed tokens.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::RngCore;
use secrecy::ExposeSecret;
use sqlx::Row;
use syncledger_crm::oauth::check_issuer;
use syncledger_crm::{Credentials, FieldInfo, Identity};
use syncledger_domain::provider_text::clean;
use syncledger_domain::{Entity, IntegrationCommand, Status};
use syncledger_store::Metadata;
use syncledger_vault::Sealed;
use zeroize::Zeroizing;

use crate::app::Engine;
use crate::credentials::seal_credentials;
use crate::error::EngineError;
use crate::integrations::IntegrationState;

/// How long a user has to approve at the provider.
const STATE_TTL_MINUTES: i64 = 10;

/// The actor recorded on events caused by the provider's redirect.
const CALLBACK_ACTOR: &str = "oauth-callback";

/// What the provider's redirect carries back.
#[derive(Debug, Default)]
pub struct Redirect {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when the user refused.
    pub error: Option<String>,
    /// The authorization server's issuer identifier (RFC 9207).
    pub iss: Option<String>,
    /// The authorization server the provider names for this user (Zoho's
    /// `accounts-server`): hostile input, checked by the adapter.
    pub accounts_server: Option<String>,
}

/// The connected integration, and whether the provider issued a refresh token.
pub struct Connected {
    pub integration: IntegrationState,
    /// `false`: the access token works until it expires, then the integration must be
    /// connected again.
    pub refresh_token: bool,
}

/// The outcome of a connection test, recorded on the integration.
pub struct Tested {
    pub ok: bool,
    pub detail: String,
    pub integration: IntegrationState,
}

/// The account id a provider names is provider text too: it is shown in the test
/// detail and stored in events.
fn clean_identity(mut identity: Identity) -> Identity {
    identity.account_id = clean(&identity.account_id);
    identity
}

fn invalid_state() -> EngineError {
    EngineError::Refused {
        code: "invalid_state",
        message: "the authorization state is unknown, expired or already used; connect again"
            .into(),
    }
}

/// Fixed-width RFC 3339, so stored times compare correctly as text.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A claimed authorization: what `connect` bound to its state.
struct Claimed {
    workspace_id: String,
    integration_id: String,
    verifier: Sealed,
    redirect_uri: String,
}

/// The OAuth and provider-session use cases; see [`Engine::oauth`].
pub struct OAuth<'a>(&'a Engine);

impl Engine {
    pub fn oauth(&self) -> OAuth<'_> {
        OAuth(self)
    }
}

impl OAuth<'_> {
    /// Start connecting an integration: answers the provider URL to send the user to,
    /// who comes back to `redirect_uri`.
    pub async fn connect(
        &self,
        meta: &Metadata,
        id: &str,
        redirect_uri: &str,
    ) -> Result<String, EngineError> {
        let engine = self.0;
        let integration = engine.integrations().owned(&meta.workspace_id, id).await?;
        let adapter = engine.connections.adapter(&integration)?;
        if !adapter.supports_oauth() {
            return Err(EngineError::Unsupported(format!(
                "{} connects with an API key or basic credentials: POST /v1/integrations/{{id}}/credentials",
                integration.provider
            )));
        }
        if !engine
            .connections
            .connector()
            .oauth_configured(&integration)
        {
            return Err(EngineError::Refused {
                code: "provider_not_configured",
                message: format!(
                    "the server has no OAuth app for {}; its operator must configure one",
                    integration.provider
                ),
            });
        }
        if integration.status == Status::Disconnected {
            return Err(EngineError::NotNow {
                code: "invalid_transition",
                message: "cannot connect an integration that is disconnected".into(),
            });
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let oauth_state = hex::encode(bytes);
        let (url, verifier) = adapter
            .authorization_url(redirect_uri, &oauth_state)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let verifier = Zeroizing::new(verifier);
        let sealed = engine
            .vault
            .seal(&meta.workspace_id, verifier.as_bytes())
            .await?;
        self.remember(&oauth_state, meta, id, &sealed, redirect_uri)
            .await?;
        Ok(url)
    }

    /// Keeps the state `connect` issued, bound to the workspace, the integration, the
    /// sealed verifier and the redirect URI, until it is claimed or expires.
    async fn remember(
        &self,
        oauth_state: &str,
        meta: &Metadata,
        id: &str,
        sealed: &Sealed,
        redirect_uri: &str,
    ) -> Result<(), EngineError> {
        let now = Utc::now();
        let pool = &self.0.store.any;
        // Expired states are useless; clearing them here keeps the table small without
        // a background job.
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
            .bind(stamp(now))
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state, workspace_id, integration_id, verifier_key_id, verifier_nonce,
                verifier_ciphertext, redirect_uri, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(oauth_state)
        .bind(&meta.workspace_id)
        .bind(id)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(redirect_uri)
        .bind(stamp(now))
        .bind(stamp(now + Duration::minutes(STATE_TTL_MINUTES)))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Mark the state used, once and before it expires; `None` if that is not possible.
    async fn claim(&self, oauth_state: &str) -> Result<Option<Claimed>, EngineError> {
        let pool = &self.0.store.any;
        let now = stamp(Utc::now());
        let done = sqlx::query(
            "UPDATE oauth_states SET used_at = $1 WHERE state = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(&now)
        .bind(oauth_state)
        .bind(&now)
        .execute(pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT workspace_id, integration_id, verifier_key_id, verifier_nonce, verifier_ciphertext,
                redirect_uri FROM oauth_states WHERE state = $1",
        )
        .bind(oauth_state)
        .fetch_one(pool)
        .await?;
        Ok(Some(Claimed {
            workspace_id: row.try_get("workspace_id")?,
            integration_id: row.try_get("integration_id")?,
            verifier: Sealed {
                key_id: row.try_get("verifier_key_id")?,
                nonce: row.try_get("verifier_nonce")?,
                ciphertext: row.try_get("verifier_ciphertext")?,
            },
            redirect_uri: row.try_get("redirect_uri")?,
        }))
    }

    /// Trades the authorization code for tokens, with the PKCE verifier `connect` kept.
    async fn exchange(
        &self,
        adapter: &dyn syncledger_crm::CrmAdapter,
        claimed: &Claimed,
        code: &str,
        server: Option<&str>,
    ) -> Result<syncledger_crm::Tokens, EngineError> {
        let verifier = self
            .0
            .vault
            .open(&claimed.workspace_id, &claimed.verifier)
            .await?;
        let verifier = std::str::from_utf8(verifier.expose_secret())
            .map_err(|_| EngineError::Corrupt("the stored PKCE verifier"))?;
        let tokens = adapter
            .exchange_code_at(code, verifier, &claimed.redirect_uri, server)
            .await?;
        Ok(tokens)
    }

    /// The provider's redirect back: the single-use state names the workspace and the
    /// integration, so no bearer token is needed. `request_id` correlates the events.
    pub async fn callback(
        &self,
        redirect: Redirect,
        request_id: &str,
    ) -> Result<Connected, EngineError> {
        let engine = self.0;
        let oauth_state = redirect.state.ok_or_else(invalid_state)?;
        let claimed = self.claim(&oauth_state).await?.ok_or_else(invalid_state)?;
        let integration = engine
            .integrations()
            .owned(&claimed.workspace_id, &claimed.integration_id)
            .await?;
        let adapter = engine.connections.adapter(&integration)?;
        // RFC 9207: a response from another authorization server (mix-up) is refused
        // before its code is used; the state is spent either way.
        check_issuer(adapter.issuer().as_ref(), redirect.iss.as_deref()).map_err(|e| {
            EngineError::Refused {
                code: "issuer_mismatch",
                message: e.to_string(),
            }
        })?;
        if redirect.error.is_some() {
            return Err(EngineError::Refused {
                code: "authorization_denied",
                message: "the provider did not grant access".into(),
            });
        }
        let code = redirect
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| EngineError::invalid("code", "is required"))?;
        let server = redirect.accounts_server.as_deref();
        let tokens = self.exchange(&*adapter, &claimed, &code, server).await?;
        let refresh_token = tokens.refresh_token.is_some();
        let credentials = Credentials::OAuth2(tokens);
        // Which provider account these tokens reach: webhooks name it, not the
        // integration. Best effort: a failed test does not undo a granted authorization.
        let identity = adapter
            .test_connection(&credentials)
            .await
            .ok()
            .map(clean_identity);
        let (kind, secret, expires_at) =
            seal_credentials(&engine.vault, &claimed.workspace_id, &credentials).await?;
        let cmd = integration.credentials_command(
            kind,
            secret,
            expires_at,
            Some(refresh_token),
            Utc::now(),
        );
        let meta = Metadata::new(CALLBACK_ACTOR, &claimed.workspace_id, request_id);
        let integrations = engine.integrations();
        let mut state = integrations
            .execute(&meta, &claimed.integration_id, cmd)
            .await?;
        if let Some(identity) = identity {
            let test = IntegrationCommand::RecordConnectionTest {
                ok: true,
                detail: format!(
                    "connected to {} account {}",
                    integration.provider, identity.account_id
                ),
                account_id: Some(identity.account_id),
                at: Utc::now(),
            };
            state = integrations
                .execute(&meta, &claimed.integration_id, test)
                .await?;
        }
        Ok(Connected {
            integration: state,
            refresh_token,
        })
    }

    /// Check the stored credentials against the provider and record the outcome. A
    /// provider's refusal is an outcome (`ok: false`), not an error.
    pub async fn test(&self, meta: &Metadata, id: &str) -> Result<Tested, EngineError> {
        let engine = self.0;
        let integration = engine.integrations().owned(&meta.workspace_id, id).await?;
        let mut session = engine.connections.session(id).await?;
        let (ok, detail, account_id) = match session
            .call(meta, |adapter, credentials| {
                adapter.test_connection(credentials)
            })
            .await
            .map(clean_identity)
        {
            Ok(identity) => (
                true,
                format!(
                    "connected to {} account {}",
                    integration.provider, identity.account_id
                ),
                Some(identity.account_id),
            ),
            // The provider's part of the text is cleaned (`CrmError`'s Display): at most
            // 200 visible characters, credentials redacted, one text for transport
            // failures.
            Err(e @ (EngineError::Provider(_) | EngineError::RefreshRejected)) => {
                (false, e.to_string(), None)
            }
            Err(other) => return Err(other),
        };
        let cmd = IntegrationCommand::RecordConnectionTest {
            ok,
            detail: detail.clone(),
            account_id,
            at: Utc::now(),
        };
        let integration = engine.integrations().execute(meta, id, cmd).await?;
        Ok(Tested {
            ok,
            detail,
            integration,
        })
    }

    /// The provider's field catalogue for one entity.
    pub async fn fields(
        &self,
        meta: &Metadata,
        id: &str,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, EngineError> {
        let engine = self.0;
        engine.integrations().owned(&meta.workspace_id, id).await?;
        let mut session = engine.connections.session(id).await?;
        session
            .call(meta, |adapter, credentials| {
                adapter.fields(credentials, entity)
            })
            .await
    }
}
