//! Per-token rate limiting.

use reqwest::StatusCode;
use syncledger_testkit::app::{on_both_backends, Backend, Options, TestApp};

on_both_backends!(each_token_has_its_own_budget);

async fn each_token_has_its_own_budget(backend: Backend) -> anyhow::Result<()> {
    let opts = Options {
        rate_limit_per_minute: 5,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    // Request 1 of the admin's budget issues the second token.
    let (_, other) = app.issue_token("viewer").await?;
    for n in 2..=5 {
        let resp = app.get("/v1/integrations", &app.admin).await?;
        assert_eq!(resp.status, StatusCode::OK, "request {n}: {}", resp.text);
    }
    let events = app.event_count().await?;
    let sixth = app.get("/v1/integrations", &app.admin).await?;
    sixth.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "");
    // When to come back: 5 per minute refills one every 12 s.
    let header =
        |name: &str| -> Option<u64> { sixth.headers.get(name)?.to_str().ok()?.parse().ok() };
    let retry_after = header("retry-after").expect("a Retry-After header on the 429");
    assert!((1..=12).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header("ratelimit-limit"), Some(5));
    assert_eq!(header("ratelimit-remaining"), Some(0));
    assert_eq!(header("ratelimit-reset"), Some(retry_after));
    let write = app
        .post(
            "/v1/integrations",
            &app.admin,
            syncledger_testkit::app::integration_body("Limited"),
        )
        .await?;
    write.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "");
    assert_eq!(
        app.event_count().await?,
        events,
        "a rate-limited write went through"
    );

    // Another token of the same workspace still has its whole budget.
    for n in 1..=5 {
        let resp = app.get("/v1/integrations", &other).await?;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "other token, request {n}: {}",
            resp.text
        );
    }
    let resp = app.get("/v1/integrations", &other).await?;
    resp.expect_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "");
    // Unauthenticated endpoints are not charged to anyone, and bad tokens still get 401.
    app.get("/v1/health", "").await?.expect(StatusCode::OK);
    let bad = app.get("/v1/integrations", "slk_nope_nope").await?;
    bad.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    // RFC 6750: a 401 names the scheme it wants, with or without a token given.
    for resp in [bad, app.get("/v1/integrations", "").await?] {
        let challenge = resp
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"syncledger\""),
            "{challenge:?}"
        );
    }
    app.finish().await
}
