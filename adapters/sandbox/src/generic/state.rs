//! The generic sandbox's records, tokens, counters and injected faults.

use crate::words::{FIRST, LAST};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::GenericSandboxConfig;
use crate::faults::FaultQueue;
use crate::TokenPair;

/// The two entities every style serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Contacts,
    Companies,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "contacts" => Some(Kind::Contacts),
            "companies" => Some(Kind::Companies),
            _ => None,
        }
    }
}

/// How a style renders the `updated` timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
}

#[derive(Clone, Debug)]
pub struct Rec {
    pub id: u64,
    pub attributes: BTreeMap<String, String>,
    pub updated: DateTime<Utc>,
    pub deleted: bool,
}

impl Rec {
    pub fn to_json(&self, stamp: Stamp) -> Value {
        let updated = match stamp {
            Stamp::Rfc3339 => json!(self.updated.to_rfc3339()),
            Stamp::UnixSeconds => json!(self.updated.timestamp()),
            Stamp::UnixMillis => json!(self.updated.timestamp_millis()),
        };
        let attributes: Map<String, Value> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "id": self.id,
            "attributes": attributes,
            "updated": updated,
            "deleted": self.deleted,
        })
    }
}

/// An answer queued for the next token requests (`POST /_sandbox/oauth/errors`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenError {
    /// The HTTP status, e.g. 400, 429 or 503.
    pub status: u16,
    /// The OAuth `error` code, e.g. `temporarily_unavailable`; none: an empty body.
    #[serde(default)]
    pub error: Option<String>,
    /// A `Retry-After` header, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// How many token requests get this answer.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// A revocation request the authorization server received (never the token).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Revocation {
    pub token_type_hint: Option<String>,
    /// Whether the token was a live refresh token.
    pub refresh_token: bool,
    /// Whether the token was a live access token.
    pub access_token: bool,
}

/// An authorization code waiting for its token exchange.
pub struct PendingCode {
    pub challenge: String,
    pub redirect_uri: String,
}

/// The generic sandbox's mutable world, behind [`GenericState::lock`]: its records and
/// ids, queued faults, request counters, and its OAuth server's codes, tokens, queued
/// token errors and revocations.
pub struct GenericData {
    pub records: BTreeMap<Kind, BTreeMap<u64, Rec>>,
    next_id: u64,
    pub faults: FaultQueue,
    pub counters: BTreeMap<String, u64>,
    pub codes: HashMap<String, PendingCode>,
    /// Access token → expiry.
    pub access: HashMap<String, DateTime<Utc>>,
    /// Live refresh tokens; each is used up by one refresh (rotation).
    pub refresh: HashMap<String, ()>,
    /// Answers the token endpoint gives before any real one.
    pub token_errors: Vec<TokenError>,
    pub revocations: Vec<Revocation>,
    /// The `token_type` of token responses from now on (starts as the config's).
    pub token_type: String,
}

pub struct GenericState {
    pub config: GenericSandboxConfig,
    pub base_url: String,
    pub stopped: watch::Receiver<bool>,
    data: Mutex<GenericData>,
}

/// A small deterministic generator so a seed always yields the same records.
fn lcg(state: &mut u64) -> usize {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    usize::try_from(*state >> 33).unwrap_or(0)
}

/// Whole seconds, so every timestamp format round-trips exactly.
pub fn now_secs() -> DateTime<Utc> {
    Utc.timestamp_opt(Utc::now().timestamp(), 0)
        .single()
        .unwrap_or_else(Utc::now)
}

