//! What `serve` logs for a request: one access line at INFO in the request's span, with
//! method, route template, status, latency, request id, workspace and token id (never the
//! token), and no colour codes when stderr is not a terminal.

use syncledger_testkit::binary::TestEnv;

#[tokio::test]
async fn each_request_has_one_access_line_with_its_request_id() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/v1/integrations?limit=5", server.url))
        .bearer_auth(&ws.token)
        .header("x-request-id", "req-access-7f3a")
        .send()
        .await
        .expect("GET /v1/integrations");
    assert!(resp.status().is_success());
    let correlation = resp
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(!correlation.is_empty());
    let stopped = server.stop_ok().await;
    let logs = stopped.stderr;
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes into a pipe:\n{logs}"
    );

    let token_id = ws.token.split('_').nth(1).unwrap_or_default();
    let secret = ws.token.rsplit('_').next().unwrap_or_default();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&correlation) && l.contains(" request "))
        .collect();
    assert_eq!(lines.len(), 1, "one access line for the request:\n{logs}");
    let line = lines[0];
    for part in [
        " INFO ",
        "method=GET",
        "route=/v1/integrations",
        "status=200",
        "latency_ms=",
        &format!("workspace={}", ws.id),
        &format!("token_id={token_id}"),
    ] {
        assert!(line.contains(part), "{part} in the access line: {line}");
    }
    assert!(
        !line.contains("limit=5"),
        "the route template, not the query: {line}"
    );
    assert!(!logs.contains(secret), "the token's secret is in the logs");
}
