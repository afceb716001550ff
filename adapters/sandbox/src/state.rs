//! Shared server state: records, the server clock, tokens, limits, faults and counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use crate::records::{iso, parse_time, ObjectType, Record, RecordView};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::faults::{endpoint_key, Action, FaultHost, FaultQueue};
use crate::grants::AuthState;
use crate::ratelimit::RateLimiter;
use crate::ratelimit::{too_many, Policy};
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
            .issue(crate::grants::default_scopes(), ttl, self.config.hub_id)
    }

    fn webhook_secret(&self) -> Option<String> {
        Some(self.config.client_secret.clone())
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

impl FaultHost for Shared {
    fn count_and_take(&self, method: &Method, path: &str) -> Option<Action> {
        let mut inner = self.lock();
        *inner
            .counters
            .entry(endpoint_key(method, path))
            .or_default() += 1;
        inner.faults.take(path)
    }

    fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    fn fault_response(&self, status: StatusCode) -> Response {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return too_many(Policy::TenSecondly);
        }
        ApiError::new(status, "INTERNAL_ERROR", "Injected fault").into_response()
    }

    const TRUNCATED_BODY: &'static str = r#"{"results":[{"id":"1","properties":{"#;
}
