//! The declarative description of a custom provider, read from JSON or TOML.
//!
//! A spec says where the API lives, how to authenticate, and for each entity how to
//! list (and optionally write) records: the request, where the records, ids and
//! timestamps sit in the response, and how pages follow each other. Secrets are
//! never part of a spec: OAuth client credentials come from [`super::CustomOptions`],
//! keys and passwords from the integration's [`crate::Credentials`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use syncledger_domain::Entity;

use super::path::JsonPath;
use crate::error::CrmError;

/// A custom provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSpec {
    /// A display name, also the account id `test_connection` reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Scheme and host (and optional path prefix) every `path` is appended to.
    pub base_url: String,
    pub auth: AuthSpec,
    /// Values each integration gives at creation (Chatwoot's `account_id`), written
    /// `{name}` in `base_url` and the paths; binding them ([`CustomSpec::bind`])
    /// leaves a spec without parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, ParameterSpec>,
    /// What users should know about the provider's limits; shown with its
    /// capabilities (`GET /v1/providers/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default)]
    pub contacts: Option<EntitySpec>,
    #[serde(default)]
    pub companies: Option<EntitySpec>,
}

/// A connection parameter: what it is, and the only shape its value may take (it
/// lands in URLs, so no value can add a path segment, a query or another host).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub format: ParameterFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterFormat {
    /// 1 to 18 ASCII digits.
    Digits,
    /// 1 to 64 ASCII letters, digits, `-` and `_`.
    #[default]
    Slug,
}

impl ParameterFormat {
    fn admits(self, value: &str) -> bool {
        match self {
            ParameterFormat::Digits => {
                (1..=18).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
            }
            ParameterFormat::Slug => {
                (1..=64).contains(&value.len())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ParameterFormat::Digits => "must be 1 to 18 digits",
            ParameterFormat::Slug => "must be 1 to 64 letters, digits, `-` or `_`",
        }
    }
}

/// How calls authenticate. Which [`crate::Credentials`] variant each takes:
/// `api_key` and `bearer` → `ApiKey`, `basic` → `Basic`, `oauth2` → `OAuth2`.
/// Unknown keys are refused (a misspelt `scope` must not silently mean no scopes);
/// that is why `basic` and `bearer` are empty struct variants, not unit ones, which
/// serde would let carry any key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// The key in a header (`header`) or a query parameter (`query`), with an
    /// optional prefix such as `Token `.
    ApiKey {
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        query: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
    },
    Basic {},
    /// A static token sent as `Authorization: Bearer <token>`.
    Bearer {},
    Oauth2 {
        authorize_url: String,
        token_url: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        client_auth: ClientAuth,
        /// Must be `true`: the shared OAuth flow always uses PKCE (S256).
        #[serde(default = "yes")]
        pkce: bool,
        /// The RFC 7009 revocation endpoint: disconnecting revokes the tokens there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revocation_url: Option<String>,
        /// The authorization server's issuer identifier (RFC 8414): the callback's
        /// `iss` parameter (RFC 9207) must equal it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issuer: Option<String>,
        /// Whether the server puts `iss` in every authorization response (RFC 9207,
        /// the RFC 8414 metadata name); then a callback without it is refused. Only
        /// with `issuer`.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        authorization_response_iss_parameter_supported: bool,
        /// Extra parameters of the authorization request, such as
        /// `{"prompt": "consent", "access_type": "offline"}`; never one the flow sets
        /// itself (`state`, `redirect_uri`, `code_challenge`, ...).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        authorization_params: BTreeMap<String, String>,
    },
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Where the OAuth client credentials go on token requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Body,
    Basic,
}

