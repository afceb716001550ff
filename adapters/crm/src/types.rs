//! Provider-neutral values exchanged between the sync engine and the adapters.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Property values as the provider reports them: strings, or null when unset.
pub type Properties = BTreeMap<String, Option<String>>;

/// One record as read from the provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub id: String,
    pub properties: Properties,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
}

/// Where to resume reading. Opaque to the engine: store it and hand it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cursor {
    /// HubSpot list endpoint (full pulls and deletions): the `after` token.
    HubSpotList { after: String },
    /// HubSpot search (incremental pulls): the window start and the offset in it.
    HubSpotSearch {
        since: DateTime<Utc>,
        after: Option<String>,
    },
    /// Salesforce SOQL paging: the `nextRecordsUrl` of the previous page.
    SalesforceQuery { next_records_url: String },
    /// Pipedrive v2 list paging: `next_cursor`, and the `updated_since` it was opened with.
    Pipedrive {
        cursor: String,
        since: Option<DateTime<Utc>>,
    },
    /// Zoho CRM: the next `page` (or, past 2,000 rows, its `page_token`), and the
    /// `If-Modified-Since` the pull was opened with.
    Zoho {
        page: u32,
        page_token: Option<String>,
        since: Option<DateTime<Utc>>,
    },
    /// A declarative custom provider: the next cursor token, offset, page number or URL,
    /// as its pagination style dictates.
    Custom { next: String },
}

/// One page of records; `next` is `None` on the last page.
/// What an adapter has asked of its provider: counters that only grow, read before and
/// after a step of a run to charge the step with the difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requests sent, retries included: what the provider counts against its limits.
    pub requests: u64,
    /// 429 answers waited out (their `Retry-After` or the backoff) before a retry.
    pub rate_limited: u64,
}

impl Usage {
    /// What was used after `earlier` was read (counters never go back; saturating anyway).
    #[must_use]
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            requests: self.requests.saturating_sub(earlier.requests),
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<RemoteRecord>,
    pub next: Option<Cursor>,
    /// How many records the whole pass will list, when the provider says (HubSpot's
    /// search `total`, Salesforce's `totalSize`); `None` elsewhere.
    pub total: Option<u64>,
}

/// What a push does with one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PushKind {
    Create,
    Update {
        id: String,
    },
    /// Create or update the record whose `key_property` equals the value given
    /// for that property in `properties`.
    Upsert {
        key_property: String,
    },
}

/// One record to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushOp {
    pub kind: PushKind,
    pub properties: Properties,
}

/// The outcome for the input at `index` of a push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    pub index: usize,
    pub remote_id: Option<String>,
    pub error: Option<String>,
}

/// One entry of a provider's field catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    pub name: String,
    pub label: String,
    pub field_type: String,
    pub required: bool,
    pub writable: bool,
}

/// Who a set of tokens belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub account_id: String,
    pub user: Option<String>,
}

/// What an adapter authenticates its calls with. `Debug` never prints secrets.
#[derive(Clone, Debug)]
pub enum Credentials {
    OAuth2(Tokens),
    /// An API key or private-app token, sent where the provider expects it.
    ApiKey(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

impl Credentials {
    /// The OAuth tokens, if these are OAuth credentials.
    pub fn tokens(&self) -> Option<&Tokens> {
        match self {
            Credentials::OAuth2(t) => Some(t),
            _ => None,
        }
    }
}

/// OAuth tokens. `Debug` never prints the secrets.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The host to call with these tokens when the provider names one
    /// (Salesforce `instance_url`, Pipedrive's and Zoho's `api_domain`).
    pub instance_url: Option<String>,
}
