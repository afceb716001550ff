//! Zoho CRM adapter: the v8 REST API for Contacts and Accounts, OAuth 2.0 at the
//! accounts server of the user's data centre (see [`auth`]).
//!
//! Lists need the `fields` parameter (at most 50 API names, taken from the field
//! metadata API), are sorted by `Modified_Time` ascending and paged by `page` and
//! `per_page` (at most 200) up to 2,000 rows, then by `page_token` from
//! `info.next_page_token`. Incremental pulls send `If-Modified-Since` one second before
//! `since` (Zoho's times have whole seconds and the header may mean "after"); the
//! records at `since` the caller already holds are left out (`pull_page_since`), so the
//! boundary neither loses nor repeats a record. 204 is an empty page, 304 "nothing
//! changed". Deletions come from `/{module}/deleted?type=all`. Writes go in batches of
//! 100: upserts with `duplicate_check_fields`, updates by id; a 207 (or a 400 refusing
//! every record) is mapped per record.
//!
//! Where PROTOCOLS-NICHE.md §1 is silent, this adapter assumes (and the sandbox plays):
//! - the connection test reads `GET /crm/v8/org` (`org[0].id`; scope `ZohoCRM.org.READ`);
//! - field metadata entries carry `api_name`, `field_label`, `data_type`,
//!   `system_mandatory` and `read_only`;
//! - exhausted API credits are a 429 whose `code` is `LIMIT_EXCEEDED` or whose message
//!   names credits; any other 429 (concurrency) is retried with backoff (Zoho documents
//!   no `Retry-After`);
//! - the accounts server answers refused grants, like throttling, with an `error`
//!   member (whatever the status): `Access Denied` passes, any other needs the user;
//! - PKCE is sent: a server that does not know it ignores the extra parameters;
//! - the UK API domain is `https://www.zohoapis.uk` (see `syncledger_domain::outbound::zoho`);
//! - `/deleted` is paged by number only (no `page_token` documented there).

mod auth;
mod push;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use syncledger_domain::outbound::zoho as dc;
use syncledger_domain::provider_text::clean;
use syncledger_domain::Entity;

use crate::adapter::CrmAdapter;
use crate::catalogue::Catalogue;
use crate::error::CrmError;
use crate::http::{build_client, pacer, Executor, Lane, Reply, RetryPolicy};
use crate::oauth::{self, OAuthApp};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{Credentials, Cursor, FieldInfo, Identity, Page, PushOp, PushResult, Tokens};

/// The most rows `page` and `per_page` reach; beyond them only `page_token` does.
pub const PAGE_NUMBER_ROWS: u32 = 2_000;
/// The largest `per_page`.
pub const MAX_PER_PAGE: u32 = 200;
/// The most field API names one list request may ask for.
pub const MAX_FIELDS: usize = 50;
/// The most records one write carries.
pub const MAX_WRITE: usize = 100;

/// Settings of one Zoho CRM app.
#[derive(Clone, Debug)]
pub struct ZohoConfig {
    /// Where the authorization request starts, and the accounts server used when a
    /// callback names none (US: `https://accounts.zoho.com`).
    pub accounts_url: String,
    /// A non-Zoho accounts server accepted besides Zoho's: a development sandbox only
    /// (the client secret goes there).
    pub accounts_override: Option<String>,
    /// The API domain for tokens that name none (US: `https://www.zohoapis.com`).
    pub api_domain: String,
    /// A non-Zoho API domain accepted from a token response: the integration's
    /// `base_url` override (a sandbox).
    pub api_override: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// Rows per list page (at most [`MAX_PER_PAGE`]).
    pub per_page: u32,
    /// `type` of `/{module}/deleted`: `all`, `recycle` or `permanent`.
    pub deleted_type: String,
    /// Client-side pacing; `None` (the default) leaves it to the retries. Zoho meters
    /// API credits per day and concurrent calls, not calls per minute: an integration
    /// runs one sync at a time and its adapter sends one call at a time, well within
    /// the smallest concurrency limit (5), and a 429 is waited out.
    pub requests_per_minute: Option<u32>,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub outbound: OutboundPolicy,
}

impl ZohoConfig {
    /// The US data centre's hosts, pages of 200, no client-side pacing.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            accounts_url: dc::US.accounts_url(),
            accounts_override: None,
            api_domain: dc::US.api_url(),
            api_override: None,
            client_id: client_id.into(),
            client_secret,
            scopes: syncledger_domain::provider::find("zoho")
                .map(|p| p.scopes.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default(),
            per_page: MAX_PER_PAGE,
            deleted_type: "all".into(),
            requests_per_minute: None,
            max_retries: 6,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            outbound: OutboundPolicy::default(),
        }
    }

    /// Every host at a development sandbox (`syncledger sandbox zoho`).
    #[must_use]
    pub fn sandbox(mut self, url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        self.accounts_url.clone_from(&url);
        self.accounts_override = Some(url.clone());
        self.api_domain.clone_from(&url);
        self.api_override = Some(url);
        self
    }
}

