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

/// Tokens that expire within this margin are refreshed before use; a token that lives
/// shorter than twice the margin is refreshed at half its lifetime instead.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// How long before expiry a token is refreshed: `min(5 min, lifetime / 2)`. The
/// lifetime is known when the issue time is; without it the full margin applies.
pub fn refresh_margin(
    issued_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
) -> chrono::Duration {
    match issued_at {
        Some(issued) if expires_at > issued => REFRESH_MARGIN.min((expires_at - issued) / 2),
        Some(_) => chrono::Duration::zero(),
        None => REFRESH_MARGIN,
    }
}

/// What to do with OAuth tokens before a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Use the access token as it is.
    Use,
    /// Refresh first.
    Refresh,
    /// The access token has expired and there is no refresh token to renew it.
    ExpiredWithoutRefresh,
}

/// Decides whether tokens need refreshing at `now`. An access token without a
/// refresh token is used until it expires; only then does it become unusable.
pub fn freshness(
    now: DateTime<Utc>,
    issued_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    has_refresh_token: bool,
) -> Freshness {
    let Some(expires_at) = expires_at else {
        return Freshness::Use;
    };
    if !has_refresh_token {
        return if now >= expires_at {
            Freshness::ExpiredWithoutRefresh
        } else {
            Freshness::Use
        };
    }
    if expires_at <= now + refresh_margin(issued_at, expires_at) {
        Freshness::Refresh
    } else {
        Freshness::Use
    }
}

/// The failure reason recorded when an access token expired with no refresh token.
pub const EXPIRED_WITHOUT_REFRESH: &str =
    "the access token has expired and the provider issued no refresh token; reconnect the integration";
/// How long a refresh claim holds off other workers.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How long a waiting worker waits for another's refresh before giving up.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(45);

/// Opens sessions on integrations. One per process; cheap to share.
#[derive(Clone)]
pub struct Connections {
    sources: Arc<SessionSources>,
}

