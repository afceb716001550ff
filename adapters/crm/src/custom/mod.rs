//! A provider described by a declarative [`CustomSpec`] instead of code: for the
//! niche CRMs whose plain JSON APIs differ only in paths, envelopes and paging.
//!
//! Requests go through the shared [`Executor`] (pacing, retries, Retry-After,
//! classification) and OAuth through [`crate::oauth`], exactly like the built-in
//! providers. See `docs/custom-provider.md` for the spec format.

mod paging;
mod path;
mod spec;
mod templates;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LINK};
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use syncledger_domain::Entity;
use url::Url;

use crate::adapter::CrmAdapter;
use crate::error::CrmError;
use crate::http::{build_client, pacer, Executor, Lane, RetryPolicy};
use crate::oauth::{self, IssuerRule, OAuthApp};
use crate::outbound::{outbound::OutboundPolicy, Guard};
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, Properties, PushKind, PushOp, PushResult,
    RemoteRecord, Tokens,
};

pub use paging::next_link;
pub use path::JsonPath;
pub use spec::{
    AuthSpec, ClientAuth, CustomSpec, EntitySpec, FieldSpec, ListMethod, ListSpec, Pagination,
    ParameterFormat, ParameterSpec, ReadSpec, RecordFilter, Scan, TimeFormat, UnavailableSpec,
    UpdatedSinceSpec, WriteCall, WriteMethod, WriteSpec,
};

pub use templates::{template, template_text};

use paging::{fnv, Resume};

/// Runtime settings of a custom provider: what a spec must not contain (OAuth
/// client credentials) and how hard to drive the API.
#[derive(Clone, Debug)]
pub struct CustomOptions {
    /// The OAuth client, when the spec's auth is `oauth2`.
    pub client_id: String,
    pub client_secret: SecretString,
    /// Client-side pacing; `None` leaves pacing to the retries.
    pub requests_per_minute: Option<u32>,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Which hosts requests may reach (strict by default: public `https://` hosts).
    pub outbound: OutboundPolicy,
}

