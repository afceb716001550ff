//! Custom and niche providers through the HTTP API: the declarative spec is validated on
//! creation (JSON or TOML), then the integration connects to the generic JSON sandbox
//! with an API key or through OAuth 2.0 with PKCE, is tested, lists its fields and is
//! disconnected — with no secret in any response or audit row.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};
use syncledger_testkit::app::{on_both_backends, send, sync_config, Backend, TestApp};

on_both_backends!(
    api_key_custom_provider,
    oauth_custom_provider,
    spec_refusals
);

pub(crate) fn spec(base: &str, auth: Value) -> Value {
    json!({
        "name": "Studio CRM",
        "base_url": base,
        "auth": auth,
        "contacts": {
            "list": {
                "path": "/cursor/contacts",
                "records_path": "data.items",
                "id_path": "id",
                "updated_at_path": "updated",
                "fields": {
                    "first_name": "attributes.first_name",
                    "email": "attributes.email"
                }
            },
            "pagination": {"type": "cursor", "param": "cursor", "cursor_path": "meta.next",
                           "limit_param": "limit", "limit": 50}
        }
    })
}

async fn create(app: &TestApp, provider: &str, spec: Value) -> anyhow::Result<String> {
    let body = json!({"provider": provider, "name": format!("{provider} via spec"),
        "sync_config": sync_config(), "spec": spec});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

async fn test_fields_disconnect(app: &TestApp, id: &str, secret: &str) -> anyhow::Result<()> {
    let admin = &app.admin;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), admin)
        .await?;
    let body = resp.expect(StatusCode::OK);
    assert_eq!(body["ok"], true, "{}", resp.text);
    let resp = app
        .get(
            &format!("/v1/integrations/{id}/fields?entity=contacts"),
            admin,
        )
        .await?;
    let body = resp.expect(StatusCode::OK);
    let names: Vec<&str> = body["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["email", "first_name"], "{}", resp.text);
    let resp = app.delete(&format!("/v1/integrations/{id}"), admin).await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "disconnected");
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", admin).await?;
    audit.expect(StatusCode::OK);
    for action in [
        "IntegrationCreated",
        "CredentialsStored",
        "ConnectionTested",
        "IntegrationDisconnected",
    ] {
        assert!(audit.text.contains(action), "no {action} in {}", audit.text);
    }
    assert!(!audit.text.contains(secret), "a secret in the audit trail");
    Ok(())
}

async fn api_key_custom_provider(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let key = GenericSandboxConfig::default().api_key;
    let auth = json!({"type": "api_key", "header": "X-Api-Key"});
    let id = create(&app, "tave", spec(&sandbox.base_url(), auth)).await?;
    // No OAuth for an API-key spec.
    app.post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "unsupported", "API key");
    // A wrong key is stored, then the test says so and the integration is in error.
    app.set_api_key(&app.admin, &id, "wrong-key").await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    let body = resp.expect(StatusCode::OK);
    assert_eq!(body["ok"], false, "{}", resp.text);
    assert_eq!(body["integration"]["status"], "error");
    let resp = app.set_api_key(&app.admin, &id, &key).await?;
    assert!(!resp.text.contains(&key));
    test_fields_disconnect(&app, &id, &key).await?;
    sandbox.shutdown().await;
    app.finish().await
}

async fn oauth_custom_provider(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let base = sandbox.base_url();
    let auth = json!({"type": "oauth2", "authorize_url": format!("{base}/oauth/authorize"),
        "token_url": format!("{base}/oauth/token"), "scopes": ["contacts"], "pkce": true});
    // The same spec as TOML.
    let spec_toml = toml_of(&spec(&base, auth))?;
    let id = create(&app, "custom", Value::String(spec_toml)).await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let url = resp.str("authorization_url")?;
    assert!(url.contains("code_challenge="), "{url}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let approved = client.get(&url).send().await?;
    assert_eq!(approved.status(), StatusCode::FOUND);
    let callback = approved
        .headers()
        .get(reqwest::header::LOCATION)
        .context("redirect")?
        .to_str()?
        .to_string();
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    test_fields_disconnect(&app, &id, "sandbox-secret").await?;
    sandbox.shutdown().await;
    app.finish().await
}

fn toml_of(value: &Value) -> anyhow::Result<String> {
    // A hand-written TOML rendering of the spec, as a user would write it.
    let auth = &value["auth"];
    Ok(format!(
        r#"name = "Studio CRM"
base_url = "{base}"

[auth]
type = "oauth2"
authorize_url = "{authorize}"
token_url = "{token}"
scopes = ["contacts"]
pkce = true

[contacts.list]
path = "/cursor/contacts"
records_path = "data.items"
id_path = "id"
updated_at_path = "updated"

[contacts.list.fields]
first_name = "attributes.first_name"
email = "attributes.email"

[contacts.pagination]
type = "cursor"
param = "cursor"
cursor_path = "meta.next"
limit_param = "limit"
limit = 50
"#,
        base = value["base_url"].as_str().context("base")?,
        authorize = auth["authorize_url"].as_str().context("authorize")?,
        token = auth["token_url"].as_str().context("token")?,
    ))
}

/// Specs where they do not belong, missing or invalid: 400 naming the problem, nothing
/// written.
async fn spec_refusals(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let events = app.event_count().await?;
    let good = spec("http://127.0.0.1:9", json!({"type": "basic"}));
    let mut broken = good.clone();
    broken["contacts"]["pagination"] = json!({"type": "cursor", "param": "cursor"});
    let mut remote_http = good.clone();
    remote_http["base_url"] = json!("http://crm.example.com");
    let cases = [
        ("hubspot", Some(good.clone()), "takes no spec"),
        ("zoho", Some(good.clone()), "takes no spec"),
        ("custom", Some(broken), "contacts.pagination.cursor_path"),
        ("custom", Some(json!(42)), "JSON object or a TOML string"),
        ("custom", Some(json!("base_url = ")), "spec"),
        ("custom", Some(remote_http), "https"),
    ];
    for (provider, spec, needle) in cases {
        let mut body = json!({"provider": provider, "name": "x", "sync_config": sync_config()});
        if let Some(spec) = spec {
            body["spec"] = spec;
        }
        app.post("/v1/integrations", &app.admin, body)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    assert_eq!(app.event_count().await?, events);
    app.finish().await
}
