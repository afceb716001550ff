//! Webhook endpoints of a workspace: create (the signing secret shown once), list, read,
//! change, rotate the secret (both sign for 24 hours), delete; the delivery attempts of
//! an endpoint, one message sent again, and a replay of everything since an instant.
//! Delivery itself is [`crate::delivery`].

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeSet;
use syncledger_crm::outbound::{first_forbidden, lookup, Guard};
use syncledger_domain::webhook::{EventType, WebhookEndpoint, WebhookEndpointCommand};
use syncledger_domain::Aggregate;
use syncledger_projections::webhook_endpoints::{self, Query};
use syncledger_store::{Metadata, Position};

use crate::app::Engine;
use crate::delivery::{self, log, Attempt, Sent};
use crate::error::EngineError;

const PROJECTION: &str = webhook_endpoints::TABLE;

/// The use cases; see [`Engine::webhook_endpoints`].
pub struct WebhookEndpoints<'a>(&'a Engine);

impl Engine {
    pub fn webhook_endpoints(&self) -> WebhookEndpoints<'_> {
        WebhookEndpoints(self)
    }
}

/// What a caller asks for: `None` leaves a part as it is (on a change).
#[derive(Clone, Debug, Default)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// An endpoint with the secret it was just given (shown this once).
pub struct WithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: SecretString,
}

