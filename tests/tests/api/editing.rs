//! `PATCH /v1/integrations/{id}`: the name (unique in the workspace), the sync
//! configuration, the base URL and a custom spec (validated as at creation), all or
//! nothing. Credentials survive an endpoint change only when they would go to no new
//! host.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};
use syncledger_testkit::app::{on_both_backends, send, sync_config, Backend, Resp, TestApp};

use super::custom::spec;

on_both_backends!(
    renames_are_unique_and_edits_all_or_nothing,
    endpoint_changes_keep_credentials_only_for_the_same_hosts
);

fn daily() -> Value {
    let mut config = sync_config();
    config["frequency"] = json!("daily");
    config.as_object_mut().map(|c| c.remove("interval_minutes"));
    config
}

async fn patch(app: &TestApp, id: &str, body: Value) -> anyhow::Result<Resp> {
    app.patch(&format!("/v1/integrations/{id}"), &app.admin, body)
        .await
}

async fn renames_are_unique_and_edits_all_or_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sales = app.create_integration(&app.admin, "Sales").await?;
    let support = app.create_integration(&app.admin, "Support").await?;
    let mut too_short = sync_config();
    too_short["interval_minutes"] = json!(5);

    // Each refusal names its cause and changes nothing, not even the parts that were valid.
    let before = app.snapshot().await?;
    let refused = [
        (json!({}), StatusCode::BAD_REQUEST, "at least one of name"),
        (
            json!({"name": " support "}),
            StatusCode::CONFLICT,
            "support",
        ),
        (json!({"name": "  "}), StatusCode::BAD_REQUEST, "name"),
        (
            json!({"name": "x".repeat(201)}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (json!({"nmae": "Typo"}), StatusCode::BAD_REQUEST, "nmae"),
        (
            json!({"name": "Support", "sync_config": daily()}),
            StatusCode::CONFLICT,
            "Support",
        ),
        (
            json!({"name": "Sales 2", "sync_config": too_short}),
            StatusCode::BAD_REQUEST,
            "interval",
        ),
        // A built-in adapter takes no spec; its base URL must pass the outbound policy.
        (
            json!({"name": "Sales 2", "spec": {"name": "x"}}),
            StatusCode::BAD_REQUEST,
            "spec",
        ),
        (
            json!({"base_url": "http://169.254.169.254/latest"}),
            StatusCode::BAD_REQUEST,
            "base_url",
        ),
    ];
    for (body, status, needle) in refused {
        let resp = patch(&app, &sales, body.clone()).await?;
        assert_eq!(resp.status, status, "{body}: {}", resp.text);
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message:?}");
    }
    assert_eq!(
        app.snapshot().await?,
        before,
        "a refused PATCH changed something"
    );

    // A rename and a new configuration in one change.
    let renamed = patch(
        &app,
        &sales,
        json!({"name": " Sales EU ", "sync_config": daily()}),
    )
    .await?;
    let body = renamed.expect(StatusCode::OK);
    assert_eq!(body["name"], "Sales EU", "{}", renamed.text);
    assert_eq!(
        body["sync_config"]["frequency"], "daily",
        "{}",
        renamed.text
    );
    let version = body["version"].as_i64().unwrap_or_default();
    // The same again changes nothing.
    let again = patch(&app, &sales, json!({"name": "Sales EU"})).await?;
    assert_eq!(again.expect(StatusCode::OK)["version"], version);

    // The old name is free; the new one is taken, whatever its case.
    app.create_integration(&app.admin, "Sales").await?;
    patch(&app, &support, json!({"name": "sales eu"}))
        .await?
        .expect_error(StatusCode::CONFLICT, "duplicate_name", "sales eu");

    // With If-Match, a rename applies only at the version it was based on.
    let path = format!("/v1/integrations/{support}");
    let read = app.get(&path, &app.admin).await?;
    let tag = format!("\"{}\"", read.body["version"]);
    let rename = |name: &str| {
        app.request(Method::PATCH, &path, &app.admin)
            .header("if-match", tag.clone())
            .json(&json!({"name": name}))
    };
    let first = send(rename("Help desk")).await?;
    assert_eq!(first.expect(StatusCode::OK)["name"], "Help desk");
    send(rename("Helpdesk")).await?.expect_error(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "",
    );
    let now = app.get(&path, &app.admin).await?;
    assert_eq!(now.body["name"], "Help desk", "{}", now.text);

    // The trail says who renamed what; the list shows the new names.
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    for action in [
        "IntegrationRenamed",
        "IntegrationSlotRenamed",
        "SyncConfigChanged",
    ] {
        assert!(audit.text.contains(action), "no {action} in {}", audit.text);
    }
    let list = app.get("/v1/integrations", &app.admin).await?;
    let mut names: Vec<&str> = list.expect(StatusCode::OK)["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default();
    names.sort_unstable();
    assert_eq!(names, ["Help desk", "Sales", "Sales EU"]);

    // A disconnected integration is not edited.
    app.delete(&format!("/v1/integrations/{sales}"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    patch(&app, &sales, json!({"name": "Back"}))
        .await?
        .expect_error(StatusCode::CONFLICT, "invalid_transition", "");
    app.finish().await
}

async fn endpoint_changes_keep_credentials_only_for_the_same_hosts(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let first = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let second = Sandbox::start_generic(GenericSandboxConfig::default()).await?;
    let key = GenericSandboxConfig::default().api_key;
    let auth = json!({"type": "api_key", "header": "X-Api-Key"});
    let body = json!({"provider": "tave", "name": "Studio", "sync_config": sync_config(),
        "spec": spec(&first.base_url(), auth.clone())});
    let created = app.post("/v1/integrations", &app.admin, body).await?;
    created.expect(StatusCode::CREATED);
    let id = created.str("id")?;
    app.set_api_key(&app.admin, &id, &key)
        .await?
        .expect(StatusCode::OK);
    assert_eq!(test(&app, &id).await?.expect(StatusCode::OK)["ok"], true);

    // A new spec on the same host keeps the key.
    let mut smaller_pages = spec(&first.base_url(), auth.clone());
    smaller_pages["contacts"]["pagination"]["limit"] = json!(20);
    let kept = patch(&app, &id, json!({"spec": smaller_pages})).await?;
    let body = kept.expect(StatusCode::OK);
    assert_eq!(body["status"], "connected", "{}", kept.text);
    assert_eq!(body["credential_kind"], "api_key", "{}", kept.text);
    assert_eq!(test(&app, &id).await?.expect(StatusCode::OK)["ok"], true);

    // A spec that does not validate changes nothing.
    let before = app.snapshot().await?;
    patch(&app, &id, json!({"spec": {"name": "no base"}}))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "spec");
    assert_eq!(app.snapshot().await?, before);

    // Another host: the key, given for the first one, is dropped before anything is sent.
    let asked_before = total(&second);
    let moved = patch(&app, &id, json!({"base_url": second.base_url()})).await?;
    let body = moved.expect(StatusCode::OK);
    assert_eq!(body["status"], "pending_auth", "{}", moved.text);
    assert_eq!(body["credential_kind"], Value::Null, "{}", moved.text);
    assert_eq!(body["base_url"], json!(second.base_url()), "{}", moved.text);
    assert_eq!(
        total(&second),
        asked_before,
        "a request reached the new host"
    );
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    assert!(
        audit.text.contains("credentials were dropped"),
        "{}",
        audit.text
    );
    assert!(!audit.text.contains(&key), "the key in the audit trail");

    // Given again, the key works against the new host.
    app.set_api_key(&app.admin, &id, &key)
        .await?
        .expect(StatusCode::OK);
    assert_eq!(test(&app, &id).await?.expect(StatusCode::OK)["ok"], true);
    assert!(total(&second) > asked_before, "the new host was not asked");

    first.shutdown().await;
    second.shutdown().await;
    app.finish().await
}

/// The connection test's answer.
async fn test(app: &TestApp, id: &str) -> anyhow::Result<Resp> {
    app.post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await
}

/// Requests the sandbox has answered, outside its control API.
fn total(sandbox: &Sandbox) -> u64 {
    sandbox.counters().values().sum()
}