impl Default for CustomOptions {
    /// Conservative defaults for an unknown API: 60 requests a minute.
    fn default() -> Self {
        Self {
            client_id: String::new(),
            client_secret: SecretString::from(""),
            requests_per_minute: Some(60),
            max_retries: 5,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The [`CrmAdapter`] driven by a [`CustomSpec`].
#[derive(Debug)]
pub struct CustomAdapter {
    spec: CustomSpec,
    options: CustomOptions,
    base: Url,
    http: Executor,
}

/// The `rel="next"` target of a response's `Link` header, if any.
fn next_link_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_link)
}

/// How one request authenticates, prepared once so the per-attempt builder
/// cannot fail. Header values are marked sensitive (kept out of `Debug`).
enum Applied {
    Header(HeaderName, HeaderValue),
    Query(String, SecretString),
    Basic(String, SecretString),
}

impl Applied {
    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Applied::Header(name, value) => request.header(name.clone(), value.clone()),
            Applied::Query(name, key) => request.query(&[(name.as_str(), key.expose_secret())]),
            Applied::Basic(user, password) => {
                request.basic_auth(user, Some(password.expose_secret()))
            }
        }
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, CrmError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        CrmError::Config("the credential contains invalid header characters".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// What one list request returned.
struct Fetched {
    /// The records of the entity (those passing its `filter`).
    records: Vec<RemoteRecord>,
    next: Option<Resume>,
    /// The earliest modification time on the page, whatever the entity.
    oldest: Option<DateTime<Utc>>,
}

impl CustomAdapter {
    /// Validates the spec and builds the HTTP stack.
    pub fn new(mut spec: CustomSpec, options: CustomOptions) -> Result<Self, CrmError> {
        spec.validate()?;
        spec.base_url = spec.base_url.trim_end_matches('/').to_owned();
        let base =
            Url::parse(&spec.base_url).map_err(|e| CrmError::Config(format!("base_url: {e}")))?;
        let guard = Guard::custom(options.outbound);
        spec.check_outbound(&guard)?;
        let client = build_client(options.connect_timeout, options.request_timeout, &guard)?;
        let general = options
            .requests_per_minute
            .and_then(|n| pacer(n, Duration::from_secs(60)));
        let policy = RetryPolicy {
            max_retries: options.max_retries,
            base_delay: options.retry_base_delay,
            max_delay: options.retry_max_delay,
        };
        let http = Executor::new(client, guard, general, None, policy);
        Ok(Self {
            spec,
            options,
            base,
            http,
        })
    }

    /// Labels this adapter's metrics with the catalogue id it stands for (`custom` until
    /// set): the providers described by a spec share this adapter.
    #[must_use]
    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.http = self.http.with_provider(provider);
        self
    }

    pub fn spec(&self) -> &CustomSpec {
        &self.spec
    }

    /// The entity's endpoints. A spec without them (one written before the provider's
    /// template had the entity, or for a provider without it) lacks the entity, as an
    /// account without an edition does: only that entity's passes end.
    fn entity_spec(&self, entity: Entity) -> Result<&EntitySpec, CrmError> {
        self.spec.entity(entity).ok_or_else(|| {
            let name = self.spec.name.as_deref().unwrap_or("this custom provider");
            CrmError::Unavailable(format!(
                "the integration's spec for {name} describes no {} endpoint",
                entity.as_str()
            ))
        })
    }

    fn url(&self, path: &str) -> Result<Url, CrmError> {
        Url::parse(&format!("{}{path}", self.spec.base_url))
            .map_err(|e| CrmError::Config(format!("path `{path}`: {e}")))
    }

    fn oauth_app(&self) -> Result<OAuthApp, CrmError> {
        match &self.spec.auth {
            AuthSpec::Oauth2 {
                authorize_url,
                token_url,
                scopes,
                client_auth,
                authorization_params,
                ..
            } => Ok(OAuthApp {
                authorize_url: authorize_url.clone(),
                token_url: token_url.clone(),
                client_id: self.options.client_id.clone(),
                client_secret: self.options.client_secret.clone(),
                scopes: scopes.clone(),
                basic_auth: *client_auth == ClientAuth::Basic,
                extra_params: authorization_params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
            _ => Err(CrmError::Config(
                "this custom provider does not use OAuth".into(),
            )),
        }
    }

    /// Matches the credentials to the spec's auth style.
    fn applied(&self, credentials: &Credentials) -> Result<Applied, CrmError> {
        let mismatch = |wanted: &str| {
            CrmError::Config(format!("this custom provider authenticates with {wanted}"))
        };
        match (&self.spec.auth, credentials) {
            (
                AuthSpec::ApiKey {
                    header,
                    query,
                    prefix,
                },
                Credentials::ApiKey(key),
            ) => {
                let prefix = prefix.as_deref().unwrap_or("");
                match (header, query) {
                    (Some(name), _) => {
                        let name = HeaderName::try_from(name.as_str())
                            .map_err(|_| CrmError::Config("auth.header is invalid".into()))?;
                        let value = sensitive(&format!("{prefix}{}", key.expose_secret()))?;
                        Ok(Applied::Header(name, value))
                    }
                    (None, Some(name)) => Ok(Applied::Query(
                        name.clone(),
                        SecretString::from(format!("{prefix}{}", key.expose_secret())),
                    )),
                    (None, None) => Err(CrmError::Config("auth needs header or query".into())),
                }
            }
            (AuthSpec::ApiKey { .. }, _) => Err(mismatch("an API key")),
            (AuthSpec::Basic {}, Credentials::Basic { username, password }) => {
                Ok(Applied::Basic(username.clone(), password.clone()))
            }
            (AuthSpec::Basic {}, _) => Err(mismatch("a username and password")),
            (AuthSpec::Bearer {}, Credentials::ApiKey(token)) => Ok(Applied::Header(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose_secret()))?,
            )),
            (AuthSpec::Bearer {}, _) => Err(mismatch("a static bearer token (an API key)")),
            (AuthSpec::Oauth2 { .. }, Credentials::OAuth2(tokens)) => Ok(Applied::Header(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", tokens.access_token.expose_secret()))?,
            )),
            (AuthSpec::Oauth2 { .. }, _) => Err(mismatch("OAuth tokens")),
        }
    }

    /// The URL of the first page, or of the page `resume` points at.
    fn page_url(
        &self,
        spec: &EntitySpec,
        resume: Option<&Resume>,
        since: Option<DateTime<Utc>>,
        limit_override: Option<u32>,
    ) -> Result<Url, CrmError> {
        if let (Pagination::LinkHeader { .. }, Some(resume)) = (&spec.pagination, resume) {
            let url = Url::parse(&resume.token)
                .map_err(|_| CrmError::Config("the cursor holds no valid URL".into()))?;
            self.same_origin(&url)?;
            return Ok(url);
        }
        let mut url = self.url(&spec.list.path)?;
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in &spec.list.query {
                query.append_pair(k, v);
            }
            if let (Some(since), Some(param)) = (since, &spec.updated_since) {
                query.append_pair(&param.param, &format_time(since, param.format));
            }
            let token = resume.map(|r| r.token.as_str());
            match &spec.pagination {
                Pagination::Cursor {
                    param,
                    limit_param,
                    limit,
                    ..
                } => {
                    if let Some(token) = token {
                        query.append_pair(param, token);
                    }
                    if let Some(name) = limit_param {
                        if let Some(n) = limit_override.or(*limit) {
                            query.append_pair(name, &n.to_string());
                        }
                    }
                }
                Pagination::Offset {
                    offset_param,
                    limit_param,
                    limit,
                } => {
                    query.append_pair(offset_param, token.unwrap_or("0"));
                    let n = limit_override.unwrap_or(*limit);
                    query.append_pair(limit_param, &n.to_string());
                }
                Pagination::Page {
                    page_param,
                    size_param,
                    size,
                    first_page,
                    min_size,
                } => {
                    let first = first_page.to_string();
                    query.append_pair(page_param, token.unwrap_or(&first));
                    if let Some(name) = size_param {
                        let n = limit_override.map_or(*size, |n| n.max(min_size.unwrap_or(1)));
                        query.append_pair(name, &n.to_string());
                    }
                }
                Pagination::LinkHeader { limit_param, limit } => {
                    if let Some(name) = limit_param {
                        if let Some(n) = limit_override.or(*limit) {
                            query.append_pair(name, &n.to_string());
                        }
                    }
                }
                Pagination::None => {}
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// Credentials go only to the spec's own origin (scheme, host and port).
    fn same_origin(&self, url: &Url) -> Result<(), CrmError> {
        if url.origin() == self.base.origin() {
            Ok(())
        } else {
            Err(CrmError::Config(format!(
                "the provider's next-page link points to {}, outside {}; refusing to send credentials there",
                url.origin().ascii_serialization(),
                self.base.origin().ascii_serialization()
            )))
        }
    }

    /// Drops the API key parameter a provider may echo into its next-page links,
    /// so the key never ends up in a stored cursor (it is added back per request).
    fn without_key(&self, mut url: Url) -> Url {
        let AuthSpec::ApiKey {
            query: Some(name), ..
        } = &self.spec.auth
        else {
            return url;
        };
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != name.as_str())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        url
    }

    /// Reads one page and works out where the next one is.
    async fn fetch(
        &self,
        credentials: &Credentials,
        spec: &EntitySpec,
        resume: Option<Resume>,
        since: Option<DateTime<Utc>>,
        limit_override: Option<u32>,
    ) -> Result<Fetched, CrmError> {
        let auth = self.applied(credentials)?;
        let url = self.page_url(spec, resume.as_ref(), since, limit_override)?;
        let reply = self
            .http
            .send::<Value>(Lane::General, |c| auth.apply(c.get(url.clone())))
            .await
            .map_err(|e| self.unavailable(spec, e))?;
        let link = next_link_of(&reply.headers);
        let body = reply.body.unwrap_or(Value::Null);
        let records_path = JsonPath::parse(&spec.list.records_path)
            .map_err(|e| CrmError::Config(format!("records_path: {e}")))?;
        let items = records_path
            .get(&body)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                CrmError::Malformed("records_path does not name an array in the response".into())
            })?;
        let now = Utc::now();
        let mut listed = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let ours = spec.filter.as_ref().is_none_or(|f| matches(f, item));
            match parse_record(spec, item, now) {
                Ok(record) => listed.push((record, ours)),
                // Another entity's record need not have this one's members.
                Err(_) if !ours => {}
                Err(what) => {
                    return Err(CrmError::Malformed(format!(
                        "record {i} of the page: {what}"
                    )))
                }
            }
        }
        if items.is_empty() {
            return Ok(Fetched {
                records: Vec::new(),
                next: None,
                oldest: None,
            });
        }
        let oldest = listed.iter().map(|(r, _)| r.updated_at).min();
        let page_hash = fnv(listed
            .iter()
            .map(|(r, _)| r.id.as_str())
            .collect::<Vec<_>>()
            .join("\u{1f}")
            .as_bytes());
        if resume.as_ref().and_then(|r| r.last_page) == Some(page_hash) {
            if spec.pagination.repeat_ends_list(items.len()) {
                // Every record of it was read with the previous page.
                return Ok(Fetched {
                    records: Vec::new(),
                    next: None,
                    oldest: None,
                });
            }
            return Err(CrmError::Malformed(
                "the provider returned the same page twice; pagination stopped".into(),
            ));
        }
        let token = match &spec.pagination {
            Pagination::Cursor { cursor_path, .. } => JsonPath::parse(cursor_path)
                .ok()
                .and_then(|p| p.get(&body).and_then(path::scalar_text))
                .filter(|t| !t.is_empty()),
            Pagination::Offset { .. } => {
                let current: u64 = resume
                    .as_ref()
                    .and_then(|r| r.token.parse().ok())
                    .unwrap_or(0);
                let count = u64::try_from(items.len()).unwrap_or(u64::MAX);
                Some(current.saturating_add(count).to_string())
            }
            Pagination::Page { first_page, .. } => {
                let current: u64 = resume
                    .as_ref()
                    .and_then(|r| r.token.parse().ok())
                    .unwrap_or(u64::from(*first_page));
                Some(current.saturating_add(1).to_string())
            }
            Pagination::LinkHeader { .. } => match link {
                None => None,
                Some(target) => {
                    let next = url.join(&target).map_err(|_| {
                        CrmError::Malformed("the Link header URL is invalid".into())
                    })?;
                    self.same_origin(&next)?;
                    Some(self.without_key(next).to_string())
                }
            },
            Pagination::None => None,
        };
        let next = match token {
            None => None,
            Some(token) => Some(Resume::follow(resume.as_ref(), token, page_hash)?),
        };
        let records = listed
            .into_iter()
            .filter_map(|(r, ours)| ours.then_some(r))
            .collect();
        Ok(Fetched {
            records,
            next,
            oldest,
        })
    }

    /// A list refusal the spec says means the account lacks the entity, as
    /// [`CrmError::Unavailable`] in the spec's words (never the provider's text, which
    /// could echo the request); any other error as it is.
    fn unavailable(&self, spec: &EntitySpec, error: CrmError) -> CrmError {
        let CrmError::Rejected { status, .. } = &error else {
            return error;
        };
        match &spec.unavailable {
            Some(u) if u.statuses.contains(status) => {
                let name = self.spec.name.as_deref().unwrap_or("the provider");
                CrmError::Unavailable(format!("{name} answered {status}: {}", u.reason))
            }
            _ => error,
        }
    }

    async fn pull(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
        deleted: bool,
    ) -> Result<Page, CrmError> {
        let spec = self.entity_spec(entity)?;
        let resume = Resume::decode(cursor)?;
        // What the records must be modified at or after, and whether the list is
        // newest first (then the pull ends at the first page reaching past it).
        let (since, descending) = match spec.scan {
            Scan::Filtered => (since, false),
            Scan::Descending { overlap_seconds } => (
                since.map(|t| t - chrono::Duration::seconds(i64::from(overlap_seconds))),
                true,
            ),
            Scan::Full {} => (None, false),
        };
        let asked = if spec.scan == Scan::Filtered {
            since
        } else {
            None
        };
        let fetched = self.fetch(credentials, spec, resume, asked, None).await?;
        let past =
            descending && since.is_some_and(|t| fetched.oldest.is_some_and(|oldest| oldest < t));
        let records = fetched
            .records
            .into_iter()
            .filter(|r| r.archived == deleted)
            .filter(|r| since.is_none_or(|t| r.updated_at >= t))
            .collect();
        let next = if past { None } else { fetched.next };
        Ok(Page {
            records,
            next: next.map(|r| r.encode()),
            total: None,
        })
    }

    /// The URL of one record of the entity's `read` endpoint.
    fn read_url(&self, spec: &EntitySpec, id: &str) -> Result<Url, CrmError> {
        let read = spec
            .read
            .as_ref()
            .ok_or_else(|| CrmError::Config("this entity has no read endpoint".into()))?;
        let id: String =
            url::form_urlencoded::byte_serialize(spec.list.raw_id(id).as_bytes()).collect();
        self.url(&read.path.replace("{id}", &id))
    }

    /// The current document of a record, for a write that replaces all of it;
    /// `Ok(Err(message))` when the provider refuses (a record deleted there).
    async fn read_document(
        &self,
        auth: &Applied,
        spec: &EntitySpec,
        id: &str,
    ) -> Result<Result<Map<String, Value>, String>, CrmError> {
        let url = self.read_url(spec, id)?;
        let reply = match self
            .http
            .send::<Value>(Lane::General, |c| auth.apply(c.get(url.clone())))
            .await
        {
            Ok(reply) => reply,
            Err(CrmError::Rejected { status, .. }) => {
                return Ok(Err(format!(
                    "refused with status {status} when read before writing"
                )))
            }
            Err(other) => return Err(other),
        };
        let record_path = spec.read.as_ref().map_or("", |r| r.record_path.as_str());
        let document = JsonPath::parse(record_path)
            .ok()
            .and_then(|p| reply.body.as_ref().and_then(|b| p.get(b)).cloned());
        match document {
            Some(Value::Object(document)) => Ok(Ok(document)),
            _ => Err(CrmError::Malformed(
                "the record read before writing is not a JSON object".into(),
            )),
        }
    }

    /// Whether the record is gone: its `read` answers 404 or 410.
    async fn is_gone(&self, auth: &Applied, spec: &EntitySpec, id: &str) -> Result<bool, CrmError> {
        let url = self.read_url(spec, id)?;
        match self
            .http
            .send::<Value>(Lane::General, |c| auth.apply(c.get(url.clone())))
            .await
        {
            Ok(_) => Ok(false),
            Err(CrmError::Rejected {
                status: 404 | 410, ..
            }) => Ok(true),
            Err(other) => Err(other),
        }
    }

    /// Writes one record; `Ok(Err(message))` is a refusal of this record alone.
    async fn write_one(
        &self,
        auth: &Applied,
        spec: &EntitySpec,
        op: &PushOp,
    ) -> Result<Result<Option<String>, String>, CrmError> {
        let Some(write) = &spec.write else {
            return Ok(Err("this custom provider has no write endpoints".into()));
        };
        let (call, path) = match &op.kind {
            PushKind::Create => match &write.create {
                Some(call) => (call, call.path.clone()),
                None => return Ok(Err("this custom provider cannot create records".into())),
            },
            PushKind::Update { id } => match &write.update {
                Some(call) => {
                    let raw = spec.list.raw_id(id);
                    let id: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
                    (call, call.path.replace("{id}", &id))
                }
                None => return Ok(Err("this custom provider cannot update records".into())),
            },
            PushKind::Upsert { .. } => match (&write.create, write.upsert_as_create) {
                (Some(call), true) => (call, call.path.clone()),
                _ => return Ok(Err("custom providers do not support upserts".into())),
            },
        };
        let url = self.url(&path)?;
        let document = match (&op.kind, call.read_modify_write) {
            (PushKind::Update { id }, true) => match self.read_document(auth, spec, id).await? {
                Ok(document) => document,
                Err(refusal) => return Ok(Err(refusal)),
            },
            _ => Map::new(),
        };
        let body = write_body(spec, write, call, document, &op.properties);
        let method = match call.method {
            WriteMethod::Post => Method::POST,
            WriteMethod::Put => Method::PUT,
            WriteMethod::Patch => Method::PATCH,
        };
        let build = |c: &reqwest::Client| {
            auth.apply(c.request(method.clone(), url.clone()))
                .json(&body)
        };
        // Only PUT and PATCH are idempotent; a POST (create, or an update some APIs
        // take as POST) is never repeated after an ambiguous failure.
        let reply = if method == Method::POST {
            self.http
                .send_non_idempotent::<Value>(Lane::General, build)
                .await
        } else {
            self.http.send::<Value>(Lane::General, build).await
        };
        match reply {
            Ok(reply) => {
                let id_path = write
                    .response_id_path
                    .as_deref()
                    .unwrap_or(&spec.list.id_path);
                let id = JsonPath::parse(id_path).ok().and_then(|p| {
                    reply
                        .body
                        .as_ref()
                        .and_then(|b| p.get(b))
                        .and_then(path::scalar_text)
                        .map(|raw| spec.list.our_id(&raw))
                });
                let id = id.or_else(|| match &op.kind {
                    PushKind::Update { id } => Some(id.clone()),
                    _ => None,
                });
                Ok(Ok(id))
            }
            Err(CrmError::Rejected {
                status, message, ..
            }) => Ok(Err(if message.is_empty() {
                format!("refused with status {status}")
            } else {
                format!("refused with status {status}: {message}")
            })),
            Err(other) => Err(other),
        }
    }
}

