//! Shared server state: records, the server clock, tokens, limits, faults and counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;

use crate::faults::FaultQueue;
use crate::oauth::AuthState;
use crate::ratelimit::RateLimiter;
use crate::SandboxConfig;

pub type AppState = Arc<Shared>;

pub struct Shared {
    pub config: SandboxConfig,
    pub base_url: String,
    pub stopped: watch::Receiver<bool>,
    data: Mutex<HubSpotData>,
}

/// The HubSpot sandbox's mutable world, behind [`Shared::lock`]: its objects, ids and
/// clock, OAuth tokens, rate-limit windows, queued faults and request counters.
pub struct HubSpotData {
    pub objects: BTreeMap<ObjectType, BTreeMap<u64, Record>>,
    next_id: u64,
    clock_ms: i64,
    pub auth: AuthState,
    pub limits: RateLimiter,
    pub faults: FaultQueue,
    pub counters: BTreeMap<String, u64>,
}

impl Shared {
    pub fn new(config: SandboxConfig, base_url: String, stopped: watch::Receiver<bool>) -> Self {
        let mut inner = HubSpotData {
            objects: BTreeMap::new(),
            next_id: 1,
            clock_ms: 0,
            auth: AuthState::default(),
            limits: RateLimiter::new(config.rate_limit),
            faults: FaultQueue::default(),
            counters: BTreeMap::new(),
        };
        for ty in [ObjectType::Contacts, ObjectType::Companies] {
            let records = crate::seed::generate(ty, &config, &mut inner.next_id);
            inner.objects.insert(ty, records);
        }
        Self {
            config,
            base_url,
            stopped,
            data: Mutex::new(inner),
        }
    }

    /// A poisoned lock only means a handler panicked; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, HubSpotData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::Simulator for Shared {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    fn issue_tokens(&self) -> crate::TokenPair {
        let ttl = self.config.access_token_ttl_secs;
        self.lock()
            .auth
            .issue(crate::oauth::default_scopes(), ttl, self.config.hub_id)
    }

    fn webhook_secret(&self) -> Option<String> {
        Some(self.config.client_secret.clone())
    }
}

/// Resolves once the sandbox is told to stop (or its handle is gone).
pub async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Contacts,
    Companies,
}

impl ObjectType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contacts" | "contact" | "0-1" => Some(Self::Contacts),
            "companies" | "company" | "0-2" => Some(Self::Companies),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Companies => "companies",
        }
    }

    pub fn modified_property(self) -> &'static str {
        match self {
            Self::Contacts => "lastmodifieddate",
            Self::Companies => "hs_lastmodifieddate",
        }
    }

    /// The unique property usable as `idProperty` in upserts.
    pub fn unique_property(self) -> &'static str {
        match self {
            Self::Contacts => "email",
            Self::Companies => "domain",
        }
    }

    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &["firstname", "lastname", "email"],
            Self::Companies => &["name", "domain"],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub properties: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived_ms: Option<i64>,
}

impl Record {
    /// The instant behind a server-maintained date property.
    pub fn time(&self, ty: ObjectType, name: &str) -> Option<i64> {
        match name {
            "createdate" => Some(self.created_ms),
            n if n == ty.modified_property() || n == "hs_lastmodifieddate" => Some(self.updated_ms),
            _ => None,
        }
    }

    /// A property value, including the ones the server derives.
    pub fn prop(&self, ty: ObjectType, name: &str) -> Option<String> {
        if name == "hs_object_id" {
            return Some(self.id.to_string());
        }
        match self.time(ty, name) {
            Some(ms) => Some(iso(ms)),
            None => self.properties.get(name).cloned(),
        }
    }

    pub fn to_json(&self, ty: ObjectType, wanted: Option<&[String]>) -> Value {
        serde_json::to_value(self.view(ty, wanted)).unwrap_or(Value::Null)
    }

    /// The record as the API shows it, with the `wanted` properties (else the type's
    /// defaults) and the ones always shown; serialized straight from the record, so a
    /// page of results costs no intermediate JSON tree.
    pub fn view<'a>(&'a self, ty: ObjectType, wanted: Option<&'a [String]>) -> RecordView<'a> {
        let always = ["hs_object_id", "createdate", ty.modified_property()];
        let mut names: Vec<&'a str> = Vec::with_capacity(16);
        let listed: Box<dyn Iterator<Item = &'a str>> = match wanted {
            Some(list) => Box::new(list.iter().map(String::as_str)),
            None => Box::new(ty.default_properties().iter().copied()),
        };
        for name in listed.chain(always) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        RecordView {
            record: self,
            ty,
            names,
        }
    }
}

