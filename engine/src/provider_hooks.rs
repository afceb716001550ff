//! Webhooks a provider sends to one integration. Chatwoot's `contact_created` /
//! `contact_updated` are signed with the secret the user configured in the CRM, stored
//! sealed like any credential and never shown again; a delivery is accepted only when
//! it is signed with it (`syncledger_domain::signed_webhook`), fresh, and not seen
//! before (its delivery id, remembered by this process as HubSpot's are). Tave's REST
//! hooks are unsigned and carry only the record's id: the URL syncledger makes for
//! them holds a random token (sealed, shown once, compared in constant time). Either
//! starts an incremental run of the integration, or is folded into the one queued.

use base64::Engine as _;
use chrono::Utc;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use syncledger_crm::hubspot::replay::ReplayError;
use syncledger_crm::Credentials;
use syncledger_domain::integration::CredentialKind;
use syncledger_domain::provider::{hook_auth, HookAuth};
use syncledger_domain::signed_webhook::{verify_chatwoot, SignedDelivery, WINDOW_SECS};
use syncledger_domain::{Integration, IntegrationCommand};
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::credentials::{open_credentials, seal_inbound_secret};
use crate::error::EngineError;
use crate::integrations::IntegrationState;

/// The longest webhook secret accepted.
const MAX_SECRET: usize = 256;

/// What a Tave hook URL's token starts with.
const TOKEN_PREFIX: &str = "slth_";

fn wrong_token() -> EngineError {
    EngineError::Unauthenticated {
        code: "invalid_secret",
        message: "the hook URL's token is wrong".into(),
    }
}

fn not_json() -> EngineError {
    EngineError::Refused {
        code: "validation_failed",
        message: "the body must be a JSON document".into(),
    }
}

/// The one refusal of every delivery that is not authenticated: an unknown
/// integration, one without a secret and a bad signature look the same from outside.
fn refused(message: impl Into<String>) -> EngineError {
    EngineError::Unauthenticated {
        code: "invalid_signature",
        message: message.into(),
    }
}

impl Engine {
    /// Sets (or replaces at once) the secret the provider signs its webhooks to this
    /// integration with, sealed with the workspace's key.
    pub async fn set_webhook_secret(
        &self,
        meta: &Metadata,
        integration_id: &str,
        secret: &SecretString,
    ) -> Result<IntegrationState, EngineError> {
        let len = secret.expose_secret().trim().chars().count();
        if len == 0 || len > MAX_SECRET || secret.expose_secret().trim() != secret.expose_secret() {
            return Err(EngineError::Refused {
                code: "validation_failed",
                message: format!(
                    "secret: must be 1 to {MAX_SECRET} characters without surrounding spaces"
                ),
            });
        }
        self.store_webhook_secret(meta, integration_id, HookAuth::Signed, secret)
            .await
    }