/// One entity's endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    pub list: ListSpec,
    /// Server-side incremental filtering; without it incremental pulls read
    /// everything and filter by `updated_at_path` on the client.
    #[serde(default)]
    pub updated_since: Option<UpdatedSinceSpec>,
    #[serde(default)]
    pub pagination: Pagination,
    /// How a pull finds what changed: see [`Scan`].
    #[serde(default, skip_serializing_if = "Scan::is_filtered")]
    pub scan: Scan,
    /// Only the listed records matching it belong to this entity (one endpoint
    /// listing people and companies, told apart by a `kind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RecordFilter>,
    /// Reading one record by id: a read-modify-write update reads it first, and a
    /// full scan confirms a missing record is gone (404) before it counts as deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadSpec>,
    #[serde(default)]
    pub write: Option<WriteSpec>,
    /// A record field that is truthy on deleted records; such records are left
    /// out of pulls and reported by `deletions`.
    #[serde(default)]
    pub delete_flag_path: Option<String>,
    /// Returned as is by `fields()`; else derived from `list.fields`.
    #[serde(default)]
    pub fields_catalogue: Option<Vec<FieldSpec>>,
    /// Answers of the list endpoint meaning the account does not have this entity at
    /// all (an edition or feature it lacks), rather than a failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<UnavailableSpec>,
}

/// When the provider answers a list request with one of `statuses`, the entity is
/// not offered to this account: the pull fails with [`CrmError::Unavailable`] saying
/// `reason`, and the engine ends that entity's pass alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnavailableSpec {
    /// Client errors other than 401 and 429 (which mean a bad key and a rate limit).
    pub statuses: Vec<u16>,
    /// Why, in words: `companies are not enabled for this account (an Enterprise feature)`.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub path: String,
    #[serde(default)]
    pub method: ListMethod,
    /// Static query parameters sent with every list call.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Where the record array is in the response (`""`/`$`: the body itself).
    #[serde(default)]
    pub records_path: String,
    pub id_path: String,
    /// Put before every id of this entity (and taken off in its URLs), for an API
    /// whose entities share one id sequence (Chatwoot's contact 17 and company 17):
    /// syncledger knows a CRM record by its id within the integration, whatever the
    /// entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Required unless the entity is read by full scan; without it a record's
    /// modification time is when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at_path: Option<String>,
    /// The format of both timestamps.
    #[serde(default)]
    pub updated_at_format: TimeFormat,
    /// Defaults to the update time when absent.
    #[serde(default)]
    pub created_at_path: Option<String>,
    /// Readable property name → path inside a record. Empty: every top-level
    /// scalar member of the record.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl ListSpec {
    /// The id syncledger knows a record by: the provider's, after `id_prefix`.
    pub fn our_id(&self, raw: &str) -> String {
        format!("{}{raw}", self.id_prefix.as_deref().unwrap_or(""))
    }

    /// The provider's id of a record syncledger knows as `id` (an id without the
    /// prefix, linked before the spec had one, is the provider's as it is).
    pub fn raw_id<'a>(&self, id: &'a str) -> &'a str {
        self.id_prefix
            .as_deref()
            .and_then(|prefix| id.strip_prefix(prefix))
            .unwrap_or(id)
    }
}

/// Only `GET` lists are supported: a listing must be safe to retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListMethod {
    #[default]
    #[serde(alias = "get")]
    GET,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    #[default]
    Rfc3339,
    UnixSeconds,
    UnixMillis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatedSinceSpec {
    pub param: String,
    #[serde(default)]
    pub format: TimeFormat,
}

/// How an incremental pull finds what changed since the last run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scan {
    /// Everything listed (with `updated_since` sent when given), kept when modified
    /// at or after the last run's high-water mark.
    #[default]
    Filtered,
    /// The list is sorted newest first (its static `query` says so, e.g.
    /// `sortBy = "modified desc"`): an incremental pull stops at the first page
    /// reaching past the high-water mark less `overlap_seconds`; records in the
    /// overlap are read again and deduplicated by the merge.
    Descending {
        #[serde(default)]
        overlap_seconds: u32,
    },
    /// No way to ask what changed: every run reads everything (unchanged records
    /// write nothing), and after a complete scan the linked records it did not list
    /// are deletions (each confirmed by `read` when the spec has it).
    Full {},
}

impl Scan {
    fn is_filtered(&self) -> bool {
        *self == Scan::Filtered
    }
}

/// Keeps the records whose value at `path` is `equals` (compared as text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFilter {
    pub path: String,
    pub equals: String,
}

