//! Zoho CRM end to end through the API against the Zoho sandbox: connect through OAuth
//! (the callback's `accounts-server`, the token's `api_domain`), a full run, an
//! incremental run across records sharing one `Modified_Time`, a deletion, an app edit
//! pushed to Zoho, a 429 storm that ends well, exhausted API credits, and a refresh
//! made once for concurrent callers without rotating the refresh token.

use anyhow::Context;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use syncledger_sandbox::{Sandbox, ZohoSandboxConfig};
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};
use syncledger_vault::Sealed;

use crate::sync::{connect, records, run};

on_both_backends!(zoho_end_to_end, zoho_hostile_accounts_server);

/// The seeded contacts' last `Modified_Time`: 30 contacts in groups of 10, one minute
/// apart from 2024-01-01T00:00:00Z.
const LAST_SEEDED: &str = "2024-01-01T00:02:00Z";

async fn control(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Value) -> Value {
    let url = format!("{}/_sandbox/{path}", sandbox.base_url());
    let resp = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("the control API answers");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn count(sandbox: &Sandbox, key: &str) -> u64 {
    sandbox.counters().get(key).copied().unwrap_or(0)
}

fn field<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["fields"][name]["value"].as_str()
}

fn remote_id(record: &Value) -> anyhow::Result<&str> {
    record["links"][0]["remote_id"]
        .as_str()
        .context("a link to Zoho")
}

