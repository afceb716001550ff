//! Live event streams end with their token, and no token or workspace can hold open more
//! than its share of them.

use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::StatusCode;
use secrecy::SecretString;
use std::time::Duration;
use syncledger_api::{Application, Settings};
use syncledger_domain::Plan;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp, TIMEOUT};
use syncledger_testkit::wait_until;
use tokio::sync::watch;
use tokio::time::Instant;

/// How soon after its token's revocation a stream must end.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

type Body = BoxStream<'static, reqwest::Result<Vec<u8>>>;

/// `GET /v1/events/stream` with `token`: the status, and the body if it is 200.
async fn open(app: &TestApp, token: &str) -> anyhow::Result<(StatusCode, String, Option<Body>)> {
    let resp = app
        .client
        .get(app.url("/v1/events/stream"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(3600))
        .send()
        .await?;
    let status = resp.status();
    if status != StatusCode::OK {
        return Ok((status, resp.text().await?, None));
    }
    let body = resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed();
    Ok((status, String::new(), Some(body)))
}

async fn open_ok(app: &TestApp, token: &str) -> anyhow::Result<Body> {
    let (status, text, body) = open(app, token).await?;
    assert_eq!(status, StatusCode::OK, "open a stream: {text}");
    Ok(body.expect("a 200 has a body"))
}

/// Read `body` until it ends; how long that took, or `None` if it outlived `limit`.
async fn ended_within(body: &mut Body, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let deadline = start + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) => return Some(start.elapsed()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Read `body` until a chunk mentions `needle`: whether one did before the stream ended or
/// `limit` passed.
async fn delivers(body: &mut Body, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(needle) {
                    return true;
                }
            }
            _ => return false,
        }
    }
}

on_both_backends!(
    a_revoked_tokens_stream_closes_within_a_second,
    streams_are_capped_per_token_and_per_workspace
);

async fn a_revoked_tokens_stream_closes_within_a_second(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (viewer_id, viewer) = app.issue_token("viewer").await?;
    let (_, other) = app.issue_token("viewer").await?;
    let mut revoked = open_ok(&app, &viewer).await?;
    let mut kept = open_ok(&app, &other).await?;
    app.delete(&format!("/v1/tokens/{viewer_id}"), &app.admin)
        .await?
        .expect(StatusCode::NO_CONTENT);
    let took = ended_within(&mut revoked, CLOSE_WITHIN).await;
    eprintln!("stream ended {took:?} after the revocation was answered");
    assert!(
        took.is_some(),
        "the revoked token's stream is still open after {CLOSE_WITHIN:?}"
    );
    // Another token's stream is not affected: it still delivers what happens next.
    let id = app
        .create_integration(&app.admin, "after-revocation")
        .await?;
    assert!(
        delivers(&mut kept, &id, TIMEOUT).await,
        "the other token's stream did not deliver the new integration's event"
    );
    // And the revoked token cannot open a new one.
    let (status, _, _) = open(&app, &viewer).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A stream left open ends at shutdown rather than hold the server up.
    app.finish().await?;
    assert!(ended_within(&mut kept, CLOSE_WITHIN).await.is_some());
    Ok(())
}

/// Streams served by one process end when the token is revoked through another process on
/// the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_closes_when_another_process_revokes_its_token() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Postgres).await? else {
        return Ok(());
    };
    let settings = Settings {
        addr: "127.0.0.1:0".parse()?,
        data_dir: app.data_dir.path().to_path_buf(),
        database_url: app.pg_url().map(SecretString::from),
        database_max_connections: 4,
        workers: 0,
        scheduler_interval_secs: 0,
        ..Settings::default()
    };
    let other = Application::build(settings).await?;
    let other_base = format!("http://{}", other.addr());
    let (stop, rx) = watch::channel(false);
    let other_server = tokio::spawn(other.run(rx));

    let (viewer_id, viewer) = app.issue_token("viewer").await?;
    let mut body = open_ok(&app, &viewer).await?;
    let resp = app
        .client
        .delete(format!("{other_base}/v1/tokens/{viewer_id}"))
        .bearer_auth(&app.admin)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        ended_within(&mut body, CLOSE_WITHIN).await.is_some(),
        "the stream outlived its token by more than {CLOSE_WITHIN:?}"
    );
    stop.send(true)?;
    tokio::time::timeout(TIMEOUT, other_server).await???;
    app.finish().await
}

async fn streams_are_capped_per_token_and_per_workspace(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let per_token = Settings::default().sse_streams_per_token;
    let per_workspace = Settings::default().sse_streams_per_workspace;
    let mut open_streams = Vec::new();
    let mut tokens = Vec::new();
    // Fill the workspace's share, token by token, each up to its own cap.
    while open_streams.len() < per_workspace {
        let (id, token) = app.issue_token("viewer").await?;
        for _ in 0..per_token.min(per_workspace - open_streams.len()) {
            open_streams.push(open_ok(&app, &token).await?);
        }
        tokens.push((id, token));
    }
    let (last_id, last) = tokens.last().cloned().expect("at least one token");
    let (status, text, _) = open(&app, &last).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(
        text.contains("too_many_streams") && text.contains("token"),
        "{text}"
    );
    let (_, fresh) = app.issue_token("viewer").await?;
    let (status, text, _) = open(&app, &fresh).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(
        text.contains("too_many_streams") && text.contains("workspace"),
        "{text}"
    );

    // Another workspace has its own share.
    let tenant = app.new_workspace("Other", Plan::Enterprise).await?;
    let theirs = open_ok(&app, &tenant.admin).await?;

    // A stream the client closes frees its place (the last one opened is the last token's).
    drop(open_streams.pop());
    let streams = app.state.streams.clone();
    wait_until(TIMEOUT, "the closed stream's place is freed", || {
        let streams = streams.clone();
        let id = last_id.clone();
        async move { streams.open_for_token(&id) < per_token }
    })
    .await;
    let reopened = open_ok(&app, &last).await?;
    // Open streams would hold the server's graceful shutdown.
    drop((reopened, theirs, open_streams));
    app.finish().await
}
