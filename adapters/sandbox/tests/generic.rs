//! The generic JSON sandbox's wire behaviour, spoken to with plain HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{pkce_s256, GenericSandboxConfig, Sandbox};

async fn sandbox() -> Sandbox {
    Sandbox::start_generic(GenericSandboxConfig {
        records: 12,
        ..GenericSandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn unauthenticated_calls_get_a_json_401() {
    let sandbox = sandbox().await;
    let response = client()
        .get(format!("{}/cursor/contacts", sandbox.base_url()))
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("json body");
    assert_eq!(body["code"], "unauthorized");
}

#[tokio::test]
async fn cursor_pages_chain_and_end() {
    let sandbox = sandbox().await;
    let base = sandbox.base_url();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut request = client()
            .get(format!("{base}/cursor/contacts"))
            .query(&[("limit", "5"), ("api_key", "sandbox-key")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let body: Value = request
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        for item in body["data"]["items"].as_array().expect("items") {
            seen.push(item["id"].as_u64().expect("id"));
        }
        match body["meta"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn link_style_sends_a_next_link_until_the_last_page() {
    let sandbox = sandbox().await;
    let response = client()
        .get(format!("{}/link/companies?per_page=10", sandbox.base_url()))
        .basic_auth("sandbox-user", Some("sandbox-password"))
        .send()
        .await
        .expect("request");
    let link = response
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .expect("link header")
        .to_owned();
    assert!(
        link.contains("page=2") && link.ends_with("rel=\"next\""),
        "{link}"
    );
    let last = client()
        .get(format!(
            "{}/link/companies?per_page=10&page=2",
            sandbox.base_url()
        ))
        .bearer_auth("sandbox-bearer")
        .send()
        .await
        .expect("request");
    assert!(last.headers().get("link").is_none());
}

#[tokio::test]
async fn invalid_writes_get_422_with_the_field() {
    let sandbox = sandbox().await;
    let response = client()
        .post(format!("{}/cursor/contacts", sandbox.base_url()))
        .header("X-Api-Key", "sandbox-key")
        .json(&json!({"attributes": {"email": "nope"}}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["field"], "email");
}

#[tokio::test]
async fn the_token_endpoint_checks_pkce() {
    let sandbox = sandbox().await;
    let base = sandbox.base_url();
    let redirect = "http://localhost/cb";
    let verifier = "a-verifier-long-enough-for-the-test-0123456789";
    let without_pkce = client()
        .get(format!("{base}/oauth/authorize"))
        .query(&[("client_id", "sandbox-client"), ("redirect_uri", redirect)])
        .send()
        .await
        .expect("authorize");
    assert_eq!(without_pkce.status(), StatusCode::BAD_REQUEST);
    let authorize = |challenge: String| {
        client()
            .get(format!("{base}/oauth/authorize"))
            .query(&[
                ("client_id", "sandbox-client"),
                ("redirect_uri", redirect),
                ("state", "s"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
    };
    let response = authorize(pkce_s256(verifier)).await.expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    let code = location
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("code="))
        .expect("code")
        .to_owned();
    let exchange = |verifier: &str| {
        client()
            .post(format!("{base}/oauth/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
            ])
            .send()
    };
    let refused = exchange("wrong").await.expect("token");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // The code is single-use: even the right verifier fails now.
    let again = exchange(verifier).await.expect("token");
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let counters = sandbox.counters();
    assert_eq!(counters.get("POST /oauth/token"), Some(&2));
}

#[tokio::test]
async fn control_bodies_with_unknown_fields_are_refused_and_change_nothing() {
    let sandbox = sandbox().await;
    let base = sandbox.base_url();
    let http = client();
    let record = |id: u64| {
        let http = http.clone();
        let url = format!("{base}/cursor/contacts/{id}?api_key=sandbox-key");
        async move {
            http.get(url)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("body")
        }
    };
    let before = record(2).await;
    let cases = [
        (
            reqwest::Method::POST,
            "records/contacts",
            json!({"id": 2, "attrs": {"name": "Typo"}}),
            "attrs",
        ),
        (
            reqwest::Method::POST,
            "faults",
            json!({"kind": "status", "status": 500, "times": 3}),
            "times",
        ),
        (
            reqwest::Method::POST,
            "oauth/errors",
            json!({"status": 503, "retry": 1}),
            "retry",
        ),
        (
            reqwest::Method::POST,
            "oauth/token_type",
            json!({"token_type": "DPoP", "scheme": "x"}),
            "scheme",
        ),
        (
            reqwest::Method::POST,
            "tokens/expire",
            json!({"refresh": true}),
            "refresh",
        ),
        (
            reqwest::Method::DELETE,
            "faults",
            json!({"every": true}),
            "every",
        ),
    ];
    for (method, path, body, unknown) in cases {
        let response = http
            .request(method, format!("{base}/_sandbox/{path}"))
            .json(&body)
            .send()
            .await
            .expect("control");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert!(
            text.contains(&format!("unknown field `{unknown}`")),
            "{path}: {text}"
        );
    }
    // The record is as it was and no fault fires.
    assert_eq!(record(2).await, before);
}
