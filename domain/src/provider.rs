//! The provider catalogue: which CRMs syncledger knows and how they are reached.

use crate::entity::Entity;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth2,
    ApiKey,
    Basic,
    /// Declared per integration by a custom provider spec.
    Configurable,
    /// The vendor publishes no API: nothing to authenticate against (records come in by
    /// CSV import or the integration's inbound webhook, see [`WayIn`]).
    None,
}

/// How records of a provider reach syncledger (or leave it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WayIn {
    /// syncledger calls the vendor's API (pull and push runs).
    Api,
    /// A person uploads a CSV export (`POST /v1/integrations/{id}/imports`,
    /// `syncledger import`).
    CsvImport,
    /// Zapier, Make or the like call the integration's inbound webhook with records.
    InboundWebhook,
    /// The vendor only accepts new leads sent to it.
    LeadsPush,
}

impl WayIn {
    pub fn as_str(self) -> &'static str {
        match self {
            WayIn::Api => "api",
            WayIn::CsvImport => "csv_import",
            WayIn::InboundWebhook => "inbound_webhook",
            WayIn::LeadsPush => "leads_push",
        }
    }
}

/// A provider's published request budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub auth_type: AuthType,
    pub scopes: &'static [&'static str],
    pub rate_limit: RateLimit,
    pub entities: &'static [Entity],
    pub sync_supported: bool,
    /// Through the declarative custom-REST provider rather than a dedicated adapter.
    pub via_custom_spec: bool,
    /// How its records reach syncledger.
    pub ways_in: &'static [WayIn],
    /// Why those ways, in words (the vendor's limits).
    pub ways_in_reason: &'static str,
    /// The vendor accepts new records as leads and offers no read or update API: its
    /// integrations push only, and only records it has not been sent yet.
    pub leads_only: bool,
}

const API: &[WayIn] = &[WayIn::Api];
const NO_API: &[WayIn] = &[WayIn::CsvImport, WayIn::InboundWebhook];
const LEADS: &[WayIn] = &[WayIn::LeadsPush];
const API_REASON: &str = "the vendor publishes an API syncledger reads and writes";
const SPEC_REASON: &str =
    "the vendor publishes an API; syncledger reaches it through a declarative spec";

const BOTH: &[Entity] = &[Entity::Contacts, Entity::Companies];
const CONTACTS: &[Entity] = &[Entity::Contacts];

const fn limit(requests: u32, per_seconds: u32, daily_quota: Option<u32>) -> RateLimit {
    RateLimit {
        requests,
        per_seconds,
        daily_quota,
    }
}

const fn niche(
    id: &'static str,
    name: &'static str,
    auth_type: AuthType,
    rate_limit: RateLimit,
    entities: &'static [Entity],
) -> ProviderInfo {
    ProviderInfo {
        id,
        name,
        auth_type,
        scopes: &[],
        rate_limit,
        entities,
        sync_supported: true,
        via_custom_spec: true,
        ways_in: API,
        ways_in_reason: SPEC_REASON,
        leads_only: false,
    }
}

/// A vendor that publishes no API at all (Zapier at most): its records come in by CSV
/// export or through Zapier/Make calling the integration's inbound webhook. An
/// integration may still be given a spec (for an undocumented API, at its owner's risk,
/// and as integrations made before these ways in were): it is then a custom one.
const fn no_api(id: &'static str, name: &'static str, reason: &'static str) -> ProviderInfo {
    ProviderInfo {
        id,
        name,
        auth_type: AuthType::None,
        scopes: &[],
        rate_limit: limit(60, 60, None),
        entities: CONTACTS,
        sync_supported: true,
        via_custom_spec: true,
        ways_in: NO_API,
        ways_in_reason: reason,
        leads_only: false,
    }
}

/// A write-only CRM: new app records are sent to it as leads (a dedicated adapter, no
/// spec, no read API).
const fn leads(id: &'static str, name: &'static str, reason: &'static str) -> ProviderInfo {
    ProviderInfo {
        id,
        name,
        auth_type: AuthType::ApiKey,
        scopes: &[],
        rate_limit: limit(60, 60, None),
        entities: CONTACTS,
        sync_supported: true,
        via_custom_spec: false,
        ways_in: LEADS,
        ways_in_reason: reason,
        leads_only: true,
    }
}

