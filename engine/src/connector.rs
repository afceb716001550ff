//! Which adapter serves an integration, configured from the provider's OAuth app
//! and the integration's base URL override.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::SecretString;
use syncledger_crm::{
    CrmAdapter, CustomAdapter, CustomOptions, CustomSpec, HubSpotAdapter, HubSpotConfig,
    PipedriveAdapter, PipedriveConfig, SalesforceAdapter, SalesforceConfig,
};
use syncledger_domain::Integration;

use crate::error::EngineError;

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
}

impl Default for ProviderApps {
    fn default() -> Self {
        Self {
            apps: BTreeMap::new(),
            pacing: true,
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

    /// The OAuth app configured for `provider`.
    pub fn app(&self, provider: &str) -> Option<&ClientApp> {
        self.apps.apps.get(provider)
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
        if info.is_some_and(|p| p.via_custom_spec) {
            return self.custom(integration, info.map(|p| p.rate_limit));
        }
        match integration.provider.as_str() {
            "hubspot" => {
                let mut config = HubSpotConfig::new(app.client_id, app.client_secret);
                if let Some(url) = base {
                    // An override (sandbox, proxy) serves the authorize page on the same host.
                    config.auth_base_url.clone_from(&url);
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
                if let Some(url) = base {
                    // The override is the login host; the token response names the
                    // instance, and the override is the fallback when it does not.
                    config.instance_url = Some(url.clone());
                    config.login_url = url;
                }
                if !self.apps.pacing {
                    config.requests_per_interval = None;
                }
                Ok(Box::new(SalesforceAdapter::new(config)?))
            }
            "pipedrive" => {
                let mut config = PipedriveConfig::new(app.client_id, app.client_secret);
                if let Some(url) = base {
                    // A sandbox serves the OAuth host's paths and the API on one origin.
                    config.oauth_base_url.clone_from(&url);
                    config.base_url = url;
                }
                if !self.apps.pacing {
                    config.requests_per_2s = None;
                }
                Ok(Box::new(PipedriveAdapter::new(config)?))
            }
            other => Err(EngineError::Unsupported(format!(
                "connecting {other} is not supported yet"
            ))),
        }
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
            ..CustomOptions::default()
        };
        Ok(Box::new(CustomAdapter::new(spec, options)?))
    }
}
