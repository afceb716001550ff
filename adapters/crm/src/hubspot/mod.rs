//! HubSpot CRM v3 adapter.

mod pull;
mod push;
pub mod replay;
pub mod webhook;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use syncledger_domain::Entity;

use crate::adapter::CrmAdapter;
use crate::catalogue::Catalogue;
use crate::error::CrmError;
use crate::http::{build_client, rolling_pacer, Executor, Lane, RetryPolicy};
use crate::oauth::{self, OAuthApp};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushOp, PushResult, RemoteRecord, Tokens,
};

/// Settings of one HubSpot app.
#[derive(Clone, Debug)]
pub struct HubSpotConfig {
    /// The API host, e.g. `https://api.hubapi.com`.
    pub base_url: String,
    /// The host serving `/oauth/authorize`, e.g. `https://app.hubspot.com`.
    pub auth_base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// Client-side pacing of all calls; `None` leaves pacing to the retries.
    pub requests_per_10s: Option<u32>,
    /// Client-side pacing of search calls.
    pub search_per_s: Option<u32>,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The host of the token and revocation endpoints, e.g. `https://api.hubapi.com`:
    /// the client secret goes there, whatever `base_url` says.
    pub oauth_base_url: String,
    /// Which hosts requests may reach (strict by default: official domains only).
    pub outbound: OutboundPolicy,
}

impl HubSpotConfig {
    /// Production hosts and the documented limits of a free/starter app.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            base_url: "https://api.hubapi.com".into(),
            auth_base_url: "https://app.hubspot.com".into(),
            client_id: client_id.into(),
            client_secret,
            scopes: [
                "oauth",
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.objects.companies.read",
                "crm.objects.companies.write",
            ]
            .map(String::from)
            .to_vec(),
            requests_per_10s: Some(100),
            search_per_s: Some(4),
            max_retries: 6,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            oauth_base_url: "https://api.hubapi.com".into(),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The HubSpot implementation of [`CrmAdapter`].
#[derive(Debug)]
pub struct HubSpotAdapter {
    config: HubSpotConfig,
    http: Executor,
    properties: Catalogue<Vec<String>>,
}

impl HubSpotAdapter {
    pub fn new(mut config: HubSpotConfig) -> Result<Self, CrmError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        config.auth_base_url = config.auth_base_url.trim_end_matches('/').to_owned();
        config.oauth_base_url = config.oauth_base_url.trim_end_matches('/').to_owned();
        let guard = Guard::builtin(config.outbound, "hubspot");
        guard.check("base_url", &config.base_url)?;
        let client = build_client(config.connect_timeout, config.request_timeout, &guard)?;
        let general = config
            .requests_per_10s
            .and_then(|n| rolling_pacer(n, Duration::from_secs(10)));
        let search = config
            .search_per_s
            .and_then(|n| rolling_pacer(n, Duration::from_secs(1)));
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        };
        let http = Executor::new(client, guard, general, search, policy)
            .with_provider("hubspot")
            .with_rate_headers(crate::http::hubspot_rate_headers);
        Ok(Self {
            config,
            http,
            properties: Catalogue::default(),
        })
    }

    fn oauth_app(&self) -> OAuthApp {
        OAuthApp {
            authorize_url: format!("{}/oauth/authorize", self.config.auth_base_url),
            token_url: format!("{}/oauth/v1/token", self.config.oauth_base_url),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
            scopes: self.config.scopes.clone(),
            basic_auth: false,
            extra_params: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }

    fn cached_properties(&self, entity: Entity) -> Option<Vec<String>> {
        self.properties.get(entity)
    }

    fn cache_properties(&self, entity: Entity, names: Vec<String>) {
        self.properties.put(entity, names);
    }

    fn objects_url(&self, entity: Entity, suffix: &str) -> String {
        self.url(&format!("/crm/v3/objects/{}{suffix}", entity.as_str()))
    }
}

/// OAuth access tokens and private-app tokens both travel as bearer tokens.
fn bearer(credentials: &Credentials) -> Result<String, CrmError> {
    match credentials {
        Credentials::OAuth2(t) => Ok(format!("Bearer {}", t.access_token.expose_secret())),
        Credentials::ApiKey(key) => Ok(format!("Bearer {}", key.expose_secret())),
        Credentials::Basic { .. } => Err(CrmError::Config(
            "HubSpot takes OAuth or private-app tokens, not basic credentials".into(),
        )),
    }
}

#[async_trait]
impl CrmAdapter for HubSpotAdapter {
    fn usage(&self) -> crate::types::Usage {
        self.http.usage()
    }