/// The JSON body of a write: `document` (the record as read, for a full-document
/// write; else empty) with each property at its `fields` path (else under its own
/// name) and the call's constants, wrapped under `body_path` when the API wants that.
fn write_body(
    spec: &EntitySpec,
    write: &WriteSpec,
    call: &WriteCall,
    document: Map<String, Value>,
    properties: &Properties,
) -> Value {
    let mut fields = document;
    for (path, value) in &call.set {
        if let Ok(p) = JsonPath::parse(path) {
            p.set(&mut fields, Value::String(value.clone()));
        }
    }
    for (name, value) in properties {
        let value = value.clone().map_or(Value::Null, Value::String);
        let placed = spec
            .list
            .fields
            .get(name)
            .and_then(|p| JsonPath::parse(p).ok())
            .is_some_and(|p| p.set(&mut fields, value.clone()));
        if !placed {
            fields.insert(name.clone(), value);
        }
    }
    match &write.body_path {
        Some(key) => {
            let mut wrapper = Map::new();
            wrapper.insert(key.clone(), Value::Object(fields));
            Value::Object(wrapper)
        }
        None => Value::Object(fields),
    }
}

fn format_time(t: DateTime<Utc>, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        TimeFormat::UnixSeconds => t.timestamp().to_string(),
        TimeFormat::UnixMillis => t.timestamp_millis().to_string(),
    }
}

