//! Chatwoot's signed webhooks end to end: the secret set with `PUT
//! /v1/integrations/{id}/webhook-secret` (never echoed), a signed `contact_updated`
//! starting an incremental run that brings the sandbox's change in, and every bad
//! delivery (forged, stale, from the future, replayed, without its headers, not JSON)
//! refused with nothing changed. Deliveries are signed here with `hmac`/`sha2`
//! directly, independently of the server's verifier.

use anyhow::Context;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;
use syncledger_sandbox::{Dialect, NicheSandboxConfig, Sandbox};
use syncledger_testkit::app::{
    captured_logs, on_both_backends, send, wait_run, Backend, Resp, TestApp,
};
use syncledger_testkit::random_hex;
use syncledger_testkit::wait::poll_until;

use crate::niche::{config, create, put_remote, remote, remote_id, stat};
use crate::sync::{records, run, runs_of};

on_both_backends!(
    a_signed_contact_updated_starts_a_run_that_brings_the_change_in,
    bad_chatwoot_deliveries_are_refused_and_change_nothing,
    the_webhook_secret_is_for_chatwoot_writers_only
);

fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Hook<'a> {
    signature: Option<String>,
    timestamp: Option<String>,
    delivery: Option<String>,
    body: &'a str,
}

impl<'a> Hook<'a> {
    /// A delivery signed with `secret` at `ts`.
    fn signed(secret: &str, ts: i64, body: &'a str) -> Self {
        let ts = ts.to_string();
        Hook {
            signature: Some(sign(secret, &ts, body)),
            timestamp: Some(ts),
            delivery: Some(uuid::Uuid::new_v4().to_string()),
            body,
        }
    }
}

async fn deliver(app: &TestApp, id: &str, hook: &Hook<'_>) -> anyhow::Result<Resp> {
    let mut rb = app
        .client
        .post(app.url(&format!("/v1/webhooks/chatwoot/{id}")))
        .header("content-type", "application/json")
        .body(hook.body.to_owned());
    for (name, value) in [
        ("X-Chatwoot-Signature", &hook.signature),
        ("X-Chatwoot-Timestamp", &hook.timestamp),
        ("X-Chatwoot-Delivery", &hook.delivery),
    ] {
        if let Some(value) = value {
            rb = rb.header(name, value);
        }
    }
    send(rb).await
}

/// A Chatwoot integration on a fresh sandbox, fully imported, with its webhook secret.
async fn connected(app: &TestApp, secret: &str) -> anyhow::Result<(Sandbox, String)> {
    let sandbox = Sandbox::start_niche(NicheSandboxConfig::new(Dialect::Chatwoot)).await?;
    let key = NicheSandboxConfig::new(Dialect::Chatwoot).api_key;
    let mut sync_config = config(&["contacts"]);
    sync_config["frequency"] = json!("realtime");
    let body = json!({"provider": "chatwoot", "name": "Support desk", "base_url": sandbox.base_url(),
        "parameters": {"account_id": "7"}, "sync_config": sync_config});
    let id = create(app, body, &key).await?;
    let full = run(app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    let set = send(
        app.request(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{id}/webhook-secret"),
            &app.admin,
        )
        .json(&json!({"secret": secret})),
    )
    .await?;
    set.expect(StatusCode::OK);
    assert!(
        !set.text.contains(secret),
        "the secret echoed: {}",
        set.text
    );
    Ok((sandbox, id))
}

fn contact_updated(remote_id: &str) -> String {
    json!({"event": "contact_updated", "id": remote_id.parse::<u64>().unwrap_or(0),
           "changed_attributes": [{"name": {"previous_value": "x", "current_value": "y"}}]})
    .to_string()
}

async fn a_signed_contact_updated_starts_a_run_that_brings_the_change_in(
    backend: Backend,
) -> anyhow::Result<()> {
    let logs = captured_logs();
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let secret = format!("cwhook-{}", random_hex());
    let (sandbox, id) = connected(&app, &secret).await?;
    let provider = app.get("/v1/providers/chatwoot", &app.admin).await?;
    let webhooks = provider.expect(StatusCode::OK)["webhooks"].clone();
    assert!(
        webhooks
            .as_str()
            .is_some_and(|w| w.contains("contact_updated")),
        "{webhooks}"
    );

    // A contact changes in Chatwoot; its webhook says so.
    let listed = records(&app, &id, "contacts").await?;
    let changed_id = remote_id(&listed[0])?;
    let mut contact: Value = remote(&sandbox, &changed_id).await?;
    contact["name"] = json!("Renamed By Webhook");
    put_remote(&sandbox, contact).await?;
    let body = contact_updated(&changed_id);
    let hook = Hook::signed(&secret, chrono::Utc::now().timestamp(), &body);
    deliver(&app, &id, &hook)
        .await?
        .expect(StatusCode::NO_CONTENT);

    let webhook_run = poll_until(Duration::from_secs(20), "a webhook run", || async {
        let runs = runs_of(&app, &id).await.map_err(|e| e.to_string())?;
        runs.into_iter()
            .find(|r| r["trigger"] == "webhook")
            .ok_or_else(|| "no webhook run yet".to_owned())
    })
    .await;
    assert_eq!(webhook_run["kind"], "incremental", "{webhook_run}");
    let done = wait_run(&app, webhook_run["id"].as_str().context("id")?).await?;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(stat(&done, "updated"), 1, "{done}");
    let record = app
        .get(
            &format!("/v1/records/{}", listed[0]["id"].as_str().context("id")?),
            &app.admin,
        )
        .await?;
    assert!(
        record.text.contains("Renamed By Webhook"),
        "the change is not in the record: {}",
        record.text
    );

    // The same delivery again (a replay, even re-sent at once) is refused.
    let runs = runs_of(&app, &id).await?.len();
    let events = app.event_count().await?;
    deliver(&app, &id, &hook).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "replayed_delivery",
        "already accepted",
    );
    assert_eq!(
        app.event_count().await?,
        events,
        "a replay changed something"
    );
    assert_eq!(runs_of(&app, &id).await?.len(), runs);

    // The secret is in no answer, audit line or log line.
    let view = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    for text in [&view.text, &audit.text] {
        assert!(!text.contains(&secret), "the secret in an answer");
    }
    assert!(audit.text.contains("webhook secret set"), "{}", audit.text);
    let logged = String::from_utf8_lossy(&logs.lock().map_err(|_| anyhow::anyhow!("log lock"))?)
        .into_owned();
    assert!(!logged.contains(&secret), "the secret in the logs");
    sandbox.shutdown().await;
    app.finish().await
}

