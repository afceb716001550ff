//! A working connection to one integration's provider, with the credential lifecycle:
//! OAuth tokens are refreshed before they expire and after the provider answers 401.
//!
//! Refresh tokens may be single-use (HubSpot, Pipedrive), so two workers refreshing
//! the same tokens would leave one of them — and possibly the integration — with a
//! spent token. The integration aggregate arbitrates: a worker first appends a
//! `CredentialRefreshClaimed` event for the current credential generation. The event
//! store's optimistic concurrency lets exactly one claim through; the others see the
//! live claim, wait for the generation to change and adopt the new tokens. A claim
//! is a lease: a worker that dies mid-refresh blocks the others only until it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use syncledger_crm::{Credentials, CrmAdapter, CrmError};
use syncledger_domain::provider_text::clean;
use syncledger_domain::{Integration, IntegrationCommand, IntegrationError, Status};
use syncledger_store::{Cqrs, Metadata, Store};
use syncledger_vault::Vault;

use crate::connector::Connector;
use crate::credentials::{open_credentials, seal_credentials};
use crate::error::EngineError;

/// Tokens that expire within this margin are refreshed before use.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// How long a refresh claim holds off other workers.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How long a waiting worker waits for another's refresh before giving up.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(45);

/// Opens sessions on integrations. One per process; cheap to share.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    integrations: Cqrs<Integration>,
    vault: Vault,
    connector: Connector,
    /// Names this process in refresh claims.
    holder: String,
}

/// A provider future borrowing the adapter and credentials.
pub type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CrmError>> + Send + 'a>>;

impl Connections {
    pub fn new(
        store: &Store,
        vault: Vault,
        connector: Connector,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                integrations: store.cqrs(),
                vault,
                connector,
                holder: holder.into(),
            }),
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// The adapter for an integration, without credentials (to start an OAuth flow).
    pub fn adapter(&self, integration: &Integration) -> Result<Arc<dyn CrmAdapter>, EngineError> {
        self.inner.connector.adapter(integration)
    }

    async fn load(&self, integration_id: &str) -> Result<Integration, EngineError> {
        let state = self.inner.integrations.load(integration_id).await?;
        if state.id.is_none() {
            return Err(EngineError::NotFound);
        }
        Ok(state)
    }

    /// A session on the integration with its current credentials.
    pub async fn session(&self, integration_id: &str) -> Result<Session, EngineError> {
        let integration = self.load(integration_id).await?;
        let adapter = self.adapter(&integration)?;
        let credentials = self.credentials_of(&integration).await?;
        Ok(Session {
            connections: self.clone(),
            generation: integration.credentials_generation,
            holder: format!("{}:{}", self.inner.holder, uuid::Uuid::now_v7()),
            integration,
            adapter,
            credentials,
        })
    }

    async fn credentials_of(&self, integration: &Integration) -> Result<Credentials, EngineError> {
        match integration.status {
            Status::Connected | Status::Paused | Status::Error => {}
            Status::PendingAuth => return Err(EngineError::NotConnected),
            other => {
                return Err(EngineError::Unusable {
                    status: other.as_str(),
                    reason: integration
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "no reason recorded".into()),
                })
            }
        }
        let (Some(kind), Some(secret)) = (integration.credential_kind, &integration.secret) else {
            return Err(EngineError::NotConnected);
        };
        open_credentials(
            &self.inner.vault,
            &integration.workspace_id,
            kind,
            secret,
            integration.credentials_expire_at,
        )
        .await
    }
}

/// One integration's adapter and credentials.
pub struct Session {
    connections: Connections,
    integration: Integration,
    generation: u64,
    holder: String,
    adapter: Arc<dyn CrmAdapter>,
    credentials: Credentials,
}

impl Session {
    pub fn integration(&self) -> &Integration {
        &self.integration
    }