/// The refresh token the integration holds (test-only access to the vault).
async fn stored_refresh(app: &TestApp, id: &str) -> anyhow::Result<String> {
    let agg = app.state.integrations.load(id).await?;
    let secret = agg.secret.context("stored credentials")?;
    let sealed = Sealed {
        key_id: secret.key_id,
        nonce: secret.nonce,
        ciphertext: secret.ciphertext,
    };
    let plain = app.state.vault.open(&app.workspace_id, &sealed).await?;
    let v: Value = serde_json::from_slice(plain.expose_secret())?;
    v["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .context("a refresh token")
}

async fn zoho_end_to_end(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_zoho(ZohoSandboxConfig {
        records: 30,
        same_timestamp_group: 10,
        ..ZohoSandboxConfig::default()
    })
    .await?;
    let id = connect(
        &app,
        "zoho",
        &sandbox.base_url(),
        "bidirectional",
        "last_write_wins",
    )
    .await?;
    assert_eq!(count(&sandbox, "POST /oauth/v2/token"), 1);
    let integration = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(
        integration.expect(StatusCode::OK)["credential_kind"],
        "oauth2"
    );

    // A full run: every contact and account, the contacts' emails mapped.
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(full["stats"]["created"], 60, "{full}");
    let contacts = records(&app, &id, "contacts").await?;
    assert_eq!(contacts.len(), 30);
    assert!(contacts.iter().all(|c| field(c, "email").is_some()));
    assert_eq!(records(&app, &id, "companies").await?.len(), 30);

    // A contact created in the CRM in the same second as the last ones seen: the next
    // incremental run brings it, and only it.
    let boundary = control(
        &sandbox,
        reqwest::Method::POST,
        "records/Contacts",
        json!({"Last_Name": "Boundary", "Email": "boundary@example.com", "modified_at": LAST_SEEDED}),
    )
    .await;
    let incremental = run(&app, &id, "incremental").await?;
    assert_eq!(incremental["status"], "completed", "{incremental}");
    assert_eq!(incremental["stats"]["created"], 1, "{incremental}");
    assert_eq!(incremental["stats"]["updated"], 0, "{incremental}");
    let contacts = records(&app, &id, "contacts").await?;
    let arrived = contacts
        .iter()
        .find(|c| field(c, "email") == Some("boundary@example.com"))
        .context("the boundary contact")?;
    assert_eq!(Some(remote_id(arrived)?), boundary["id"].as_str());

    // A deletion in Zoho reaches the app.
    let gone = contacts
        .iter()
        .find(|c| field(c, "email") != Some("boundary@example.com"))
        .context("a contact")?;
    let gone_id = gone["id"].as_str().context("id")?;
    control(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("records/Contacts/{}", remote_id(gone)?),
        json!({}),
    )
    .await;
    let deletion = run(&app, &id, "incremental").await?;
    assert_eq!(deletion["status"], "completed", "{deletion}");
    let archived = app
        .get(&format!("/v1/records/{gone_id}"), &app.admin)
        .await?;
    assert_eq!(archived.body["archived"], true, "{}", archived.text);
    assert_eq!(archived.body["links"][0]["state"], "deleted_in_crm");

    // An app edit reaches Zoho.
    let edited = contacts
        .iter()
        .find(|c| c["id"] != gone["id"])
        .context("another contact")?;
    let edited_remote = remote_id(edited)?.to_owned();
    app.patch(
        &format!("/v1/records/{}", edited["id"].as_str().context("id")?),
        &app.admin,
        json!({"fields": {"phone": "+1 555 000 0042"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let push = run(&app, &id, "incremental").await?;
    assert_eq!(push["status"], "completed", "{push}");
    let stored = control(
        &sandbox,
        reqwest::Method::GET,
        &format!("records/Contacts/{edited_remote}"),
        Value::Null,
    )
    .await;
    assert_eq!(stored["Phone"], "+1 555 000 0042", "{stored}");

    // A storm of 429s: waited out, counted, and the run ends well.
    control(
        &sandbox,
        reqwest::Method::POST,
        "faults",
        json!({"kind": "status", "status": 429, "count": 3, "path_prefix": "/crm/v8/Contacts"}),
    )
    .await;
    let stormy = run(&app, &id, "incremental").await?;
    assert_eq!(stormy["status"], "completed", "{stormy}");
    assert!(
        stormy["stats"]["rate_limited"].as_u64() >= Some(3),
        "{stormy}"
    );

    // Concurrent callers after the access token expired: one refresh, and the refresh
    // token is the one Zoho issued at the start.
    let refresh_before = stored_refresh(&app, &id).await?;
    control(&sandbox, reqwest::Method::POST, "tokens/expire", json!({})).await;
    let tokens_before = count(&sandbox, "POST /oauth/v2/token");
    let path = format!("/v1/integrations/{id}/fields?entity=contacts");
    let (a, b) = tokio::join!(app.get(&path, &app.admin), app.get(&path, &app.admin));
    for resp in [a?, b?] {
        let body = resp.expect(StatusCode::OK);
        assert!(body["data"].as_array().is_some_and(|f| !f.is_empty()));
    }
    assert_eq!(count(&sandbox, "POST /oauth/v2/token"), tokens_before + 1);
    assert_eq!(stored_refresh(&app, &id).await?, refresh_before);

    // Exhausted API credits: the run says so, never "completed".
    control(
        &sandbox,
        reqwest::Method::POST,
        "credits",
        json!({"limit": 10, "used": 10}),
    )
    .await;
    let exhausted = run(&app, &id, "incremental").await?;
    assert_eq!(exhausted["status"], "quota_exhausted", "{exhausted}");
    app.finish().await
}

/// A callback naming a foreign accounts server is refused before any code is sent.
async fn zoho_hostile_accounts_server(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_zoho(ZohoSandboxConfig::default()).await?;
    control(
        &sandbox,
        reqwest::Method::POST,
        "oauth/hosts",
        json!({"accounts_server": "https://accounts.zoho.com.evil.example"}),
    )
    .await;
    let body = json!({"provider": "zoho", "name": "Zoho", "base_url": sandbox.base_url(),
        "sync_config": {"direction": "pull", "frequency": "manual",
                        "entities": ["contacts"], "conflict_strategy": "last_write_wins"}});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let callback = syncledger_testkit::app::approve(&resp.str("authorization_url")?).await?;
    assert!(callback.contains("accounts-server="), "{callback}");
    let refused = send(app.client.get(&callback)).await?;
    assert!(
        refused.status.is_client_error() || refused.status.is_server_error(),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("accounts-server"), "{}", refused.text);
    assert!(!refused.text.contains("evil"), "{}", refused.text);
    assert_eq!(count(&sandbox, "POST /oauth/v2/token"), 0);
    let view = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_ne!(view.expect(StatusCode::OK)["status"], "connected");
    app.finish().await
}
