//! Zoho sandbox state: Contacts and Accounts with whole-second modification times,
//! the deleted-records log, field metadata, tokens (refresh tokens never rotate; at
//! most 10 access tokens per refresh token in 10 minutes), page tokens, API credits,
//! limits, faults and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::ZohoSandboxConfig;
use crate::faults::FaultQueue;
use crate::ratelimit::RateLimiter;
use crate::words::{CITIES, EPOCH_MS, FIRST, GROUP_STEP_MS, LAST, NOUNS, WORDS};

/// Zoho record ids: long numeric strings.
const ID_BASE: u64 = 4_150_868_000_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    Contacts,
    Accounts,
}

impl Module {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Contacts" => Some(Self::Contacts),
            "Accounts" => Some(Self::Accounts),
            _ => None,
        }
    }

    /// The field a record cannot be created without.
    pub fn mandatory(self) -> &'static str {
        match self {
            Self::Contacts => "Last_Name",
            Self::Accounts => "Account_Name",
        }
    }

    /// The default `duplicate_check_fields` of an upsert.
    pub fn system_key(self) -> &'static str {
        match self {
            Self::Contacts => "Email",
            Self::Accounts => "Account_Name",
        }
    }

    /// (api_name, label, data_type, read_only)
    pub fn fields(self) -> &'static [(&'static str, &'static str, &'static str, bool)] {
        match self {
            Self::Contacts => &[
                ("First_Name", "First Name", "text", false),
                ("Last_Name", "Last Name", "text", false),
                ("Email", "Email", "email", false),
                ("Phone", "Phone", "phone", false),
                ("Mobile", "Mobile", "phone", false),
                ("Title", "Title", "text", false),
                ("Department", "Department", "text", false),
                ("Lead_Source", "Lead Source", "picklist", false),
                ("Mailing_City", "Mailing City", "text", false),
                ("Account_Name", "Account Name", "lookup", false),
                ("Owner", "Contact Owner", "ownerlookup", false),
                ("Created_Time", "Created Time", "datetime", true),
                ("Modified_Time", "Modified Time", "datetime", true),
            ],
            Self::Accounts => &[
                ("Account_Name", "Account Name", "text", false),
                ("Phone", "Phone", "phone", false),
                ("Website", "Website", "website", false),
                ("Industry", "Industry", "picklist", false),
                ("Billing_City", "Billing City", "text", false),
                ("Employees", "Employees", "integer", false),
                ("Owner", "Account Owner", "ownerlookup", false),
                ("Created_Time", "Created Time", "datetime", true),
                ("Modified_Time", "Modified Time", "datetime", true),
            ],
        }
    }

    pub fn writable(self, name: &str) -> bool {
        self.fields()
            .iter()
            .any(|(api, _, _, read_only)| *api == name && !read_only)
    }
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub fields: Map<String, Value>,
    pub created_s: i64,
    pub modified_s: i64,
}

impl Record {
    /// The record as listed: `id`, the asked `fields` (all when `None`) and the times.
    pub fn to_json(&self, fields: Option<&[String]>) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id.to_string()));
        for (name, value) in &self.fields {
            if fields.is_none_or(|f| f.iter().any(|n| n == name)) {
                out.insert(name.clone(), value.clone());
            }
        }
        let wanted = |n: &str| fields.is_none_or(|f| f.iter().any(|x| x == n));
        if wanted("Created_Time") {
            out.insert("Created_Time".into(), json!(iso(self.created_s)));
        }
        if wanted("Modified_Time") {
            out.insert("Modified_Time".into(), json!(iso(self.modified_s)));
        }
        Value::Object(out)
    }
}

/// An entry of `/{module}/deleted`.
#[derive(Clone, Debug)]
pub struct Deleted {
    pub id: u64,
    pub display_name: String,
    /// `recycle` or `permanent`.
    pub kind: &'static str,
    pub deleted_s: i64,
}

impl Deleted {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "display_name": self.display_name,
            "type": self.kind,
            "deleted_time": iso(self.deleted_s),
            "deleted_by": {"name": "Sandbox User", "id": "4150868000000225013"},
            "created_by": {"name": "Sandbox User", "id": "4150868000000225013"},
        })
    }
}