impl GenericState {
    pub fn new(
        config: GenericSandboxConfig,
        base_url: String,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        let base = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        let group = config.same_timestamp_group.max(1);
        let mut rng = config.seed;
        let mut records = BTreeMap::new();
        for kind in [Kind::Contacts, Kind::Companies] {
            let mut map = BTreeMap::new();
            for i in 0..config.records {
                let id = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
                let minutes = i64::try_from(i / group).unwrap_or(0);
                let first = FIRST[lcg(&mut rng) % FIRST.len()];
                let last = LAST[lcg(&mut rng) % LAST.len()];
                let attributes: BTreeMap<String, String> = match kind {
                    Kind::Contacts => [
                        ("first_name", first.to_owned()),
                        ("last_name", last.to_owned()),
                        (
                            "email",
                            format!("{}.{}{id}@example.com", first, last).to_lowercase(),
                        ),
                        ("phone", format!("+1555{:07}", lcg(&mut rng) % 10_000_000)),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                    Kind::Companies => [
                        ("name", format!("{last} & Co {id}")),
                        ("domain", format!("{}{id}.example", last.to_lowercase())),
                        ("phone", format!("+1555{:07}", lcg(&mut rng) % 10_000_000)),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                };
                map.insert(
                    id,
                    Rec {
                        id,
                        attributes,
                        updated: base + Duration::minutes(minutes),
                        deleted: false,
                    },
                );
            }
            records.insert(kind, map);
        }
        let next_id = u64::try_from(config.records)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let token_type = config.token_type.clone();
        Self {
            config,
            base_url,
            stopped,
            data: Mutex::new(GenericData {
                records,
                next_id,
                faults: FaultQueue::default(),
                counters: BTreeMap::new(),
                codes: HashMap::new(),
                access: HashMap::new(),
                refresh: HashMap::new(),
                token_errors: Vec::new(),
                revocations: Vec::new(),
                token_type,
            }),
        }
    }

    /// A poisoned lock only means a handler panicked; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, GenericData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GenericData {
    pub fn create(&mut self, kind: Kind, attributes: BTreeMap<String, String>) -> Rec {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let rec = Rec {
            id,
            attributes,
            updated: now_secs(),
            deleted: false,
        };
        self.records
            .entry(kind)
            .or_default()
            .insert(id, rec.clone());
        rec
    }

    /// Merges `changes` (an empty value removes the attribute) and bumps `updated`.
    pub fn update(
        &mut self,
        kind: Kind,
        id: u64,
        changes: BTreeMap<String, String>,
    ) -> Option<Rec> {
        let rec = self.records.get_mut(&kind)?.get_mut(&id)?;
        for (name, value) in changes {
            if value.is_empty() {
                rec.attributes.remove(&name);
            } else {
                rec.attributes.insert(name, value);
            }
        }
        rec.updated = now_secs();
        Some(rec.clone())
    }

    pub fn issue_tokens(&mut self, ttl_secs: u64) -> TokenPair {
        let access = format!("gat-{}", uuid::Uuid::new_v4().simple());
        let refresh = format!("grt-{}", uuid::Uuid::new_v4().simple());
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2_000);
        self.access
            .insert(access.clone(), Utc::now() + Duration::seconds(ttl));
        self.refresh.insert(refresh.clone(), ());
        TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: ttl_secs,
            token_type: "bearer".into(),
            token_use: "access_token".into(),
            hub_id: 0,
        }
    }
}

impl GenericData {
    /// The next queued token-endpoint error, used up by one.
    pub fn take_token_error(&mut self) -> Option<TokenError> {
        let first = self.token_errors.first_mut()?;
        first.count = first.count.saturating_sub(1);
        let taken = first.clone();
        if first.count == 0 {
            self.token_errors.remove(0);
        }
        Some(taken)
    }

    /// Revokes a refresh or an access token (unknown ones are ignored, RFC 7009 §2.2).
    pub fn revoke(&mut self, token: &str, hint: Option<String>) {
        let revocation = Revocation {
            token_type_hint: hint,
            refresh_token: self.refresh.remove(token).is_some(),
            access_token: self.access.remove(token).is_some(),
        };
        self.revocations.push(revocation);
    }
}

impl crate::Simulator for GenericState {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    fn issue_tokens(&self) -> TokenPair {
        let ttl = self.config.access_token_ttl_secs;
        self.lock().issue_tokens(ttl)
    }
}

/// The sandbox's error body: `{"message": .., "code": ..}` (plus `field` for 422).
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "message": message.into(), "code": code });
    (status, Json(body)).into_response()
}

/// Query pairs of a raw query string; undecodable input yields no pairs.
pub fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}
