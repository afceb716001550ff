use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::List;
use axum::Json;
use serde::Serialize;
use syncledger_domain::provider::{catalogue, ProviderInfo};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Provider {
    pub id: String,
    pub name: String,
    /// oauth2, api_key, basic or configurable.
    pub auth_type: String,
    pub scopes: Vec<String>,
    pub rate_limit: RateLimitView,
    pub entities: Vec<String>,
    pub sync_supported: bool,
    /// Connected through the declarative custom-REST provider.
    pub via_custom_spec: bool,
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
