//! Pipedrive sandbox state: persons and organizations with soft deletes, the
//! field catalogues with hashed custom-field keys, tokens, limits, faults and counters.

use crate::words::{CITIES, EPOCH_MS, FIRST, GROUP_STEP_MS, LAST, NOUNS, WORDS};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::PipedriveSandboxConfig;
use crate::faults::FaultQueue;
use crate::ratelimit::RateLimiter;

const SOURCES: &[&str] = &["Web", "Referral", "Event", "Cold call"];
const TIERS: &[&str] = &["Gold", "Silver", "Bronze"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Person,
    Organization,
}

impl Kind {
    /// The plural used in v2 paths (`persons`, `organizations`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "persons" | "person" => Some(Self::Person),
            "organizations" | "organization" => Some(Self::Organization),
            _ => None,
        }
    }

    pub fn item(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Organization => "organization",
        }
    }

    /// Standard fields a client may write, besides `custom_fields`.
    pub fn writable(self) -> &'static [&'static str] {
        match self {
            Self::Person => &[
                "name",
                "first_name",
                "last_name",
                "owner_id",
                "org_id",
                "emails",
                "phones",
                "visible_to",
            ],
            Self::Organization => &["name", "owner_id", "address", "visible_to"],
        }
    }
}

/// One entry of a field catalogue (`/v1/personFields`).
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub id: u64,
    pub key: String,
    pub name: String,
    pub field_type: &'static str,
    pub edit_flag: bool,
    pub mandatory: bool,
}

impl FieldDef {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "field_type": self.field_type,
            "edit_flag": self.edit_flag,
            "mandatory_flag": self.mandatory,
            "bulk_edit_allowed": self.edit_flag,
            "active_flag": true,
            "add_visible_flag": true,
        })
    }

    pub fn is_custom(&self) -> bool {
        self.key.len() == 40 && self.key.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    /// Standard fields in their v2 shape, without id and timestamps.
    pub fields: Map<String, Value>,
    /// Custom field values by hash key.
    pub custom: Map<String, Value>,
    pub add_ms: i64,
    pub update_ms: i64,
    pub deleted: bool,
}

impl Record {
    /// The v2 JSON shape.
    pub fn to_v2(&self) -> Value {
        let mut out = self.fields.clone();
        out.insert("id".into(), json!(self.id));
        out.insert("add_time".into(), json!(rfc3339(self.add_ms)));
        out.insert("update_time".into(), json!(rfc3339(self.update_ms)));
        out.insert("custom_fields".into(), Value::Object(self.custom.clone()));
        if self.deleted {
            out.insert("is_deleted".into(), json!(true));
        }
        Value::Object(out)
    }

    /// The v1 JSON shape (as `/v1/recents` reports it): custom fields at the top
    /// level, `active_flag`, and `YYYY-MM-DD HH:MM:SS` timestamps.
    pub fn to_v1(&self) -> Value {
        let mut out = self.fields.clone();
        if let Some(emails) = out.remove("emails") {
            out.insert("email".into(), emails);
        }
        if let Some(phones) = out.remove("phones") {
            out.insert("phone".into(), phones);
        }
        out.extend(self.custom.clone());
        out.insert("id".into(), json!(self.id));
        out.insert("active_flag".into(), json!(!self.deleted));
        out.insert("add_time".into(), json!(v1_time(self.add_ms)));
        out.insert("update_time".into(), json!(v1_time(self.update_ms)));
        Value::Object(out)
    }
}

/// An OAuth client's tokens.
#[derive(Default)]
pub struct Auth {
    /// code → (redirect_uri, S256 challenge)
    pub codes: HashMap<String, (String, Option<String>)>,
    pub refresh: HashMap<String, ()>,
    /// access token → (its refresh token, expiry)
    pub access: HashMap<String, (String, Instant)>,
}

pub fn new_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl Auth {
    /// Issues an access token bound to `refresh` (a new one when `None`).
    pub fn issue(&mut self, refresh: Option<String>, ttl_secs: u64) -> (String, String) {
        let refresh = refresh.unwrap_or_else(|| new_token("pd-rt"));
        let access = new_token("pd-at");
        let expires = Instant::now() + Duration::from_secs(ttl_secs);
        self.access
            .insert(access.clone(), (refresh.clone(), expires));
        self.refresh.insert(refresh.clone(), ());
        (access, refresh)
    }

    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|(_, exp)| *exp > now)
    }

    pub fn revoke(&mut self, token: &str) {
        let refresh = self
            .access
            .get(token)
            .map_or_else(|| token.to_owned(), |(r, _)| r.clone());
        self.refresh.remove(&refresh);
        self.access.retain(|_, (r, _)| *r != refresh);
    }
}

