//! Which adapter serves an integration, configured from the provider's OAuth app
//! and the integration's base URL override.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::SecretString;
use syncledger_crm::leads::{LightBlue, ShootQ};
use syncledger_crm::outbound::Guard;
use syncledger_crm::{
    CrmAdapter, CrmError, CustomAdapter, CustomOptions, CustomSpec, HubSpotAdapter, HubSpotConfig,
    LeadsAdapter, LeadsConfig, PipedriveAdapter, PipedriveConfig, SalesforceAdapter,
    SalesforceConfig, ZohoAdapter, ZohoConfig,
};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_domain::Integration;

use crate::error::EngineError;

/// Where an integration's requests, and with them its credentials, go: the origins
/// (`scheme://host:port`) of its base URL override and of every URL of its spec. A
/// built-in provider without an override goes to its own hosts, `provider:{id}`. A spec
/// that does not parse (it was checked when stored) counts as an origin of its own, so
/// a comparison with it never finds the same hosts.
pub fn origins(provider: &str, base_url: Option<&str>, spec: Option<&str>) -> BTreeSet<String> {
    let origin = |url: &str| {
        url::Url::parse(url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| format!("unparsable:{url}"))
    };
    let Some(text) = spec else {
        return BTreeSet::from([base_url.map_or_else(|| format!("provider:{provider}"), origin)]);
    };
    let Ok(mut spec) = CustomSpec::from_json(text) else {
        return BTreeSet::from([format!("unparsable spec of {provider}")]);
    };
    if let Some(url) = base_url {
        url.clone_into(&mut spec.base_url);
    }
    spec.urls().iter().map(|(_, url)| origin(url)).collect()
}

/// An OAuth client registered with a provider.
#[derive(Clone, Debug)]
pub struct ClientApp {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// The OAuth apps per provider id, and whether adapters pace themselves to the
/// providers' published limits (on in production; tests may turn it off).
#[derive(Clone, Debug)]
pub struct ProviderApps {
    pub apps: BTreeMap<String, ClientApp>,
    pub pacing: bool,
    /// Which hosts adapters may reach (strict unless the operator, or the
    /// development default, says otherwise).
    pub outbound: OutboundPolicy,
}

impl Default for ProviderApps {
    fn default() -> Self {
        Self {
            apps: BTreeMap::new(),
            pacing: true,
            outbound: OutboundPolicy::default(),
        }
    }
}

/// Adapters kept per integration. An adapter holds what should outlive one run:
/// its pacer (the provider's rate-limit window is the integration's, not a run's),
/// its provider metadata cache (HubSpot's property catalogue) and its HTTP
/// connection pool.
type Adapters = Arc<Mutex<HashMap<String, (Recipe, Arc<dyn CrmAdapter>)>>>;

/// How many integrations' adapters a process keeps before it starts afresh.
const KEPT_ADAPTERS: usize = 4096;

/// Builds adapters for integrations, and keeps one per integration for reuse.
#[derive(Clone, Default)]
pub struct Connector {
    apps: ProviderApps,
    adapters: Adapters,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

/// What an integration's adapter is built from: a change of any of it (a new base
/// URL, a new spec) builds a new adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recipe {
    provider: String,
    base_url: Option<String>,
    spec: Option<String>,
}

impl Recipe {
    fn of(integration: &Integration) -> Self {
        Self {
            provider: integration.provider.clone(),
            base_url: integration.base_url.clone(),
            spec: integration.spec.clone(),
        }
    }
}

impl Connector {
    pub fn new(apps: ProviderApps) -> Self {
        Self {
            apps,
            adapters: Adapters::default(),
        }
    }

    /// Which hosts this connector's adapters may reach.
    pub fn outbound(&self) -> OutboundPolicy {
        self.apps.outbound
    }

    /// Whether an OAuth app is configured for the integration's provider (a custom
    /// provider falls back to the shared `custom` app).
    pub fn oauth_configured(&self, integration: &Integration) -> bool {
        let custom = syncledger_domain::provider::find(&integration.provider)
            .is_some_and(|p| p.via_custom_spec);
        self.app(&integration.provider).is_some() || (custom && self.app("custom").is_some())
    }

