//! Liveness and request correlation.

use reqwest::{Method, StatusCode};
use serde_json::json;
use syncledger_testkit::app::{send, Backend, TestApp};

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