static CATALOGUE: &[ProviderInfo] = &[
    ProviderInfo {
        id: "salesforce",
        name: "Salesforce",
        auth_type: AuthType::Oauth2,
        scopes: &["api", "refresh_token"],
        rate_limit: limit(25, 20, Some(100_000)),
        entities: BOTH,
        sync_supported: true,
        via_custom_spec: false,
        ways_in: API,
        ways_in_reason: API_REASON,
        leads_only: false,
    },
    ProviderInfo {
        id: "hubspot",
        name: "HubSpot",
        auth_type: AuthType::Oauth2,
        scopes: &[
            "crm.objects.contacts.read",
            "crm.objects.contacts.write",
            "crm.objects.companies.read",
            "crm.objects.companies.write",
        ],
        rate_limit: limit(100, 10, Some(250_000)),
        entities: BOTH,
        sync_supported: true,
        via_custom_spec: false,
        ways_in: API,
        ways_in_reason: API_REASON,
        leads_only: false,
    },
    ProviderInfo {
        id: "pipedrive",
        name: "Pipedrive",
        auth_type: AuthType::Oauth2,
        scopes: &["contacts:full"],
        rate_limit: limit(80, 2, None),
        entities: BOTH,
        sync_supported: true,
        via_custom_spec: false,
        ways_in: API,
        ways_in_reason: API_REASON,
        leads_only: false,
    },
    ProviderInfo {
        id: "zoho",
        name: "Zoho CRM",
        auth_type: AuthType::Oauth2,
        scopes: &[
            "ZohoCRM.modules.contacts.ALL",
            "ZohoCRM.modules.accounts.ALL",
            "ZohoCRM.settings.fields.READ",
            "ZohoCRM.org.READ",
        ],
        rate_limit: limit(100, 60, Some(5_000)),
        entities: BOTH,
        sync_supported: true,
        via_custom_spec: false,
        ways_in: API,
        ways_in_reason: API_REASON,
        leads_only: false,
    },
    niche(
        "chatwoot",
        "Chatwoot",
        AuthType::ApiKey,
        limit(60, 60, None),
        // Companies only on Enterprise instances with the feature on (see the template).
        BOTH,
    ),
    niche(
        "tave",
        "Tave / VSCO Workspace",
        AuthType::ApiKey,
        limit(60, 60, None),
        BOTH,
    ),
    leads(
        "lightblue",
        "Light Blue",
        "Light Blue accepts new leads only (form-encoded, into its inbox) and has no read API; new app records are sent to it as leads",
    ),
    no_api(
        "honeybook",
        "HoneyBook",
        "HoneyBook publishes no API (a Zapier app only): export clients as CSV, or have a Zapier or Make webhook step send them to the integration's inbound webhook",
    ),
    no_api(
        "seventeen",
        "17hats",
        "17hats publishes no API (its key works for its Zapier app only): export contacts as CSV, or have a Zapier or Make webhook step send them to the integration's inbound webhook",
    ),
    leads(
        "shootq",
        "ShootQ",
        "ShootQ accepts contact-form leads only and has no read API; new app records are sent to it as leads",
    ),
    no_api(
        "pixieset",
        "Pixieset Studio Manager",
        "Pixieset publishes no API (its internal one is not for third parties): export clients as CSV, or send them from Zapier or Make to the integration's inbound webhook",
    ),
    no_api(
        "iris_works",
        "Iris Works",
        "Iris Works publishes no API and has no Zapier app: export contacts as CSV (an automation tool that can read it may call the inbound webhook)",
    ),
    no_api(
        "dubsado",
        "Dubsado",
        "Dubsado publishes no API (a Zapier app only): export clients as CSV, or have a Zapier or Make webhook step send them to the integration's inbound webhook",
    ),
    no_api(
        "studio_ninja",
        "Studio Ninja",
        "Studio Ninja publishes no API and has no Zapier app: export clients as CSV (an automation tool that can read it may call the inbound webhook)",
    ),
    ProviderInfo {
        id: "custom",
        name: "Custom REST API",
        auth_type: AuthType::Configurable,
        scopes: &[],
        rate_limit: limit(60, 60, None),
        entities: BOTH,
        sync_supported: true,
        via_custom_spec: true,
        ways_in: API,
        ways_in_reason: SPEC_REASON,
        leads_only: false,
    },
];