/// The Pipedrive sandbox's mutable world, behind [`Shared::lock`]: its records, custom
/// field definitions, ids and clock, OAuth tokens, rate limits, queued faults, partial-batch
/// write count and request counters.
pub struct PipedriveData {
    pub records: BTreeMap<Kind, BTreeMap<u64, Record>>,
    pub fields: BTreeMap<Kind, Vec<FieldDef>>,
    /// Pipedrive numbers persons and organizations each in its own sequence, so person 1
    /// and organization 1 both exist (a client that keys CRM ids without their type
    /// confuses them).
    next_id: BTreeMap<Kind, u64>,
    clock_ms: i64,
    pub auth: Auth,
    pub limits: RateLimiter,
    pub faults: FaultQueue,
    /// Writes seen while a `partial_batch` fault is active.
    pub writes: usize,
    pub counters: BTreeMap<String, u64>,
}

pub struct Shared {
    pub config: PipedriveSandboxConfig,
    pub base_url: String,
    pub stopped: watch::Receiver<bool>,
    data: Mutex<PipedriveData>,
}

impl Shared {
    pub fn new(
        config: PipedriveSandboxConfig,
        base_url: String,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        let mut inner = PipedriveData {
            records: BTreeMap::new(),
            fields: BTreeMap::new(),
            next_id: BTreeMap::new(),
            clock_ms: 0,
            auth: Auth::default(),
            limits: RateLimiter::new(config.rate_limit),
            faults: FaultQueue::default(),
            writes: 0,
            counters: BTreeMap::new(),
        };
        inner
            .fields
            .insert(Kind::Person, person_fields(config.seed));
        inner
            .fields
            .insert(Kind::Organization, organization_fields(config.seed));
        seed(&mut inner, &config);
        Self {
            config,
            base_url,
            stopped,
            data: Mutex::new(inner),
        }
    }

    /// A poisoned lock only means a handler panicked; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, PipedriveData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PipedriveData {
    /// Server time in ms: never goes backwards, so writes are ordered by it.
    pub fn now_ms(&mut self) -> i64 {
        let sys = chrono::Utc::now().timestamp_millis();
        self.clock_ms = self.clock_ms.max(sys);
        self.clock_ms
    }

    pub fn table(&mut self, kind: Kind) -> &mut BTreeMap<u64, Record> {
        self.records.entry(kind).or_default()
    }

    pub fn live(&self, kind: Kind, id: u64) -> Option<&Record> {
        self.records
            .get(&kind)
            .and_then(|t| t.get(&id))
            .filter(|r| !r.deleted)
    }