/// Tokens of the one OAuth client.
#[derive(Default)]
pub struct Auth {
    /// code → (redirect_uri, S256 challenge)
    pub codes: HashMap<String, (String, Option<String>)>,
    /// refresh token → when its recent access tokens were issued
    pub refresh: HashMap<String, VecDeque<Instant>>,
    /// access token → (refresh token, expiry)
    pub access: HashMap<String, (String, Instant)>,
}

pub fn new_token(prefix: &str) -> String {
    format!("1000.{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Zoho's token throttle: access tokens per refresh token per window.
pub const TOKENS_PER_WINDOW: usize = 10;
pub const TOKEN_WINDOW: Duration = Duration::from_secs(600);

impl Auth {
    /// A new refresh token and its first access token.
    pub fn grant(&mut self, ttl_secs: u64) -> (String, String) {
        let refresh = new_token("rt");
        self.refresh.insert(refresh.clone(), VecDeque::new());
        let access = self.access_for(&refresh, ttl_secs).unwrap_or_default();
        (access, refresh)
    }

    /// An access token for `refresh`; `None` when the refresh token is unknown.
    pub fn access_for(&mut self, refresh: &str, ttl_secs: u64) -> Option<String> {
        let now = Instant::now();
        let issued = self.refresh.get_mut(refresh)?;
        issued.push_back(now);
        let access = new_token("at");
        let expires = now + Duration::from_secs(ttl_secs);
        self.access
            .insert(access.clone(), (refresh.to_owned(), expires));
        Some(access)
    }

    /// Whether `refresh` has had its fill of access tokens in the current window.
    pub fn throttled(&mut self, refresh: &str) -> bool {
        let now = Instant::now();
        let Some(issued) = self.refresh.get_mut(refresh) else {
            return false;
        };
        while issued
            .front()
            .is_some_and(|t| now.duration_since(*t) >= TOKEN_WINDOW)
        {
            issued.pop_front();
        }
        issued.len() >= TOKENS_PER_WINDOW
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

/// Where a `page_token` continues: the list it belongs to and the next row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    pub module: Module,
    /// `If-Modified-Since` (seconds), sort field and order, fields: the query it
    /// belongs to.
    pub signature: String,
    pub offset: usize,
}

/// The org's API credits for the rolling day.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credits {
    pub limit: u32,
    #[serde(default)]
    pub used: u32,
}

pub struct ZohoData {
    pub records: BTreeMap<Module, BTreeMap<u64, Record>>,
    pub deleted: BTreeMap<Module, Vec<Deleted>>,
    next_id: u64,
    clock_s: i64,
    pub auth: Auth,
    pub page_tokens: HashMap<String, Continuation>,
    pub credits: Credits,
    pub limits: RateLimiter,
    pub faults: FaultQueue,
    pub writes: usize,
    pub counters: BTreeMap<String, u64>,
    /// What token responses name as `api_domain` (the sandbox itself by default).
    pub api_domain: String,
    /// What the authorization redirect names as `accounts-server`.
    pub accounts_server: String,
}

pub struct Shared {
    pub config: ZohoSandboxConfig,
    pub stopped: watch::Receiver<bool>,
    data: Mutex<ZohoData>,
}

impl Shared {
    pub fn new(
        config: ZohoSandboxConfig,
        base_url: String,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        let mut data = ZohoData {
            records: BTreeMap::new(),
            deleted: BTreeMap::new(),
            next_id: 1,
            clock_s: 0,
            auth: Auth::default(),
            page_tokens: HashMap::new(),
            credits: Credits {
                limit: config.daily_credits,
                used: 0,
            },
            limits: RateLimiter::new(config.rate_limit),
            faults: FaultQueue::default(),
            writes: 0,
            counters: BTreeMap::new(),
            api_domain: base_url.clone(),
            accounts_server: base_url.clone(),
        };
        seed(&mut data, &config);
        Self {
            config,
            stopped,
            data: Mutex::new(data),
        }
    }

    /// A poisoned lock only means a handler panicked; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, ZohoData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ZohoData {
    /// Server time in whole seconds (Zoho's precision); never goes backwards.
    pub fn now_s(&mut self) -> i64 {
        self.clock_s = self.clock_s.max(chrono::Utc::now().timestamp());
        self.clock_s
    }

    pub fn table(&mut self, module: Module) -> &mut BTreeMap<u64, Record> {
        self.records.entry(module).or_default()
    }

    pub fn new_id(&mut self) -> u64 {
        let id = ID_BASE + self.next_id;
        self.next_id += 1;
        id
    }

    /// Creates a record modified at `at` (now when `None`).
    pub fn insert(
        &mut self,
        module: Module,
        fields: Map<String, Value>,
        at: Option<i64>,
    ) -> Record {
        let now = at.unwrap_or_else(|| self.now_s());
        let id = self.new_id();
        let record = Record {
            id,
            fields,
            created_s: now,
            modified_s: now,
        };
        self.table(module).insert(id, record.clone());
        record
    }

    /// Applies changes; the modification time becomes `at` (now when `None`).
    pub fn patch(
        &mut self,
        module: Module,
        id: u64,
        fields: Map<String, Value>,
        at: Option<i64>,
    ) -> Option<Record> {
        let now = at.unwrap_or_else(|| self.now_s());
        let record = self.table(module).get_mut(&id)?;
        record.fields.extend(fields);
        record.modified_s = now;
        Some(record.clone())
    }

    /// Moves a record to the recycle bin (or deletes it for good).
    pub fn delete(&mut self, module: Module, id: u64, permanent: bool) -> bool {
        let Some(record) = self.table(module).remove(&id) else {
            return false;
        };
        let name_field = match module {
            Module::Contacts => "Last_Name",
            Module::Accounts => "Account_Name",
        };
        let display_name = record
            .fields
            .get(name_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let deleted_s = self.now_s();
        self.deleted.entry(module).or_default().push(Deleted {
            id,
            display_name,
            kind: if permanent { "permanent" } else { "recycle" },
            deleted_s,
        });
        true
    }

    /// For a batch write: whether an active `partial_batch` fault fails this record.
    pub fn partial_failure(&mut self) -> Option<bool> {
        let every = self.faults.take_partial()?;
        self.writes += 1;
        Some(self.writes.is_multiple_of(every))
    }
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

/// Accounts first (contacts look them up); every `same_timestamp_group` consecutive
/// records share one `Modified_Time`.
fn seed(data: &mut ZohoData, config: &ZohoSandboxConfig) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let group = config.same_timestamp_group.max(1);
    let stamp =
        |i: usize| (EPOCH_MS + i64::try_from(i / group).unwrap_or(0) * GROUP_STEP_MS) / 1000;
    let mut accounts = Vec::new();
    for i in 0..config.records {
        let name = format!("{} {} {i}", pick(&mut rng, WORDS), pick(&mut rng, NOUNS));
        let slug: String = name
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let fields = json!({
            "Account_Name": name,
            "Phone": format!("+1 555 {:04}", rng.gen_range(0..10_000)),
            "Website": format!("https://{slug}.example.com"),
            "Industry": pick(&mut rng, &["Software", "Retail", "Logistics"]),
            "Billing_City": pick(&mut rng, CITIES),
            "Employees": rng.gen_range(5..5000),
            "Owner": {"name": "Sandbox User", "id": "4150868000000225013", "email": "owner@example.com"},
        });
        let Value::Object(fields) = fields else {
            continue;
        };
        let record = data.insert(Module::Accounts, fields, Some(stamp(i)));
        accounts.push((record.id, name));
    }
    for i in 0..config.records {
        let (first, last) = (pick(&mut rng, FIRST), pick(&mut rng, LAST));
        let email = format!(
            "{}.{}{i}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let account = (!accounts.is_empty())
            .then(|| &accounts[rng.gen_range(0..accounts.len())])
            .map_or(
                Value::Null,
                |(id, name)| json!({"name": name, "id": id.to_string()}),
            );
        let fields = json!({
            "First_Name": first,
            "Last_Name": last,
            "Email": email,
            "Phone": format!("+1 555 {:04}", rng.gen_range(0..10_000)),
            "Title": pick(&mut rng, &["CEO", "CTO", "Buyer", "Engineer"]),
            "Lead_Source": pick(&mut rng, &["Web", "Referral", "Trade Show"]),
            "Mailing_City": pick(&mut rng, CITIES),
            "Account_Name": account,
            "Owner": {"name": "Sandbox User", "id": "4150868000000225013", "email": "owner@example.com"},
        });
        let Value::Object(fields) = fields else {
            continue;
        };
        data.insert(Module::Contacts, fields, Some(stamp(i)));
    }
}

/// Zoho's time format: ISO 8601 with an offset, whole seconds.
pub fn iso(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}
