//! Webhooks a provider sends to one integration (Chatwoot's signed `contact_created` /
//! `contact_updated`). The secret is the one the user configured in the CRM, stored
//! sealed like any credential and never shown again. A delivery is accepted only when
//! it is signed with it (`syncledger_domain::signed_webhook`), fresh, and not seen
//! before (its delivery id, remembered by this process as HubSpot's are); it then
//! starts an incremental run of the integration, or is folded into the one queued.

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
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
        let len = secret.expose_secret().trim().len();
        if len == 0 || len > MAX_SECRET || secret.expose_secret().trim() != secret.expose_secret() {
            return Err(EngineError::Refused {
                code: "validation_failed",
                message: format!(
                    "secret: must be 1 to {MAX_SECRET} characters without surrounding spaces"
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
            return Err(EngineError::Refused {
                code: "validation_failed",
                message: "the body must be a JSON document".into(),
            });
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
