//! Integrations: lifecycle, paging, plan limits and unique names.

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_domain::Plan;
use syncledger_testkit::app::{
    integration_body, on_both_backends, sync_config, Backend, Resp, TestApp,
};

on_both_backends!(
    lifecycle,
    list_pages_with_cursors,
    plans_cap_active_integrations,
    duplicate_names_are_refused
);

/// The version after a command is one more than before it.
fn next_version(resp: &Resp, before: i64) -> i64 {
    let version = resp.body["version"].as_i64().unwrap_or_default();
    assert_eq!(version, before + 1, "version after {}", resp.text);
    version
}

async fn lifecycle(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let created = app
        .post("/v1/integrations", &admin, integration_body("Main HubSpot"))
        .await?;
    let body = created.expect(StatusCode::CREATED).clone();
    assert_eq!(body["status"], "pending_auth");
    assert_eq!(body["provider"], "hubspot");
    assert_eq!(body["name"], "Main HubSpot");
    // What was sent, with the deletion setting's default.
    let mut expected = sync_config();
    expected["on_crm_delete"] = json!("archive_record");
    expected["on_app_archive"] = json!("nothing");
    assert_eq!(body["sync_config"], expected);
    assert_eq!(body["credential_kind"], Value::Null);
    let id = created.str("id")?;
    let path = format!("/v1/integrations/{id}");
    let mut version = next_version(&created, 0);

    let fetched = app.get(&path, &admin).await?;
    assert_eq!(
        fetched.expect(StatusCode::OK),
        &body,
        "GET equals the 201 body"
    );

    let config = json!({
        "direction": "pull",
        "frequency": "daily",
        "entities": ["contacts"],
        "conflict_strategy": "last_write_wins",
        "on_crm_delete": "unlink",
        "on_app_archive": "nothing"
    });
    let patched = app
        .patch(&path, &admin, json!({"sync_config": config}))
        .await?;
    assert_eq!(patched.expect(StatusCode::OK)["sync_config"], config);
    version = next_version(&patched, version);
    assert_eq!(app.get(&path, &admin).await?.body["sync_config"], config);

    let key = format!("sk_live_{}", syncledger_testkit::app::random_hex());
    let connected = app.set_api_key(&admin, &id, &key).await?;
    assert_eq!(connected.body["status"], "connected");
    assert_eq!(connected.body["credential_kind"], "api_key");
    assert!(
        !connected.text.contains(&key),
        "the key came back: {}",
        connected.text
    );
    version = next_version(&connected, version);

    let paused = app.post_empty(&format!("{path}/pause"), &admin).await?;
    assert_eq!(paused.expect(StatusCode::OK)["status"], "paused");
    version = next_version(&paused, version);
    let again = app.post_empty(&format!("{path}/pause"), &admin).await?;
    again.expect_error(StatusCode::CONFLICT, "invalid_transition", "paused");

    let resumed = app.post_empty(&format!("{path}/resume"), &admin).await?;
    assert_eq!(resumed.expect(StatusCode::OK)["status"], "connected");
    version = next_version(&resumed, version);
    let again = app.post_empty(&format!("{path}/resume"), &admin).await?;
    again.expect_error(StatusCode::CONFLICT, "invalid_transition", "connected");

    let gone = app.delete(&path, &admin).await?;
    assert_eq!(gone.expect(StatusCode::OK)["status"], "disconnected");
    next_version(&gone, version);
    assert_eq!(app.get(&path, &admin).await?.body["status"], "disconnected");

    // A disconnected integration accepts nothing more.
    let before = app.snapshot().await?;
    let resume = app.post_empty(&format!("{path}/resume"), &admin).await?;
    resume.expect_error(StatusCode::CONFLICT, "invalid_transition", "disconnected");
    let pause = app.post_empty(&format!("{path}/pause"), &admin).await?;
    pause.expect_error(StatusCode::CONFLICT, "invalid_transition", "disconnected");
    let delete = app.delete(&path, &admin).await?;
    delete.expect_error(StatusCode::CONFLICT, "invalid_transition", "disconnected");
    let creds = json!({"type": "api_key", "api_key": "sk_live_other"});
    let creds = app
        .post(&format!("{path}/credentials"), &admin, creds)
        .await?;
    creds.expect_error(StatusCode::CONFLICT, "invalid_transition", "disconnected");
    let patch = app
        .patch(&path, &admin, json!({"sync_config": sync_config()}))
        .await?;
    patch.expect_error(StatusCode::CONFLICT, "invalid_transition", "disconnected");
    assert_eq!(
        app.snapshot().await?,
        before,
        "rejected commands changed something"
    );
    app.finish().await
}

