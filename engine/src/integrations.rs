//! Integrations: create (with the workspace's plan slot, see [`crate::creation`]), read,
//! change the sync config, pause, resume, set API-key or basic credentials, disconnect.
//! Commands go through the aggregate; reads come from the `integration_status` read
//! model, or from the aggregate when the read model has not caught up yet.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use syncledger_crm::{Credentials, CustomSpec};
use syncledger_domain::provider::{self, ProviderInfo};
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::{
    Aggregate, Integration, IntegrationCommand, Status, SyncConfig, WorkspaceCommand,
};
use syncledger_projections::integration_status::{self, IntegrationRow, StatusRow};
use syncledger_projections::sync_runs;
use syncledger_store::{history, Metadata};

use crate::app::Engine;
use crate::creation::{create_integration, NewIntegration};
use crate::credentials::seal_credentials;
use crate::editing::{edit_integration, Edit, Endpoint};
use crate::error::EngineError;

const PROJECTION: &str = integration_status::TABLE;

/// An integration as the API shows it: its read-model row and its latest run.
#[derive(Clone, Debug)]
pub struct IntegrationState {
    pub row: IntegrationRow,
    pub last_run: Option<SyncRun>,
}

/// What a caller asks to create; the sync config is already checked.
pub struct CreateIntegration {
    pub provider: String,
    pub name: String,
    pub sync_config: SyncConfig,
    pub base_url: Option<String>,
    /// The declarative spec of a custom or niche provider: a JSON object, or a string
    /// holding the same in TOML. Without one, the provider's shipped template.
    pub spec: Option<serde_json::Value>,
    /// The spec's (or template's) connection parameters, such as Chatwoot's `account_id`.
    pub parameters: BTreeMap<String, String>,
}

/// What a caller asks to change; `None` leaves a part as it is. The sync config is
/// already checked.
#[derive(Default)]
pub struct UpdateIntegration {
    pub name: Option<String>,
    pub sync_config: Option<SyncConfig>,
    /// `Some(None)` removes the override.
    pub base_url: Option<Option<String>>,
    /// A JSON object, or a string holding the same in TOML, as at creation.
    pub spec: Option<serde_json::Value>,
    /// Connection parameters, bound into the new spec, or into the provider's shipped
    /// template when no spec is given.
    pub parameters: Option<BTreeMap<String, String>>,
}

/// Credentials a person sets by hand (OAuth tokens come from [`crate::oauth`]).
pub enum StaticCredentials {
    ApiKey(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

/// The integrations use cases; see [`Engine::integrations`].
pub struct Integrations<'a>(&'a Engine);

impl Engine {
    pub fn integrations(&self) -> Integrations<'_> {
        Integrations(self)
    }
}

/// Parses and validates a provider spec (the provider's shipped template when none is
/// given) with its connection parameters bound; answers its canonical JSON.
fn provider_spec(
    info: &ProviderInfo,
    spec: Option<serde_json::Value>,
    parameters: &BTreeMap<String, String>,
) -> Result<Option<String>, EngineError> {
    // A vendor without an API needs no spec (one given makes a custom integration of
    // it, for an undocumented API).
    if provider::publishes_no_api(info.id) && spec.is_none() {
        if !parameters.is_empty() {
            return Err(EngineError::invalid(
                "parameters",
                format!(
                    "{} publishes no API, so there is nothing to describe; its records come \
                     in by CSV import or the integration's inbound webhook",
                    info.id
                ),
            ));
        }
        return Ok(None);
    }
    if !info.via_custom_spec && !parameters.is_empty() {
        return Err(EngineError::invalid(
            "parameters",
            format!("{} takes no connection parameters", info.id),
        ));
    }
    let parsed = match (info.via_custom_spec, spec) {
        (false, None) => return Ok(None),
        (false, Some(_)) => {
            return Err(EngineError::invalid(
                "spec",
                format!("{} has a built-in adapter and takes no spec", info.id),
            ))
        }
        (true, None) if syncledger_crm::custom::template_text(info.id).is_some() => {
            syncledger_crm::custom::template(info.id)
                .ok_or(EngineError::Corrupt("a shipped template"))?
        }
        (true, None) => {
            return Err(EngineError::invalid(
                "spec",
                format!(
                    "{} is connected through a declarative spec; see docs/custom-provider.md",
                    info.id
                ),
            ))
        }
        (true, Some(serde_json::Value::String(toml))) => CustomSpec::from_toml(&toml),
        (true, Some(json @ serde_json::Value::Object(_))) => {
            CustomSpec::from_json(&json.to_string())
        }
        (true, Some(_)) => {
            return Err(EngineError::invalid(
                "spec",
                "must be a JSON object or a TOML string",
            ))
        }
    };
    // Its URLs are checked against the outbound policy by `create`.
    let spec = parsed
        .and_then(|s| s.bind(parameters))
        .map_err(|e| match e {
            syncledger_crm::CrmError::Refused { field, reason } => {
                EngineError::invalid(&field, reason)
            }
            other => EngineError::invalid("spec", other),
        })?;
    spec.validate()
        .map_err(|e| EngineError::invalid("spec", e))?;
    serde_json::to_string(&spec)
        .map(Some)
        .map_err(|e| EngineError::Store(format!("encoding a spec: {e}")))
}