/// The Zoho CRM implementation of [`CrmAdapter`].
#[derive(Debug)]
pub struct ZohoAdapter {
    config: ZohoConfig,
    /// API calls.
    http: Executor,
    /// Calls to the accounts server (token, revoke): its own error shape.
    accounts: Executor,
    fields: Catalogue<Arc<Vec<FieldInfo>>>,
}

fn module(entity: Entity) -> &'static str {
    match entity {
        Entity::Contacts => "Contacts",
        Entity::Companies => "Accounts",
    }
}

/// API failures with Zoho's error body. 304 travels as a refusal the list reads as
/// "nothing changed"; a 429 for exhausted API credits is quota exhaustion (no retry),
/// any other 429 (concurrency) is retried; a 401 for an invalid token refreshes.
fn classify(status: StatusCode, body: &[u8]) -> Option<CrmError> {
    let code = status.as_u16();
    if status == StatusCode::NOT_MODIFIED {
        return Some(CrmError::Rejected {
            status: code,
            category: "NOT_MODIFIED".into(),
            message: String::new(),
        });
    }
    let parsed: wire::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let zoho_code = parsed.code.clone().unwrap_or_default();
    let message = parsed.message.clone().unwrap_or_default();
    match code {
        401 if matches!(
            zoho_code.as_str(),
            "" | "INVALID_TOKEN" | "AUTHENTICATION_FAILURE"
        ) =>
        {
            None
        }
        429 if credits_exhausted(&zoho_code, &message) => {
            Some(CrmError::QuotaExhausted(format!("{zoho_code}: {message}")))
        }
        429 => None,
        400..=499 if !zoho_code.is_empty() => Some(CrmError::Rejected {
            status: code,
            category: clean(&zoho_code),
            message: clean(&message),
        }),
        _ => None,
    }
}

/// Whether a 429 says the org's API credits are used up (rather than too many
/// concurrent calls). Zoho answers both with 429; the facts we have do not give the
/// credit answer's code, so `LIMIT_EXCEEDED` (an `API_Exception` code) or a message
/// naming credits counts as exhaustion.
fn credits_exhausted(code: &str, message: &str) -> bool {
    code == "LIMIT_EXCEEDED" || message.to_ascii_lowercase().contains("credit")
}

/// A list's empty answers: 204 (no records) and 304 (nothing modified since).
fn empty_page() -> Page {
    Page {
        records: Vec::new(),
        next: None,
        total: None,
    }
}

