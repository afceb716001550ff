//! Server state: records per sObject, the server clock, tokens, query cursors,
//! limits, faults and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::grants::AuthState;
use super::schema::SObject;
use super::SalesforceSandboxConfig;
use crate::faults::FaultQueue;
use crate::ratelimit::RateLimiter;

pub type AppState = Arc<Shared>;

pub struct Shared {
    pub config: SalesforceSandboxConfig,
    pub base_url: String,
    pub stopped: watch::Receiver<bool>,
    data: Mutex<SalesforceData>,
}

/// A query's server-side cursor: the ids it matched, in order, when it ran.
pub struct Locator {
    pub object: SObject,
    pub fields: Vec<String>,
    pub ids: Vec<String>,
    pub batch: usize,
}

/// The Salesforce sandbox's mutable world, behind [`Shared::lock`]: its sObjects, ids and
/// clock, OAuth tokens, rate limits and daily quota, queued faults, request counters and
/// the query locators of paged results.
pub struct SalesforceData {
    pub records: BTreeMap<SObject, BTreeMap<String, Record>>,
    next_id: u64,
    clock_ms: i64,
    pub auth: AuthState,
    pub limits: RateLimiter,
    pub daily_limit: u32,
    pub daily_used: u32,
    pub faults: FaultQueue,
    pub counters: BTreeMap<String, u64>,
    pub locators: HashMap<String, Locator>,
    next_locator: u64,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub fields: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modstamp_ms: i64,
    pub deleted_ms: Option<i64>,
}

impl Record {
    /// A field value, including the ones the server maintains; `None` is null.
    pub fn value(&self, name: &str) -> Option<Value> {
        let field = if name.eq_ignore_ascii_case("Id") {
            return Some(Value::String(self.id.clone()));
        } else if name.eq_ignore_ascii_case("IsDeleted") {
            return Some(Value::Bool(self.deleted_ms.is_some()));
        } else if name.eq_ignore_ascii_case("CreatedDate") {
            return Some(Value::String(sf_time(self.created_ms)));
        } else if name.eq_ignore_ascii_case("LastModifiedDate")
            || name.eq_ignore_ascii_case("SystemModstamp")
        {
            return Some(Value::String(sf_time(self.modstamp_ms)));
        } else {
            name
        };
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| Value::String(v.clone()))
    }

    /// The record as the query and control APIs render it.
    pub fn to_json(&self, object: SObject, fields: &[String], base: &str) -> Value {
        let mut out = Map::new();
        out.insert(
            "attributes".into(),
            serde_json::json!({
                "type": object.name(),
                "url": format!("{base}/sobjects/{}/{}", object.name(), self.id),
            }),
        );
        for name in fields {
            let canonical = object.field(name).map_or(name.as_str(), |f| f.name);
            out.insert(
                canonical.to_string(),
                self.value(canonical).unwrap_or(Value::Null),
            );
        }
        Value::Object(out)
    }
}

impl Shared {
    /// The server state holding `records` (seeded by the caller, which used ids below
    /// `next_id`).
    pub fn new(
        config: SalesforceSandboxConfig,
        base_url: String,
        stopped: watch::Receiver<bool>,
        (records, next_id): (BTreeMap<SObject, BTreeMap<String, Record>>, u64),
    ) -> Self {
        let inner = SalesforceData {
            records,
            next_id,
            clock_ms: 0,
            auth: AuthState::default(),
            limits: RateLimiter::new(config.rate_limit),
            daily_limit: config.daily_limit,
            daily_used: 0,
            faults: FaultQueue::default(),
            counters: BTreeMap::new(),
            locators: HashMap::new(),
            next_locator: 1,
        };
        Self {
            config,
            base_url,
            stopped,
            data: Mutex::new(inner),
        }
    }

    /// A poisoned lock only means a handler panicked; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, SalesforceData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `{base}/services/data/{version}`, the prefix of REST URLs.
    pub fn data_path(&self) -> String {
        format!("/services/data/{}", self.config.api_version)
    }
}