    pub fn adapter(&self) -> &dyn CrmAdapter {
        self.adapter.as_ref()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Refreshes OAuth tokens that expire within the margin (or have expired).
    pub async fn ensure_fresh(&mut self, meta: &Metadata) -> Result<(), EngineError> {
        let expiring = self
            .credentials
            .tokens()
            .and_then(|t| t.expires_at)
            .is_some_and(|at| at <= Utc::now() + REFRESH_MARGIN);
        if expiring {
            self.refresh(meta).await?;
        }
        Ok(())
    }

    /// Runs a provider call with fresh credentials; after a 401 it refreshes once and
    /// tries again.
    pub async fn call<T>(
        &mut self,
        meta: &Metadata,
        op: impl for<'a> Fn(&'a dyn CrmAdapter, &'a Credentials) -> CallFuture<'a, T>,
    ) -> Result<T, EngineError> {
        self.ensure_fresh(meta).await?;
        match op(self.adapter.as_ref(), &self.credentials).await {
            Err(CrmError::Unauthorized) if self.credentials.tokens().is_some() => {
                tracing::info!(integration_id = ?self.integration.id, "access token rejected; refreshing");
                self.refresh(meta).await?;
                Ok(op(self.adapter.as_ref(), &self.credentials).await?)
            }
            other => Ok(other?),
        }
    }

    fn id(&self) -> String {
        self.integration.id.clone().unwrap_or_default()
    }

    /// Replaces the credentials of this session's generation, exactly once across
    /// every worker: the claim winner calls the provider, the others adopt its result.
    pub async fn refresh(&mut self, meta: &Metadata) -> Result<(), EngineError> {
        let id = self.id();
        let stale = self.generation;
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REFRESH;
        let mut pause = Duration::from_millis(20);
        loop {
            let current = self.connections.load(&id).await?;
            if current.credentials_generation != stale {
                return self.adopt(current).await;
            }
            let claim = IntegrationCommand::ClaimCredentialRefresh {
                holder: self.holder.clone(),
                generation: stale,
                until: Utc::now() + LEASE,
                at: Utc::now(),
            };
            match self
                .connections
                .inner
                .integrations
                .execute(&id, claim, meta)
                .await
            {
                Ok(()) => return self.refresh_as_winner(meta, stale).await,
                Err(syncledger_store::CommandError::Domain(
                    IntegrationError::RefreshInProgress { until },
                )) => {
                    wait_for_holder(until, deadline, &mut pause).await?;
                }
                Err(syncledger_store::CommandError::Domain(
                    IntegrationError::CredentialsChanged,
                )) => {}
                Err(syncledger_store::CommandError::Domain(
                    IntegrationError::InvalidTransition { from, .. },
                )) => {
                    return Err(EngineError::Unusable {
                        status: from.as_str(),
                        reason: current
                            .last_error
                            .unwrap_or_else(|| "no reason recorded".into()),
                    })
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    async fn refresh_as_winner(
        &mut self,
        meta: &Metadata,
        generation: u64,
    ) -> Result<(), EngineError> {
        let id = self.id();
        let tokens = self.credentials.tokens().cloned();
        let refresh_token = tokens
            .as_ref()
            .and_then(|t| t.refresh_token.as_ref())
            .map(|r| r.expose_secret().to_owned());
        let outcome = match refresh_token {
            Some(token) => self.adapter.refresh(&token).await,
            None => Err(CrmError::OAuth("no refresh token was granted".into())),
        };
        let abandon =
            |reason: String, permanent: bool| IntegrationCommand::AbandonCredentialRefresh {
                holder: self.holder.clone(),
                generation,
                reason,
                permanent,
                at: Utc::now(),
            };
        let mut fresh = match outcome {
            Ok(fresh) => fresh,
            Err(CrmError::OAuth(grant)) => {
                let reason = format!(
                    "the provider refused the refresh token ({}); reconnect the integration",
                    clean(&grant)
                );
                self.connections
                    .inner
                    .integrations
                    .execute(&id, abandon(reason, true), meta)
                    .await?;
                return Err(EngineError::RefreshRejected);
            }
            Err(other) => {
                let reason = other.to_string();
                self.connections
                    .inner
                    .integrations
                    .execute(&id, abandon(reason, false), meta)
                    .await?;
                return Err(other.into());
            }
        };
        if fresh.instance_url.is_none() {
            fresh.instance_url = tokens.and_then(|t| t.instance_url);
        }
        let credentials = Credentials::OAuth2(fresh);
        let (kind, secret, expires_at) = seal_credentials(
            &self.connections.inner.vault,
            &self.integration.workspace_id,
            &credentials,
        )
        .await?;
        let complete = IntegrationCommand::CompleteCredentialRefresh {
            holder: self.holder.clone(),
            generation,
            kind,
            secret,
            expires_at,
            at: Utc::now(),
        };
        match self
            .connections
            .inner
            .integrations
            .execute(&id, complete, meta)
            .await
        {
            Ok(()) => {
                let current = self.connections.load(&id).await?;
                self.generation = current.credentials_generation;
                self.integration = current;
                self.credentials = credentials;
                Ok(())
            }
            // Our lease ran out and someone else refreshed: theirs are the live tokens.
            Err(syncledger_store::CommandError::Domain(IntegrationError::CredentialsChanged)) => {
                let current = self.connections.load(&id).await?;
                self.adopt(current).await
            }
            Err(other) => Err(other.into()),
        }
    }

    async fn adopt(&mut self, current: Integration) -> Result<(), EngineError> {
        self.credentials = self.connections.credentials_of(&current).await?;
        self.generation = current.credentials_generation;
        self.integration = current;
        Ok(())
    }
}

/// Waits a little for another worker's refresh: until its lease ends at the latest.
async fn wait_for_holder(
    until: DateTime<Utc>,
    deadline: tokio::time::Instant,
    pause: &mut Duration,
) -> Result<(), EngineError> {
    if tokio::time::Instant::now() >= deadline {
        return Err(EngineError::RefreshTimeout);
    }
    let lease_left = (until - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep((*pause).min(lease_left.max(Duration::from_millis(5)))).await;
    *pause = (*pause * 2).min(Duration::from_millis(500));
    Ok(())
}
