//! Connecting each provider through OAuth against its local sandbox, through the HTTP
//! API only: create, connect (following the provider's redirect), callback (single use),
//! connection test, field catalogue, disconnect with revocation at the provider, and an
//! audit trail that shows each step and never a token.

use anyhow::Context;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;
use syncledger_sandbox::{PipedriveSandboxConfig, SalesforceSandboxConfig, Sandbox, SandboxConfig};
use syncledger_testkit::app::{on_both_backends, sync_config, Backend, TestApp};
use syncledger_testkit::sandbox;
use syncledger_vault::Sealed;

on_both_backends!(
    hubspot_end_to_end,
    salesforce_end_to_end,
    pipedrive_end_to_end,
    connect_refusals
);

/// What differs between providers in the end-to-end connect test.
struct Provider {
    id: &'static str,
    /// A field every contact catalogue of this provider has.
    contact_field: &'static str,
    /// The sandbox endpoint that revokes tokens.
    revoke_endpoint: &'static str,
    /// The sandbox endpoint that exchanges codes and refreshes.
    token_endpoint: &'static str,
}

async fn hubspot_end_to_end(backend: Backend) -> anyhow::Result<()> {
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let provider = Provider {
        id: "hubspot",
        contact_field: "email",
        revoke_endpoint: "DELETE /oauth/v1/refresh-tokens",
        token_endpoint: "POST /oauth/v1/token",
    };
    connect_test_fields_and_disconnect(backend, &provider, sandbox).await
}

async fn salesforce_end_to_end(backend: Backend) -> anyhow::Result<()> {
    let sandbox = Sandbox::start_salesforce(SalesforceSandboxConfig::default()).await?;
    let provider = Provider {
        id: "salesforce",
        contact_field: "Email",
        revoke_endpoint: "POST /services/oauth2/revoke",
        token_endpoint: "POST /services/oauth2/token",
    };
    connect_test_fields_and_disconnect(backend, &provider, sandbox).await
}

async fn pipedrive_end_to_end(backend: Backend) -> anyhow::Result<()> {
    let sandbox = Sandbox::start_pipedrive(PipedriveSandboxConfig::default()).await?;
    let provider = Provider {
        id: "pipedrive",
        contact_field: "email",
        revoke_endpoint: "POST /oauth/revoke",
        token_endpoint: "POST /oauth/token",
    };
    connect_test_fields_and_disconnect(backend, &provider, sandbox).await
}

/// The provider's redirect: `authorization_url` answered with a 302 whose Location is
/// the API's callback.
async fn approve(authorization_url: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = client.get(authorization_url).send().await?;
    assert_eq!(resp.status(), StatusCode::FOUND, "the sandbox approves");
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .context("a Location header")?
        .to_str()?
        .to_string();
    Ok(location)
}

/// The tokens the integration holds, opened with the vault (test-only access).
async fn stored_tokens(app: &TestApp, id: &str) -> anyhow::Result<(String, String)> {
    let agg = app.state.integrations.load(id).await?;
    let secret = agg.secret.context("stored credentials")?;
    let sealed = Sealed {
        key_id: secret.key_id,
        nonce: secret.nonce,
        ciphertext: secret.ciphertext,
    };
    let plain = app.state.vault.open(&app.workspace_id, &sealed).await?;
    let v: serde_json::Value = serde_json::from_slice(plain.expose_secret())?;
    let get = |k: &str| v[k].as_str().map(str::to_string).context("a token");
    Ok((get("access_token")?, get("refresh_token")?))
}

