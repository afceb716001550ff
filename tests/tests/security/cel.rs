//! Hostile CEL (issue 14, items 4 and 12): every expression of
//! `syncledger_testkit::hostile_cel` is sent as a field transform through a preview, a
//! mapping save and a sync run. Each is refused with a 400 or fails the records it is
//! applied to; nothing succeeds, nothing is created, and the server keeps answering.
//! Previews and proposals need a writing role.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_sandbox::{Sandbox, SandboxConfig};
use syncledger_testkit::app::{connect, send, wait_run, Backend, Options, TestApp};
use syncledger_testkit::hostile_cel::{expressions, Hostile};
use syncledger_testkit::sandbox;

/// An integration on the HubSpot sandbox, connected through the OAuth redirect.
async fn connected(app: &TestApp, sandbox: &Sandbox) -> anyhow::Result<String> {
    connect(
        app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "manual_review",
    )
    .await
}

fn mappings(source: &str) -> Value {
    json!([{"crm_field": "email", "app_field": "email", "direction": "pull",
            "transform": source}])
}

/// A 400 naming the expression's place, or a 200 whose every record failed.
fn refused_or_failed(resp: &syncledger_testkit::app::Resp, place: &str, hostile: &Hostile) -> bool {
    let what = format!("{} `{:.80}`", hostile.kind, hostile.source);
    if resp.status == StatusCode::BAD_REQUEST {
        assert!(resp.text.contains(place), "{what}: {}", resp.text);
        return true;
    }
    assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text);
    let records = resp.body["records"].as_array().cloned().unwrap_or_default();
    assert!(!records.is_empty(), "{what}: {}", resp.text);
    for r in &records {
        assert!(r["app"].is_null() && r["error"].is_string(), "{what}: {r}");
    }
    false
}

async fn preview(
    app: &TestApp,
    base: &str,
    body: Value,
) -> anyhow::Result<syncledger_testkit::app::Resp> {
    app.post(&format!("{base}/preview"), &app.admin, body).await
}

/// Starts a pull and waits until it has ended and its integration let it go.
async fn run(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    wait_run(app, &resp.str("id")?).await
}

async fn answers(app: &TestApp) -> anyhow::Result<()> {
    let resp = app.get("/v1/health", "").await?;
    assert_eq!(resp.status, StatusCode::OK, "the server keeps answering");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_expressions_are_refused_or_fail_their_records() -> anyhow::Result<()> {
    let opts = Options {
        provider_pacing: false,
        rate_limit_per_minute: 100_000,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, opts).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot_with(SandboxConfig {
        records: 4,
        rate_limit: None,
        ..SandboxConfig::default()
    })
    .await;
    let id = connected(&app, &sandbox).await?;
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    let hostile = expressions();
    assert!(hostile.len() >= 50, "{} expressions", hostile.len());
    let mut runs = 0;
    for h in &hostile {
        // A preview: as a transform, then as a filter.
        let body = json!({"mappings": mappings(&h.source), "filter": null, "limit": 4});
        let refused = refused_or_failed(
            &preview(&app, &base, body).await?,
            "mappings[0].transform",
            h,
        );
        let body = json!({"mappings": [], "filter": h.source, "limit": 4});
        refused_or_failed(&preview(&app, &base, body).await?, "filter", h);
        // A save: refused when the preview refused it, stored otherwise.
        let body = json!({"mappings": mappings(&h.source), "filter": null});
        let resp = send(app.request(Method::PUT, &base, &app.admin).json(&body)).await?;
        if refused {
            resp.expect_error(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "mappings[0].transform",
            );
        } else {
            resp.expect(StatusCode::OK);
            // A sync run: every contact fails its mapping (companies keep theirs).
            let ended = run(&app, &id).await?;
            let what = format!("{} `{:.80}`: {ended}", h.kind, h.source);
            assert_eq!(ended["failures_total"], 4, "{what}");
            for f in ended["failures"].as_array().into_iter().flatten() {
                assert_eq!(f["entity"], "contacts", "{what}");
                assert!(
                    f["error"].as_str().is_some_and(|e| e.contains("mapping 0")),
                    "{what}"
                );
            }
            runs += 1;
        }
        answers(&app).await?;
    }
    assert!(runs >= 10, "only {runs} expressions reached a sync run");
    sandbox.shutdown().await;
    app.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn previews_and_proposals_need_a_writing_role() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connected(&app, &sandbox).await?;
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    let (_, viewer) = app.issue_token("viewer").await?;
    for path in [format!("{base}/preview"), format!("{base}/auto")] {
        let resp = app.post_empty(&path, &viewer).await?;
        resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");
        // The role is checked before the body is read: a malformed one changes nothing.
        let resp = send(
            app.request(Method::POST, &path, &viewer)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await?;
        resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    }
    let (_, operator) = app.issue_token("operator").await?;
    for path in [format!("{base}/preview"), format!("{base}/auto")] {
        app.post_empty(&path, &operator)
            .await?
            .expect(StatusCode::OK);
    }
    sandbox.shutdown().await;
    app.finish().await
}
