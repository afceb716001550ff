//! OAuth to the standards, end to end against an independent authorization server (the
//! generic JSON sandbox serving a custom spec): short-lived tokens refreshed at the
//! margin, connects without a refresh token reported, the callback's `iss` checked
//! (RFC 9207), non-Bearer tokens refused, revocation on disconnect (RFC 7009), a
//! briefly unavailable token endpoint ridden out and a longer outage failing the run
//! without asking anyone to reconnect, and spec refusals.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};
use syncledger_testkit::app::{approve, on_both_backends, send, wait_run, Backend, Resp, TestApp};

on_both_backends!(
    short_lived_tokens_are_refreshed_at_the_margin_not_before_every_request,
    a_connect_without_refresh_token_says_so,
    the_callback_issuer_is_checked,
    tokens_that_are_not_bearer_are_refused,
    disconnect_revokes_at_the_revocation_endpoint,
    an_unavailable_token_endpoint_is_retried_and_never_asks_to_reconnect,
    auth_refusals_name_the_key,
);

const TOKEN_ENDPOINT: &str = "POST /oauth/token";
/// The issuer the sandbox's spec names in these tests.
const ISSUER: &str = "https://auth.studio.example";

fn auth(base: &str) -> Value {
    json!({"type": "oauth2", "authorize_url": format!("{base}/oauth/authorize"),
        "token_url": format!("{base}/oauth/token"), "scopes": ["contacts"],
        "revocation_url": format!("{base}/oauth/revoke"),
        "authorization_params": {"prompt": "consent", "access_type": "offline"}})
}

fn spec(base: &str, auth: Value) -> Value {
    json!({"name": "Studio CRM", "base_url": base, "auth": auth,
        "contacts": {"list": {"path": "/cursor/contacts", "records_path": "data.items",
            "id_path": "id", "updated_at_path": "updated",
            "fields": {"email": "attributes.email", "first_name": "attributes.first_name"}},
          "pagination": {"type": "cursor", "param": "cursor", "cursor_path": "meta.next",
            "limit_param": "limit", "limit": 50}}})
}

