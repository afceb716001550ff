//! Salesforce REST adapter: OAuth 2.0 web-server flow with PKCE, SOQL pulls
//! over `SystemModstamp`, sObject Collections for writes and `getDeleted`
//! for deletions.

mod pull;
mod push;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use syncledger_domain::Entity;

use crate::adapter::CrmAdapter;
use crate::catalogue::Catalogue;
use crate::error::CrmError;
use crate::http::{build_client, pacer, Executor, Lane, RetryPolicy, WindowReading};
use crate::oauth::{self, OAuthApp};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushOp, PushResult, RemoteRecord, Tokens,
};

/// Settings of one Salesforce connected app.
#[derive(Clone, Debug)]
pub struct SalesforceConfig {
    /// The login host serving `/services/oauth2/*`, e.g. `https://login.salesforce.com`
    /// (`https://test.salesforce.com` for sandboxes, or a My Domain host).
    pub login_url: String,
    /// The REST host to use when the tokens carry no `instance_url`
    /// (e.g. a session id passed as an API key).
    pub instance_url: Option<String>,
    /// REST version, e.g. `v60.0`.
    pub api_version: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// `Sforce-Query-Options: batchSize` (200..=2000).
    pub page_size: u32,
    /// Client-side pacing: at most this many calls per `pacing_interval`;
    /// `None` leaves pacing to the retries.
    pub requests_per_interval: Option<u32>,
    pub pacing_interval: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Which hosts requests may reach (strict by default: official domains only).
    pub outbound: OutboundPolicy,
}

impl SalesforceConfig {
    /// Production login host and conservative pacing: Salesforce meters a
    /// daily quota and concurrent long requests rather than a short window, so
    /// 25 calls per 20 s keeps one sync from starving the org's other clients.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            login_url: "https://login.salesforce.com".into(),
            instance_url: None,
            api_version: "v60.0".into(),
            client_id: client_id.into(),
            client_secret,
            scopes: vec!["api".into(), "refresh_token".into()],
            page_size: 2000,
            requests_per_interval: Some(25),
            pacing_interval: Duration::from_secs(20),
            max_retries: 6,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The Salesforce implementation of [`CrmAdapter`].
#[derive(Debug)]
pub struct SalesforceAdapter {
    config: SalesforceConfig,
    http: Executor,
    /// Field names per entity from `describe`, selected by every pull.
    fields: Catalogue<Vec<String>>,
}

impl SalesforceAdapter {
    pub fn new(mut config: SalesforceConfig) -> Result<Self, CrmError> {
        config.login_url = config.login_url.trim_end_matches('/').to_owned();
        config.instance_url = config
            .instance_url
            .map(|u| u.trim_end_matches('/').to_owned());
        if !(200..=2000).contains(&config.page_size) {
            return Err(CrmError::Config(
                "page_size must be within 200..=2000".into(),
            ));
        }
        let guard = Guard::builtin(config.outbound, "salesforce");
        guard.check("base_url", &config.login_url)?;
        if let Some(instance) = &config.instance_url {
            guard.check("base_url", instance)?;
        }
        let client = build_client(config.connect_timeout, config.request_timeout, &guard)?;
        let general = config
            .requests_per_interval
            .and_then(|n| pacer(n, config.pacing_interval));
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        };
        let http = Executor::new(client, guard, general, None, policy)
            .with_provider("salesforce")
            .with_rate_headers(limit_info)
            .with_classifier(classify);
        Ok(Self {
            config,
            http,
            fields: Catalogue::default(),
        })
    }

    /// Tokens whose `instance_url` the outbound policy allows: `https://` on the
    /// provider's domain with no query or fragment (a loopback sandbox when allowed).
    fn checked(&self, tokens: Tokens) -> Result<Tokens, CrmError> {
        if let Some(url) = &tokens.instance_url {
            self.http.guard().check_returned("instance_url", url)?;
        }
        Ok(tokens)
    }

    fn oauth_app(&self) -> OAuthApp {
        OAuthApp {
            authorize_url: format!("{}/services/oauth2/authorize", self.config.login_url),
            token_url: format!("{}/services/oauth2/token", self.config.login_url),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
            scopes: self.config.scopes.clone(),
            basic_auth: false,
            extra_params: Vec::new(),
        }
    }