impl ZohoAdapter {
    pub fn new(mut config: ZohoConfig) -> Result<Self, CrmError> {
        config.accounts_url = config.accounts_url.trim_end_matches('/').to_owned();
        config.api_domain = config.api_domain.trim_end_matches('/').to_owned();
        config.per_page = config.per_page.clamp(1, MAX_PER_PAGE);
        let guard = Guard::builtin(config.outbound, "zoho");
        guard.check("base_url", &config.api_domain)?;
        guard.check("accounts_url", &config.accounts_url)?;
        let client = build_client(config.connect_timeout, config.request_timeout, &guard)?;
        let general = config
            .requests_per_minute
            .and_then(|n| pacer(n, Duration::from_secs(60)));
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            base_delay: config.retry_base_delay,
            max_delay: config.retry_max_delay,
        };
        let http = Executor::new(client.clone(), guard.clone(), general, None, policy.clone())
            .with_provider("zoho")
            .with_classifier(classify);
        let accounts = Executor::new(client, guard, None, None, policy)
            .with_provider("zoho")
            .with_classifier(auth::classify_token_failure);
        Ok(Self {
            config,
            http,
            accounts,
            fields: Catalogue::default(),
        })
    }

    fn oauth_app(&self) -> OAuthApp {
        OAuthApp {
            authorize_url: format!("{}/oauth/v2/auth", self.config.accounts_url),
            token_url: format!("{}/oauth/v2/token", self.config.accounts_url),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
            scopes: self.config.scopes.clone(),
            basic_auth: false,
            extra_params: vec![
                ("access_type".into(), "offline".into()),
                ("prompt".into(), "consent".into()),
            ],
        }
    }

    /// The API domain and access token of these credentials: the domain is the one
    /// the token response named (checked when it was stored, and again here).
    fn target(&self, credentials: &Credentials) -> Result<(String, String), CrmError> {
        let Credentials::OAuth2(tokens) = credentials else {
            return Err(CrmError::Config(
                "Zoho CRM takes OAuth credentials only".into(),
            ));
        };
        let base = match tokens.instance_url.as_deref() {
            Some(url) => {
                self.issuer_of(Some(url))?;
                url.trim_end_matches('/').to_owned()
            }
            None => self.config.api_domain.clone(),
        };
        Ok((base, tokens.access_token.expose_secret().to_owned()))
    }

    /// A request to the API with `Authorization: Zoho-oauthtoken …`.
    async fn call<T: DeserializeOwned>(
        &self,
        credentials: &Credentials,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: reqwest::Method,
    ) -> Result<Reply<T>, CrmError> {
        let (base, token) = self.target(credentials)?;
        let url = format!("{base}{path}");
        let header = format!("Zoho-oauthtoken {token}");
        self.http
            .send::<T>(Lane::General, |c| {
                build(
                    c.request(method.clone(), &url)
                        .header(reqwest::header::AUTHORIZATION, &header),
                )
            })
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        credentials: &Credentials,
        path: &str,
        query: &[(&str, String)],
        since: Option<DateTime<Utc>>,
    ) -> Result<Reply<T>, CrmError> {
        let header = since.map(if_modified_since);
        self.call(
            credentials,
            path,
            |r| {
                let r = r.query(query);
                match &header {
                    Some(h) => r.header(reqwest::header::IF_MODIFIED_SINCE, h),
                    None => r,
                }
            },
            reqwest::Method::GET,
        )
        .await
    }

    /// The field catalogue, fetched and kept.
    async fn load_fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Arc<Vec<FieldInfo>>, CrmError> {
        let query = [("module", module(entity).to_owned())];
        let reply = self
            .get::<wire::Fields>(credentials, "/crm/v8/settings/fields", &query, None)
            .await?;
        let fields: Vec<FieldInfo> = reply
            .body
            .map(|b| b.fields.iter().map(wire::FieldMeta::info).collect())
            .unwrap_or_default();
        if fields.is_empty() {
            return Err(CrmError::Malformed("an empty field catalogue".into()));
        }
        let fields = Arc::new(fields);
        self.fields.put(entity, fields.clone());
        Ok(fields)
    }

    /// The `fields` parameter: the catalogue's API names, the modification times
    /// first, at most [`MAX_FIELDS`] (Zoho's limit; further fields are not read).
    async fn field_list(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<String, CrmError> {
        let fields = match self.fields.get(entity) {
            Some(fields) => fields,
            None => self.load_fields(credentials, entity).await?,
        };
        let mut names = vec!["Modified_Time", "Created_Time"];
        names.extend(
            fields
                .iter()
                .map(|f| f.name.as_str())
                .filter(|n| !matches!(*n, "Modified_Time" | "Created_Time" | "id")),
        );
        names.truncate(MAX_FIELDS);
        Ok(names.join(","))
    }

    /// One page of a list: `page` up to [`PAGE_NUMBER_ROWS`], then `page_token`.
    async fn list_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        at: Position,
        since: Option<DateTime<Utc>>,
        seen: &[String],
    ) -> Result<Page, CrmError> {
        let mut query = vec![
            ("fields", self.field_list(credentials, entity).await?),
            ("sort_by", "Modified_Time".to_owned()),
            ("sort_order", "asc".to_owned()),
            ("per_page", self.config.per_page.to_string()),
        ];
        at.push_query(&mut query);
        let path = format!("/crm/v8/{}", module(entity));
        let reply = match self
            .get::<wire::ListPage>(credentials, &path, &query, since)
            .await
        {
            Err(CrmError::Rejected { status: 304, .. }) => return Ok(empty_page()),
            other => other?,
        };
        let Some(body) = reply.body else {
            return Ok(empty_page());
        };
        let mut records = body
            .data
            .iter()
            .map(wire::record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CrmError::Malformed)?;
        if let Some(since) = since {
            // Held already: the records modified exactly at `since` the caller names.
            records.retain(|r| !(r.updated_at == since && seen.contains(&r.id)));
        }
        let next = at
            .next(&body.info, self.config.per_page)?
            .map(|position| position.cursor(since));
        Ok(Page {
            records,
            next,
            total: None,
        })
    }
}

/// `If-Modified-Since` one second before `since`, in Zoho's ISO 8601 with offset:
/// Zoho's times have whole seconds, and "modified since" may exclude `since` itself.
fn if_modified_since(since: DateTime<Utc>) -> String {
    (since - TimeDelta::seconds(1)).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Where a list is: a page number, or a page token once past the page numbers' reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    Number(u32),
    Token(String),
}