    /// Makes a Tave integration's hook URL a new random token (the one before stops
    /// working at once); answers the token, the only time it is shown.
    pub async fn new_hook_token(
        &self,
        meta: &Metadata,
        integration_id: &str,
    ) -> Result<(SecretString, IntegrationState), EngineError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = SecretString::from(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ));
        let state = self
            .store_webhook_secret(meta, integration_id, HookAuth::UrlToken, &token)
            .await?;
        Ok((token, state))
    }

    /// Seals `secret` for an integration whose provider's webhooks are authenticated as
    /// `auth` (a 400 naming the provider otherwise).
    async fn store_webhook_secret(
        &self,
        meta: &Metadata,
        integration_id: &str,
        auth: HookAuth,
        secret: &SecretString,
    ) -> Result<IntegrationState, EngineError> {
        let integration = self
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        if hook_auth(&integration.provider) != Some(auth) {
            return Err(EngineError::Refused {
                code: "validation_failed",
                message: format!(
                    "provider: {} webhooks are not set up this way (Chatwoot: PUT \
                     …/webhook-secret; Tave: POST …/hook-url)",
                    integration.provider
                ),
            });
        }
        let sealed = seal_inbound_secret(&self.vault, &meta.workspace_id, secret).await?;
        let command = IntegrationCommand::SetWebhookSecret {
            secret: sealed,
            at: Utc::now(),
        };
        self.integrations()
            .execute(meta, integration_id, command)
            .await
    }

    /// A Tave REST hook delivery to `integration_id`'s hook URL, whose path carried
    /// `token`: a wrong one is 401 and changes nothing.
    pub async fn receive_tave(
        &self,
        integration_id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<(), EngineError> {
        if token.is_empty() || token.len() > MAX_SECRET {
            return Err(wrong_token());
        }
        let integration = self
            .hook_target(integration_id, HookAuth::UrlToken)
            .await
            .map_err(|_| wrong_token())?;
        let stored = self.webhook_secret(&integration).await?;
        let (a, b) = (
            Sha256::digest(stored.expose_secret().as_bytes()),
            Sha256::digest(token.as_bytes()),
        );
        if !bool::from(a.as_slice().ct_eq(b.as_slice())) {
            return Err(wrong_token());
        }
        if serde_json::from_slice::<serde_json::Value>(body).is_err() {
            return Err(not_json());
        }
        tracing::info!(integration_id, "Tave REST hook delivery");
        self.trigger_webhook_run(integration_id, &integration.workspace_id, "webhook:tave")
            .await;
        Ok(())
    }

    /// Verifies, de-duplicates and acts on a Chatwoot delivery to `integration_id`.
    pub async fn receive_chatwoot(
        &self,
        integration_id: &str,
        delivery: SignedDelivery<'_>,
    ) -> Result<(), EngineError> {
        let integration = self.hook_target(integration_id, HookAuth::Signed).await?;
        let secret = self.webhook_secret(&integration).await?;
        let now = Utc::now();
        let verified =
            verify_chatwoot(secret.expose_secret().as_bytes(), delivery, now.timestamp())
                .map_err(|e| refused(e.to_string()))?;
        // Checked before the delivery is remembered: a refused one changes nothing.
        if serde_json::from_slice::<serde_json::Value>(delivery.body).is_err() {
            return Err(not_json());
        }
        // The signed copy stays valid until its timestamp leaves the window.
        let until_ms = verified
            .timestamp
            .max(now.timestamp())
            .saturating_add(WINDOW_SECS)
            .saturating_mul(1000);
        let id = format!("chatwoot:{integration_id}:{}", verified.delivery_id);
        self.webhook_replays
            .admit_id(&id, until_ms, now.timestamp_millis())
            .map_err(|e| match e {
                ReplayError::Replayed => EngineError::Unauthenticated {
                    code: "replayed_delivery",
                    message: "this delivery was already accepted".into(),
                },
                ReplayError::Full => EngineError::Unavailable {
                    code: "webhook_backlog",
                    message: e.to_string(),
                },
            })?;
        tracing::info!(integration_id, "verified Chatwoot webhook delivery");
        self.trigger_webhook_run(
            integration_id,
            &integration.workspace_id,
            "webhook:chatwoot",
        )
        .await;
        Ok(())
    }

    /// The integration a delivery names, if it takes webhooks authenticated as `auth`
    /// and has a secret; the same refusal otherwise.
    async fn hook_target(
        &self,
        integration_id: &str,
        auth: HookAuth,
    ) -> Result<Integration, EngineError> {
        if integration_id.is_empty() || integration_id.len() > 128 {
            return Err(refused("no webhook is configured for this integration"));
        }
        let integration = self
            .integrations
            .load(integration_id)
            .await
            .map_err(EngineError::command)?;
        if integration.id.is_none()
            || hook_auth(&integration.provider) != Some(auth)
            || integration.webhook_secret.is_none()
        {
            return Err(refused("no webhook is configured for this integration"));
        }
        Ok(integration)
    }

    async fn webhook_secret(&self, integration: &Integration) -> Result<SecretString, EngineError> {
        let Some(sealed) = &integration.webhook_secret else {
            return Err(refused("no webhook is configured for this integration"));
        };
        match open_credentials(
            &self.vault,
            &integration.workspace_id,
            CredentialKind::InboundWebhook,
            sealed,
            None,
        )
        .await?
        {
            Credentials::ApiKey(secret) => Ok(secret),
            _ => Err(EngineError::Corrupt("stored webhook secret")),
        }
    }
}
