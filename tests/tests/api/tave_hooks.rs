//! Tave's REST hooks end to end: they are unsigned and carry only the record's id, so
//! each integration gets a hook URL holding a random token (`POST
//! /v1/integrations/{id}/hook-url`, shown once). A `contact.created` to it starts an
//! incremental run that brings the new person in; a wrong token, or an integration
//! without a hook URL, is 401 and changes nothing; the token is in no log.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use syncledger_sandbox::{Dialect, NicheSandboxConfig, Sandbox};
use syncledger_testkit::app::{
    captured_logs, on_both_backends, send, wait_run, Backend, Resp, TestApp,
};
use syncledger_testkit::wait::poll_until;

use crate::niche::{config, create, put_remote, remote_id, stat};
use crate::sync::{records, run, runs_of};

on_both_backends!(a_tave_hook_with_its_token_starts_a_run_and_others_are_refused);

async fn post(app: &TestApp, url: &str, body: &str) -> anyhow::Result<Resp> {
    send(
        app.client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn a_tave_hook_with_its_token_starts_a_run_and_others_are_refused(
    backend: Backend,
) -> anyhow::Result<()> {
    let logs = captured_logs();
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut sandbox_config = NicheSandboxConfig::new(Dialect::Tave);
    sandbox_config.records = 4;
    let key = sandbox_config.api_key.clone();
    let sandbox = Sandbox::start_niche(sandbox_config).await?;
    let mut sync_config = config(&["contacts"]);
    sync_config["frequency"] = json!("realtime");
    let body = json!({"provider": "tave", "name": "Studio", "base_url": format!("{}/api/v2", sandbox.base_url()),
        "sync_config": sync_config});
    let id = create(&app, body, &key).await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    let before = records(&app, &id, "contacts").await?.len();
    let provider = app.get("/v1/providers/tave", &app.admin).await?;
    let webhooks = provider.expect(StatusCode::OK)["webhooks"].clone();
    assert!(
        webhooks.as_str().is_some_and(|w| w.contains("unsigned")),
        "{webhooks}"
    );

    // Before a hook URL is made, nothing is accepted.
    let guessed = app.url(&format!("/v1/webhooks/tave/{id}/slth_guess"));
    post(&app, &guessed, "{}").await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_secret",
        "token",
    );
    let made = app
        .post_empty(&format!("/v1/integrations/{id}/hook-url"), &app.admin)
        .await?;
    let url = made.expect(StatusCode::CREATED)["url"]
        .as_str()
        .context("url")?
        .to_owned();
    let token = url.rsplit('/').next().context("token")?.to_owned();
    assert!(token.starts_with("slth_") && token.len() > 40, "{url}");
    assert!(url.starts_with(&app.url(&format!("/v1/webhooks/tave/{id}/"))));

    // A person is added in Tave; the hook names only its id.
    let added = put_remote(
        &sandbox,
        json!({"kind": "person", "firstName": "Hooked", "lastName": "Client",
               "email": "hooked@example.org", "modified": "2030-01-01T00:00:00Z"}),
    )
    .await?;
    let events = app.event_count().await?;
    let runs = runs_of(&app, &id).await?.len();
    // Wrong tokens, another integration's id, not JSON: refused, nothing changes.
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('A') { 'B' } else { 'A' });
    let hook = json!({"event": "contact.created", "targetId": added["id"]}).to_string();
    for bad in [
        app.url(&format!("/v1/webhooks/tave/{id}/{wrong}")),
        app.url(&format!(
            "/v1/webhooks/tave/{id}/{}",
            &token[..token.len() - 1]
        )),
        app.url(&format!("/v1/webhooks/tave/no-such-integration/{token}")),
    ] {
        post(&app, &bad, &hook).await?.expect_error(
            StatusCode::UNAUTHORIZED,
            "invalid_secret",
            "token",
        );
    }
    post(&app, &url, "not json").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "JSON",
    );
    assert_eq!(
        app.event_count().await?,
        events,
        "a refusal changed something"
    );
    assert_eq!(runs_of(&app, &id).await?.len(), runs);

    let resp = post(&app, &url, &hook).await?;
    assert_eq!(resp.status, StatusCode::NO_CONTENT, "{}", resp.text);
    let webhook_run = poll_until(Duration::from_secs(20), "a webhook run", || async {
        let runs = runs_of(&app, &id).await.map_err(|e| e.to_string())?;
        runs.into_iter()
            .find(|r| r["trigger"] == "webhook")
            .ok_or_else(|| "no webhook run yet".to_owned())
    })
    .await;
    let done = wait_run(&app, webhook_run["id"].as_str().context("id")?).await?;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(stat(&done, "created"), 1, "{done}");
    let now = records(&app, &id, "contacts").await?;
    assert_eq!(now.len(), before + 1);
    assert!(
        now.iter()
            .any(|r| remote_id(r).ok().as_deref() == added["id"].as_str()),
        "the hooked person is not in the records"
    );

    // A new hook URL replaces the old one at once.
    let again = app
        .post_empty(&format!("/v1/integrations/{id}/hook-url"), &app.admin)
        .await?;
    again.expect(StatusCode::CREATED);
    post(&app, &url, &hook).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_secret",
        "token",
    );

    // The token is in no other answer, audit line or log line.
    let view = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    for text in [&view.text, &audit.text] {
        assert!(!text.contains(&token), "the token in an answer");
    }
    let logged = String::from_utf8_lossy(&logs.lock().map_err(|_| anyhow::anyhow!("log lock"))?)
        .into_owned();
    assert!(!logged.contains(&token), "the token in the logs");
    // A Chatwoot-style secret cannot be set on Tave (its URL token is made, not chosen).
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/integrations/{id}/webhook-secret"),
            &app.admin,
        )
        .json(&json!({"secret": "chosen-secret"}));
    send(put)
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "hook-url");
    sandbox.shutdown().await;
    app.finish().await
}