/// A timestamp as the spec says it is written; numbers may come as JSON numbers
/// or numeric strings.
fn parse_time(value: &Value, format: TimeFormat) -> Option<DateTime<Utc>> {
    match format {
        TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(value.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        TimeFormat::UnixSeconds | TimeFormat::UnixMillis => {
            let n = match value {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))?,
                Value::String(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            if format == TimeFormat::UnixSeconds {
                Utc.timestamp_opt(n, 0).single()
            } else {
                Utc.timestamp_millis_opt(n).single()
            }
        }
    }
}

/// Whether a listed item belongs to the entity its `filter` describes.
fn matches(filter: &RecordFilter, item: &Value) -> bool {
    JsonPath::parse(&filter.path)
        .ok()
        .and_then(|p| p.get(item).and_then(path::scalar_text))
        .is_some_and(|v| v == filter.equals)
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// One provider record as a [`RemoteRecord`]; the error says what is missing.
fn parse_record(
    spec: &EntitySpec,
    item: &Value,
    read_at: DateTime<Utc>,
) -> Result<RemoteRecord, String> {
    let list = &spec.list;
    let get = |path: &str| JsonPath::parse(path).ok().and_then(|p| p.get(item));
    let id = get(&list.id_path)
        .and_then(path::scalar_text)
        .filter(|id| !id.is_empty())
        .map(|raw| list.our_id(&raw))
        .ok_or("no id at id_path")?;
    let updated_at = match &list.updated_at_path {
        Some(path) => get(path)
            .and_then(|v| parse_time(v, list.updated_at_format))
            .ok_or("no readable timestamp at updated_at_path")?,
        // A full scan without modification times: the record as read now.
        None => read_at,
    };
    let created_at = list
        .created_at_path
        .as_deref()
        .and_then(get)
        .and_then(|v| parse_time(v, list.updated_at_format))
        .unwrap_or(updated_at);
    let properties: Properties = if list.fields.is_empty() {
        item.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| !v.is_object() && !v.is_array())
                    .map(|(k, v)| (k.clone(), path::scalar_text(v)))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        list.fields
            .iter()
            .map(|(name, p)| (name.clone(), get(p).and_then(path::scalar_text)))
            .collect()
    };
    let archived = spec
        .delete_flag_path
        .as_deref()
        .and_then(get)
        .is_some_and(truthy);
    Ok(RemoteRecord {
        id,
        properties,
        created_at,
        updated_at,
        archived,
    })
}

#[async_trait]
impl CrmAdapter for CustomAdapter {
    fn usage(&self) -> crate::types::Usage {
        self.http.usage()
    }

    fn supports_oauth(&self) -> bool {
        matches!(self.spec.auth, AuthSpec::Oauth2 { .. })
    }

    fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
    ) -> Result<(String, String), CrmError> {
        oauth::authorization_url(&self.oauth_app()?, redirect_uri, state)
    }

    #[tracing::instrument(skip_all, err)]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, CrmError> {
        let app = self.oauth_app()?;
        oauth::exchange_code(&app, &self.http, code, pkce_verifier, redirect_uri).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError> {
        oauth::refresh(&self.oauth_app()?, &self.http, refresh_token).await
    }

    /// Revokes at the spec's `revocation_url` (RFC 7009); without one, disconnecting
    /// can only forget the tokens locally.
    #[tracing::instrument(skip_all, err)]
    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError> {
        let AuthSpec::Oauth2 {
            revocation_url: Some(url),
            ..
        } = &self.spec.auth
        else {
            return Ok(());
        };
        oauth::revoke(&self.oauth_app()?, &self.http, url, tokens).await
    }

    fn issuer(&self) -> Option<IssuerRule> {
        match &self.spec.auth {
            AuthSpec::Oauth2 {
                issuer: Some(issuer),
                authorization_response_iss_parameter_supported,
                ..
            } => Some(IssuerRule {
                issuer: issuer.clone(),
                always_sent: *authorization_response_iss_parameter_supported,
            }),
            _ => None,
        }
    }

    #[tracing::instrument(skip_all, err)]
    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError> {
        let spec = self
            .spec
            .contacts
            .as_ref()
            .or(self.spec.companies.as_ref())
            .ok_or_else(|| CrmError::Config("the spec has no entity".into()))?;
        self.fetch(credentials, spec, None, None, Some(1)).await?;
        let account_id = self
            .spec
            .name
            .clone()
            .or_else(|| self.base.host_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(Identity {
            account_id,
            user: None,
        })
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError> {
        let spec = self.entity_spec(entity)?;
        if let Some(catalogue) = &spec.fields_catalogue {
            return Ok(catalogue
                .iter()
                .map(|f| FieldInfo {
                    name: f.name.clone(),
                    label: f.label.clone().unwrap_or_else(|| f.name.clone()),
                    field_type: f.field_type.clone(),
                    required: f.required,
                    writable: f.writable,
                })
                .collect());
        }
        let writable = spec.write.is_some();
        let names: Vec<String> = if spec.list.fields.is_empty() {
            // Every top-level scalar: learn them from one record.
            let sample = self.fetch(credentials, spec, None, None, Some(1)).await?;
            sample
                .records
                .first()
                .map(|r| r.properties.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            spec.list.fields.keys().cloned().collect()
        };
        Ok(names
            .into_iter()
            .map(|name| FieldInfo {
                label: name.clone(),
                name,
                field_type: "string".into(),
                required: false,
                writable,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), incremental = since.is_some()), err)]
    async fn pull_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        self.pull(credentials, entity, cursor, since, false).await
    }

    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ops = ops.len()), err)]
    async fn push_batch(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError> {
        let spec = self.entity_spec(entity)?;
        let auth = self.applied(credentials)?;
        let mut results = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let outcome = self.write_one(&auth, spec, op).await?;
            results.push(match outcome {
                Ok(remote_id) => PushResult {
                    index,
                    remote_id,
                    error: None,
                },
                Err(error) => PushResult {
                    index,
                    remote_id: None,
                    error: Some(error),
                },
            });
        }
        Ok(results)
    }

    fn deletes_by_absence(&self, entity: Entity) -> bool {
        self.spec
            .entity(entity)
            .is_some_and(|e| matches!(e.scan, Scan::Full {}))
    }

    /// Of records a complete scan did not list, those the entity's `read` endpoint
    /// no longer has (all of them, without one).
    #[tracing::instrument(skip_all, fields(entity = entity.as_str(), ids = ids.len()), err)]
    async fn confirm_absent(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Vec<String>, CrmError> {
        let spec = self.entity_spec(entity)?;
        if spec.read.is_none() {
            return Ok(ids.to_vec());
        }
        let auth = self.applied(credentials)?;
        let mut gone = Vec::new();
        for id in ids {
            if self.is_gone(&auth, spec, id).await? {
                gone.push(id.clone());
            }
        }
        Ok(gone)
    }

    /// Records carrying the spec's `delete_flag_path`; without one, the provider
    /// reports no deletions.
    #[tracing::instrument(skip_all, fields(entity = entity.as_str()), err)]
    async fn deletions(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError> {
        if self.entity_spec(entity)?.delete_flag_path.is_none() {
            return Ok(Page {
                records: Vec::new(),
                next: None,
                total: None,
            });
        }
        self.pull(credentials, entity, cursor, since, true).await
    }
}