/// The connection parameters of a write-only provider: none for Light Blue (its key is
/// set as credentials), and ShootQ's `form_link_code` (its only authentication, so it is
/// sealed as the integration's key). `None` for other providers, and when not given.
fn lead_parameters(
    info: &ProviderInfo,
    parameters: &BTreeMap<String, String>,
) -> Result<Option<SecretString>, EngineError> {
    const FORM: &str = "form_link_code";
    if !info.leads_only {
        return Ok(None);
    }
    let accepted: &[&str] = if info.id == "shootq" { &[FORM] } else { &[] };
    if let Some(name) = parameters.keys().find(|n| !accepted.contains(&n.as_str())) {
        let reason = match accepted {
            [] => format!(
                "{} takes no connection parameters; set its API key with POST \
                 /v1/integrations/{{id}}/credentials",
                info.id
            ),
            _ => format!("is not a parameter of {}; it takes {FORM}", info.id),
        };
        let field = if accepted.is_empty() {
            "parameters".to_owned()
        } else {
            format!("parameters.{name}")
        };
        return Err(EngineError::invalid(&field, reason));
    }
    let Some(code) = parameters.get(FORM) else {
        return Ok(None);
    };
    if !provider::is_form_link_code(code) {
        return Err(EngineError::invalid(
            "parameters.form_link_code",
            "must be 1 to 64 letters, digits, '-' or '_' (the code in the contact form's link)",
        ));
    }
    Ok(Some(SecretString::from(code.clone())))
}