/// See [`Record::view`].
pub struct RecordView<'a> {
    record: &'a Record,
    ty: ObjectType,
    names: Vec<&'a str>,
}

struct Properties<'v, 'a>(&'v RecordView<'a>);

impl serde::Serialize for Properties<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let view = self.0;
        let mut map = serializer.serialize_map(Some(view.names.len()))?;
        for name in &view.names {
            if *name == "hs_object_id" {
                map.serialize_entry(name, &view.record.id.to_string())?;
            } else if let Some(ms) = view.record.time(view.ty, name) {
                map.serialize_entry(name, &iso(ms))?;
            } else {
                map.serialize_entry(name, &view.record.properties.get(*name))?;
            }
        }
        map.end()
    }
}

impl serde::Serialize for RecordView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.record;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &r.id.to_string())?;
        map.serialize_entry("properties", &Properties(self))?;
        map.serialize_entry("createdAt", &iso(r.created_ms))?;
        map.serialize_entry("updatedAt", &iso(r.updated_ms))?;
        map.serialize_entry("archived", &r.archived_ms.is_some())?;
        if let Some(at) = r.archived_ms {
            map.serialize_entry("archivedAt", &iso(at))?;
        }
        map.end()
    }
}

impl HubSpotData {
    /// Server time in ms: never goes backwards, so writes are ordered by it.
    pub fn now_ms(&mut self) -> i64 {
        let sys = chrono::Utc::now().timestamp_millis();
        self.clock_ms = self.clock_ms.max(sys);
        self.clock_ms
    }

    pub fn table(&mut self, ty: ObjectType) -> &mut BTreeMap<u64, Record> {
        self.objects.entry(ty).or_default()
    }

    pub fn get(&self, ty: ObjectType, id: u64) -> Option<&Record> {
        self.objects.get(&ty).and_then(|t| t.get(&id))
    }

    pub fn find_by(&self, ty: ObjectType, prop: &str, value: &str) -> Option<u64> {
        let table = self.objects.get(&ty)?;
        // Stored properties compare in place: upserts scan every record.
        let same = |r: &Record| match r.properties.get(prop) {
            Some(v) => v.eq_ignore_ascii_case(value),
            None => r
                .prop(ty, prop)
                .is_some_and(|v| v.eq_ignore_ascii_case(value)),
        };
        let found = table.values().find(|r| r.archived_ms.is_none() && same(r));
        found.map(|r| r.id)
    }

    pub fn create(&mut self, ty: ObjectType, properties: BTreeMap<String, String>) -> Record {
        let now = self.now_ms();
        let id = self.next_id;
        self.next_id += 1;
        let record = Record {
            id,
            properties,
            created_ms: now,
            updated_ms: now,
            archived_ms: None,
        };
        self.table(ty).insert(id, record.clone());
        record
    }

    /// Applies property changes and stamps the modification time.
    pub fn update(
        &mut self,
        ty: ObjectType,
        id: u64,
        changes: BTreeMap<String, String>,
    ) -> Option<Record> {
        let now = self.now_ms();
        let record = self.table(ty).get_mut(&id)?;
        record.properties.extend(changes);
        record.updated_ms = now;
        Some(record.clone())
    }

    /// Archives or restores a record; either way it counts as a modification.
    pub fn set_archived(&mut self, ty: ObjectType, id: u64, archived: bool) -> Option<Record> {
        let now = self.now_ms();
        let record = self.table(ty).get_mut(&id)?;
        record.archived_ms = archived.then_some(record.archived_ms.unwrap_or(now));
        record.updated_ms = now;
        Some(record.clone())
    }

    pub fn archive(&mut self, ty: ObjectType, id: u64) -> bool {
        let now = self.now_ms();
        match self.table(ty).get_mut(&id) {
            Some(r) if r.archived_ms.is_none() => {
                r.archived_ms = Some(now);
                r.updated_ms = now;
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Accepts epoch milliseconds or an RFC 3339 timestamp, as HubSpot filters do.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}