    /// The host REST calls go to: the token's `instance_url`, else the
    /// configured one, else the login host (a My Domain host serves both).
    fn instance(&self, credentials: &Credentials) -> String {
        credentials
            .tokens()
            .and_then(|t| t.instance_url.as_deref())
            .or(self.config.instance_url.as_deref())
            .unwrap_or(&self.config.login_url)
            .trim_end_matches('/')
            .to_owned()
    }

    /// `{instance}/services/data/{version}{path}`.
    fn data_url(&self, credentials: &Credentials, path: &str) -> String {
        format!(
            "{}/services/data/{}{path}",
            self.instance(credentials),
            self.config.api_version
        )
    }

    fn cached_fields(&self, entity: Entity) -> Option<Vec<String>> {
        self.fields.get(entity)
    }

    fn cache_fields(&self, entity: Entity, names: Vec<String>) {
        self.fields.put(entity, names);
    }
}

/// The sObject behind an entity.
fn sobject(entity: Entity) -> &'static str {
    match entity {
        Entity::Contacts => "Contact",
        Entity::Companies => "Account",
    }
}

/// OAuth sessions and session ids passed as API keys both travel as bearer tokens.
fn bearer(credentials: &Credentials) -> Result<String, CrmError> {
    match credentials {
        Credentials::OAuth2(t) => Ok(format!("Bearer {}", t.access_token.expose_secret())),
        Credentials::ApiKey(key) => Ok(format!("Bearer {}", key.expose_secret())),
        Credentials::Basic { .. } => Err(CrmError::Config(
            "Salesforce takes OAuth tokens or a session id, not basic credentials".into(),
        )),
    }
}

/// Logs `Sforce-Limit-Info: api-usage=N/LIMIT`. It reports a daily quota, not
/// a short window, so it never feeds the executor's hold-back (which would
/// stall for hours); running out is caught from the 403 instead.
fn limit_info(headers: &HeaderMap) -> Option<WindowReading> {
    let value = headers.get("Sforce-Limit-Info")?.to_str().ok()?;
    let usage = value
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("api-usage="))
        .next()?;
    let (used, limit) = usage.split_once('/')?;
    let (used, limit): (u64, u64) = (used.trim().parse().ok()?, limit.trim().parse().ok()?);
    if limit > 0 && used.saturating_mul(10) >= limit.saturating_mul(9) {
        tracing::warn!(used, limit, "Salesforce daily API usage above 90%");
    } else {
        tracing::debug!(used, limit, "Salesforce daily API usage");
    }
    None
}

/// Salesforce's error bodies: `[{"message", "errorCode", "fields"}]`.
fn classify(status: StatusCode, body: &[u8]) -> Option<CrmError> {
    let first = serde_json::from_slice::<Vec<wire::ApiError>>(body)
        .ok()
        .and_then(|errors| errors.into_iter().next());
    match (status.as_u16(), first) {
        (401, _) => Some(CrmError::Unauthorized),
        // The identity service answers a bad token with a plain-text 403.
        (403, None) if body.starts_with(b"Bad_OAuth_Token") => Some(CrmError::Unauthorized),
        // The concurrent-request limit shares the code with the daily quota;
        // it clears within seconds, so it is reported as transient.
        (403, Some(e))
            if e.error_code == "REQUEST_LIMIT_EXCEEDED" && e.message.contains("Concurrent") =>
        {
            Some(CrmError::RateLimited { attempts: 1 })
        }
        (403, Some(e)) if e.error_code == "REQUEST_LIMIT_EXCEEDED" => {
            Some(CrmError::QuotaExhausted(e.message))
        }
        (429, _) | (500..=599, _) => None,
        (code @ 400..=499, Some(e)) => Some(CrmError::Rejected {
            status: code,
            category: e.error_code,
            message: e.message,
        }),
        _ => None,
    }
}

#[async_trait]
impl CrmAdapter for SalesforceAdapter {
    fn usage(&self) -> crate::types::Usage {
        self.http.usage()
    }

    fn push_batch_size(&self) -> usize {
        push::COLLECTION_LIMIT
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
        let tokens = oauth::exchange_code(
            &self.oauth_app(),
            &self.http,
            code,
            pkce_verifier,
            redirect_uri,
        )
        .await?;
        self.checked(tokens)
    }