impl Integrations<'_> {
    /// The aggregate, if it exists and belongs to the workspace.
    pub async fn owned(&self, workspace_id: &str, id: &str) -> Result<Integration, EngineError> {
        let i = self
            .0
            .integrations
            .load(id)
            .await
            .map_err(EngineError::command)?;
        if i.id.is_none() || i.workspace_id != workspace_id {
            return Err(EngineError::NotFound);
        }
        Ok(i)
    }

    /// `NotFound` unless the integration exists in the workspace, as its status read
    /// model shows it: for reads that need only that. Folding the aggregate, as
    /// [`Self::owned`] does, reads every event it has, and it gains some with every run.
    pub async fn check_owned(&self, workspace_id: &str, id: &str) -> Result<(), EngineError> {
        integration_status::Query(&self.0.store.any)
            .get(workspace_id, id)
            .await?
            .map(|_| ())
            .ok_or(EngineError::NotFound)
    }

    async fn with_last_run(&self, row: IntegrationRow) -> Result<IntegrationState, EngineError> {
        let last_run = sync_runs::last_of(&self.0.store.any, &row.id).await?;
        Ok(IntegrationState { row, last_run })
    }

    async fn read(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Option<IntegrationState>, EngineError> {
        match integration_status::Query(&self.0.store.any)
            .get(workspace_id, id)
            .await?
        {
            Some(row) => Ok(Some(self.with_last_run(row).await?)),
            None => Ok(None),
        }
    }

    /// The integration as the read model shows it.
    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<IntegrationState, EngineError> {
        self.read(workspace_id, id)
            .await?
            .ok_or(EngineError::NotFound)
    }

    /// Up to `limit` of the workspace's integrations after id `after`, by id.
    /// An integration's open conflicts and linked records, for its overview card.
    pub async fn card_counts(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<CardCounts, EngineError> {
        Ok(integration_status::Query(&self.0.store.any)
            .card_counts(workspace_id, id)
            .await?)
    }

    /// The workspace's plan and how many integrations count against it.
    pub async fn plan_usage(&self, workspace_id: &str) -> Result<PlanUsage, EngineError> {
        let workspace = self.0.workspaces.load(workspace_id).await?;
        Ok(PlanUsage {
            workspace_name: workspace.name.clone(),
            plan: workspace.plan,
            used: workspace.integrations.len(),
            limit: workspace.plan.max_integrations(),
        })
    }

    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<IntegrationState>, EngineError> {
        let rows = integration_status::Query(&self.0.store.any)
            .list(workspace_id, after, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_last_run(row).await?);
        }
        Ok(out)
    }

    /// The integration as it was at `t`, folded from its events recorded by then. Every
    /// part comes from the integration's own events (runs begin on it), so all of it is
    /// as of `t`. Before its first event it did not exist.
    pub async fn as_of(
        &self,
        workspace_id: &str,
        id: &str,
        t: DateTime<Utc>,
    ) -> Result<IntegrationState, EngineError> {
        let events = self.0.store.events_as_of(Integration::TYPE, id, t).await?;
        let row = match StatusRow::fold(&events)? {
            Some(row) if row.state.id.is_some() && row.state.workspace_id == workspace_id => row,
            _ => return Err(EngineError::NotFound),
        };
        let begun = events.iter().rev().find_map(|e| {
            match serde_json::from_value::<syncledger_domain::IntegrationEvent>(e.payload.clone()) {
                Ok(syncledger_domain::IntegrationEvent::SyncRunBegun { run_id, .. }) => {
                    Some(run_id)
                }
                _ => None,
            }
        });
        let last_run = match begun {
            Some(run_id) => {
                let run_events = self.0.store.events_as_of(SyncRun::TYPE, &run_id, t).await?;
                let run: SyncRun = history::fold(&run_events)
                    .map_err(|_| EngineError::Corrupt("a sync run's events"))?;
                run.id.is_some().then_some(run)
            }
            None => None,
        };
        Ok(IntegrationState {
            row: IntegrationRow::of(id, &row),
            last_run,
        })
    }

    /// The integration right after a command. Normally the read model has caught up
    /// (see [`crate::freshness`]); if it has not (on PostgreSQL a long transaction
    /// anywhere on the server holds the feed back), the answer is built from the
    /// aggregate, the source of truth.
    pub async fn current(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<IntegrationState, EngineError> {
        let agg = self.owned(workspace_id, id).await?;
        let read = self.read(workspace_id, id).await?;
        if let Some(v) = read.as_ref().filter(|v| v.row.version >= agg.version) {
            return Ok(v.clone());
        }
        let now = Utc::now();
        let row = IntegrationRow {
            id: id.to_string(),
            provider: agg.provider.clone(),
            name: agg.name.clone(),
            status: agg.status.as_str().to_string(),
            sync_config: agg.sync_config.clone(),
            base_url: agg.base_url.clone(),
            last_error: agg.last_error.clone(),
            credential_kind: integration_status::kind_name(agg.credential_kind),
            credentials_expire_at: agg.credentials_expire_at,
            credentials_set_at: agg.credentials_set_at,
            credentials_rotated_at: agg.credentials_rotated_at,
            last_sync_at: read.as_ref().and_then(|r| r.row.last_sync_at),
            next_sync_at: None,
            created_at: Some(read.as_ref().and_then(|r| r.row.created_at).unwrap_or(now)),
            updated_at: Some(now),
            version: agg.version,
        };
        Ok(IntegrationState {
            row,
            last_run: read.and_then(|r| r.last_run),
        })
    }

    /// Run a command on an integration of `meta`'s workspace on behalf of `meta`'s
    /// actor, and answer with its state after it.
    pub async fn execute(
        &self,
        meta: &Metadata,
        id: &str,
        cmd: IntegrationCommand,
    ) -> Result<IntegrationState, EngineError> {
        self.execute_at(meta, id, cmd, None).await
    }

    /// [`Self::execute`], only if the integration is at version `expected` when given
    /// (`EngineError::Stale` otherwise, nothing written): a client's `If-Match`.
    pub async fn execute_at(
        &self,
        meta: &Metadata,
        id: &str,
        cmd: IntegrationCommand,
        expected: Option<i64>,
    ) -> Result<IntegrationState, EngineError> {
        self.owned(&meta.workspace_id, id).await?;
        let integrations = &self.0.integrations;
        match expected {
            Some(version) => integrations.execute_at(id, cmd, meta, version).await,
            None => integrations.execute(id, cmd, meta).await,
        }
        .map_err(EngineError::command)?;
        self.0
            .fresh
            .settle(PROJECTION, Integration::TYPE, id)
            .await?;
        self.current(&meta.workspace_id, id).await
    }

    /// Create an integration in `meta`'s workspace: the provider must exist, a spec is
    /// given exactly when the provider needs one, every URL passes the outbound policy,
    /// and the workspace's plan must have a free slot.
    pub async fn create(
        &self,
        meta: &Metadata,
        req: CreateIntegration,
    ) -> Result<IntegrationState, EngineError> {
        let Some(info) = provider::find(&req.provider) else {
            return Err(EngineError::invalid(
                "provider",
                format!("unknown provider {:?}; see GET /v1/providers", req.provider),
            ));
        };
        let form_code = lead_parameters(info, &req.parameters)?;
        if info.id == "shootq" && form_code.is_none() {
            return Err(EngineError::invalid(
                "parameters.form_link_code",
                "is required: the code in the link of the ShootQ contact form leads go to",
            ));
        }
        let parameters = if info.leads_only {
            BTreeMap::new()
        } else {
            req.parameters
        };
        let spec = provider_spec(info, req.spec, &parameters)?;
        self.0
            .connections
            .connector()
            .check_urls(&req.provider, req.base_url.as_deref(), spec.as_deref())
            .await?;
        let new = NewIntegration {
            integration_id: uuid::Uuid::now_v7().to_string(),
            workspace_id: meta.workspace_id.clone(),
            provider: req.provider,
            name: req.name,
            sync_config: req.sync_config,
            base_url: req.base_url,
            spec,
            at: Utc::now(),
        };
        create_integration(&self.0.store.events, &self.0.workspaces, &new, meta).await?;
        let id = new.integration_id;
        self.0
            .fresh
            .settle(PROJECTION, Integration::TYPE, &id)
            .await?;
        if let Some(code) = form_code {
            // Connected at once: the form's code is all ShootQ asks for.
            return self
                .set_credentials(meta, &id, StaticCredentials::ApiKey(code))
                .await;
        }
        self.current(&meta.workspace_id, &id).await
    }

    /// Change the sync configuration only (the dashboard's settings form).
    pub async fn change_config(
        &self,
        meta: &Metadata,
        id: &str,
        sync_config: SyncConfig,
        expected: Option<i64>,
    ) -> Result<IntegrationState, EngineError> {
        let edit = UpdateIntegration {
            sync_config: Some(sync_config),
            ..UpdateIntegration::default()
        };
        self.update(meta, id, edit, expected).await
    }

    /// Change any of the name (unique in the workspace), the sync configuration, the
    /// base URL override and the spec (parsed and validated as at creation), in one
    /// change, only at version `expected` when given. A new endpoint passes the outbound
    /// policy; if it would send the credentials to a host they did not go to before,
    /// they are dropped and the integration must be connected again
    /// (see [`crate::editing`]).
    pub async fn update(
        &self,
        meta: &Metadata,
        id: &str,
        req: UpdateIntegration,
        expected: Option<i64>,
    ) -> Result<IntegrationState, EngineError> {
        let current = self.owned(&meta.workspace_id, id).await?;
        let mut req = req;
        let form_code = match provider::find(&current.provider) {
            Some(info) if info.leads_only => match req.parameters.take() {
                Some(parameters) => lead_parameters(info, &parameters)?,
                None => None,
            },
            _ => None,
        };
        let endpoint = if req.base_url.is_some() || req.spec.is_some() || req.parameters.is_some() {
            let info = provider::find(&current.provider).ok_or(EngineError::Corrupt(
                "an integration's provider is no longer known",
            ))?;
            let spec = match (req.spec, &req.parameters) {
                (Some(given), parameters) => {
                    provider_spec(info, Some(given), &parameters.clone().unwrap_or_default())?
                }
                // New parameters rebind the shipped template.
                (None, Some(parameters)) => provider_spec(info, None, parameters)?,
                (None, None) => current.spec.clone(),
            };
            let base_url = req.base_url.unwrap_or_else(|| current.base_url.clone());
            self.0
                .connections
                .connector()
                .check_urls(&current.provider, base_url.as_deref(), spec.as_deref())
                .await?;
            Some(Endpoint { base_url, spec })
        } else {
            None
        };
        let edit = Edit {
            name: req.name,
            sync_config: req.sync_config,
            endpoint,
        };
        if edit.is_empty() && form_code.is_none() {
            return Err(EngineError::invalid(
                "body",
                "name at least one of name, sync_config, base_url and spec",
            ));
        }
        if edit.is_empty() {
            // Only a new form code: the client's If-Match still holds it to a version.
            if expected.is_some_and(|v| v != current.version) {
                return Err(EngineError::Stale {
                    current: current.version,
                });
            }
        } else {
            edit_integration(self.0, meta, id, &edit, expected).await?;
            self.0
                .fresh
                .settle(PROJECTION, Integration::TYPE, id)
                .await?;
        }
        if let Some(code) = form_code {
            return self
                .set_credentials(meta, id, StaticCredentials::ApiKey(code))
                .await;
        }
        self.current(&meta.workspace_id, id).await
    }

    /// Stop scheduled and triggered syncs.
    pub async fn pause(&self, meta: &Metadata, id: &str) -> Result<IntegrationState, EngineError> {
        let cmd = IntegrationCommand::Pause { at: Utc::now() };
        self.execute(meta, id, cmd).await
    }

    pub async fn resume(&self, meta: &Metadata, id: &str) -> Result<IntegrationState, EngineError> {
        let cmd = IntegrationCommand::Resume { at: Utc::now() };
        self.execute(meta, id, cmd).await
    }

    /// Disconnect: the integration stops for good and frees its plan slot. OAuth tokens
    /// are revoked at the provider first, best effort: a provider that cannot be reached
    /// never blocks disconnecting.
    pub async fn disconnect(
        &self,
        meta: &Metadata,
        id: &str,
    ) -> Result<IntegrationState, EngineError> {
        let integration = self.owned(&meta.workspace_id, id).await?;
        if integration.status != Status::Disconnected {
            self.0.connections.revoke_best_effort(&integration).await;
        }
        let cmd = IntegrationCommand::Disconnect {
            reason: "disconnected through the API".into(),
            at: Utc::now(),
        };
        let state = self.execute(meta, id, cmd).await?;
        // The slot release is caused by the disconnection event.
        let mut release_meta = meta.clone();
        if let Some(p) = self
            .0
            .store
            .feed()
            .last_position_of(Integration::TYPE, id)
            .await?
        {
            release_meta = release_meta.caused_by(format!("event:{}", p.pos));
        }
        let release = WorkspaceCommand::ReleaseIntegration {
            integration_id: id.to_string(),
        };
        self.0
            .workspaces
            .execute(&meta.workspace_id, release, &release_meta)
            .await?;
        Ok(state)
    }

    /// Set (or replace) an integration's API key or basic credentials, sealed in the
    /// vault. A provider that takes OAuth only refuses them.
    pub async fn set_credentials(
        &self,
        meta: &Metadata,
        id: &str,
        given: StaticCredentials,
    ) -> Result<IntegrationState, EngineError> {
        let integration = self.owned(&meta.workspace_id, id).await?;
        let credentials = match given {
            StaticCredentials::ApiKey(api_key) => {
                if api_key.expose_secret().trim().is_empty() {
                    return Err(EngineError::invalid("api_key", "must not be empty"));
                }
                Credentials::ApiKey(api_key)
            }
            StaticCredentials::Basic { username, password } => {
                if username.trim().is_empty() {
                    return Err(EngineError::invalid("username", "must not be empty"));
                }
                Credentials::Basic { username, password }
            }
        };
        // A key stored on it would replace its inbound webhook's secret (silently
        // stopping every delivery), and there is no API it could be sent to.
        if provider::publishes_no_api(&integration.provider) && integration.spec.is_none() {
            return Err(EngineError::Unsupported(format!(
                "{} publishes no API, so there is no key to store; records come in by CSV \
                 import, or through the inbound webhook (POST \
                 /v1/integrations/{{id}}/inbound-webhook makes its secret)",
                integration.provider
            )));
        }
        if !provider::takes_static_credentials(&integration.provider) {
            return Err(EngineError::Unsupported(format!(
                "{} connects through OAuth only: POST /v1/integrations/{{id}}/connect",
                integration.provider
            )));
        }
        let (kind, secret, _) =
            seal_credentials(&self.0.vault, &meta.workspace_id, &credentials).await?;
        let cmd = integration.credentials_command(kind, secret, None, None, Utc::now());
        self.execute(meta, id, cmd).await
    }
}

pub use syncledger_projections::integration_status::CardCounts;

/// A workspace's integrations against its plan ("2 of 3 integrations").
#[derive(Debug, Clone)]
pub struct PlanUsage {
    pub workspace_name: String,
    pub plan: syncledger_domain::Plan,
    pub used: usize,
    /// `None`: no limit.
    pub limit: Option<usize>,
}
