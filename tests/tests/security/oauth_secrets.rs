//! The server's OAuth client secrets: never sent to a tenant's host, token responses
//! read with a bound, provider-returned hosts checked, and no sandbox app outside
//! development.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};
use syncledger_testkit::app::{send, sync_config, Backend, TestApp, TIMEOUT};

/// What a token endpoint answers.
#[derive(Clone, Copy)]
enum Answer {
    /// A token response naming an internal `instance_url`.
    InternalInstance,
    /// A body without end (as a 4 GB answer would be, only longer).
    Endless,
}

/// A small HTTP server that records every request (path and body) it gets.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    answer: Answer,
}

impl Recorder {
    async fn start(answer: Answer) -> anyhow::Result<(Recorder, String)> {
        let recorder = Recorder {
            seen: Arc::default(),
            answer,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let router = axum::Router::new()
            .fallback(record)
            .with_state(recorder.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok((recorder, url))
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn record(State(recorder): State<Recorder>, request: Request) -> Response {
    let path = request.uri().to_string();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if let Ok(mut seen) = recorder.seen.lock() {
        seen.push(format!("{path} {}", String::from_utf8_lossy(&body)));
    }
    match recorder.answer {
        Answer::InternalInstance => axum::Json(json!({"access_token": "a", "token_type": "Bearer",
            "refresh_token": "r", "instance_url": "https://169.254.169.254"}))
        .into_response(),
        Answer::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let stream =
                futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_default()
        }
    }
}

/// Creates an integration, starts connecting it, and answers the callback URL the
/// provider would send the browser to (with the state `connect` issued).
async fn connect(
    app: &TestApp,
    provider: &str,
    base_url: &str,
) -> anyhow::Result<(String, String)> {
    let body = json!({"provider": provider, "name": format!("{provider} {base_url}"),
        "sync_config": sync_config(), "base_url": base_url});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let auth_url = resp.str("authorization_url")?;
    let state = url::Url::parse(&auth_url)?
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow::anyhow!("no state in {auth_url}"))?;
    Ok((
        auth_url,
        app.url(&format!("/v1/oauth/callback?code=c&state={state}")),
    ))
}

fn real_hubspot_app(settings: syncledger_api::Settings) -> syncledger_api::Settings {
    syncledger_api::Settings {
        allow_loopback_providers: true,
        hubspot_client_id: "real-client".into(),
        hubspot_client_secret: secrecy::SecretString::from("real-secret"),
        ..settings
    }
}

#[tokio::test]
async fn the_client_secret_never_reaches_a_tenant_host() -> anyhow::Result<()> {
    // The operator allows loopback providers, and a tenant points HubSpot at its own host.
    let app = TestApp::spawn_production(Backend::Sqlite, real_hubspot_app)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let (recorder, tenant_host) = Recorder::start(Answer::InternalInstance).await?;
    let (auth_url, callback) = connect(&app, "hubspot", &tenant_host).await?;
    assert!(
        auth_url.starts_with("https://app.hubspot.com/"),
        "{auth_url}"
    );
    // The exchange goes to HubSpot's own token host (unreachable here), never to the tenant's.
    let resp = send(app.client.get(&callback)).await?;
    assert!(!resp.status.is_success(), "{}", resp.text);
    let seen = recorder.seen();
    assert!(
        seen.iter()
            .all(|r| !r.contains("real-secret") && !r.contains("/oauth")),
        "the tenant host saw {seen:?}"
    );
    app.finish().await
}

#[tokio::test]
async fn an_internal_instance_url_from_the_token_endpoint_is_refused() -> anyhow::Result<()> {
    // Development: a loopback base URL is a sandbox and gets the OAuth calls.
    let app = TestApp::spawn(Backend::Sqlite)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let (recorder, host) = Recorder::start(Answer::InternalInstance).await?;
    let (_, callback) = connect(&app, "salesforce", &host).await?;
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text);
    assert_eq!(resp.body["error"]["field"], "instance_url", "{}", resp.text);
    assert_eq!(recorder.seen().len(), 1, "one token request");
    let list = app.get("/v1/integrations", &app.admin).await?;
    assert!(!list.text.contains("\"connected\""), "{}", list.text);
    app.finish().await
}

#[tokio::test]
async fn an_endless_token_response_is_cut_off() -> anyhow::Result<()> {
    let app = TestApp::spawn(Backend::Sqlite)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    let (_recorder, host) = Recorder::start(Answer::Endless).await?;
    let (_, callback) = connect(&app, "pipedrive", &host).await?;
    let started = tokio::time::Instant::now();
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text);
    assert!(
        started.elapsed() < TIMEOUT / 3,
        "took {:?}",
        started.elapsed()
    );
    // The server still answers.
    app.get("/v1/health", "").await?.expect(StatusCode::OK);
    app.finish().await
}

#[tokio::test]
async fn connect_without_provider_settings_is_a_clear_400() -> anyhow::Result<()> {
    let app = TestApp::spawn_production(Backend::Sqlite, |s| s)
        .await?
        .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
    for provider in ["hubspot", "salesforce", "pipedrive", "zoho"] {
        let body = json!({"provider": provider, "name": provider, "sync_config": sync_config()});
        let resp = app.post("/v1/integrations", &app.admin, body).await?;
        resp.expect(StatusCode::CREATED);
        let id = resp.str("id")?;
        let resp = app
            .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
            .await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "provider_not_configured", provider);
    }
    app.finish().await
}
