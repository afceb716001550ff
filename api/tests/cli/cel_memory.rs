//! Hostile CEL against the real binary (issue 14, item 4): the server's peak resident
//! memory (`VmHWM`) grows by less than 200 MB over a barrage of hostile expressions sent
//! through previews and mapping saves, and it keeps answering.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_testkit::binary::{Server, TestEnv};

use syncledger_testkit::hostile_cel;

const MAX_GROWTH_KB: u64 = 200 * 1024;

/// The peak resident set of `pid`, in kB.
fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// Connects `id` through the sandbox's OAuth approval, as a browser would.
async fn connect(api: &syncledger_testkit::binary::Api, id: &str) {
    let text = api
        .expect(
            Method::POST,
            &format!("/v1/integrations/{id}/connect"),
            None,
            StatusCode::OK,
        )
        .await;
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let url = v["authorization_url"]
        .as_str()
        .expect("an authorization URL");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let approved = browser.get(url).send().await.expect("the sandbox approves");
    let callback = approved.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("a Location")
        .to_owned();
    let back = browser
        .get(callback)
        .send()
        .await
        .expect("the callback answers");
    assert_eq!(back.status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_cel_leaves_the_servers_memory_bounded() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Hostile").await;
    let sandbox = Server::start(env.command(&["sandbox", "hubspot", "--records", "10"])).await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let body = json!({"provider": "hubspot", "name": "CEL", "base_url": sandbox.url,
        "sync_config": {"direction": "pull", "frequency": "manual", "entities": ["contacts"],
                        "conflict_strategy": "crm_wins"}});
    let text = api
        .expect(
            Method::POST,
            "/v1/integrations",
            Some(&body),
            StatusCode::CREATED,
        )
        .await;
    let id = serde_json::from_str::<Value>(&text).expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    connect(&api, &id).await;
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    // Warm up with a harmless preview, then take the baseline.
    api.expect(
        Method::POST,
        &format!("{base}/preview"),
        Some(&json!({})),
        StatusCode::OK,
    )
    .await;
    let baseline = peak_kb(server.pid());
    let hostile = hostile_cel::expressions();
    for h in &hostile {
        let mappings = json!([{"crm_field": "email", "app_field": "email",
                               "direction": "pull", "transform": h.source}]);
        for (path, method, body) in [
            (
                format!("{base}/preview"),
                Method::POST,
                json!({"mappings": mappings, "filter": null}),
            ),
            (
                format!("{base}/preview"),
                Method::POST,
                json!({"mappings": [], "filter": h.source}),
            ),
            (
                base.clone(),
                Method::PUT,
                json!({"mappings": mappings, "filter": null}),
            ),
        ] {
            let (status, text) = api.send(method, &path, Some(&body)).await.expect("answers");
            assert!(
                matches!(status, StatusCode::OK | StatusCode::BAD_REQUEST),
                "{} `{:.60}`: {status} {text}",
                h.kind,
                h.source
            );
        }
        assert_eq!(api.health().await, StatusCode::OK);
    }
    let peak = peak_kb(server.pid());
    eprintln!(
        "hostile CEL: {} expressions, VmHWM {baseline} kB before, {peak} kB after, growth {} kB",
        hostile.len(),
        peak.saturating_sub(baseline)
    );
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH_KB,
        "peak memory grew from {baseline} kB to {peak} kB"
    );
    server.stop_ok().await;
    sandbox.stop().await;
}
