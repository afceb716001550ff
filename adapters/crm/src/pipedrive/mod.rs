//! Pipedrive adapter: v2 persons and organizations, v1 field catalogues and
//! `/v1/recents` for deletions, API-token or OAuth (`api_domain`) credentials.

mod fields;
mod push;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use syncledger_domain::Entity;

use crate::adapter::CrmAdapter;
use crate::catalogue::Catalogue;
use crate::error::CrmError;
use crate::http::{build_client, header_u32, pacer, Executor, Lane, RetryPolicy, WindowReading};
use crate::oauth::{self, OAuthApp};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushOp, PushResult, RemoteRecord, Tokens,
};
use fields::{FieldDef, FieldMap};

/// Settings of one Pipedrive app.
#[derive(Clone, Debug)]
pub struct PipedriveConfig {
    /// The API host for API-token credentials (OAuth tokens carry their own
    /// `api_domain`), e.g. `https://api.pipedrive.com`.
    pub base_url: String,
    /// The host serving `/oauth/authorize`, `/oauth/token` and `/oauth/revoke`.
    pub oauth_base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Scopes are set on the app in Pipedrive's marketplace; usually empty here.
    pub scopes: Vec<String>,
    /// Records per v2 list page (Pipedrive allows up to 500).
    pub page_limit: u32,
    /// Client-side pacing per 2-second window (Pipedrive's window); `None`
    /// leaves pacing to the retries.
    pub requests_per_2s: Option<u32>,
    /// Read deletions from `/v1/recents` (soft-deleted records reported with
    /// `active_flag: false`). Pipedrive's documentation does not confirm that
    /// recents lists deleted persons and organizations; with `false`,
    /// [`CrmAdapter::deletions`] reports none and the engine has to find
    /// deletions by comparing full pulls.
    pub deletions_from_recents: bool,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Which hosts requests may reach (strict by default: official domains only).
    pub outbound: OutboundPolicy,
}

impl PipedriveConfig {
    /// Production hosts and the smallest documented OAuth budget (80 per 2 s).
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            base_url: "https://api.pipedrive.com".into(),
            oauth_base_url: "https://oauth.pipedrive.com".into(),
            client_id: client_id.into(),
            client_secret,
            scopes: Vec::new(),
            page_limit: 500,
            requests_per_2s: Some(80),
            deletions_from_recents: true,
            max_retries: 6,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The Pipedrive implementation of [`CrmAdapter`].
#[derive(Debug)]
pub struct PipedriveAdapter {
    config: PipedriveConfig,
    http: Executor,
    fields: Catalogue<Arc<FieldMap>>,
}

/// How a call authenticates. Not `Debug`: it holds the secret.
#[derive(Clone)]
enum Auth {
    ApiToken(String),
    Bearer(String),
}

impl Auth {
    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Auth::ApiToken(token) => request.header("x-api-token", token),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// Pipedrive's `x-ratelimit-limit`, `-remaining` and `-reset` (seconds).
pub fn pipedrive_rate_headers(headers: &HeaderMap) -> Option<WindowReading> {
    Some(WindowReading {
        max: header_u32(headers, "x-ratelimit-limit")?,
        remaining: header_u32(headers, "x-ratelimit-remaining")?,
        interval_ms: header_u32(headers, "x-ratelimit-reset").map_or(0, |s| s.saturating_mul(1000)),
    })
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    success: Option<bool>,
    error: Option<String>,
}

/// Client errors with Pipedrive's `{success:false, error}` body become
/// `Rejected` with the error text (never the request, which holds tokens).
fn classify(status: StatusCode, body: &[u8]) -> Option<CrmError> {
    let code = status.as_u16();
    if !status.is_client_error() || code == 401 || code == 429 {
        return None;
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    if parsed.success != Some(false) {
        return None;
    }
    let category = match code {
        400 => "VALIDATION_ERROR",
        402 => "PAYMENT_REQUIRED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        410 => "GONE",
        _ => "CLIENT_ERROR",
    };
    let message: String = parsed.error.unwrap_or_default().chars().take(300).collect();
    Some(CrmError::Rejected {
        status: code,
        category: category.into(),
        message,
    })
}

fn path(entity: Entity) -> &'static str {
    match entity {
        Entity::Contacts => "persons",
        Entity::Companies => "organizations",
    }
}

fn body<T>(
    reply: crate::http::Reply<wire::Envelope<T, impl Sized>>,
    what: &str,
) -> Result<T, CrmError> {
    reply
        .body
        .and_then(|b| b.data)
        .ok_or_else(|| CrmError::Malformed(format!("{what}: no data")))
}

impl PipedriveAdapter {
    pub fn new(mut config: PipedriveConfig) -> Result<Self, CrmError> {
        config.base_url = config.base_url.trim_end_matches('/').to_owned();
        config.oauth_base_url = config.oauth_base_url.trim_end_matches('/').to_owned();
        let guard = Guard::builtin(config.outbound, "pipedrive");
        guard.check("base_url", &config.base_url)?;
        let client = build_client(config.connect_timeout, config.request_timeout, &guard)?;
        let general = config
            .requests_per_2s
            .and_then(|n| pacer(n, Duration::from_secs(2)));
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        };
        let http = Executor::new(client, guard, general, None, policy)
            .with_provider("pipedrive")
            .with_rate_headers(pipedrive_rate_headers)
            .with_classifier(classify);
        Ok(Self {
            config,
            http,
            fields: Catalogue::default(),
        })
    }

