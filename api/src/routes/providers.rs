use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::List;
use axum::extract::Path;
use axum::Json;
use serde::Serialize;
use syncledger_domain::provider::{catalogue, ProviderInfo};
use syncledger_engine::providers::{describe, ProviderDetails};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    /// oauth2, api_key, basic, configurable or none (the vendor publishes no API).
    pub auth_type: String,
    pub scopes: Vec<String>,
    pub rate_limit: RateLimitView,
    pub entities: Vec<String>,
    pub sync_supported: bool,
    /// Connected through the declarative custom-REST provider.
    pub via_custom_spec: bool,
    /// How its records reach syncledger: api (syncledger calls the vendor's API),
    /// csv_import and inbound_webhook (a vendor without an API), leads_push (a vendor
    /// that only takes new leads).
    pub ways_in: Vec<String>,
    /// Why those ways: the vendor's limits in words.
    pub ways_in_reason: String,
    /// Accepts leads only (push): new app records are sent to it once each; the vendor
    /// offers no read, update or delete API, so pull and two-way integrations are refused.
    pub leads_only: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RateLimitView {
    pub requests: u32,
    pub per_seconds: u32,
    pub daily_quota: Option<u32>,
}

impl From<&ProviderInfo> for Provider {
    fn from(p: &ProviderInfo) -> Self {
        let auth_type = serde_json::to_value(p.auth_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Provider {
            id: p.id.into(),
            name: p.name.into(),
            auth_type,
            scopes: p.scopes.iter().map(|s| s.to_string()).collect(),
            rate_limit: RateLimitView {
                requests: p.rate_limit.requests,
                per_seconds: p.rate_limit.per_seconds,
                daily_quota: p.rate_limit.daily_quota,
            },
            entities: p.entities.iter().map(|e| e.as_str().to_string()).collect(),
            sync_supported: p.sync_supported,
            via_custom_spec: p.via_custom_spec,
            ways_in: p.ways_in.iter().map(|w| w.as_str().to_owned()).collect(),
            ways_in_reason: p.ways_in_reason.into(),
            leads_only: p.leads_only,
        }
    }
}

/// The provider catalogue.
#[utoipa::path(get, path = "/v1/providers", operation_id = "listProviders", tag = "providers", security(("bearer" = [])),
    responses((status = 200, body = inline(List<Provider>)), (status = 401, response = crate::error_docs::Unauthorized)))]
pub async fn list(_caller: Caller) -> ApiResult<Json<List<Provider>>> {
    Ok(Json(List {
        data: catalogue().iter().map(Provider::from).collect(),
        next_cursor: None,
    }))
}

/// A provider and what it supports: how it authenticates, what creating an
/// integration asks for, and per entity how pulls find changes, whether deletions are
/// seen and how writes go; its limits in words.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderDetail {
    #[serde(flatten)]
    pub provider: Provider,
    /// A template for it ships in the binary: creating an integration needs no spec
    /// (a spec given replaces it).
    pub template: bool,
    /// Creating an integration needs a spec (docs/custom-provider.md).
    pub spec_required: bool,
    /// `null` when a spec declares it.
    pub auth: Option<AuthView>,
    /// Given in `parameters` when creating an integration.
    pub parameters: Vec<ParameterView>,
    /// Empty when a spec declares them.
    pub capabilities: Vec<EntityCapabilities>,
    /// What the provider announces by webhook; `null`: nothing, runs follow the schedule.
    pub webhooks: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthView {
    /// oauth2, api_key, bearer, basic, configurable or none (no API to authenticate to).
    pub kind: String,
    /// The header an API key is sent in.
    pub header: Option<String>,
    /// The query parameter an API key is sent in.
    pub query: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ParameterView {
    pub name: String,
    pub description: Option<String>,
    /// digits (1 to 18) or slug (1 to 64 letters, digits, `-`, `_`).
    pub format: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EntityCapabilities {
    pub entity: String,
    /// incremental, descending_scan, full_scan, import (no API: records come by CSV
    /// import or inbound webhook) or none (a write-only provider: nothing is read).
    pub sync: String,
    /// feed, delete_flag, after_full_scan or none.
    pub deletions: String,
    pub creates: bool,
    pub updates: bool,
    /// One request per record written; `null` when not known.
    pub one_record_per_request: Option<bool>,
    /// An update reads the record and writes the whole document back.
    pub full_document_writes: bool,
    /// Which accounts have the entity when not every one does (Chatwoot's companies:
    /// Enterprise only); `null`: every account.
    pub limit: Option<String>,
}

impl From<ProviderDetails> for ProviderDetail {
    fn from(d: ProviderDetails) -> Self {
        ProviderDetail {
            provider: Provider::from(d.info),
            template: d.template,
            spec_required: d.spec_required,
            auth: d.auth.map(|a| AuthView {
                kind: a.kind.into(),
                header: a.header,
                query: a.query,
            }),
            parameters: d
                .parameters
                .into_iter()
                .map(|p| ParameterView {
                    name: p.name,
                    description: p.description,
                    format: p.format.into(),
                })
                .collect(),
            capabilities: d
                .entities
                .into_iter()
                .map(|e| EntityCapabilities {
                    entity: e.entity.as_str().into(),
                    sync: e.sync.into(),
                    deletions: e.deletions.into(),
                    creates: e.creates,
                    updates: e.updates,
                    one_record_per_request: e.one_record_per_request,
                    full_document_writes: e.full_document_writes,
                    limit: e.limit,
                })
                .collect(),
            webhooks: d.webhooks,
            notes: d.notes,
        }
    }
}

/// One provider of the catalogue and what it supports.
#[utoipa::path(get, path = "/v1/providers/{id}", operation_id = "getProvider", tag = "providers", security(("bearer" = [])),
    params(("id" = String, Path, description = "A provider id from GET /v1/providers")),
    responses((status = 200, body = ProviderDetail), (status = 401, response = crate::error_docs::Unauthorized),
              (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(_caller: Caller, Path(id): Path<String>) -> ApiResult<Json<ProviderDetail>> {
    match describe(&id)? {
        Some(details) => Ok(Json(ProviderDetail::from(details))),
        None => Err(ApiError::not_found("provider")),
    }
}
