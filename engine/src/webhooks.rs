//! Provider webhooks. A HubSpot delivery is accepted only with a valid v3 signature made
//! with the app's client secret over the public URL it was sent to, once (replays within
//! the five-minute window are refused); each portal it names starts a near-real-time
//! incremental run on the connected integrations that reach that portal.

use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Deserialize;
use syncledger_crm::hubspot::replay::ReplayError;
use syncledger_crm::hubspot::webhook::verify_v3;
use syncledger_domain::sync_run::{RunKind, Trigger};
use syncledger_projections::integration_status;
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::error::EngineError;
use crate::RunError;

/// The fields of a HubSpot event syncledger reads; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubSpotEvent {
    portal_id: Option<u64>,
    subscription_type: Option<String>,
}

/// A HubSpot delivery as it arrived.
pub struct HubSpotDelivery<'a> {
    /// The public URL it was sent to (part of what is signed).
    pub uri: &'a str,
    pub body: &'a [u8],
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl Engine {
    /// Verify, de-duplicate and act on a HubSpot webhook delivery.
    pub async fn receive_hubspot(&self, d: HubSpotDelivery<'_>) -> Result<(), EngineError> {
        // Without a configured app secret no signature can be trusted (an empty key
        // would let anyone sign): refuse every delivery.
        let Some(secret) = self
            .connections
            .connector()
            .app("hubspot")
            .map(|a| a.client_secret.expose_secret().to_owned())
        else {
            return Err(EngineError::Unauthenticated {
                code: "webhooks_not_configured",
                message: "no HubSpot app secret is configured on this server".into(),
            });
        };
        verify_v3(
            &secret,
            "POST",
            d.uri,
            d.body,
            d.timestamp,
            d.signature,
            Utc::now(),
        )
        .map_err(|e| EngineError::Unauthenticated {
            code: "invalid_signature",
            message: e.to_string(),
        })?;
        self.refuse_replay(&d)?;
        let events: Vec<HubSpotEvent> =
            serde_json::from_slice(d.body).map_err(|_| EngineError::Refused {
                code: "validation_failed",
                message: "the body must be a JSON array of HubSpot events".into(),
            })?;
        let mut portals: Vec<String> = events
            .iter()
            .filter_map(|e| e.portal_id)
            .map(|p| p.to_string())
            .collect();
        portals.sort();
        portals.dedup();
        for event in &events {
            tracing::debug!(
                portal_id = event.portal_id,
                subscription = event.subscription_type.as_deref().unwrap_or("unknown"),
                "verified HubSpot webhook event"
            );
        }
        let status = integration_status::Query(&self.store.any);
        for portal in &portals {
            for (integration_id, workspace_id) in
                status.connected_to_account("hubspot", portal).await?
            {
                self.trigger_webhook_run(&integration_id, &workspace_id, "webhook:hubspot")
                    .await;
            }
        }
        Ok(())
    }

    /// After the signature verified: refuses a delivery whose (signature, timestamp) was
    /// already accepted within the five-minute window, or any new one while the
    /// per-process memory is full of unexpired deliveries (HubSpot retries later).
    fn refuse_replay(&self, d: &HubSpotDelivery<'_>) -> Result<(), EngineError> {
        // Both headers were present and the timestamp parsed, or verification failed.
        let signature = d.signature.unwrap_or_default();
        let timestamp = d
            .timestamp
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or_default();
        self.webhook_replays
            .admit(signature, timestamp, Utc::now().timestamp_millis())
            .map_err(|e| match e {
                ReplayError::Replayed => EngineError::NotNow {
                    code: "replayed_delivery",
                    message: e.to_string(),
                },
                ReplayError::Full => EngineError::Unavailable {
                    code: "webhook_backlog",
                    message: e.to_string(),
                },
            })
    }

    /// Starts a near-real-time incremental run. When a run is already active the change
    /// is remembered, and the scheduler starts the follow-up run once that one has ended.
    pub(crate) async fn trigger_webhook_run(
        &self,
        integration_id: &str,
        workspace_id: &str,
        actor: &str,
    ) {
        let meta = Metadata::new(actor, workspace_id, uuid::Uuid::now_v7().to_string());
        match self
            .runs
            .trigger(
                integration_id,
                RunKind::Incremental,
                Trigger::Webhook,
                None,
                &meta,
            )
            .await
        {
            Ok(run_id) => {
                if let Err(e) = self.dispatcher.dispatch(&run_id).await {
                    tracing::warn!(integration_id, error = %e, "webhook run not handed to a worker");
                }
            }
            Err(RunError::Active { .. }) => self.runs.remember_webhook(integration_id),
            Err(e) => tracing::info!(integration_id, error = %e, "webhook did not start a run"),
        }
    }
}
