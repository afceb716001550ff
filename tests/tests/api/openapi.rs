//! The OpenAPI document and the provider catalogue.

use reqwest::StatusCode;
use serde_json::Value;
use syncledger_testkit::app::{Backend, TestApp};

#[tokio::test]
async fn openapi_document_describes_the_api() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/openapi.json", "").await?;
    let doc = resp.expect(StatusCode::OK);
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    assert!(doc["info"]["title"].is_string());
    let expected: &[(&str, &[&str])] = &[
        ("/v1/health", &["get"]),
        ("/v1/providers", &["get"]),
        ("/v1/tokens", &["get", "post"]),
        ("/v1/tokens/{id}", &["delete"]),
        ("/v1/integrations", &["get", "post"]),
        ("/v1/integrations/{id}", &["get", "patch", "delete"]),
        ("/v1/integrations/{id}/pause", &["post"]),
        ("/v1/integrations/{id}/resume", &["post"]),
        ("/v1/integrations/{id}/credentials", &["post"]),
        ("/v1/integrations/{id}/connect", &["post"]),
        ("/v1/integrations/{id}/test", &["post"]),
        ("/v1/integrations/{id}/fields", &["get"]),
        ("/v1/integrations/{id}/mappings", &["get"]),
        ("/v1/integrations/{id}/mappings/{entity}", &["get", "put"]),
        ("/v1/integrations/{id}/mappings/{entity}/auto", &["post"]),
        ("/v1/integrations/{id}/mappings/{entity}/preview", &["post"]),
        ("/v1/integrations/{id}/mappings/{entity}/reapply", &["post"]),
        ("/v1/integrations/{id}/sync-runs", &["get", "post"]),
        ("/v1/sync-runs/{id}", &["get"]),
        ("/v1/sync-runs/{id}/cancel", &["post"]),
        ("/v1/sync-runs/{id}/retry", &["post"]),
        ("/v1/oauth/callback", &["get"]),
        ("/v1/audit", &["get"]),
        ("/v1/audit/verify", &["get"]),
        ("/v1/audit/export", &["get"]),
        ("/v1/events/stream", &["get"]),
    ];
    for (path, methods) in expected {
        let item = &doc["paths"][*path];
        assert!(item.is_object(), "the document lacks {path}");
        for m in *methods {
            assert!(item[*m].is_object(), "the document lacks {m} {path}");
        }
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        bearer["scheme"].as_str().map(str::to_lowercase),
        Some("bearer".into())
    );
    app.finish().await
}

const PROVIDERS: [&str; 15] = [
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

#[tokio::test]
async fn providers_are_listed_with_their_fields() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/providers", &app.admin).await?;
    let data = resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for id in PROVIDERS {
        let p = data
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("provider {id} is missing from {}", resp.text));
        assert_provider_fields(p);
    }
    for p in &data {
        assert_provider_fields(p);
    }
    let unauthenticated = app.get("/v1/providers", "").await?;
    unauthenticated.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    app.finish().await
}

fn assert_provider_fields(p: &Value) {
    assert!(p["id"].is_string(), "{p}");
    assert!(p["name"].as_str().is_some_and(|n| !n.is_empty()), "{p}");
    let auth = p["auth_type"].as_str().unwrap_or_default();
    assert!(
        ["oauth2", "api_key", "basic", "configurable"].contains(&auth),
        "auth_type of {p}"
    );
    assert!(p["scopes"].is_array(), "{p}");
    assert!(p["rate_limit"].is_object(), "{p}");
    assert!(
        p["rate_limit"]["requests"].as_u64().is_some_and(|n| n > 0),
        "{p}"
    );
    let entities = p["entities"].as_array().cloned().unwrap_or_default();
    assert!(!entities.is_empty(), "{p}");
    for e in entities {
        assert!(e == "contacts" || e == "companies", "entity {e} of {p}");
    }
    assert!(p["sync_supported"].is_boolean(), "{p}");
}