/// `GET {path}` with `{id}` reads one record; the record is at `record_path` of the
/// answer (default: the answer itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSpec {
    pub path: String,
    #[serde(default)]
    pub record_path: String,
}

/// How pages follow each other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pagination {
    /// The response names the next cursor at `cursor_path`; it goes back in `param`.
    Cursor {
        #[serde(default)]
        param: String,
        #[serde(default)]
        cursor_path: String,
        #[serde(default)]
        limit_param: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Offset {
        #[serde(default)]
        offset_param: String,
        #[serde(default)]
        limit_param: String,
        #[serde(default)]
        limit: u32,
    },
    Page {
        #[serde(default)]
        page_param: String,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default)]
        size: u32,
        #[serde(default = "one")]
        first_page: u32,
        /// The smallest page size the API accepts (VSCO Workspace: 10); a connection
        /// test asks for this many instead of 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_size: Option<u32>,
    },
    /// RFC 8288 `Link: <url>; rel="next"`; the URL must stay on `base_url`'s origin.
    LinkHeader {
        #[serde(default)]
        limit_param: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    #[default]
    None,
}

fn one() -> u32 {
    1
}

impl Pagination {
    /// Whether a page of `len` records that repeats the previous page's ids ends the
    /// list rather than showing a looping API. For page and offset paging it does when
    /// the page is not a full one: fewer records than a page holds is a last page (the
    /// API repeats it for any later page number), more is the whole list (the API
    /// ignores the paging parameter, as one Chatwoot version's companies index does).
    /// A full page repeated could be either an API ignoring the parameter with more
    /// records behind, or the last page: that stays an error, since ending there would
    /// make a full scan take every later record for deleted.
    pub fn repeat_ends_list(&self, len: usize) -> bool {
        let full = match self {
            Pagination::Page { size, .. } => *size,
            Pagination::Offset { limit, .. } => *limit,
            _ => return false,
        };
        usize::try_from(full).is_ok_and(|full| len != full)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteSpec {
    #[serde(default)]
    pub create: Option<WriteCall>,
    /// `path` contains `{id}`.
    #[serde(default)]
    pub update: Option<WriteCall>,
    /// Wraps the fields under this key: `{"<body_path>": {...}}`.
    #[serde(default)]
    pub body_path: Option<String>,
    /// Where the written record's id is in the response; defaults to `list.id_path`.
    #[serde(default)]
    pub response_id_path: Option<String>,
    /// The API has no upsert: a new record carrying its match key (which the engine
    /// would upsert) is created instead. The run's pull has linked the CRM's records
    /// with that key before, so only one created in the CRM since can be duplicated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upsert_as_create: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteCall {
    pub method: WriteMethod,
    pub path: String,
    /// Constant values set in every body of this call: path → text
    /// (`kind = "person"` when creating an address-book person).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Update only: the API replaces the whole document, so the record is read
    /// first (the entity's `read`) and sent back with the changed fields.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_modify_write: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WriteMethod {
    Post,
    Put,
    Patch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default = "string_type", rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub writable: bool,
}

fn string_type() -> String {
    "string".into()
}

impl CustomSpec {
    /// Parses and validates a JSON spec. A key the spec format does not know is
    /// refused with its path (`auth: unknown field `scope`, expected ...`).
    pub fn from_json(text: &str) -> Result<CustomSpec, CrmError> {
        let mut reader = serde_json::Deserializer::from_str(text);
        let spec: CustomSpec = serde_path_to_error::deserialize(&mut reader)
            .map_err(|e| parse_error("JSON", &e.path().to_string(), e.inner()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates a TOML spec (read as a document first, so that errors
    /// name their path as JSON ones do).
    pub fn from_toml(text: &str) -> Result<CustomSpec, CrmError> {
        let document: toml::Value = toml::from_str(text)
            .map_err(|e| CrmError::Config(format!("custom spec (TOML): {e}")))?;
        let json = serde_json::to_value(document)
            .map_err(|e| CrmError::Config(format!("custom spec (TOML): {e}")))?;
        let spec: CustomSpec = serde_path_to_error::deserialize(json)
            .map_err(|e| parse_error("TOML", &e.path().to_string(), e.inner()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The spec of `entity`, if the provider offers it.
    pub fn entity(&self, entity: Entity) -> Option<&EntitySpec> {
        match entity {
            Entity::Contacts => self.contacts.as_ref(),
            Entity::Companies => self.companies.as_ref(),
        }
    }

    /// Every URL this spec makes the server request, with the field naming it
    /// (`spec.base_url`, ...): `base_url`, the OAuth endpoints, and each entity's list and write endpoints
    /// (their paths appended to `base_url`).
    pub fn urls(&self) -> Vec<(String, String)> {
        let base = self.base_url.trim_end_matches('/');
        let mut urls = vec![("spec.base_url".to_owned(), base.to_owned())];
        if let AuthSpec::Oauth2 {
            authorize_url,
            token_url,
            revocation_url,
            ..
        } = &self.auth
        {
            urls.push(("spec.auth.authorize_url".into(), authorize_url.clone()));
            urls.push(("spec.auth.token_url".into(), token_url.clone()));
            if let Some(url) = revocation_url {
                urls.push(("spec.auth.revocation_url".into(), url.clone()));
            }
        }
        for (name, entity) in [("contacts", &self.contacts), ("companies", &self.companies)] {
            let Some(entity) = entity else { continue };
            urls.push((
                format!("spec.{name}.list.path"),
                format!("{base}{}", entity.list.path),
            ));
            if let Some(read) = &entity.read {
                let path = read.path.replace("{id}", "id");
                urls.push((format!("spec.{name}.read.path"), format!("{base}{path}")));
            }
            let writes = entity.write.iter().flat_map(|w| {
                [("create", &w.create), ("update", &w.update)]
                    .into_iter()
                    .filter_map(|(kind, call)| call.as_ref().map(|c| (kind, c)))
            });
            for (kind, call) in writes {
                let path = call.path.replace("{id}", "id");
                urls.push((
                    format!("spec.{name}.write.{kind}.path"),
                    format!("{base}{path}"),
                ));
            }
        }
        urls
    }

    /// The spec with the integration's connection parameters written into its paths.
    /// Every declared parameter needs a value of its format, and only declared ones
    /// are taken; the error names the parameter (`parameters.account_id`).
    pub fn bind(&self, values: &BTreeMap<String, String>) -> Result<CustomSpec, CrmError> {
        let refused = |name: &str, reason: String| CrmError::Refused {
            field: format!("parameters.{name}"),
            reason,
        };
        if let Some(name) = values.keys().find(|k| !self.parameters.contains_key(*k)) {
            return Err(refused(
                name,
                "this provider takes no such parameter".into(),
            ));
        }
        let mut bound = self.clone();
        bound.parameters.clear();
        for (name, parameter) in &self.parameters {
            let Some(value) = values.get(name) else {
                let what = parameter.description.as_deref().unwrap_or("a value");
                return Err(refused(name, format!("required: {what}")));
            };
            if !parameter.format.admits(value) {
                return Err(refused(name, parameter.format.describe().into()));
            }
            let placeholder = format!("{{{name}}}");
            for path in bound.paths_mut() {
                *path = path.replace(&placeholder, value);
            }
        }
        Ok(bound)
    }

    /// Every endpoint path of the spec.
    fn paths_mut(&mut self) -> Vec<&mut String> {
        let mut paths = Vec::new();
        for entity in [&mut self.contacts, &mut self.companies]
            .into_iter()
            .flatten()
        {
            paths.push(&mut entity.list.path);
            if let Some(read) = &mut entity.read {
                paths.push(&mut read.path);
            }
            if let Some(write) = &mut entity.write {
                for call in [&mut write.create, &mut write.update].into_iter().flatten() {
                    paths.push(&mut call.path);
                }
            }
        }
        paths
    }

    /// Refuses the first URL of [`CustomSpec::urls`] the outbound policy refuses; an
    /// endpoint path must also stay on `base_url`'s origin.
    pub fn check_outbound(&self, guard: &crate::outbound::Guard) -> Result<(), CrmError> {
        let origin = url::Url::parse(self.base_url.trim_end_matches('/'))
            .map(|u| u.origin())
            .map_err(|_| CrmError::Refused {
                field: "spec.base_url".into(),
                reason: "is not an absolute URL".into(),
            })?;
        for (field, text) in self.urls() {
            let url = url::Url::parse(&text).map_err(|_| CrmError::Refused {
                field: field.clone(),
                reason: "is not an absolute URL".into(),
            })?;
            guard.check_url(&field, &url)?;
            if field.ends_with(".path") && url.origin() != origin {
                return Err(CrmError::Refused {
                    field,
                    reason: "must stay on the host of base_url".into(),
                });
            }
        }
        Ok(())
    }

    /// Checks everything parsing cannot: every problem is reported with the field
    /// path it concerns, e.g. `contacts.pagination.cursor_path: required for cursor
    /// pagination`, all problems at once.
    pub fn validate(&self) -> Result<(), CrmError> {
        let mut problems = Vec::new();
        let mut bad = |path: &str, what: &str| problems.push(format!("{path}: {what}"));
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) => bad("base_url", "must be an http(s) URL with a host"),
            Err(_) => bad("base_url", "not a valid URL"),
        }
        match &self.auth {
            AuthSpec::ApiKey { header, query, .. } => match (header, query) {
                (Some(_), Some(_)) => bad("auth", "give either header or query, not both"),
                (None, None) => bad("auth", "api_key needs header or query"),
                (Some(h), None) if reqwest::header::HeaderName::try_from(h.as_str()).is_err() => {
                    bad("auth.header", "not a valid header name")
                }
                (_, Some(q)) if q.trim().is_empty() => bad("auth.query", "must not be empty"),
                _ => {}
            },
            AuthSpec::Basic {} | AuthSpec::Bearer {} => {}
            AuthSpec::Oauth2 { .. } => self.auth.validate_oauth2(&mut bad),
        }
        if self.contacts.is_none() && self.companies.is_none() {
            bad(
                "contacts",
                "at least one of contacts and companies is required",
            );
        }
        for (name, entity) in [("contacts", &self.contacts), ("companies", &self.companies)] {
            if let Some(entity) = entity {
                entity.validate(name, &mut bad);
                entity.check_placeholders(name, &self.parameters, &mut bad);
            }
        }
        for name in self.parameters.keys() {
            if !ParameterFormat::Slug.admits(name) || name == "id" {
                bad(
                    &format!("parameters.{name}"),
                    "a name of letters, digits, `-` or `_`, other than `id`",
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CrmError::Config(format!(
                "invalid custom spec: {}",
                problems.join("; ")
            )))
        }
    }
}

/// A spec that does not parse, with the path of the offending part (`.` is the top).
fn parse_error(format: &str, path: &str, error: &impl std::fmt::Display) -> CrmError {
    if path == "." {
        CrmError::Config(format!("custom spec ({format}): {error}"))
    } else {
        CrmError::Config(format!("custom spec ({format}): {path}: {error}"))
    }
}

fn check_path(at: &str, path: &str, bad: &mut impl FnMut(&str, &str)) {
    if let Err(e) = JsonPath::parse(path) {
        bad(at, &e);
    }
}

fn check_api_path(at: &str, path: &str, bad: &mut impl FnMut(&str, &str)) {
    if !path.starts_with('/') {
        bad(at, "must start with `/`");
    } else if path.contains("://") || path.starts_with("//") {
        bad(at, "must be a path on base_url, not a URL");
    }
}

impl AuthSpec {
    /// The checks of an `oauth2` auth: its URLs, PKCE, the issuer and the extra
    /// authorization parameters.
    fn validate_oauth2(&self, bad: &mut impl FnMut(&str, &str)) {
        let AuthSpec::Oauth2 {
            authorize_url,
            token_url,
            pkce,
            revocation_url,
            issuer,
            authorization_response_iss_parameter_supported,
            authorization_params,
            ..
        } = self
        else {
            return;
        };
        let urls = [
            ("auth.authorize_url", Some(authorize_url)),
            ("auth.token_url", Some(token_url)),
            ("auth.revocation_url", revocation_url.as_ref()),
        ];
        for (at, url) in urls {
            if url.is_some_and(|u| url::Url::parse(u).is_err()) {
                bad(at, "not a valid URL");
            }
        }
        if !pkce {
            bad("auth.pkce", "must be true (PKCE is always used)");
        }
        match issuer.as_deref().map(url::Url::parse) {
            Some(Ok(u)) if u.query().is_some() || u.fragment().is_some() => bad(
                "auth.issuer",
                "an issuer identifier has no query or fragment (RFC 8414)",
            ),
            Some(Err(_)) => bad("auth.issuer", "not a valid URL"),
            None if !authorization_response_iss_parameter_supported => bad(
                "auth.authorization_response_iss_parameter_supported",
                "applies only with auth.issuer",
            ),
            _ => {}
        }
        for name in authorization_params.keys() {
            let reserved = crate::oauth::PROTOCOL_PARAMS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(name.trim()));
            if reserved {
                bad(
                    &format!("auth.authorization_params.{name}"),
                    "is set by the OAuth flow itself and cannot be overridden",
                );
            } else if name.trim().is_empty() {
                bad("auth.authorization_params", "a parameter name is empty");
            }
        }
    }
}

impl EntitySpec {
    fn validate(&self, name: &str, bad: &mut impl FnMut(&str, &str)) {
        let list = &self.list;
        check_api_path(&format!("{name}.list.path"), &list.path, bad);
        check_path(
            &format!("{name}.list.records_path"),
            &list.records_path,
            bad,
        );
        if list.id_path.trim().is_empty() {
            bad(&format!("{name}.list.id_path"), "required");
        }
        check_path(&format!("{name}.list.id_path"), &list.id_path, bad);
        let prefix_ok = |p: &str| {
            (1..=16).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
        };
        if list.id_prefix.as_deref().is_some_and(|p| !prefix_ok(p)) {
            bad(
                &format!("{name}.list.id_prefix"),
                "1 to 16 letters, digits, `-`, `_` or `:`",
            );
        }
        match (&list.updated_at_path, self.scan) {
            (Some(p), _) if p.trim().is_empty() => {
                bad(&format!("{name}.list.updated_at_path"), "must not be empty")
            }
            (Some(p), _) => check_path(&format!("{name}.list.updated_at_path"), p, bad),
            (None, Scan::Full {}) => {}
            (None, _) => bad(
                &format!("{name}.list.updated_at_path"),
                "required unless scan.type is `full`",
            ),
        }
        if self.updated_since.is_some() && self.scan != Scan::Filtered {
            bad(
                &format!("{name}.updated_since"),
                "applies only to the default scan (`filtered`)",
            );
        }
        if let Some(filter) = &self.filter {
            check_path(&format!("{name}.filter.path"), &filter.path, bad);
        }
        if let Some(read) = &self.read {
            check_api_path(&format!("{name}.read.path"), &read.path, bad);
            if !read.path.contains("{id}") {
                bad(&format!("{name}.read.path"), "must contain `{id}`");
            }
            check_path(&format!("{name}.read.record_path"), &read.record_path, bad);
        }
        if let Some(p) = &list.created_at_path {
            check_path(&format!("{name}.list.created_at_path"), p, bad);
        }
        for (field, path) in &list.fields {
            check_path(&format!("{name}.list.fields.{field}"), path, bad);
        }
        if let Some(since) = &self.updated_since {
            if since.param.trim().is_empty() {
                bad(&format!("{name}.updated_since.param"), "required");
            }
        }
        let at = |field: &str| format!("{name}.pagination.{field}");
        match &self.pagination {
            Pagination::Cursor {
                param,
                cursor_path,
                limit_param,
                limit,
            } => {
                if param.trim().is_empty() {
                    bad(&at("param"), "required for cursor pagination");
                }
                if cursor_path.trim().is_empty() {
                    bad(&at("cursor_path"), "required for cursor pagination");
                } else {
                    check_path(&at("cursor_path"), cursor_path, bad);
                }
                if limit.is_some() != limit_param.is_some() {
                    bad(&at("limit"), "limit and limit_param go together");
                }
            }
            Pagination::Offset {
                offset_param,
                limit_param,
                limit,
            } => {
                if offset_param.trim().is_empty() {
                    bad(&at("offset_param"), "required for offset pagination");
                }
                if limit_param.trim().is_empty() {
                    bad(&at("limit_param"), "required for offset pagination");
                }
                if *limit == 0 {
                    bad(&at("limit"), "must be at least 1 for offset pagination");
                }
            }
            Pagination::Page {
                page_param,
                size,
                first_page,
                min_size,
                ..
            } => {
                if min_size.is_some_and(|m| m == 0 || m > *size) {
                    bad(&at("min_size"), "must be between 1 and size");
                }
                if page_param.trim().is_empty() {
                    bad(&at("page_param"), "required for page pagination");
                }
                if *size == 0 {
                    bad(&at("size"), "must be at least 1 for page pagination");
                }
                if *first_page > 1 {
                    bad(&at("first_page"), "must be 0 or 1");
                }
            }
            Pagination::LinkHeader { limit_param, limit } => {
                if limit.is_some() != limit_param.is_some() {
                    bad(&at("limit"), "limit and limit_param go together");
                }
            }
            Pagination::None => {}
        }
        if let Some(write) = &self.write {
            if write.create.is_none() && write.update.is_none() {
                bad(&format!("{name}.write"), "needs create or update");
            }
            if let Some(create) = &write.create {
                check_api_path(&format!("{name}.write.create.path"), &create.path, bad);
            }
            if let Some(update) = &write.update {
                check_api_path(&format!("{name}.write.update.path"), &update.path, bad);
                if !update.path.contains("{id}") {
                    bad(&format!("{name}.write.update.path"), "must contain `{id}`");
                }
            }
            if write.create.as_ref().is_some_and(|c| c.read_modify_write) {
                bad(
                    &format!("{name}.write.create.read_modify_write"),
                    "applies only to update",
                );
            }
            if write.update.as_ref().is_some_and(|c| c.read_modify_write) && self.read.is_none() {
                bad(
                    &format!("{name}.write.update.read_modify_write"),
                    "needs the entity's `read` endpoint",
                );
            }
            let calls = [("create", &write.create), ("update", &write.update)];
            for (kind, call) in calls {
                for path in call.iter().flat_map(|c| c.set.keys()) {
                    let at = format!("{name}.write.{kind}.set.{path}");
                    match JsonPath::parse(path) {
                        Ok(p) if p.is_writable() => {}
                        Ok(_) => bad(&at, "paths with indexes cannot be written"),
                        Err(e) => bad(&at, &e),
                    }
                }
            }
            if let Some(p) = &write.response_id_path {
                check_path(&format!("{name}.write.response_id_path"), p, bad);
            }
            for (field, path) in &list.fields {
                if JsonPath::parse(path).is_ok_and(|p| !p.is_writable()) {
                    bad(
                        &format!("{name}.list.fields.{field}"),
                        "paths with indexes cannot be written",
                    );
                }
            }
        }
        if let Some(p) = &self.delete_flag_path {
            check_path(&format!("{name}.delete_flag_path"), p, bad);
        }
        if let Some(unavailable) = &self.unavailable {
            let at = format!("{name}.unavailable");
            if unavailable.statuses.is_empty() {
                bad(&format!("{at}.statuses"), "name at least one status");
            }
            let odd = |s: &&u16| !(400..500).contains(*s) || matches!(**s, 401 | 429);
            if unavailable.statuses.iter().any(|s| odd(&s)) {
                bad(
                    &format!("{at}.statuses"),
                    "only client errors other than 401 and 429",
                );
            }
            if unavailable.reason.trim().is_empty() {
                bad(&format!("{at}.reason"), "required");
            }
        }
        if let Some(catalogue) = &self.fields_catalogue {
            for (i, field) in catalogue.iter().enumerate() {
                if field.name.trim().is_empty() {
                    bad(&format!("{name}.fields_catalogue[{i}].name"), "required");
                }
            }
        }
    }
}

/// The `{name}` placeholders of a path.
fn placeholders(path: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        found.push(&after[..end]);
        rest = &after[end + 1..];
    }
    found
}

impl EntitySpec {
    /// Each `{name}` in a path is a declared parameter, or `{id}` where an id goes.
    fn check_placeholders(
        &self,
        name: &str,
        parameters: &BTreeMap<String, ParameterSpec>,
        bad: &mut impl FnMut(&str, &str),
    ) {
        let write = self.write.as_ref();
        let paths = [
            ("list.path", Some(&self.list.path), false),
            ("read.path", self.read.as_ref().map(|r| &r.path), true),
            (
                "write.create.path",
                write.and_then(|w| w.create.as_ref()).map(|c| &c.path),
                false,
            ),
            (
                "write.update.path",
                write.and_then(|w| w.update.as_ref()).map(|c| &c.path),
                true,
            ),
        ];
        for (at, path, takes_id) in paths {
            let Some(path) = path else { continue };
            for placeholder in placeholders(path) {
                let known =
                    parameters.contains_key(placeholder) || (takes_id && placeholder == "id");
                if !known {
                    bad(
                        &format!("{name}.{at}"),
                        &format!("`{{{placeholder}}}` is not a declared parameter"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(size: u32) -> Pagination {
        Pagination::Page {
            page_param: "page".into(),
            size_param: None,
            size,
            first_page: 1,
            min_size: None,
        }
    }

    #[test]
    fn only_a_page_other_than_full_ends_the_list_when_repeated() {
        let chatwoot = page(25);
        assert!(chatwoot.repeat_ends_list(3), "a short last page repeated");
        assert!(chatwoot.repeat_ends_list(60), "an unpaginated index");
        assert!(
            !chatwoot.repeat_ends_list(25),
            "a full page: maybe more behind"
        );
        let offset = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: 10,
        };
        assert!(offset.repeat_ends_list(4) && !offset.repeat_ends_list(10));
        let cursor = Pagination::Cursor {
            param: "c".into(),
            cursor_path: "next".into(),
            limit_param: None,
            limit: None,
        };
        assert!(!cursor.repeat_ends_list(4), "a cursor repeated is a loop");
        assert!(!Pagination::None.repeat_ends_list(4));
    }

    #[test]
    fn an_id_prefix_is_added_to_ids_and_taken_off_for_urls() {
        let mut list = ListSpec {
            path: "/c".into(),
            method: ListMethod::GET,
            query: BTreeMap::new(),
            records_path: String::new(),
            id_path: "id".into(),
            id_prefix: Some("company:".into()),
            updated_at_path: None,
            updated_at_format: TimeFormat::Rfc3339,
            created_at_path: None,
            fields: BTreeMap::new(),
        };
        assert_eq!(list.our_id("17"), "company:17");
        assert_eq!(list.raw_id("company:17"), "17");
        assert_eq!(list.raw_id("17"), "17", "linked before the prefix");
        list.id_prefix = None;
        assert_eq!(
            (list.our_id("17").as_str(), list.raw_id("17")),
            ("17", "17")
        );
    }

    #[test]
    fn unavailable_answers_are_client_errors_with_a_reason() {
        let text = |statuses: &str, reason: &str| {
            format!(
                r#"{{"base_url": "https://x.example", "auth": {{"type": "bearer"}},
                "companies": {{"list": {{"path": "/c", "id_path": "id"}}, "scan": {{"type": "full"}},
                "unavailable": {{"statuses": {statuses}, "reason": "{reason}"}}}}}}"#
            )
        };
        assert!(CustomSpec::from_json(&text("[403, 404]", "not enabled")).is_ok());
        for (statuses, reason, needle) in [
            ("[]", "r", "companies.unavailable.statuses"),
            ("[401]", "r", "companies.unavailable.statuses"),
            ("[429]", "r", "companies.unavailable.statuses"),
            ("[500]", "r", "companies.unavailable.statuses"),
            ("[404]", " ", "companies.unavailable.reason"),
        ] {
            let refused = CustomSpec::from_json(&text(statuses, reason));
            assert!(
                matches!(&refused, Err(CrmError::Config(m)) if m.contains(needle)),
                "{statuses} {reason}: {refused:?}"
            );
        }
    }
}