    /// Checks every URL a new integration would make the server request, before it
    /// exists: the `base_url` override, and each URL of a custom spec (JSON). Names
    /// are resolved: one resolving to a refused address is refused now (it would be
    /// at use too); one that does not resolve yet is left to the check at use.
    pub async fn check_urls(
        &self,
        provider: &str,
        base_url: Option<&str>,
        spec: Option<&str>,
    ) -> Result<(), CrmError> {
        let custom = syncledger_domain::provider::find(provider).is_some_and(|p| p.via_custom_spec);
        let mut urls = Vec::new();
        if custom {
            let guard = Guard::custom(self.apps.outbound);
            if let Some(url) = base_url {
                guard.check("base_url", url)?;
            }
            if let Some(text) = spec {
                let mut spec = CustomSpec::from_json(text)?;
                if let Some(url) = base_url {
                    url.clone_into(&mut spec.base_url);
                }
                spec.check_outbound(&guard)?;
                urls = spec.urls();
            }
        } else if let Some(url) = base_url {
            Guard::builtin(self.apps.outbound, provider).check("base_url", url)?;
            urls.push(("base_url".to_owned(), url.to_owned()));
        }
        for (field, url) in urls {
            self.check_resolved(&field, &url).await?;
        }
        Ok(())
    }

    async fn check_resolved(&self, field: &str, url: &str) -> Result<(), CrmError> {
        let Some(host) = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        else {
            return Ok(());
        };
        let Ok(addrs) = syncledger_crm::outbound::lookup(&host).await else {
            // Unresolvable now: the resolver checks again at every connection.
            return Ok(());
        };
        match syncledger_crm::outbound::first_forbidden(self.apps.outbound, &addrs) {
            Some(class) => Err(CrmError::Refused {
                field: field.to_owned(),
                reason: format!(
                    "resolves to a {class} address, which the server's outbound policy refuses"
                ),
            }),
            None => Ok(()),
        }
    }