fn count(sandbox: &Sandbox, prefix: &str) -> u64 {
    sandbox
        .counters()
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

async fn connect_test_fields_and_disconnect(
    backend: Backend,
    provider: &Provider,
    sandbox: Sandbox,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let body = json!({"provider": provider.id, "name": format!("Sandbox {}", provider.id),
        "sync_config": sync_config(), "base_url": sandbox.base_url()});
    let resp = app.post("/v1/integrations", &admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;

    // Not connected yet: no test, no fields.
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &admin)
        .await?;
    resp.expect_error(StatusCode::CONFLICT, "not_connected", "");

    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &admin)
        .await?;
    let auth_url = resp.str("authorization_url")?;
    assert!(auth_url.starts_with(&sandbox.base_url()), "{auth_url}");
    let callback = approve(&auth_url).await?;
    assert!(
        callback.starts_with(&app.url("/v1/oauth/callback?")),
        "{callback}"
    );

    let resp = syncledger_testkit::app::send(app.client.get(&callback)).await?;
    let view = resp.expect(StatusCode::OK);
    assert_eq!(view["status"], "connected", "{}", resp.text);
    assert_eq!(view["credential_kind"], "oauth2");
    let version = view["version"].clone();
    let (access, refresh) = stored_tokens(&app, &id).await?;
    assert!(!resp.text.contains(&access) && !resp.text.contains(&refresh));

    // The state is single use; an unknown one is refused; neither changes anything.
    let events = app.event_count().await?;
    let again = syncledger_testkit::app::send(app.client.get(&callback)).await?;
    again.expect_error(StatusCode::BAD_REQUEST, "invalid_state", "");
    let unknown = app
        .get(
            &format!("/v1/oauth/callback?code=x&state={}", "ab".repeat(32)),
            "",
        )
        .await?;
    unknown.expect_error(StatusCode::BAD_REQUEST, "invalid_state", "");
    assert_eq!(app.event_count().await?, events);
    let resp = app.get(&format!("/v1/integrations/{id}"), &admin).await?;
    assert_eq!(resp.expect(StatusCode::OK)["version"], version);

    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &admin)
        .await?;
    let body = resp.expect(StatusCode::OK);
    assert_eq!(body["ok"], true, "{}", resp.text);
    assert_eq!(body["integration"]["status"], "connected");

    let resp = app
        .get(
            &format!("/v1/integrations/{id}/fields?entity=contacts"),
            &admin,
        )
        .await?;
    let body = resp.expect(StatusCode::OK);
    let names: Vec<&str> = body["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&provider.contact_field), "{}", resp.text);
    assert!(body["data"][0]["type"].is_string() && body["next_cursor"].is_null());
    let bad = app
        .get(
            &format!("/v1/integrations/{id}/fields?entity=deals"),
            &admin,
        )
        .await?;
    bad.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "entity");

    let resp = app
        .delete(&format!("/v1/integrations/{id}"), &admin)
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "disconnected");
    assert!(
        count(&sandbox, provider.revoke_endpoint) > 0,
        "no revocation in {:?}",
        sandbox.counters()
    );
    // The revoked refresh token no longer works at the provider.
    let state = app.state.integrations.load(&id).await?;
    let adapter = app.state.connections.adapter(&state)?;
    let exchanges = count(&sandbox, provider.token_endpoint);
    assert!(
        adapter.refresh(&refresh).await.is_err(),
        "refresh after revoke"
    );
    assert_eq!(count(&sandbox, provider.token_endpoint), exchanges + 1);

    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &admin).await?;
    audit.expect(StatusCode::OK);
    for action in [
        "IntegrationCreated",
        "CredentialsStored",
        "ConnectionTested",
        "IntegrationDisconnected",
    ] {
        assert!(
            audit.text.contains(&format!("\"{action}\"")),
            "no {action} in {}",
            audit.text
        );
    }
    assert!(audit.text.contains("oauth-callback"), "{}", audit.text);
    for token in [&access, &refresh] {
        assert!(
            !audit.text.contains(token.as_str()),
            "token in the audit trail"
        );
    }
    sandbox.shutdown().await;
    app.finish().await
}

/// Other providers, viewers and a missing entity are refused without touching anything.
async fn connect_refusals(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    // A provider reached with an API key has no OAuth flow to start.
    let spec = json!({"base_url": "https://api.example.com", "auth": {"type": "api_key", "header": "X-Key"},
        "contacts": {"list": {"path": "/contacts", "records_path": "items", "id_path": "id",
            "updated_at_path": "updated"}}});
    let body =
        json!({"provider": "tave", "name": "Pipes", "sync_config": sync_config(), "spec": spec});
    let resp = app.post("/v1/integrations", &admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let pipes = resp.str("id")?;
    let hubspot = app.create_integration(&admin, "Hub").await?;
    let events = app.event_count().await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{pipes}/connect"), &admin)
        .await?;
    resp.expect_error(
        StatusCode::BAD_REQUEST,
        "unsupported",
        "connects with an API key",
    );
    let (_, viewer) = app.issue_token("viewer").await?;
    let events = events + 1;
    let resp = app
        .post_empty(&format!("/v1/integrations/{hubspot}/connect"), &viewer)
        .await?;
    resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    let resp = app
        .get(&format!("/v1/integrations/{hubspot}/fields"), &viewer)
        .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "entity");
    let resp = app
        .get(
            &format!("/v1/integrations/{hubspot}/fields?entity=contacts"),
            &viewer,
        )
        .await?;
    resp.expect_error(StatusCode::CONFLICT, "not_connected", "");
    let resp = app.get("/v1/oauth/callback?code=abc", "").await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "invalid_state", "");
    assert_eq!(app.event_count().await?, events);
    app.finish().await
}
