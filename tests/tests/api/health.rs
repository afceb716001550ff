//! Liveness, readiness and request correlation.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use syncledger_testkit::app::{on_both_backends, send, Backend, Options, TestApp};
use syncledger_testkit::nats::require_nats;
use syncledger_testkit::own_pg::OwnPg;
use syncledger_testkit::wait::wait_until;

on_both_backends!(ready_answers_with_every_part);

/// The parts a readiness answer names, and whether each is ready.
fn parts(body: &Value) -> Vec<(String, bool)> {
    body["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .map(|c| {
                    (
                        c["part"].as_str().unwrap_or_default().to_string(),
                        c["ready"] == json!(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Without a token: the store and every projection, each ready once caught up.
async fn ready_answers_with_every_part(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    app.create_integration(&app.admin, "Ready").await?;
    app.caught_up().await;
    let resp = app.get("/v1/ready", "").await?;
    let body = resp.expect(StatusCode::OK).clone();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["failing"], json!([]), "{body}");
    let mut want = vec![("store".to_string(), true)];
    want.extend(
        syncledger_projections::names()
            .into_iter()
            .map(|n| (format!("projection {n}"), true)),
    );
    assert_eq!(parts(&body), want, "{body}");
    app.finish().await
}

/// With NATS configured, its connection is one of the parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_checks_nats_when_configured() -> anyhow::Result<()> {
    let Some(nats_url) = require_nats().await else {
        return Ok(());
    };
    let opts = Options {
        nats_url: Some(nats_url),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, opts).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/ready", "").await?;
    let body = resp.expect(StatusCode::OK).clone();
    assert!(parts(&body).contains(&("nats".to_string(), true)), "{body}");
    app.finish().await
}

/// A database that goes away: liveness still answers, readiness answers 503 naming the
/// store (within its 2 s bound), and is ready again once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_is_down_is_not_ready() -> anyhow::Result<()> {
    let Some(pg) = OwnPg::start()? else {
        return Ok(());
    };
    let opts = Options {
        database_url: Some(pg.url()),
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Postgres, opts).await? else {
        return Ok(());
    };
    app.get("/v1/ready", "").await?.expect(StatusCode::OK);
    pg.kill()?;
    let ready = |want: StatusCode| {
        let app = &app;
        async move {
            app.get("/v1/ready", "")
                .await
                .is_ok_and(|r| r.status == want)
        }
    };
    wait_until(
        Duration::from_secs(60),
        "readiness fails with the store down",
        || ready(StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    let resp = app.get("/v1/ready", "").await?;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text
    );
    assert_eq!(resp.body["status"], "not_ready");
    assert!(
        resp.body["failing"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("store"))),
        "{}",
        resp.text
    );
    assert!(!resp.text.contains("password") && !resp.text.contains(&pg.url()));
    app.get("/v1/health", "").await?.expect(StatusCode::OK);
    pg.up()?;
    wait_until(
        Duration::from_secs(60),
        "ready again with the store back",
        || ready(StatusCode::OK),
    )
    .await;
    app.finish().await
}

#[tokio::test]
async fn health_answers_without_a_token() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let resp = app.get("/v1/health", "").await?;
    assert_eq!(resp.expect(StatusCode::OK), &json!({"status": "ok"}));
    let ctype = resp.headers.get("content-type").map(|v| v.to_str());
    assert!(matches!(ctype, Some(Ok(t)) if t.starts_with("application/json")));
    app.finish().await
}

#[tokio::test]
async fn request_id_is_echoed_or_minted() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let given = app
        .request(Method::GET, "/v1/health", "")
        .header("x-request-id", "req-abc-123");
    let resp = send(given).await?;
    assert_eq!(resp.headers["x-request-id"], "req-abc-123");
    // An id that is not sane (spaces, too long) is replaced by a fresh one.
    let bad = app
        .request(Method::GET, "/v1/health", "")
        .header("x-request-id", "not a sane id");
    let minted = send(bad).await?.headers["x-request-id"]
        .to_str()?
        .to_string();
    assert!(!minted.is_empty() && minted != "not a sane id", "{minted}");
    app.finish().await
}

#[tokio::test]
async fn unknown_endpoint_is_a_json_404() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    for path in ["/v1/nope", "/nope", "/v2/health"] {
        let resp = app.get(path, &app.admin).await?;
        resp.expect_error(StatusCode::NOT_FOUND, "not_found", "");
    }
    app.finish().await
}