async fn create(app: &TestApp, spec: Value) -> anyhow::Result<String> {
    let body = json!({"provider": "custom", "name": format!("studio {}", syncledger_testkit::app::random_hex()),
        "sync_config": {"direction": "pull", "frequency": "manual", "entities": ["contacts"],
                        "conflict_strategy": "crm_wins"},
        "spec": spec});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

/// Connect, approve at the sandbox, and follow the redirect to the API's callback.
async fn callback(app: &TestApp, id: &str) -> anyhow::Result<Resp> {
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let location = approve(&resp.str("authorization_url")?).await?;
    send(app.client.get(&location)).await
}

async fn connected(app: &TestApp, sandbox: &Sandbox) -> anyhow::Result<String> {
    let base = sandbox.base_url();
    let id = create(app, spec(&base, auth(&base))).await?;
    let resp = callback(app, &id).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    Ok(id)
}

async fn control(sandbox: &Sandbox, path: &str, body: Value) -> anyhow::Result<()> {
    let resp = reqwest::Client::new()
        .post(format!("{}/_sandbox/{path}", sandbox.base_url()))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    Ok(())
}

fn token_requests(sandbox: &Sandbox) -> u64 {
    sandbox.counters().get(TOKEN_ENDPOINT).copied().unwrap_or(0)
}

async fn integration(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

async fn test_ok(app: &TestApp, id: &str) -> anyhow::Result<()> {
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["ok"], true, "{}", resp.text);
    Ok(())
}

/// A 4-second token: calls in its first half use it as it is; a call past half its
/// life (the margin is min(5 min, lifetime / 2)) refreshes it once, before it
/// expires: not before every request, and not only after a 401.
async fn short_lived_tokens_are_refreshed_at_the_margin_not_before_every_request(
    backend: Backend,
) -> anyhow::Result<()> {
    const LIFETIME: Duration = Duration::from_secs(4);
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig {
        access_token_ttl_secs: LIFETIME.as_secs(),
        ..GenericSandboxConfig::default()
    })
    .await?;
    let base = sandbox.base_url();
    let id = create(&app, spec(&base, auth(&base))).await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let location = approve(&resp.str("authorization_url")?).await?;
    // The token is issued after this instant, so it cannot be due before LIFETIME / 2.
    let before_callback = Instant::now();
    let resp = send(app.client.get(&location)).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    let after_callback = Instant::now();
    assert_eq!(token_requests(&sandbox), 1, "the code exchange");
    let lists = |s: &Sandbox| {
        s.counters()
            .get("GET /cursor/contacts")
            .copied()
            .unwrap_or(0)
    };
    let lists_before = lists(&sandbox);
    // Call every 100 ms until the refresh shows; the deadline is well past expiry.
    let mut calls = 0;
    let refreshed_by = loop {
        test_ok(&app, &id).await?;
        calls += 1;
        if token_requests(&sandbox) > 1 {
            break Instant::now();
        }
        assert!(
            after_callback.elapsed() < LIFETIME * 2,
            "never refreshed ({calls} calls)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(token_requests(&sandbox), 2, "one refresh");
    assert!(calls >= 2, "the first calls used the token as it was");
    assert!(
        refreshed_by - before_callback >= LIFETIME / 2,
        "refreshed before the margin: {:?}",
        refreshed_by - before_callback
    );
    // Every call reached the sandbox once: none was refused with an expired token
    // (which would have cost a second request), so the refresh came before expiry.
    assert_eq!(lists(&sandbox) - lists_before, calls);
    sandbox.shutdown().await;
    app.finish().await
}

/// The callback's answer and the audit trail say whether a refresh token was issued.
async fn a_connect_without_refresh_token_says_so(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    for refresh_tokens in [false, true] {
        let sandbox = Sandbox::start_generic(GenericSandboxConfig {
            refresh_tokens,
            ..GenericSandboxConfig::default()
        })
        .await?;
        let base = sandbox.base_url();
        let id = create(&app, spec(&base, auth(&base))).await?;
        let resp = callback(&app, &id).await?;
        let body = resp.expect(StatusCode::OK);
        assert_eq!(body["status"], "connected", "{}", resp.text);
        assert_eq!(body["refresh_token"], refresh_tokens, "{}", resp.text);
        assert_eq!(body["id"], id.as_str());
        sandbox.shutdown().await;
    }
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    let rows = audit.expect(StatusCode::OK)["data"].clone();
    let stored: Vec<&str> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["action"] == "CredentialsStored")
        .filter_map(|r| r["summary"].as_str())
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored
            .iter()
            .any(|s| s.contains("no refresh token was issued (refresh_token: false)")),
        "{stored:?}"
    );
    assert!(
        stored.iter().any(|s| s.ends_with("; with a refresh token")),
        "{stored:?}"
    );
    app.finish().await
}

/// RFC 9207: with an issuer in the spec, a callback naming another issuer, or none,
/// is refused and nothing is stored; the right one connects.
async fn the_callback_issuer_is_checked(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let cases = [
        (Some("https://evil.example"), "names another issuer"),
        (None, "does not name its issuer"),
    ];
    for (sent, needle) in cases {
        let sandbox = Sandbox::start_generic(GenericSandboxConfig {
            issuer: sent.map(String::from),
            ..GenericSandboxConfig::default()
        })
        .await?;
        let base = sandbox.base_url();
        let mut with_issuer = auth(&base);
        with_issuer["issuer"] = json!(ISSUER);
        let id = create(&app, spec(&base, with_issuer)).await?;
        callback(&app, &id)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "issuer_mismatch", needle);
        assert_eq!(integration(&app, &id).await?["status"], "pending_auth");
        assert_eq!(token_requests(&sandbox), 0, "the code was not used");
        sandbox.shutdown().await;
    }
    let sandbox = Sandbox::start_generic(GenericSandboxConfig {
        issuer: Some(ISSUER.into()),
        ..GenericSandboxConfig::default()
    })
    .await?;
    let base = sandbox.base_url();
    let mut with_issuer = auth(&base);
    with_issuer["issuer"] = json!(ISSUER);
    let id = create(&app, spec(&base, with_issuer)).await?;
    let resp = callback(&app, &id).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// A `mac` token at connect fails the connect with a reason; a `DPoP` token from a