pub fn catalogue() -> &'static [ProviderInfo] {
    CATALOGUE
}

/// Whether syncledger receives the provider's change notifications (a webhook route under
/// `/v1/webhooks/`). Only these can run `realtime`: for the others nothing would ever
/// trigger a run.
pub fn sends_webhooks(id: &str) -> bool {
    id == "hubspot" || hook_auth(id).is_some()
}

/// How deliveries to one integration's own webhook are authenticated, for providers
/// whose webhooks are set up per integration (HubSpot's are the app's, signed with its
/// client secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookAuth {
    /// Chatwoot: an HMAC signature made with the secret the user configured in the CRM.
    Signed,
    /// Tave / VSCO Workspace: its REST hooks are unsigned, so the URL syncledger makes
    /// for them carries an unguessable token.
    UrlToken,
}

/// The per-integration webhook a provider sends, if syncledger receives it.
pub fn hook_auth(id: &str) -> Option<HookAuth> {
    match id {
        "chatwoot" => Some(HookAuth::Signed),
        "tave" => Some(HookAuth::UrlToken),
        _ => None,
    }
}

/// Whether syncledger can delete records in the provider's CRM (what
/// `on_app_archive: delete_in_crm` needs). Only HubSpot's adapter deletes today.
pub fn deletes_records(id: &str) -> bool {
    id == "hubspot"
}

/// Whether the provider's API accepts an API key or basic credentials besides OAuth.
/// Salesforce's REST API and Zoho CRM's take OAuth access tokens only.
pub fn takes_static_credentials(id: &str) -> bool {
    !matches!(id, "salesforce" | "zoho")
}

/// Whether the vendor publishes no API at all: its integrations take CSV imports and
/// inbound-webhook deliveries, never pull, push or scheduled runs.
pub fn publishes_no_api(id: &str) -> bool {
    find(id).is_some_and(|p| p.ways_in == NO_API)
}

/// Whether the provider only accepts new records as leads (Light Blue, ShootQ): no
/// pulls, no updates, no deletions; see [`ProviderInfo::leads_only`].
pub fn leads_only(id: &str) -> bool {
    find(id).is_some_and(|p| p.leads_only)
}

/// Whether `code` may be ShootQ's form link code: it goes into a URL path, so 1 to 64
/// ASCII letters, digits, `-` or `_` (no separator, dot, query or encoding).
pub fn is_form_link_code(code: &str) -> bool {
    (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn find(id: &str) -> Option<&'static ProviderInfo> {
    CATALOGUE.iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_link_code_is_one_plain_path_segment() {
        for good in ["studio-form-1", "A_b", &"x".repeat(64)] {
            assert!(is_form_link_code(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a?b",
            "a%2F",
            "a.b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_form_link_code(bad), "{bad}");
        }
    }

    #[test]
    fn catalogue_lists_every_required_provider_once() {
        let required = [
            "salesforce",
            "hubspot",
            "pipedrive",
            "zoho",
            "chatwoot",
            "tave",
            "lightblue",
            "honeybook",
            "seventeen",
            "shootq",
            "pixieset",
            "iris_works",
            "dubsado",
            "studio_ninja",
            "custom",
        ];
        for id in required {
            assert_eq!(catalogue().iter().filter(|p| p.id == id).count(), 1, "{id}");
        }
        assert_eq!(catalogue().len(), required.len());
    }

    #[test]
    fn every_provider_says_how_it_connects_and_why() {
        for p in catalogue() {
            assert!(!p.ways_in.is_empty(), "{}", p.id);
            assert!(!p.ways_in_reason.is_empty(), "{}", p.id);
        }
        let no_api: Vec<&str> = catalogue()
            .iter()
            .filter(|p| publishes_no_api(p.id))
            .map(|p| p.id)
            .collect();
        assert_eq!(
            no_api,
            [
                "honeybook",
                "seventeen",
                "pixieset",
                "iris_works",
                "dubsado",
                "studio_ninja"
            ]
        );
        assert!(!publishes_no_api("lightblue") && !publishes_no_api("hubspot"));
    }

    #[test]
    fn unknown_provider_is_not_found() {
        assert!(find("myspace").is_none());
        assert_eq!(find("hubspot").map(|p| p.name), Some("HubSpot"));
    }
}
