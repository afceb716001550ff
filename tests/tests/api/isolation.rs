//! Tenant isolation: workspace B's tokens cannot see or touch anything of workspace A.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_domain::Plan;
use syncledger_testkit::app::{on_both_backends, sync_config, Backend, Sse, TestApp};

on_both_backends!(workspaces_are_isolated_on_every_endpoint);

async fn workspaces_are_isolated_on_every_endpoint(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let a = app.admin.clone();
    let b = app.new_workspace("Beta", Plan::Enterprise).await?;
    let a_int = app.create_integration(&a, "Shared Name").await?;
    app.set_api_key(&a, &a_int, "sk_live_a").await?;
    let (a_viewer_id, _) = app.issue_token("viewer").await?;
    let b_int = app.create_integration(&b.admin, "Shared Name").await?;
    let (_, b_operator) = app.issue_token_as(&b.admin, "operator").await?;
    let a_before = app.get(&format!("/v1/integrations/{a_int}"), &a).await?;
    let events_before = app.event_count().await?;

    // Every integration endpoint answers 404 to B, with admin and operator tokens alike.
    let one = format!("/v1/integrations/{a_int}");
    for token in [&b.admin, &b_operator] {
        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, one.clone(), None),
            (
                Method::PATCH,
                one.clone(),
                Some(json!({"sync_config": sync_config()})),
            ),
            (Method::DELETE, one.clone(), None),
            (Method::POST, format!("{one}/pause"), None),
            (Method::POST, format!("{one}/resume"), None),
            (
                Method::POST,
                format!("{one}/credentials"),
                Some(json!({"type": "api_key", "api_key": "sk_b"})),
            ),
        ];
        for (method, path, body) in attempts {
            let mut rb = app.request(method.clone(), &path, token);
            if let Some(body) = body {
                rb = rb.json(&body);
            }
            let resp = syncledger_testkit::app::send(rb).await?;
            resp.expect_error(StatusCode::NOT_FOUND, "not_found", "");
            assert!(!resp.text.contains(&a_int), "{method} {path} echoed A's id");
        }
    }
    let revoke = app
        .delete(&format!("/v1/tokens/{a_viewer_id}"), &b.admin)
        .await?;
    revoke.expect_error(StatusCode::NOT_FOUND, "not_found", "");
    assert_eq!(
        app.event_count().await?,
        events_before,
        "B's attempts wrote events"
    );
    let a_after = app.get(&format!("/v1/integrations/{a_int}"), &a).await?;
    assert_eq!(
        a_after.body, a_before.body,
        "B's attempts changed A's integration"
    );
    let a_tokens = app.list_all("/v1/tokens", &a, &[], 50).await?;
    let viewer = a_tokens.iter().find(|t| t["id"] == a_viewer_id.as_str());
    assert!(
        viewer.is_some_and(|t| t["revoked_at"].is_null()),
        "B revoked A's token"
    );

    // Lists show only B's own things.
    let b_list = app.list_all("/v1/integrations", &b.admin, &[], 1).await?;
    let ids: Vec<&Value> = b_list.iter().map(|i| &i["id"]).collect();
    assert_eq!(ids, vec![&json!(b_int)]);
    let b_tokens = app.list_all("/v1/tokens", &b.admin, &[], 50).await?;
    assert_eq!(b_tokens.len(), 2, "B's admin and operator only");
    assert!(b_tokens.iter().any(|t| t["id"] == b.admin_id.as_str()));
    for t in &a_tokens {
        assert!(!b_tokens.contains(t), "B sees A's token {t}");
    }
    app.caught_up().await;
    let b_audit = app.list_all("/v1/audit", &b.admin, &[], 500).await?;
    assert!(!b_audit.is_empty());
    for row in &b_audit {
        assert_eq!(row["workspace_id"], b.id.as_str(), "B sees {row}");
    }
    let filtered = app
        .list_all("/v1/audit", &b.admin, &[("integration_id", &a_int)], 50)
        .await?;
    assert!(
        filtered.is_empty(),
        "B filtered A's integration: {filtered:?}"
    );
    let b_verify = app.get("/v1/audit/verify", &b.admin).await?;
    assert_eq!(b_verify.body["ok"], true);
    assert_eq!(
        b_verify.body["checked"].as_u64(),
        Some(b_audit.len() as u64)
    );

    // B's event stream carries B's events and none of A's.
    let mut a_stream = Sse::open(&app, &a).await?;
    let mut b_stream = Sse::open(&app, &b.admin).await?;
    let a_new = app.create_integration(&a, "A only").await?;
    app.post_empty(&format!("/v1/integrations/{a_int}/pause"), &a)
        .await?;
    let b_new = app.create_integration(&b.admin, "B only").await?;
    a_stream
        .wait_for("IntegrationCreated for A's new integration", |e| {
            e.event == "IntegrationCreated" && e.data["aggregate_id"] == a_new.as_str()
        })
        .await?;
    // B's event was committed after A's, so once B sees it, A's would have arrived first.
    b_stream
        .wait_for("IntegrationCreated for B's new integration", |e| {
            e.event == "IntegrationCreated" && e.data["aggregate_id"] == b_new.as_str()
        })
        .await?;
    for e in &b_stream.seen {
        assert_eq!(
            e.data["workspace_id"],
            b.id.as_str(),
            "B's stream carried {}",
            e.raw
        );
        assert!(
            !e.raw.contains(&a_new) && !e.raw.contains(&a_int),
            "{}",
            e.raw
        );
    }
    for e in &a_stream.seen {
        assert_eq!(
            e.data["workspace_id"],
            app.workspace_id.as_str(),
            "{}",
            e.raw
        );
    }
    drop((a_stream, b_stream));

    // A's plan slots are not B's: B creating doesn't touch A's list.
    let a_list = app.list_all("/v1/integrations", &a, &[], 50).await?;
    assert_eq!(a_list.len(), 2);
    app.finish().await
}