/// refresh puts the integration in error with a reason. Neither is ever sent as Bearer.
async fn tokens_that_are_not_bearer_are_refused(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig {
        token_type: "mac".into(),
        ..GenericSandboxConfig::default()
    })
    .await?;
    let base = sandbox.base_url();
    let id = create(&app, spec(&base, auth(&base))).await?;
    callback(&app, &id).await?.expect_error(
        StatusCode::BAD_GATEWAY,
        "unsupported_token_type",
        "\"mac\"; only Bearer tokens are supported",
    );
    assert_eq!(integration(&app, &id).await?["status"], "pending_auth");
    let lists = |s: &Sandbox| {
        s.counters()
            .get("GET /cursor/contacts")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(lists(&sandbox), 0, "the token was never used");

    control(
        &sandbox,
        "oauth/token_type",
        json!({"token_type": "bearer"}),
    )
    .await?;
    let resp = callback(&app, &id).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        resp.text
    );
    control(&sandbox, "oauth/token_type", json!({"token_type": "DPoP"})).await?;
    control(&sandbox, "tokens/expire", json!({})).await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["ok"], false, "{}", resp.text);
    let view = integration(&app, &id).await?;
    assert_eq!(view["status"], "error", "{view}");
    let reason = view["last_error"].as_str().unwrap_or_default();
    let named = reason.to_ascii_lowercase().contains("\"dpop\"");
    assert!(named && reason.contains("reconnect"), "{reason}");
    sandbox.shutdown().await;
    app.finish().await
}

/// Disconnecting revokes the refresh token at the spec's revocation endpoint.
async fn disconnect_revokes_at_the_revocation_endpoint(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let base = sandbox.base_url();
    let id = create(&app, spec(&base, auth(&base))).await?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let url = resp.str("authorization_url")?;
    assert!(
        url.contains("prompt=consent") && url.contains("access_type=offline"),
        "{url}"
    );
    let resp = send(app.client.get(&approve(&url).await?)).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["refresh_token"],
        true,
        "{}",
        resp.text
    );
    let resp = app
        .delete(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "disconnected");
    let revoked: Value = reqwest::get(format!("{base}/_sandbox/oauth/revocations"))
        .await?
        .json()
        .await?;
    assert_eq!(
        revoked,
        json!([{"token_type_hint": "refresh_token", "refresh_token": true, "access_token": false}])
    );
    sandbox.shutdown().await;
    app.finish().await
}

async fn full_run(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    resp.expect(StatusCode::CREATED);
    wait_run(app, &resp.str("id")?).await
}

/// A token endpoint answering 503 twice is ridden out; one that answers 503 to every
/// retry fails the run, but the integration stays connected (no "reconnect"), and
/// the next run works once the server is back.
async fn an_unavailable_token_endpoint_is_retried_and_never_asks_to_reconnect(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let id = connected(&app, &sandbox).await?;
    control(&sandbox, "oauth/errors", json!({"status": 503, "count": 2})).await?;
    control(&sandbox, "tokens/expire", json!({})).await?;
    let run = full_run(&app, &id).await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        token_requests(&sandbox),
        4,
        "exchange, two 503s, the refresh"
    );

    // Longer than every retry (the custom provider retries 5 times).
    let queued = json!({"status": 400, "error": "temporarily_unavailable", "count": 6});
    control(&sandbox, "oauth/errors", queued).await?;
    control(&sandbox, "tokens/expire", json!({})).await?;
    let run = full_run(&app, &id).await?;
    assert_eq!(run["status"], "failed", "{run}");
    let view = integration(&app, &id).await?;
    assert_eq!(view["status"], "connected", "{view}");
    assert_eq!(view["last_error"], Value::Null, "{view}");
    assert_eq!(token_requests(&sandbox), 10);
    let run = full_run(&app, &id).await?;
    assert_eq!(run["status"], "completed", "{run}");
    sandbox.shutdown().await;
    app.finish().await
}

/// Unknown `auth` keys and extra parameters that would override the protocol: 400
/// naming them, nothing created.
async fn auth_refusals_name_the_key(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let events = app.event_count().await?;
    let base = "http://127.0.0.1:9";
    let mut typo = auth(base);
    typo["scope"] = json!("contacts");
    let mut state = auth(base);
    state["authorization_params"] = json!({"state": "fixed"});
    let cases = [
        (typo, "auth: unknown field `scope`"),
        (
            state,
            "auth.authorization_params.state: is set by the OAuth flow",
        ),
    ];
    for (auth, needle) in cases {
        let body = json!({"provider": "custom", "name": "refused",
            "sync_config": {"direction": "pull", "frequency": "manual", "entities": ["contacts"],
                            "conflict_strategy": "crm_wins"},
            "spec": spec(base, auth)});
        let resp = app.post("/v1/integrations", &app.admin, body).await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
        assert!(resp.text.contains("spec: "), "{}", resp.text);
    }
    assert_eq!(app.event_count().await?, events, "nothing written");
    app.finish().await
}