    /// Salesforce does not rotate refresh tokens and sends no `expires_in`:
    /// the result keeps the refresh token passed in and has no expiry.
    #[tracing::instrument(skip_all, err)]
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError> {
        let tokens = oauth::refresh(&self.oauth_app(), &self.http, refresh_token).await?;
        self.checked(tokens)
    }

    /// Revokes the refresh token (ending its sessions too), else the session.
    #[tracing::instrument(skip_all, err)]
    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError> {
        let token = tokens
            .refresh_token
            .as_ref()
            .unwrap_or(&tokens.access_token)
            .expose_secret()
            .to_owned();
        let url = format!("{}/services/oauth2/revoke", self.config.login_url);
        self.http
            .send::<serde_json::Value>(Lane::General, |c| c.post(&url).form(&[("token", &token)]))
            .await
            .map(drop)
    }

    #[tracing::instrument(skip_all, err)]
    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let base = self.instance(credentials);
        let url = format!("{base}/services/oauth2/userinfo");
        let auth = bearer(credentials)?;
        let reply = self
            .http
            .send::<wire::UserInfo>(Lane::General, |c| {
                c.get(&url).header("Authorization", &auth)
            })
            .await?;
        let info = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty userinfo".into()))?;
        Ok(Identity {
            account_id: info.organization_id,
            user: info.preferred_username.or(info.email).or(info.user_id),
        })
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError> {
        let url = self.data_url(
            credentials,
            &format!("/sobjects/{}/describe", sobject(entity)),
        );
        let auth = bearer(credentials)?;
        let reply = self
            .http
            .send::<wire::Describe>(Lane::General, |c| {
                c.get(&url).header("Authorization", &auth)
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty describe response".into()))?;
        let fields: Vec<FieldInfo> = body.fields.into_iter().map(Into::into).collect();
        self.cache_fields(entity, fields.iter().map(|f| f.name.clone()).collect());
        Ok(fields)
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn pull_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        match cursor {
            None => self.first_page(credentials, entity, since).await,
            Some(Cursor::SalesforceQuery { next_records_url }) => {
                self.next_page(credentials, &next_records_url).await
            }
            Some(other) => Err(CrmError::Config(format!(
                "cursor {other:?} does not belong to a Salesforce pull"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ops = ops.len()), err)]
    async fn push_batch(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        self.push(credentials, entity, ops).await
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn read_records(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<RemoteRecord>>, CrmError> {
        self.retrieve(credentials, entity, ids).await.map(Some)
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn deletions(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        if let Some(other) = cursor {
            return Err(CrmError::Config(format!(
                "cursor {other:?} does not belong to a getDeleted scan"
            )));
        }
        self.deleted(credentials, entity, since).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(status: u16, body: &str) -> Option<CrmError> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        classify(status, body.as_bytes())
    }

    #[test]
    fn daily_limit_is_quota_exhaustion() {
        let body =
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        assert!(matches!(
            classified(403, body),
            Some(CrmError::QuotaExhausted(_))
        ));
    }

    #[test]
    fn the_concurrency_limit_is_transient_not_quota() {
        let body = r#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#;
        let error = classified(403, body);
        assert!(
            matches!(error, Some(CrmError::RateLimited { .. })),
            "{error:?}"
        );
        assert!(error.is_some_and(|e| e.is_transient()));
    }

    #[test]
    fn session_errors_are_unauthorized() {
        let body = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
        assert!(matches!(
            classified(401, body),
            Some(CrmError::Unauthorized)
        ));
        assert!(matches!(
            classified(403, "Bad_OAuth_Token"),
            Some(CrmError::Unauthorized)
        ));
    }

    #[test]
    fn client_errors_carry_the_error_code_and_transient_ones_are_left_to_retries() {
        let body = r#"[{"message":"unexpected token","errorCode":"MALFORMED_QUERY"}]"#;
        assert!(matches!(
            classified(400, body),
            Some(CrmError::Rejected { status: 400, ref category, .. }) if category == "MALFORMED_QUERY"
        ));
        assert!(classified(503, r#"[{"message":"x","errorCode":"SERVER_UNAVAILABLE"}]"#).is_none());
        assert!(classified(429, "").is_none());
    }

    #[test]
    fn usage_header_never_holds_back() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Sforce-Limit-Info",
            reqwest::header::HeaderValue::from_static("api-usage=15000/15000"),
        );
        assert_eq!(limit_info(&headers), None);
    }
}