/// Where sessions come from: the integrations (with their sealed credentials), the vault
/// that opens them, the connector that builds adapters, and this process's name in
/// refresh claims.
struct SessionSources {
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
            sources: Arc::new(SessionSources {
                integrations: store.cqrs(),
                vault,
                connector,
                holder: holder.into(),
            }),
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.sources.connector
    }

    /// The adapter for an integration, without credentials (to start an OAuth flow).
    pub fn adapter(&self, integration: &Integration) -> Result<Arc<dyn CrmAdapter>, EngineError> {
        self.sources.connector.adapter(integration)
    }

    async fn load(&self, integration_id: &str) -> Result<Integration, EngineError> {
        let state = self.sources.integrations.load(integration_id).await?;
        if state.id.is_none() {
            return Err(EngineError::NotFound);
        }
        Ok(state)
    }

    /// Revokes the integration's OAuth tokens at the provider before it is disconnected
    /// (RFC 7009, where the provider has a revocation endpoint). Best effort: a failure
    /// is logged and the disconnection goes on, since the user asked to stop.
    pub async fn revoke_best_effort(&self, integration: &Integration) {
        if integration.credential_kind
            != Some(syncledger_domain::integration::CredentialKind::Oauth2)
        {
            return;
        }
        let Some(id) = integration.id.as_deref() else {
            return;
        };
        let result = async {
            let session = self.session(id).await?;
            let Some(tokens) = session.credentials().tokens() else {
                return Ok(());
            };
            session.adapter().revoke(tokens).await?;
            Ok::<(), EngineError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not revoke the OAuth tokens; disconnecting anyway");
        }
    }

    /// A session on the integration with its current credentials.
    pub async fn session(&self, integration_id: &str) -> Result<Session, EngineError> {
        let integration = self.load(integration_id).await?;
        let adapter = self.adapter(&integration)?;
        let credentials = self.credentials_of(&integration).await?;
        Ok(Session {
            connections: self.clone(),
            generation: integration.credentials_generation,
            holder: format!("{}:{}", self.sources.holder, uuid::Uuid::now_v7()),
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
            &self.sources.vault,
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
        let Some(tokens) = self.credentials.tokens() else {
            return Ok(());
        };
        match freshness(
            Utc::now(),
            self.integration.credentials_issued_at,
            tokens.expires_at,
            tokens.refresh_token.is_some(),
        ) {
            Freshness::Use => Ok(()),
            Freshness::Refresh | Freshness::ExpiredWithoutRefresh => self.refresh(meta).await,
        }
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
                .sources
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
        let provider = self.integration.provider.clone();
        let Some(refresh_token) = refresh_token else {
            crate::metrics::token_refresh(&provider, "rejected");
            self.abandon(meta, generation, EXPIRED_WITHOUT_REFRESH.to_owned(), true)
                .await?;
            return Err(EngineError::RefreshRejected);
        };
        let issued_for = tokens.as_ref().and_then(|t| t.instance_url.clone());
        let mut fresh = match self
            .adapter
            .refresh_at(&refresh_token, issued_for.as_deref())
            .await
        {
            Ok(fresh) => fresh,
            // Only a definitive answer (the grant or client refused, an unusable token
            // type) needs the user; anything else may pass, so the integration stays
            // connected and the caller fails in a way it can retry.
            Err(e) if e.needs_reauthorization() => {
                crate::metrics::token_refresh(&provider, "rejected");
                self.abandon(meta, generation, reauthorization_reason(&e), true)
                    .await?;
                return Err(EngineError::RefreshRejected);
            }
            Err(other) => {
                crate::metrics::token_refresh(&provider, "failed");
                self.abandon(meta, generation, other.to_string(), false)
                    .await?;
                return Err(other.into());
            }
        };
        crate::metrics::token_refresh(&provider, "refreshed");
        if fresh.instance_url.is_none() {
            fresh.instance_url = tokens.and_then(|t| t.instance_url);
        }
        let credentials = Credentials::OAuth2(fresh);
        let (kind, secret, expires_at) = seal_credentials(
            &self.connections.sources.vault,
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
            .sources
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

    /// Gives up this holder's refresh claim: `permanent` puts the integration in error
    /// with `reason`, else the claim is released for a later try.
    async fn abandon(
        &self,
        meta: &Metadata,
        generation: u64,
        reason: String,
        permanent: bool,
    ) -> Result<(), EngineError> {
        let command = IntegrationCommand::AbandonCredentialRefresh {
            holder: self.holder.clone(),
            generation,
            reason,
            permanent,
            at: Utc::now(),
        };
        self.connections
            .sources
            .integrations
            .execute(&self.id(), command, meta)
            .await?;
        Ok(())
    }

    async fn adopt(&mut self, current: Integration) -> Result<(), EngineError> {
        self.credentials = self.connections.credentials_of(&current).await?;
        self.generation = current.credentials_generation;
        self.integration = current;
        Ok(())
    }
}

/// Why a definitive refresh failure needs the user (provider text cleaned).
fn reauthorization_reason(error: &CrmError) -> String {
    match error {
        CrmError::OAuth(grant) => format!(
            "the provider refused the refresh token ({}); reconnect the integration",
            clean(grant)
        ),
        other => format!("{other}; reconnect the integration"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as D;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    #[test]
    fn a_four_minute_token_is_refreshed_at_half_its_life_not_before_every_request() {
        let issued = t0();
        let expires = issued + D::minutes(4);
        assert_eq!(refresh_margin(Some(issued), expires), D::minutes(2));
        assert_eq!(
            freshness(issued + D::seconds(10), Some(issued), Some(expires), true),
            Freshness::Use
        );
        assert_eq!(
            freshness(issued + D::seconds(121), Some(issued), Some(expires), true),
            Freshness::Refresh
        );
    }

    #[test]
    fn a_long_token_keeps_the_five_minute_margin() {
        let issued = t0();
        let expires = issued + D::hours(1);
        assert_eq!(refresh_margin(Some(issued), expires), D::minutes(5));
        assert_eq!(refresh_margin(None, expires), D::minutes(5));
    }

    #[test]
    fn a_token_without_refresh_token_is_used_until_it_expires() {
        let issued = t0();
        let expires = issued + D::minutes(30);
        assert_eq!(
            freshness(expires - D::seconds(1), Some(issued), Some(expires), false),
            Freshness::Use
        );
        assert_eq!(
            freshness(expires, Some(issued), Some(expires), false),
            Freshness::ExpiredWithoutRefresh
        );
    }

    proptest! {
        #[test]
        fn the_margin_is_min_of_five_minutes_and_half_the_lifetime(secs in 1i64..100_000) {
            let issued = t0();
            let expires = issued + D::seconds(secs);
            let margin = refresh_margin(Some(issued), expires);
            prop_assert_eq!(margin, D::minutes(5).min(D::seconds(secs) / 2));
            // Fresh tokens are never refreshed right after they were issued.
            prop_assert_eq!(freshness(issued, Some(issued), Some(expires), true), Freshness::Use);
        }
    }
}