    pub fn custom_keys(&self, kind: Kind) -> Vec<(String, String)> {
        self.fields
            .get(&kind)
            .map(|defs| {
                defs.iter()
                    .filter(|d| d.is_custom())
                    .map(|d| (d.key.clone(), d.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The next id of `kind`'s own sequence (from 1).
    fn take_id(&mut self, kind: Kind) -> u64 {
        let next = self.next_id.entry(kind).or_insert(1);
        let id = *next;
        *next += 1;
        id
    }

    pub fn insert(
        &mut self,
        kind: Kind,
        fields: Map<String, Value>,
        custom: Map<String, Value>,
    ) -> Record {
        let now = self.now_ms();
        let id = self.take_id(kind);
        let record = Record {
            id,
            fields,
            custom,
            add_ms: now,
            update_ms: now,
            deleted: false,
        };
        self.table(kind).insert(id, record.clone());
        record
    }

    /// Applies changes and stamps the modification time.
    pub fn patch(
        &mut self,
        kind: Kind,
        id: u64,
        fields: Map<String, Value>,
        custom: Map<String, Value>,
    ) -> Option<Record> {
        let now = self.now_ms();
        let record = self.table(kind).get_mut(&id)?;
        record.fields.extend(fields);
        record.custom.extend(custom);
        record.update_ms = now;
        Some(record.clone())
    }

    /// Marks the record deleted (or restores it); either way a modification.
    pub fn set_deleted(&mut self, kind: Kind, id: u64, deleted: bool) -> Option<Record> {
        let now = self.now_ms();
        let record = self.table(kind).get_mut(&id)?;
        record.deleted = deleted;
        record.update_ms = now;
        Some(record.clone())
    }

    /// For a write: whether an active `partial_batch` fault fails this one.
    pub fn partial_failure(&mut self) -> bool {
        match self.faults.take_partial() {
            Some(every) => {
                self.writes += 1;
                self.writes.is_multiple_of(every)
            }
            None => false,
        }
    }
}

/// A deterministic 40-hex key, like Pipedrive's custom-field hashes.
fn hash_key(seed: u64, kind: Kind, name: &str) -> String {
    let digest = Sha256::digest(format!("{seed}/{}/{name}", kind.item()).as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

fn def(
    id: u64,
    key: &str,
    name: &str,
    field_type: &'static str,
    edit: bool,
    mandatory: bool,
) -> FieldDef {
    FieldDef {
        id,
        key: key.into(),
        name: name.into(),
        field_type,
        edit_flag: edit,
        mandatory,
    }
}

fn person_fields(seed: u64) -> Vec<FieldDef> {
    let custom = |id, name: &str, ty| {
        def(
            id,
            &hash_key(seed, Kind::Person, name),
            name,
            ty,
            true,
            false,
        )
    };
    vec![
        def(9001, "id", "ID", "int", false, false),
        def(9002, "name", "Name", "varchar", true, true),
        def(9003, "first_name", "First name", "varchar", true, false),
        def(9004, "last_name", "Last name", "varchar", true, false),
        def(9005, "email", "Email", "varchar", true, false),
        def(9006, "phone", "Phone", "phone", true, false),
        def(9007, "org_id", "Organization", "org", true, false),
        def(9008, "owner_id", "Owner", "user", true, false),
        def(9009, "add_time", "Person created", "date", false, false),
        def(9010, "update_time", "Update time", "date", false, false),
        def(9011, "visible_to", "Visible to", "visible_to", true, false),
        custom(9101, "Lead source", "varchar"),
        custom(9102, "Birthday", "date"),
        custom(9103, "Tier", "enum"),
        // Named like a standard field: clients must tell the two apart.
        custom(9104, "Email", "varchar"),
    ]
}

fn organization_fields(seed: u64) -> Vec<FieldDef> {
    let custom = |id, name: &str, ty| {
        def(
            id,
            &hash_key(seed, Kind::Organization, name),
            name,
            ty,
            true,
            false,
        )
    };
    vec![
        def(8001, "id", "ID", "int", false, false),
        def(8002, "name", "Name", "varchar", true, true),
        def(8003, "owner_id", "Owner", "user", true, false),
        def(8004, "address", "Address", "address", true, false),
        def(
            8005,
            "add_time",
            "Organization created",
            "date",
            false,
            false,
        ),
        def(8006, "update_time", "Update time", "date", false, false),
        def(8007, "visible_to", "Visible to", "visible_to", true, false),
        custom(8101, "Industry", "varchar"),
        custom(8102, "Tier", "enum"),
        custom(8103, "Employee count", "double"),
    ]
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

/// Organizations first (persons point at them); every `same_timestamp_group`
/// consecutive records share one modification time.
fn seed(inner: &mut PipedriveData, config: &PipedriveSandboxConfig) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let group = config.same_timestamp_group.max(1);
    let stamp = |i: usize| EPOCH_MS + i64::try_from(i / group).unwrap_or(0) * GROUP_STEP_MS;
    let org_keys = inner.custom_keys(Kind::Organization);
    let mut org_ids = Vec::new();
    for i in 0..config.records {
        let name = format!("{} {} {i}", pick(&mut rng, WORDS), pick(&mut rng, NOUNS));
        let fields = json!({
            "name": name,
            "owner_id": rng.gen_range(1..=3),
            "address": {"value": format!("{} Main St, {}", rng.gen_range(1..500), pick(&mut rng, CITIES))},
            "visible_to": 3,
        });
        let mut custom = Map::new();
        for (key, label) in &org_keys {
            let value = match label.as_str() {
                "Industry" => json!(pick(&mut rng, &["Software", "Retail", "Logistics"])),
                "Tier" => json!(pick(&mut rng, TIERS)),
                _ => json!(rng.gen_range(5..5000)),
            };
            custom.insert(key.clone(), value);
        }
        let id = seed_record(inner, Kind::Organization, fields, custom, stamp(i));
        org_ids.push(id);
    }
    let person_keys = inner.custom_keys(Kind::Person);
    for i in 0..config.records {
        let (first, last) = (pick(&mut rng, FIRST), pick(&mut rng, LAST));
        let email = format!(
            "{}.{}{i}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let org = (!org_ids.is_empty()).then(|| org_ids[rng.gen_range(0..org_ids.len())]);
        let fields = json!({
            "name": format!("{first} {last}"),
            "first_name": first,
            "last_name": last,
            "owner_id": rng.gen_range(1..=3),
            "org_id": org,
            "emails": [{"value": email, "primary": true, "label": "work"}],
            "phones": [{"value": format!("+1 555 {:04}", rng.gen_range(0..10_000)), "primary": true, "label": "work"}],
            "visible_to": 3,
        });
        let mut custom = Map::new();
        for (key, label) in &person_keys {
            let value = match label.as_str() {
                "Lead source" => json!(pick(&mut rng, SOURCES)),
                "Birthday" => json!(format!(
                    "19{:02}-{:02}-{:02}",
                    rng.gen_range(50..99),
                    rng.gen_range(1..13),
                    rng.gen_range(1..29)
                )),
                "Tier" => json!(pick(&mut rng, TIERS)),
                _ => json!(format!("{}@private.example", first.to_lowercase())),
            };
            custom.insert(key.clone(), value);
        }
        seed_record(inner, Kind::Person, fields, custom, stamp(i));
    }
}

fn seed_record(
    inner: &mut PipedriveData,
    kind: Kind,
    fields: Value,
    custom: Map<String, Value>,
    at: i64,
) -> u64 {
    let id = inner.take_id(kind);
    let fields = match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let record = Record {
        id,
        fields,
        custom,
        add_ms: at,
        update_ms: at,
        deleted: false,
    };
    inner.table(kind).insert(id, record);
    id
}

/// v2 timestamps: RFC 3339, whole seconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// v1 timestamps: `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn v1_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