async fn bad_chatwoot_deliveries_are_refused_and_change_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let secret = format!("cwhook-{}", random_hex());
    let (sandbox, id) = connected(&app, &secret).await?;
    let events = app.event_count().await?;
    let runs = runs_of(&app, &id).await?.len();
    let now = chrono::Utc::now().timestamp();
    let body = contact_updated("1");

    let forged = Hook::signed("not-the-secret", now, &body);
    let stale = Hook::signed(&secret, now - 6 * 60, &body);
    let future = Hook::signed(&secret, now + 6 * 60, &body);
    let mut other_body = Hook::signed(&secret, now, &body);
    other_body.body = "{}";
    let mut cases = vec![
        ("forged", forged, "signature"),
        ("stale", stale, "5 minutes"),
        ("future", future, "5 minutes"),
        ("another body", other_body, "signature"),
    ];
    for missing in 0..3 {
        let mut hook = Hook::signed(&secret, now, &body);
        match missing {
            0 => hook.signature = None,
            1 => hook.timestamp = None,
            _ => hook.delivery = None,
        }
        cases.push(("a header missing", hook, "missing"));
    }
    // Signed over a timestamp, sent with another (the signature binds it).
    let mut moved = Hook::signed(&secret, now, &body);
    moved.timestamp = Some((now + 1).to_string());
    cases.push(("timestamp moved", moved, "signature"));
    for (what, hook, needle) in &cases {
        let resp = deliver(&app, &id, hook).await?;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.text
        );
        resp.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature", needle);
    }
    // An integration that does not exist looks like one without a webhook.
    let good = Hook::signed(&secret, now, &body);
    deliver(&app, "no-such-integration", &good)
        .await?
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature", "no webhook");
    // Signed, but not JSON: 400, and the delivery is not used up by it.
    let mut junk = Hook::signed(&secret, now, "not json");
    deliver(&app, &id, &junk).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "JSON",
    );
    junk.body = "still not json";
    deliver(&app, &id, &junk).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "signature",
    );
    assert_eq!(
        app.event_count().await?,
        events,
        "a refusal changed something"
    );
    assert_eq!(
        runs_of(&app, &id).await?.len(),
        runs,
        "a refusal started a run"
    );
    // Regression: the 400 did not use the delivery id up (it was remembered before the
    // body was checked): the sender's corrected delivery under that id is accepted.
    let mut corrected = Hook::signed(&secret, now, &body);
    corrected.delivery = junk.delivery.clone();
    deliver(&app, &id, &corrected)
        .await?
        .expect(StatusCode::NO_CONTENT);
    let webhook_run = poll_until(Duration::from_secs(20), "a webhook run", || async {
        let runs = runs_of(&app, &id).await.map_err(|e| e.to_string())?;
        runs.into_iter()
            .find(|r| r["trigger"] == "webhook")
            .ok_or_else(|| "no webhook run yet".to_owned())
    })
    .await;
    wait_run(&app, webhook_run["id"].as_str().context("id")?).await?;
    sandbox.shutdown().await;
    app.finish().await
}

async fn the_webhook_secret_is_for_chatwoot_writers_only(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let put = |id: &str, token: &str, body: Value| {
        app.request(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{id}/webhook-secret"),
            token,
        )
        .json(&body)
    };
    // A provider whose webhooks are not received per integration: 400 naming it.
    let hubspot = app.create_integration(&app.admin, "HubSpot").await?;
    send(put(&hubspot, &app.admin, json!({"secret": "s3cret-value"})))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "webhooks");
    let (_, viewer) = app.issue_token("viewer").await?;
    let body = json!({"provider": "chatwoot", "name": "Desk", "parameters": {"account_id": "7"},
        "sync_config": config(&["contacts"])});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    let chatwoot = resp.expect(StatusCode::CREATED)["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let refused = send(put(&chatwoot, &viewer, json!({"secret": "s3cret-value"}))).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    send(put(&chatwoot, &app.admin, json!({"secret": ""})))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "secret");
    send(put(
        &chatwoot,
        &app.admin,
        json!({"secret": "x".repeat(257)}),
    ))
    .await?
    .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "secret");
    send(put(
        &chatwoot,
        &app.admin,
        json!({"secret": "ok", "extra": 1}),
    ))
    .await?
    .expect(StatusCode::BAD_REQUEST);
    // Without a secret nothing is accepted, however it is signed.
    let body = contact_updated("1");
    let hook = Hook::signed("", chrono::Utc::now().timestamp(), &body);
    deliver(&app, &chatwoot, &hook).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "no webhook",
    );
    app.finish().await
}