/// The catalogue names in `given`, each known; 400 naming the first unknown one.
fn event_types(given: &[String]) -> Result<BTreeSet<EventType>, EngineError> {
    given
        .iter()
        .map(|name| {
            EventType::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                EngineError::invalid(
                    "event_types",
                    format!(
                        "unknown event type {name:?}; the catalogue: {}",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

impl WebhookEndpoints<'_> {
    /// The URL passes the webhook outbound policy, its name resolved too (checked again
    /// at every delivery).
    async fn check_url(&self, url: &str) -> Result<(), EngineError> {
        let policy = self.0.webhook_policy;
        Guard::custom(policy).check("url", url)?;
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if let Some(host) = host {
            if let Ok(addrs) = lookup(&host).await {
                if let Some(class) = first_forbidden(policy, &addrs) {
                    return Err(EngineError::invalid(
                        "url",
                        format!("{host} resolves to a {class} address, which the server's outbound policy refuses for webhooks"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn seal(
        &self,
        workspace_id: &str,
    ) -> Result<
        (
            SecretString,
            syncledger_domain::integration::EncryptedSecret,
        ),
        EngineError,
    > {
        let secret = delivery::new_secret();
        let sealed = self
            .0
            .vault
            .seal(workspace_id, secret.expose_secret().as_bytes())
            .await?;
        Ok((
            secret,
            syncledger_domain::integration::EncryptedSecret {
                key_id: sealed.key_id,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
            },
        ))
    }

    /// Runs `cmd` and waits until the read model shows it.
    async fn apply(
        &self,
        meta: &Metadata,
        id: &str,
        cmd: WebhookEndpointCommand,
    ) -> Result<(), EngineError> {
        self.0
            .store
            .cqrs::<WebhookEndpoint>()
            .execute(id, cmd, meta)
            .await?;
        self.0
            .fresh
            .settle(PROJECTION, WebhookEndpoint::TYPE, id)
            .await
    }

    /// [`Self::apply`], answering with the endpoint after it.
    async fn execute(
        &self,
        meta: &Metadata,
        id: &str,
        cmd: WebhookEndpointCommand,
    ) -> Result<WebhookEndpoint, EngineError> {
        self.apply(meta, id, cmd).await?;
        self.get(&meta.workspace_id, id).await
    }

    pub async fn create(
        &self,
        meta: &Metadata,
        input: EndpointInput,
    ) -> Result<WithSecret, EngineError> {
        let url = input
            .url
            .ok_or_else(|| EngineError::invalid("url", "required"))?;
        let types = event_types(&input.event_types.unwrap_or_default())?;
        self.check_url(&url).await?;
        let (secret, sealed) = self.seal(&meta.workspace_id).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let cmd = WebhookEndpointCommand::Create {
            endpoint_id: id.clone(),
            workspace_id: meta.workspace_id.clone(),
            url,
            event_types: types,
            description: input.description.unwrap_or_default(),
            enabled: input.enabled.unwrap_or(true),
            secret: sealed,
            at: Utc::now(),
        };
        // It receives what is committed from now on, even if its worker starts later (a
        // replay reaches further back). Set before it exists, so no worker can start it
        // anywhere else.
        let now = self.0.store.feed().head().await?;
        log::start_at(&self.0.store.any, &id, now).await?;
        let endpoint = self.execute(meta, &id, cmd).await?;
        Ok(WithSecret { endpoint, secret })
    }

    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<WebhookEndpoint>, EngineError> {
        Ok(Query(&self.0.store.any)
            .list(workspace_id, after, limit)
            .await?)
    }

    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<WebhookEndpoint, EngineError> {
        Query(&self.0.store.any)
            .get(workspace_id, id)
            .await?
            .ok_or(EngineError::Missing("webhook endpoint"))
    }

    pub async fn change(
        &self,
        meta: &Metadata,
        id: &str,
        input: EndpointInput,
    ) -> Result<WebhookEndpoint, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        if let Some(url) = &input.url {
            self.check_url(url).await?;
        }
        let types = input.event_types.as_deref().map(event_types).transpose()?;
        let cmd = WebhookEndpointCommand::Change {
            url: input.url,
            event_types: types,
            description: input.description,
            enabled: input.enabled,
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.execute(meta, id, cmd).await
    }

    /// A new signing secret; the previous one signs too for 24 hours.
    pub async fn rotate_secret(
        &self,
        meta: &Metadata,
        id: &str,
    ) -> Result<WithSecret, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let (secret, sealed) = self.seal(&meta.workspace_id).await?;
        let cmd = WebhookEndpointCommand::RotateSecret {
            secret: sealed,
            at: Utc::now(),
        };
        let endpoint = self.execute(meta, id, cmd).await?;
        Ok(WithSecret { endpoint, secret })
    }

    pub async fn delete(&self, meta: &Metadata, id: &str) -> Result<(), EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let cmd = WebhookEndpointCommand::Delete { at: Utc::now() };
        self.apply(meta, id, cmd).await
    }

    /// The endpoint's delivery attempts, newest first, before `before` (a cursor of
    /// (attempted at in ms, message id, attempt)).
    pub async fn deliveries(
        &self,
        workspace_id: &str,
        id: &str,
        before: Option<(i64, String, i64)>,
        limit: i64,
    ) -> Result<Vec<Attempt>, EngineError> {
        self.get(workspace_id, id).await?;
        Ok(log::list(&self.0.store.any, id, before, limit).await?)
    }

    /// Everything the endpoint subscribed to since `since` is sent again (the same
    /// `webhook-id`s), in feed order, after what its worker has in hand.
    pub async fn replay(
        &self,
        meta: &Metadata,
        id: &str,
        since: DateTime<Utc>,
    ) -> Result<Position, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let from = self.0.store.feed().position_before(since).await?;
        log::rewind(&self.0.store.any, id, from).await?;
        tracing::info!(endpoint = %id, since = %since, actor = %meta.actor, "webhook replay asked for");
        Ok(from)
    }

    /// Sends one message of the endpoint again now, once, and records the attempt.
    pub async fn resend(
        &self,
        meta: &Metadata,
        id: &str,
        message_id: &str,
    ) -> Result<Attempt, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let earlier = log::attempts_of(&self.0.store.any, id, message_id).await?;
        let Some(first) = earlier.first() else {
            return Err(EngineError::Missing("webhook message"));
        };
        let endpoint: WebhookEndpoint = self.0.store.cqrs().load(id).await?;
        let after = Position {
            tx: first.position.tx,
            pos: first.position.pos - 1,
        };
        let events = self.0.store.feed().read(after, 1).await?;
        let event = events
            .first()
            .filter(|e| e.position == first.position)
            .ok_or(EngineError::Missing("webhook message"))?;
        let messages = delivery::messages_of(self.0, event, |_| true).await?;
        let message = messages
            .into_iter()
            .find(|m| m.id == message_id)
            .ok_or(EngineError::Missing("webhook message"))?;
        let now = Utc::now();
        let mut secrets = Vec::new();
        for sealed in endpoint.signing_secrets(now) {
            secrets.push(delivery::open_secret(self.0, &endpoint.workspace_id, sealed).await?);
        }
        let options = delivery::DeliveryOptions {
            policy: self.0.webhook_policy,
            ..delivery::DeliveryOptions::default()
        };
        let client = delivery::client(&options)?;
        let sent = delivery::send(
            &client,
            options.policy,
            &endpoint.url,
            &secrets,
            &message,
            now,
        )
        .await;
        let (status, code, error) = match sent {
            Sent::Delivered(code) => ("delivered", Some(code), None),
            Sent::Retry { code, error, .. } | Sent::Refused { code, error } => {
                ("failed", code, Some(error))
            }
        };
        let mut attempt = Attempt {
            message_id: message.id.clone(),
            attempt: earlier.len() as i64 + 1,
            position: message.position,
            event_type: message.event_type.as_str().to_owned(),
            status: status.to_owned(),
            response_code: code.map(i64::from),
            error,
            attempted_at: now,
            next_attempt_at: None,
        };
        attempt.attempt =
            log::record(&self.0.store.any, id, &endpoint.workspace_id, &attempt).await?;
        Ok(attempt)
    }
}