    /// Tokens whose `api_domain` the outbound policy allows: `https://` on the
    /// provider's domain with no query or fragment (a loopback sandbox when allowed).
    fn checked(&self, tokens: Tokens) -> Result<Tokens, CrmError> {
        if let Some(url) = &tokens.instance_url {
            self.http.guard().check_returned("api_domain", url)?;
        }
        Ok(tokens)
    }

    fn oauth_app(&self) -> OAuthApp {
        OAuthApp {
            authorize_url: format!("{}/oauth/authorize", self.config.oauth_base_url),
            token_url: format!("{}/oauth/token", self.config.oauth_base_url),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
            scopes: self.config.scopes.clone(),
            basic_auth: true,
            extra_params: Vec::new(),
        }
    }

    /// The API host and authentication for these credentials: OAuth calls go
    /// to the company's `api_domain`, API-token calls to `base_url`.
    fn target(&self, credentials: &Credentials) -> Result<(String, Auth), CrmError> {
        match credentials {
            Credentials::OAuth2(tokens) => {
                let base = tokens
                    .instance_url
                    .as_deref()
                    .map_or(self.config.base_url.as_str(), |u| u.trim_end_matches('/'));
                let auth = Auth::Bearer(tokens.access_token.expose_secret().to_owned());
                Ok((base.to_owned(), auth))
            }
            Credentials::ApiKey(key) => Ok((
                self.config.base_url.clone(),
                Auth::ApiToken(key.expose_secret().to_owned()),
            )),
            Credentials::Basic { .. } => Err(CrmError::Config(
                "Pipedrive takes OAuth or API-token credentials, not basic credentials".into(),
            )),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        credentials: &Credentials,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<crate::http::Reply<T>, CrmError> {
        let (base, auth) = self.target(credentials)?;
        let url = format!("{base}{path}");
        self.http
            .send::<T>(Lane::General, |c| auth.apply(c.get(&url)).query(query))
            .await
    }

    /// The catalogue, following v1 pagination.
    async fn load_fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Arc<FieldMap>, CrmError> {
        let path = match entity {
            Entity::Contacts => "/v1/personFields",
            Entity::Companies => "/v1/organizationFields",
        };
        let (mut defs, mut start) = (Vec::<FieldDef>::new(), 0u64);
        loop {
            let query = [("start", start.to_string()), ("limit", "500".to_owned())];
            let reply = self
                .get::<wire::Envelope<Vec<FieldDef>, wire::V1Additional>>(credentials, path, &query)
                .await?;
            let envelope = reply
                .body
                .ok_or_else(|| CrmError::Malformed("empty field catalogue".into()))?;
            defs.extend(envelope.data.unwrap_or_default());
            match envelope.additional_data.and_then(|a| a.next_start()) {
                Some(next) if next > start => start = next,
                _ => break,
            }
        }
        let map = Arc::new(FieldMap::build(entity, &defs));
        self.fields.put(entity, map.clone());
        Ok(map)
    }

    /// The cached catalogue, loaded on first use.
    async fn field_map(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Arc<FieldMap>, CrmError> {
        match self.fields.get(entity) {
            Some(map) => Ok(map),
            None => self.load_fields(credentials, entity).await,
        }
    }

    /// Converts a page, reloading the catalogue once if a custom field is new.
    async fn convert(
        &self,
        credentials: &Credentials,
        entity: Entity,
        raw: &[Value],
    ) -> Result<Vec<RemoteRecord>, CrmError> {
        let map = self.field_map(credentials, entity).await?;
        let convert = |map: &FieldMap| -> Result<Vec<RemoteRecord>, String> {
            raw.iter().map(|r| wire::record(entity, map, r)).collect()
        };
        match convert(&map) {
            Ok(records) => Ok(records),
            Err(_) => {
                let map = self.load_fields(credentials, entity).await?;
                convert(&map).map_err(CrmError::Malformed)
            }
        }
    }

    async fn list_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<String>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        let mut query = vec![
            ("sort_by", "update_time".to_owned()),
            ("sort_direction", "asc".to_owned()),
            ("limit", self.config.page_limit.to_string()),
        ];
        if let Some(since) = since {
            // Inclusive; whole seconds round down, so nothing at `since` is lost.
            query.push((
                "updated_since",
                since.to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let path = format!("/api/v2/{}", path(entity));
        let reply = self
            .get::<wire::Envelope<Vec<Value>, wire::CursorData>>(credentials, &path, &query)
            .await?;
        let envelope = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty list response".into()))?;
        let records = self
            .convert(credentials, entity, &envelope.data.unwrap_or_default())
            .await?;
        let next = envelope
            .additional_data
            .and_then(|a| a.next_cursor)
            .filter(|c| !c.is_empty())
            .map(|cursor| Cursor::Pipedrive { cursor, since });
        Ok(Page {
            records,
            next,
            total: None,
        })
    }
}

#[async_trait]
impl CrmAdapter for PipedriveAdapter {
    fn usage(&self) -> crate::types::Usage {
        self.http.usage()
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

    #[tracing::instrument(skip_all, err)]
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError> {
        let tokens = oauth::refresh(&self.oauth_app(), &self.http, refresh_token).await?;
        self.checked(tokens)
    }

    /// Revokes the refresh token (ending the grant), else the access token.
    #[tracing::instrument(skip_all, err)]
    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError> {
        let (token, hint) = match &tokens.refresh_token {
            Some(refresh) => (refresh.expose_secret().to_owned(), "refresh_token"),
            None => (
                tokens.access_token.expose_secret().to_owned(),
                "access_token",
            ),
        };
        let url = format!("{}/oauth/revoke", self.config.oauth_base_url);
        let form = [("token", token.as_str()), ("token_type_hint", hint)];
        let (id, secret) = (
            &self.config.client_id,
            self.config.client_secret.expose_secret(),
        );
        self.http
            .send::<Value>(Lane::General, |c| {
                c.post(&url).basic_auth(id, Some(secret)).form(&form)
            })
            .await
            .map(drop)
    }

    #[tracing::instrument(skip_all, err)]
    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let reply = self
            .get::<wire::Envelope<wire::Me>>(credentials, "/v1/users/me", &[])
            .await?;
        let me = body(reply, "users/me")?;
        let account_id = me
            .company_id
            .as_ref()
            .and_then(wire::text)
            .ok_or_else(|| CrmError::Malformed("users/me without company_id".into()))?;
        Ok(Identity {
            account_id,
            user: me.email,
        })
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError> {
        Ok(self.load_fields(credentials, entity).await?.infos.clone())
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
            None => self.list_page(credentials, entity, None, since).await,
            Some(Cursor::Pipedrive { cursor, since }) => {
                self.list_page(credentials, entity, Some(cursor), since)
                    .await
            }
            Some(other) => Err(CrmError::Config(format!(
                "cursor {other:?} does not belong to a Pipedrive pull"
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

    /// Pipedrive has no batch read by id: one `GET /api/v2/{kind}/{id}` per record of the
    /// batch; a record deleted since answers 404 and is left out.
    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn read_records(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<RemoteRecord>>, CrmError> {
        let mut raw = Vec::with_capacity(ids.len());
        for id in ids {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let path = format!("/api/v2/{}/{id}", path(entity));
            match self
                .get::<wire::Envelope<Value>>(credentials, &path, &[])
                .await
            {
                Ok(reply) => raw.extend(reply.body.and_then(|b| b.data)),
                Err(CrmError::Rejected { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let records = self.convert(credentials, entity, &raw).await?;
        Ok(Some(records.into_iter().filter(|r| !r.archived).collect()))
    }

    /// Deleted persons or organizations from `/v1/recents`: soft-deleted
    /// records appear there with `active_flag: false` until Pipedrive purges
    /// them (30 days). `start` offsets page the list.
    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn deletions(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        if !self.config.deletions_from_recents {
            return Ok(Page {
                records: Vec::new(),
                next: None,
                total: None,
            });
        }
        let (start, since) = match cursor {
            None => (0, since),
            Some(Cursor::Pipedrive { cursor, since }) => {
                let start = cursor
                    .parse::<u64>()
                    .map_err(|_| CrmError::Config("a deletions cursor is an offset".into()))?;
                (start, since)
            }
            Some(other) => {
                return Err(CrmError::Config(format!(
                    "cursor {other:?} does not belong to a Pipedrive deletions scan"
                )))
            }
        };
        // `since_timestamp` has whole seconds and means "after": one second earlier
        // keeps changes at `since` itself.
        let from = since.map_or(DateTime::UNIX_EPOCH, |s| s - TimeDelta::seconds(1));
        let item = match entity {
            Entity::Contacts => "person",
            Entity::Companies => "organization",
        };
        let query = [
            (
                "since_timestamp",
                from.format("%Y-%m-%d %H:%M:%S").to_string(),
            ),
            ("items", item.to_owned()),
            ("start", start.to_string()),
            ("limit", self.config.page_limit.to_string()),
        ];
        let reply = self
            .get::<wire::Envelope<Vec<wire::Recent>, wire::V1Additional>>(
                credentials,
                "/v1/recents",
                &query,
            )
            .await?;
        let envelope = reply
            .body
            .ok_or_else(|| CrmError::Malformed("empty recents response".into()))?;
        let records = envelope
            .data
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.item == item)
            .filter_map(|r| r.data)
            .filter(|d| d.get("active_flag").and_then(Value::as_bool) == Some(false))
            .filter_map(|d| {
                let id = d.get("id").and_then(wire::text)?;
                let updated_at = wire::parse_time(d.get("update_time"))?;
                let created_at = wire::parse_time(d.get("add_time")).unwrap_or(updated_at);
                Some(RemoteRecord {
                    id,
                    properties: Default::default(),
                    created_at,
                    updated_at,
                    archived: true,
                })
            })
            .collect();
        let next = envelope
            .additional_data
            .and_then(|a| a.next_start())
            .filter(|n| *n > start)
            .map(|n| Cursor::Pipedrive {
                cursor: n.to_string(),
                since,
            });
        Ok(Page {
            records,
            next,
            total: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipedrive_error_bodies_are_rejections_with_their_text() {
        let body =
            br#"{"success":false,"error":"Name must be given","error_info":"x","data":null}"#;
        let error = classify(StatusCode::BAD_REQUEST, body);
        assert!(matches!(
            error,
            Some(CrmError::Rejected { status: 400, ref message, .. }) if message == "Name must be given"
        ));
        assert!(classify(StatusCode::UNAUTHORIZED, body).is_none());
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, body).is_none());
        assert!(classify(StatusCode::BAD_GATEWAY, body).is_none());
    }

    #[test]
    fn rate_headers_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-limit",
            "80".parse()
                .unwrap_or(reqwest::header::HeaderValue::from_static("0")),
        );
        headers.insert(
            "x-ratelimit-remaining",
            reqwest::header::HeaderValue::from_static("0"),
        );
        headers.insert(
            "x-ratelimit-reset",
            reqwest::header::HeaderValue::from_static("2"),
        );
        let reading = pipedrive_rate_headers(&headers);
        assert_eq!(
            reading,
            Some(WindowReading {
                max: 80,
                remaining: 0,
                interval_ms: 2000
            })
        );
    }
}