impl crate::Simulator for Shared {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// A pair in the shared shape; Salesforce sessions carry no lifetime, so
    /// `expires_in` is 0 and `hub_id` unused.
    fn issue_tokens(&self) -> crate::TokenPair {
        let issued = self.lock().auth.issue(true);
        crate::TokenPair {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token.unwrap_or_default(),
            expires_in: 0,
            token_type: "Bearer".into(),
            token_use: "access_token".into(),
            hub_id: 0,
        }
    }
}

impl SalesforceData {
    /// Server time in ms: never goes backwards, so writes are ordered by it.
    pub fn now_ms(&mut self) -> i64 {
        let sys = chrono::Utc::now().timestamp_millis();
        self.clock_ms = self.clock_ms.max(sys);
        self.clock_ms
    }

    pub fn table(&mut self, object: SObject) -> &mut BTreeMap<String, Record> {
        self.records.entry(object).or_default()
    }

    pub fn get(&self, object: SObject, id: &str) -> Option<&Record> {
        self.records.get(&object).and_then(|t| t.get(id))
    }

    pub fn new_id(&mut self, object: SObject) -> String {
        let id = make_id(object, self.next_id);
        self.next_id += 1;
        id
    }

    pub fn create(&mut self, object: SObject, fields: BTreeMap<String, String>) -> Record {
        let now = self.now_ms();
        let id = self.new_id(object);
        let record = Record {
            id: id.clone(),
            fields,
            created_ms: now,
            modstamp_ms: now,
            deleted_ms: None,
        };
        self.table(object).insert(id, record.clone());
        record
    }

    /// Sets fields (an empty value clears one) and stamps the modification time.
    pub fn update(
        &mut self,
        object: SObject,
        id: &str,
        changes: BTreeMap<String, String>,
    ) -> Option<Record> {
        let now = self.now_ms();
        let record = self.table(object).get_mut(id)?;
        for (name, value) in changes {
            record.fields.retain(|k, _| !k.eq_ignore_ascii_case(&name));
            if !value.is_empty() {
                record.fields.insert(name, value);
            }
        }
        record.modstamp_ms = now;
        Some(record.clone())
    }

    /// Moves a record to the recycle bin; `false` when it is unknown or already there.
    pub fn delete(&mut self, object: SObject, id: &str) -> bool {
        let now = self.now_ms();
        match self.table(object).get_mut(id) {
            Some(r) if r.deleted_ms.is_none() => {
                r.deleted_ms = Some(now);
                r.modstamp_ms = now;
                true
            }
            _ => false,
        }
    }

    /// The live record whose field equals `value` (case-insensitive, as for email).
    pub fn find_by(&self, object: SObject, field: &str, value: &str) -> Vec<String> {
        let Some(table) = self.records.get(&object) else {
            return Vec::new();
        };
        table
            .values()
            .filter(|r| r.deleted_ms.is_none())
            .filter(|r| {
                r.value(field)
                    .and_then(|v| v.as_str().map(|s| s.eq_ignore_ascii_case(value)))
                    .unwrap_or(false)
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// Stores a query's cursor and returns its locator id (`01g...`).
    pub fn open_locator(&mut self, locator: Locator) -> String {
        let key = format!("01g5g{:013}", self.next_locator);
        self.next_locator += 1;
        self.locators.insert(key.clone(), locator);
        key
    }
}

/// An 18-character id: key prefix, then a zero-padded sequence number.
pub fn make_id(object: SObject, n: u64) -> String {
    format!("{}5g{:013}", object.key_prefix(), n)
}

/// Salesforce's JSON datetime format: `2024-01-01T00:00:00.000+0000`.
pub fn sf_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

/// Accepts SOQL and REST datetime literals: RFC 3339, or `+0000`-style offsets.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"]
        .iter()
        .find_map(|f| chrono::DateTime::parse_from_str(text, f).ok())
        .map(|t| t.timestamp_millis())
}