    /// The integration's adapter, shared by every session on it in this process.
    pub fn adapter(&self, integration: &Integration) -> Result<Arc<dyn CrmAdapter>, EngineError> {
        let Some(id) = integration.id.clone() else {
            return self.build(integration).map(Arc::from);
        };
        let recipe = Recipe::of(integration);
        let lock = || self.adapters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, adapter)) = lock().get(&id) {
            if *kept == recipe {
                return Ok(adapter.clone());
            }
        }
        let adapter: Arc<dyn CrmAdapter> = Arc::from(self.build(integration)?);
        let mut kept = lock();
        if let Some((won, theirs)) = kept.get(&id) {
            // Another session built one meanwhile: keep one adapter per integration.
            if *won == recipe {
                return Ok(theirs.clone());
            }
        }
        if kept.len() >= KEPT_ADAPTERS && !kept.contains_key(&id) {
            kept.clear();
        }
        kept.insert(id, (recipe, adapter.clone()));
        Ok(adapter)
    }

    /// The OAuth app configured for `provider` (one without a client id or secret
    /// counts as not configured).
    pub fn app(&self, provider: &str) -> Option<&ClientApp> {
        use secrecy::ExposeSecret;
        self.apps
            .apps
            .get(provider)
            .filter(|a| !a.client_id.is_empty() && !a.client_secret.expose_secret().is_empty())
    }

    fn app_or_blank(&self, provider: &str) -> ClientApp {
        self.apps.apps.get(provider).cloned().unwrap_or(ClientApp {
            client_id: String::new(),
            client_secret: SecretString::from(""),
        })
    }

    /// A new adapter for the integration's provider.
    fn build(&self, integration: &Integration) -> Result<Box<dyn CrmAdapter>, EngineError> {
        let app = self.app_or_blank(&integration.provider);
        let base = integration.base_url.clone();
        let info = syncledger_domain::provider::find(&integration.provider);
        if syncledger_domain::provider::publishes_no_api(&integration.provider)
            && integration.spec.is_none()
        {
            return Err(EngineError::Unsupported(format!(
                "{} publishes no API, so syncledger cannot connect to it; its records come \
                 in by CSV import (POST /v1/integrations/{{id}}/imports) or the integration's \
                 inbound webhook (POST /v1/integrations/{{id}}/inbound-webhook)",
                integration.provider
            )));
        }
        if info.is_some_and(|p| p.via_custom_spec) {
            return self.custom(integration, info.map(|p| p.rate_limit));
        }
        match integration.provider.as_str() {
            "hubspot" => {
                let mut config = HubSpotConfig::new(app.client_id, app.client_secret);
                config.outbound = self.apps.outbound;
                if let Some(url) = base {
                    // A development sandbox serves the OAuth pages too; any other
                    // override gets API calls only, never the client secret.
                    if self.apps.outbound.is_development_sandbox(&url) {
                        config.auth_base_url.clone_from(&url);
                        config.oauth_base_url.clone_from(&url);
                    }
                    config.base_url = url;
                }
                if !self.apps.pacing {
                    config.requests_per_10s = None;
                    config.search_per_s = None;
                }
                Ok(Box::new(HubSpotAdapter::new(config)?))
            }
            "salesforce" => {
                let mut config = SalesforceConfig::new(app.client_id, app.client_secret);
                config.outbound = self.apps.outbound;
                if let Some(url) = base {
                    // The override is the login host when it is an official one (a
                    // sandbox org, a My Domain) or a development sandbox; the token
                    // response names the instance, and the override is the fallback.
                    if self.apps.outbound.oauth_follows(&url, "salesforce") {
                        config.login_url.clone_from(&url);
                    }
                    config.instance_url = Some(url);
                }
                if !self.apps.pacing {
                    config.requests_per_interval = None;
                }
                Ok(Box::new(SalesforceAdapter::new(config)?))
            }
            "pipedrive" => {
                let mut config = PipedriveConfig::new(app.client_id, app.client_secret);
                config.outbound = self.apps.outbound;
                if let Some(url) = base {
                    // A development sandbox serves the OAuth host's paths and the API on
                    // one origin; any other override never gets the client secret.
                    if self.apps.outbound.is_development_sandbox(&url) {
                        config.oauth_base_url.clone_from(&url);
                    }
                    config.base_url = url;
                }
                if !self.apps.pacing {
                    config.requests_per_2s = None;
                }
                Ok(Box::new(PipedriveAdapter::new(config)?))
            }
            "zoho" => {
                let mut config = ZohoConfig::new(app.client_id, app.client_secret);
                config.outbound = self.apps.outbound;
                if let Some(url) = base {
                    // A development sandbox plays the accounts server too; any other
                    // override is an API domain only, never sent the client secret.
                    if self.apps.outbound.is_development_sandbox(&url) {
                        config = config.sandbox(&url);
                    } else {
                        config.api_domain.clone_from(&url);
                        config.api_override = Some(url);
                    }
                }
                if !self.apps.pacing {
                    config.requests_per_minute = None;
                }
                Ok(Box::new(ZohoAdapter::new(config)?))
            }
            "lightblue" | "shootq" => self.leads(&integration.provider, base),
            other => Err(EngineError::Unsupported(format!(
                "connecting {other} is not supported yet"
            ))),
        }
    }

    /// A write-only provider (Light Blue, ShootQ) at its own host or the override.
    fn leads(
        &self,
        provider: &str,
        base: Option<String>,
    ) -> Result<Box<dyn CrmAdapter>, EngineError> {
        let (official, light_blue) = match provider {
            "lightblue" => ("https://online.lightbluesoftware.com", true),
            _ => ("https://api.shootq.com", false),
        };
        let mut config = LeadsConfig::new(base.unwrap_or_else(|| official.to_owned()));
        config.outbound = self.apps.outbound;
        config.requests_per_minute = syncledger_domain::provider::find(provider)
            .filter(|_| self.apps.pacing)
            .map(|p| {
                let l = p.rate_limit;
                l.requests.saturating_mul(60) / l.per_seconds.max(1)
            });
        Ok(if light_blue {
            Box::new(LeadsAdapter::new(LightBlue::new(config)?))
        } else {
            Box::new(LeadsAdapter::new(ShootQ::new(config)?))
        })
    }

    /// A provider described by the integration's declarative spec. Its OAuth client is
    /// the provider's own app if configured, else the shared `custom` one.
    fn custom(
        &self,
        integration: &Integration,
        limit: Option<syncledger_domain::provider::RateLimit>,
    ) -> Result<Box<dyn CrmAdapter>, EngineError> {
        let Some(text) = &integration.spec else {
            return Err(EngineError::Unsupported(format!(
                "connecting {} needs a provider spec; create the integration with one",
                integration.provider
            )));
        };
        let mut spec = CustomSpec::from_json(text)?;
        if let Some(url) = &integration.base_url {
            spec.base_url.clone_from(url);
        }
        let app = self
            .app(&integration.provider)
            .or_else(|| self.app("custom"))
            .cloned()
            .unwrap_or_else(|| self.app_or_blank("custom"));
        let requests_per_minute = limit
            .filter(|_| self.apps.pacing)
            .map(|l| l.requests.saturating_mul(60) / l.per_seconds.max(1));
        let options = CustomOptions {
            client_id: app.client_id,
            client_secret: app.client_secret,
            requests_per_minute,
            outbound: self.apps.outbound,
            ..CustomOptions::default()
        };
        // The label is the catalogue's id (a bounded set), never the integration's own text.
        let label =
            syncledger_domain::provider::find(&integration.provider).map_or("custom", |p| p.id);
        Ok(Box::new(
            CustomAdapter::new(spec, options)?.with_provider(label),
        ))
    }
}
