//! Hostile URLs from a tenant: every one is refused at creation with a 400 naming
//! its field, and nothing is created.

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_testkit::app::{sync_config, Backend, TestApp};

fn custom_spec(base: &str) -> Value {
    json!({"base_url": base,
        "auth": {"type": "oauth2", "authorize_url": "https://auth.example.com/authorize",
                 "token_url": "https://auth.example.com/token"},
        "contacts": {"list": {"path": "/contacts", "records_path": "items", "id_path": "id",
            "updated_at_path": "updated"},
            "write": {"create": {"method": "POST", "path": "/contacts"}}}})
}

/// Creates an integration and asserts a 400 naming `field`, with nothing stored.
async fn refused(app: &TestApp, body: Value, field: &str) -> anyhow::Result<()> {
    let events = app.event_count().await?;
    let resp = app
        .post("/v1/integrations", &app.admin, body.clone())
        .await?;
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{body}: {}",
        resp.text
    );
    assert_eq!(
        resp.body["error"]["code"], "validation_failed",
        "{}",
        resp.text
    );
    assert_eq!(resp.body["error"]["field"], field, "{body}: {}", resp.text);
    assert_eq!(app.event_count().await?, events, "{body}");
    Ok(())
}

fn builtin(provider: &str, base_url: &str) -> Value {
    json!({"provider": provider, "name": "Hostile", "sync_config": sync_config(),
        "base_url": base_url})
}

fn custom(spec: Value) -> Value {
    json!({"provider": "tave", "name": "Hostile", "sync_config": sync_config(), "spec": spec})
}

#[tokio::test]
async fn hostile_base_urls_are_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn_production(Backend::Sqlite, |s| s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    for (provider, url) in [
        ("hubspot", "https://169.254.169.254/latest/meta-data"),
        ("hubspot", "https://10.0.0.8"),
        ("hubspot", "https://[::ffff:169.254.169.254]"),
        ("hubspot", "http://127.0.0.1:9"),
        ("hubspot", "https://localhost"),
        // `vm` resolves to 127.0.0.1 on the test machine (/etc/hosts).
        ("hubspot", "https://vm"),
        ("hubspot", "http://api.hubapi.com"),
        ("hubspot", "https://attacker.example"),
        ("salesforce", "https://100.64.0.1"),
        ("pipedrive", "https://api.hubapi.com"),
        ("zoho", "https://www.zohoapis.com.attacker.example"),
        ("zoho", "http://www.zohoapis.com"),
    ] {
        refused(&app, builtin(provider, url), "base_url").await?;
    }
    // The official hosts stay allowed.
    let ok = app
        .post(
            "/v1/integrations",
            &app.admin,
            builtin("salesforce", "https://test.salesforce.com"),
        )
        .await?;
    ok.expect(StatusCode::CREATED);
    app.finish().await
}

#[tokio::test]
async fn hostile_custom_spec_urls_are_refused_field_by_field() -> anyhow::Result<()> {
    let app = TestApp::spawn_production(Backend::Sqlite, |s| s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let hostile = [
        (
            "/base_url",
            json!("https://169.254.169.254"),
            "spec.base_url",
        ),
        (
            "/base_url",
            json!("http://api.example.com"),
            "spec.base_url",
        ),
        ("/base_url", json!("https://vm"), "spec.base_url"),
        ("/base_url", json!("https://192.168.1.1"), "spec.base_url"),
        (
            "/auth/authorize_url",
            json!("http://auth.example.com/authorize"),
            "spec.auth.authorize_url",
        ),
        (
            "/auth/token_url",
            json!("https://10.1.2.3/token"),
            "spec.auth.token_url",
        ),
        (
            "/auth/token_url",
            json!("https://[fd00::1]/token"),
            "spec.auth.token_url",
        ),
    ];
    // (Endpoint paths must start with `/` (spec validation), so they cannot leave the
    // base URL's host; the outbound check refuses such a path as well.)
    for (pointer, value, field) in hostile {
        let mut spec = custom_spec("https://api.example.com");
        *spec
            .pointer_mut(pointer)
            .ok_or_else(|| anyhow::anyhow!("no {pointer}"))? = value;
        refused(&app, custom(spec), field).await?;
    }
    // An override of the spec's base URL is checked too.
    let mut body = custom(custom_spec("https://api.example.com"));
    body["base_url"] = json!("https://169.254.169.254");
    refused(&app, body, "base_url").await?;
    // A public https spec is accepted.
    let ok = app
        .post(
            "/v1/integrations",
            &app.admin,
            custom(custom_spec("https://api.example.com")),
        )
        .await?;
    ok.expect(StatusCode::CREATED);
    app.finish().await
}

#[tokio::test]
async fn loopback_providers_need_the_operators_consent() -> anyhow::Result<()> {
    let strict = TestApp::spawn_production(Backend::Sqlite, |s| s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    refused(
        &strict,
        builtin("hubspot", "http://127.0.0.1:9"),
        "base_url",
    )
    .await?;
    strict.finish().await?;
    let allowed = TestApp::spawn_production(Backend::Sqlite, |s| syncledger_api::Settings {
        allow_loopback_providers: true,
        ..s
    })
    .await?
    .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let resp = allowed
        .post(
            "/v1/integrations",
            &allowed.admin,
            builtin("hubspot", "http://127.0.0.1:9"),
        )
        .await?;
    resp.expect(StatusCode::CREATED);
    // Link-local stays refused whatever the operator allows.
    refused(
        &allowed,
        builtin("hubspot", "https://169.254.169.254"),
        "base_url",
    )
    .await?;
    allowed.finish().await
}

/// DNS rebinding: a custom integration whose host resolved to a public address when it
/// was created, and resolves to an internal one by the time it is used, is refused at
/// use: the resolver checks every connection, not only the creation.
#[tokio::test]
async fn a_host_that_later_resolves_inside_is_refused_at_use() -> anyhow::Result<()> {
    use std::net::{IpAddr, Ipv4Addr};
    use syncledger_crm::outbound::test_dns;

    let app = TestApp::spawn_production(Backend::Sqlite, |s| s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let host = format!("rebind-{}.test", uuid::Uuid::new_v4().simple());
    test_dns::set(&host, &[IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))]);
    let mut spec = custom_spec(&format!("https://{host}/api"));
    spec["auth"] = json!({"type": "api_key", "header": "X-Api-Key"});
    let resp = app
        .post("/v1/integrations", &app.admin, custom(spec))
        .await?;
    let body = resp.expect(StatusCode::CREATED);
    let id = body["id"].as_str().expect("an id").to_owned();
    app.set_api_key(&app.admin, &id, "a-key").await?;

    for internal in [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(10, 0, 0, 8),
        Ipv4Addr::LOCALHOST,
    ] {
        test_dns::set(&host, &[IpAddr::V4(internal)]);
        let resp = app
            .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
            .await?;
        let body = resp.expect(StatusCode::OK);
        assert_eq!(body["ok"], false, "{internal}: {}", resp.text);
        assert!(
            resp.text.contains("outbound policy refuses"),
            "{internal} was not refused by the policy: {}",
            resp.text
        );
    }
    app.finish().await
}