impl Position {
    fn push_query(&self, query: &mut Vec<(&str, String)>) {
        match self {
            Position::Number(page) => query.push(("page", page.to_string())),
            Position::Token(token) => query.push(("page_token", token.clone())),
        }
    }

    /// The position after this page: the next number while its rows stay within
    /// [`PAGE_NUMBER_ROWS`], else the token Zoho gave.
    pub fn next(&self, info: &wire::Info, per_page: u32) -> Result<Option<Position>, CrmError> {
        if !info.more_records {
            return Ok(None);
        }
        if let Position::Number(page) = self {
            let next = page.saturating_add(1);
            if next.saturating_mul(per_page) <= PAGE_NUMBER_ROWS {
                return Ok(Some(Position::Number(next)));
            }
        }
        match info.next_page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => Ok(Some(Position::Token(token.to_owned()))),
            None => Err(CrmError::Malformed(
                "more records without a next_page_token past the page numbers' reach".into(),
            )),
        }
    }

    fn cursor(self, since: Option<DateTime<Utc>>) -> Cursor {
        match self {
            Position::Number(page) => Cursor::Zoho {
                page,
                page_token: None,
                since,
            },
            Position::Token(token) => Cursor::Zoho {
                page: 0,
                page_token: Some(token),
                since,
            },
        }
    }

    fn of(
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Self, Option<DateTime<Utc>>), CrmError> {
        match cursor {
            None => Ok((Position::Number(1), since)),
            Some(Cursor::Zoho {
                page_token: Some(token),
                since,
                ..
            }) => Ok((Position::Token(token), since)),
            Some(Cursor::Zoho { page, since, .. }) => Ok((Position::Number(page.max(1)), since)),
            Some(other) => Err(CrmError::Config(format!(
                "cursor {other:?} does not belong to a Zoho pull"
            ))),
        }
    }
}

#[async_trait]
impl CrmAdapter for ZohoAdapter {
    fn usage(&self) -> crate::types::Usage {
        let (api, accounts) = (self.http.usage(), self.accounts.usage());
        crate::types::Usage {
            requests: api.requests + accounts.requests,
            rate_limited: api.rate_limited + accounts.rate_limited,
        }
    }

    fn push_batch_size(&self) -> usize {
        MAX_WRITE
    }

    fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
    ) -> Result<(String, String), CrmError> {
        oauth::authorization_url(&self.oauth_app(), redirect_uri, state)
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, CrmError> {
        self.exchange_code_at(code, pkce_verifier, redirect_uri, None)
            .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn exchange_code_at(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
        server: Option<&str>,
    ) -> Result<Tokens, CrmError> {
        let issuer = self.issuer_named(server)?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier),
        ];
        self.token_request(&issuer, &form, None).await
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError> {
        self.refresh_at(refresh_token, None).await
    }

    /// At the accounts server of the data centre the stored `api_domain` names; the
    /// refresh token is kept (Zoho does not rotate it).
    #[tracing::instrument(skip_all, err)]
    async fn refresh_at(
        &self,
        refresh_token: &str,
        instance_url: Option<&str>,
    ) -> Result<Tokens, CrmError> {
        let issuer = self.issuer_of(instance_url)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.token_request(&issuer, &form, Some(refresh_token))
            .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError> {
        self.revoke_at(tokens).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let reply = self
            .get::<wire::Org>(credentials, "/crm/v8/org", &[], None)
            .await?;
        let org = reply
            .body
            .and_then(|b| b.org.into_iter().next())
            .ok_or_else(|| CrmError::Malformed("org without an entry".into()))?;
        let account_id =
            wire::text(&org.id).ok_or_else(|| CrmError::Malformed("org without an id".into()))?;
        Ok(Identity {
            account_id,
            user: org.primary_email,
        })
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError> {
        Ok(self
            .load_fields(credentials, entity)
            .await?
            .as_ref()
            .clone())
    }

    async fn pull_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        self.pull_page_since(credentials, entity, cursor, since, &[])
            .await
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn pull_page_since(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
        seen: &[String],
    ) -> Result<Page, CrmError> {
        let (at, since) = Position::of(cursor, since)?;
        self.list_page(credentials, entity, at, since, seen).await
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

    /// `GET /crm/v8/{module}?ids=…` (up to 100 per request).
    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn read_records(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<crate::types::RemoteRecord>>, CrmError> {
        let ids: Vec<&String> = ids
            .iter()
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let mut records = Vec::with_capacity(ids.len());
        let path = format!("/crm/v8/{}", module(entity));
        for chunk in ids.chunks(MAX_WRITE) {
            let joined = chunk
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let query = [
                ("fields", self.field_list(credentials, entity).await?),
                ("ids", joined),
            ];
            let reply = self
                .get::<wire::ListPage>(credentials, &path, &query, None)
                .await?;
            for raw in reply.body.map(|b| b.data).unwrap_or_default() {
                records.push(wire::record(&raw).map_err(CrmError::Malformed)?);
            }
        }
        Ok(Some(records))
    }

    /// `/{module}/deleted?type=all`, paged by number, modified since `since`.
    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn deletions(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        let (at, since) = Position::of(cursor, since)?;
        let Position::Number(page) = at else {
            return Err(CrmError::Config(
                "a deletions cursor is a page number".into(),
            ));
        };
        let query = [
            ("type", self.config.deleted_type.clone()),
            ("page", page.to_string()),
            ("per_page", self.config.per_page.to_string()),
        ];
        let path = format!("/crm/v8/{}/deleted", module(entity));
        let reply = match self
            .get::<wire::ListPage>(credentials, &path, &query, since)
            .await
        {
            Err(CrmError::Rejected { status: 304, .. }) => return Ok(empty_page()),
            other => other?,
        };
        let Some(body) = reply.body else {
            return Ok(empty_page());
        };
        let records = body
            .data
            .into_iter()
            .map(|raw| {
                serde_json::from_value::<wire::Deleted>(raw)
                    .map_err(|e| e.to_string())
                    .and_then(wire::deleted)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(CrmError::Malformed)?;
        let next = body.info.more_records.then(|| Cursor::Zoho {
            page: page.saturating_add(1),
            page_token: None,
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
    fn zoho_errors_are_classified() {
        let body = |code: &str, message: &str| {
            format!(r#"{{"code":"{code}","details":{{}},"message":"{message}","status":"error"}}"#)
        };
        let at = |status: u16, b: &str| {
            classify(
                StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                b.as_bytes(),
            )
        };
        assert!(at(401, &body("INVALID_TOKEN", "invalid oauth token")).is_none());
        assert!(matches!(
            at(401, &body("OAUTH_SCOPE_MISMATCH", "scope")),
            Some(CrmError::Rejected { status: 401, ref category, .. }) if category == "OAUTH_SCOPE_MISMATCH"
        ));
        assert!(at(429, &body("TOO_MANY_REQUESTS", "too many requests")).is_none());
        let exhausted = at(429, &body("LIMIT_EXCEEDED", "API credits exhausted"));
        assert!(matches!(exhausted, Some(CrmError::QuotaExhausted(_))));
        assert!(matches!(
            at(400, &body("INVALID_DATA", "invalid data")),
            Some(CrmError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            at(304, ""),
            Some(CrmError::Rejected { status: 304, .. })
        ));
        assert!(at(503, "<html>").is_none());
    }

    #[test]
    fn page_numbers_reach_2000_rows_then_tokens_take_over() {
        let more = |token: Option<&str>| wire::Info {
            more_records: true,
            next_page_token: token.map(str::to_owned),
        };
        let at = |page| Position::Number(page);
        assert_eq!(
            at(1).next(&more(Some("t")), 200).ok().flatten(),
            Some(at(2))
        );
        assert_eq!(at(9).next(&more(None), 200).ok().flatten(), Some(at(10)));
        assert_eq!(
            at(10).next(&more(Some("t")), 200).ok().flatten(),
            Some(Position::Token("t".into()))
        );
        assert!(at(10).next(&more(None), 200).is_err());
        let done = wire::Info::default();
        assert_eq!(at(3).next(&done, 200).ok().flatten(), None);
        assert_eq!(
            Position::Token("a".into())
                .next(&more(Some("b")), 200)
                .ok()
                .flatten(),
            Some(Position::Token("b".into()))
        );
    }

    proptest::proptest! {
        /// Page numbers never ask for a row past 2,000, whatever the page size.
        #[test]
        fn page_numbers_stay_within_their_reach(per_page in 1u32..=200, pages in 1u32..3000) {
            let mut at = Position::Number(1);
            let info = wire::Info { more_records: true, next_page_token: Some("t".into()) };
            for _ in 0..pages {
                match at.next(&info, per_page) {
                    Ok(Some(Position::Number(n))) => {
                        proptest::prop_assert!(n * per_page <= PAGE_NUMBER_ROWS);
                        at = Position::Number(n);
                    }
                    Ok(Some(Position::Token(_))) => break,
                    other => proptest::prop_assert!(false, "{other:?}"),
                }
            }
        }
    }
}