    fn push_batch_size(&self) -> usize {
        push::BATCH_LIMIT
    }

    fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
    ) -> Result<(String, String), CrmError> {
        oauth::authorization_url(&self.oauth_app(), redirect_uri, state)
    }

    #[tracing::instrument(skip_all, err)]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, CrmError> {
        oauth::exchange_code(
            &self.oauth_app(),
            &self.http,
            code,
            pkce_verifier,
            redirect_uri,
        )
        .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError> {
        oauth::refresh(&self.oauth_app(), &self.http, refresh_token).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError> {
        let Some(refresh) = &tokens.refresh_token else {
            return Ok(());
        };
        let url = format!(
            "{}/oauth/v1/refresh-tokens/{}",
            self.config.oauth_base_url,
            refresh.expose_secret()
        );
        self.http
            .send::<serde_json::Value>(Lane::General, |c| c.delete(&url))
            .await
            .map(drop)
    }

    #[tracing::instrument(skip_all, err)]
    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let Credentials::OAuth2(tokens) = credentials else {
            // A private-app token has no token-info endpoint: a one-record read proves it.
            let url = self.objects_url(Entity::Contacts, "");
            let auth = bearer(credentials)?;
            self.http
                .send::<serde_json::Value>(Lane::General, |c| {
                    c.get(&url)
                        .header("Authorization", &auth)
                        .query(&[("limit", "1")])
                })
                .await?;
            return Ok(Identity {
                account_id: "private-app".into(),
                user: None,
            });
        };
        let url = self.url(&format!(
            "/oauth/v1/access-tokens/{}",
            tokens.access_token.expose_secret()
        ));
        let reply = self
            .http
            .send::<wire::TokenInfo>(Lane::General, |c| c.get(&url))
            .await
            .map_err(|e| match e {
                // An unknown token is reported as 404 here.
                CrmError::Rejected { status: 404, .. } => CrmError::Unauthorized,
                other => other,
            })?;
        let info = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty token info".into()))?;
        Ok(Identity {
            account_id: info.hub_id.to_string(),
            user: info.user,
        })
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn fields(
        &self,
        tokens: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError> {
        let url = self.url(&format!("/crm/v3/properties/{}", entity.as_str()));
        let auth = bearer(tokens)?;
        let reply = self
            .http
            .send::<wire::PropertiesResponse>(Lane::General, |c| {
                c.get(&url).header("Authorization", &auth)
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty properties response".into()))?;
        let fields: Vec<FieldInfo> = body.results.into_iter().map(Into::into).collect();
        self.cache_properties(entity, fields.iter().map(|f| f.name.clone()).collect());
        Ok(fields)
    }

    async fn pull_page(
        &self,
        tokens: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        self.pull_page_since(tokens, entity, cursor, since, &[])
            .await
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn pull_page_since(
        &self,
        tokens: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
        seen: &[String],
    ) -> Result<Page, CrmError> {
        match (cursor, since) {
            (Some(Cursor::HubSpotSearch { since: from, after }), _) => {
                // A search restarted past the 10,000 cap starts from a later
                // instant: `seen` describes only the pull's own `since`.
                let seen = if Some(from) == since { seen } else { &[] };
                self.search_page(tokens, entity, from, after, seen).await
            }
            (Some(Cursor::HubSpotList { after }), _) => {
                self.list_page(tokens, entity, Some(after), false).await
            }
            (None, Some(since)) => self.search_page(tokens, entity, since, None, seen).await,
            (None, None) => self.list_page(tokens, entity, None, false).await,
            (Some(other), _) => Err(CrmError::Config(format!(
                "cursor {other:?} does not belong to a HubSpot pull"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ops = ops.len()), err)]
    async fn push_batch(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        self.push(tokens, entity, ops).await
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn read_records(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<RemoteRecord>>, CrmError> {
        self.batch_read(tokens, entity, ids).await.map(Some)
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn delete_records(
        &self,
        tokens: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<PushResult>>, CrmError> {
        self.batch_archive(tokens, entity, ids).await.map(Some)
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn deletions(
        &self,
        tokens: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        _since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        // The recycle bin keeps archived records for 90 days; all of them are listed.
        let after = match cursor {
            None => None,
            Some(Cursor::HubSpotList { after }) => Some(after),
            Some(other) => {
                return Err(CrmError::Config(format!(
                    "cursor {other:?} does not belong to a deletions scan"
                )))
            }
        };
        self.list_page(tokens, entity, after, true).await
    }
}