async fn list_pages_with_cursors(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut created = Vec::new();
    for n in 1..=5 {
        created.push(
            app.create_integration(&app.admin, &format!("Paging {n}"))
                .await?,
        );
    }
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i["id"].as_str().map(str::to_string))
            .collect()
    };
    // One at a time, then two at a time: oldest first, every item exactly once.
    for limit in [1, 2, 5, 50] {
        let all = app
            .list_all("/v1/integrations", &app.admin, &[], limit)
            .await?;
        assert_eq!(ids(&all), created, "pages of {limit}");
    }
    let first = app.get("/v1/integrations?limit=2", &app.admin).await?;
    assert_eq!(
        first.expect(StatusCode::OK)["data"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let cursor = first.str("next_cursor")?;
    let last = app
        .get(
            &format!("/v1/integrations?limit=3&cursor={cursor}"),
            &app.admin,
        )
        .await?;
    assert_eq!(
        ids(last.body["data"].as_array().map_or(&[][..], |v| v)),
        created[2..]
    );
    assert_eq!(
        last.body["next_cursor"],
        Value::Null,
        "the last page has no cursor"
    );
    let everything = app.get("/v1/integrations", &app.admin).await?;
    assert_eq!(everything.body["next_cursor"], Value::Null);
    assert_eq!(everything.body["data"].as_array().map(Vec::len), Some(5));
    app.finish().await
}

async fn plans_cap_active_integrations(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    for (plan, limit) in [
        (Plan::Free, 0),
        (Plan::Starter, 1),
        (Plan::Professional, 3),
        (Plan::Scale, 5),
    ] {
        let ws = app
            .new_workspace(&format!("{plan} workspace"), plan)
            .await?;
        for n in 0..limit {
            app.create_integration(&ws.admin, &format!("{plan} {n}"))
                .await?;
        }
        let events = app.event_count().await?;
        let over = app
            .post(
                "/v1/integrations",
                &ws.admin,
                integration_body("one too many"),
            )
            .await?;
        over.expect_error(StatusCode::PAYMENT_REQUIRED, "plan_limit", plan.as_str());
        assert_eq!(
            app.event_count().await?,
            events,
            "a refused create wrote events"
        );
        let listed = app.list_all("/v1/integrations", &ws.admin, &[], 50).await?;
        assert_eq!(listed.len(), limit, "{plan}");
    }
    // The default workspace is on Enterprise: no cap.
    for n in 0..8 {
        app.create_integration(&app.admin, &format!("Enterprise {n}"))
            .await?;
    }

    // Disconnecting frees the slot.
    let starter = app.new_workspace("Starter again", Plan::Starter).await?;
    let first = app.create_integration(&starter.admin, "First").await?;
    let refused = app
        .post(
            "/v1/integrations",
            &starter.admin,
            integration_body("Second"),
        )
        .await?;
    refused.expect_error(StatusCode::PAYMENT_REQUIRED, "plan_limit", "");
    let path = format!("/v1/integrations/{first}");
    app.delete(&path, &starter.admin)
        .await?
        .expect(StatusCode::OK);
    app.create_integration(&starter.admin, "Second").await?;
    let third = app
        .post(
            "/v1/integrations",
            &starter.admin,
            integration_body("Third"),
        )
        .await?;
    third.expect_error(StatusCode::PAYMENT_REQUIRED, "plan_limit", "");
    app.finish().await
}

async fn duplicate_names_are_refused(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    app.create_integration(&app.admin, "Main HubSpot").await?;
    let before = app.snapshot().await?;
    for name in [
        "Main HubSpot",
        "main hubspot",
        "MAIN HUBSPOT",
        "  Main HubSpot  ",
    ] {
        let resp = app
            .post("/v1/integrations", &app.admin, integration_body(name))
            .await?;
        resp.expect_error(StatusCode::CONFLICT, "duplicate_name", name);
    }
    let mut other_provider = integration_body("main HUBSPOT");
    other_provider["provider"] = json!("salesforce");
    let resp = app
        .post("/v1/integrations", &app.admin, other_provider)
        .await?;
    resp.expect_error(StatusCode::CONFLICT, "duplicate_name", "");
    assert_eq!(
        app.snapshot().await?,
        before,
        "a refused create changed something"
    );

    // The same name is fine in another workspace.
    let other = app.new_workspace("Other", Plan::Enterprise).await?;
    app.create_integration(&other.admin, "Main HubSpot").await?;
    app.finish().await
}
