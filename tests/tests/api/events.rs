//! The live event stream (server-sent events), in process and over NATS JetStream.

use reqwest::StatusCode;
use syncledger_testkit::app::{
    on_both_backends, require_nats, Backend, Options, Resume, Sse, TestApp,
};

on_both_backends!(
    stream_carries_committed_events_without_secrets,
    a_stream_resumes_after_the_last_event_it_sent
);

async fn stream_carries_committed_events_without_secrets(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    check_stream(&app).await?;
    app.finish().await
}

/// Open the stream as a viewer, then create, connect and pause an integration: each event
/// arrives in commit order, for the right aggregate, with metadata and no secret.
async fn check_stream(app: &TestApp) -> anyhow::Result<()> {
    let (_, viewer) = app.issue_token("viewer").await?;
    let mut stream = Sse::open(app, &viewer).await?;
    let id = app.create_integration(&app.admin, "Streamed").await?;
    let created = stream
        .wait_for("IntegrationCreated", |e| {
            e.event == "IntegrationCreated" && e.data["aggregate_id"] == id.as_str()
        })
        .await?;
    assert_eq!(created.data["workspace_id"], app.workspace_id.as_str());
    assert_eq!(created.data["aggregate_type"], "integration");
    assert_eq!(created.data["sequence"], 1);
    assert_eq!(
        created.data["actor"],
        format!("token:{}", app.admin_id).as_str()
    );
    assert!(created.data["correlation_id"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    let tx = created.data["tx"].as_i64().unwrap_or_default();
    let position = created.data["position"].to_string();
    let stream_id = if tx == 0 {
        position
    } else {
        format!("{tx}:{position}")
    };
    assert_eq!(
        created.id, stream_id,
        "SSE id is the place in the global order"
    );
    assert_eq!(created.data["payload"]["name"], "Streamed");

    let key = format!("sk_live_{}", syncledger_testkit::app::random_hex());
    app.set_api_key(&app.admin, &id, &key).await?;
    let stored = stream
        .wait_for("CredentialsStored", |e| {
            e.event == "CredentialsStored" && e.data["aggregate_id"] == id.as_str()
        })
        .await?;
    assert!(
        !stored.raw.contains(&key),
        "the key is on the stream: {}",
        stored.raw
    );
    assert!(stored.raw.contains("[redacted]"), "{}", stored.raw);
    app.post_empty(&format!("/v1/integrations/{id}/pause"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    stream
        .wait_for("IntegrationPaused", |e| {
            e.event == "IntegrationPaused" && e.data["aggregate_id"] == id.as_str()
        })
        .await?;
    let positions: Vec<i64> = stream
        .seen
        .iter()
        .filter_map(|e| e.data["position"].as_i64())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {positions:?}"
    );
    for e in &stream.seen {
        assert!(!e.raw.contains(&key), "the key is on the stream: {}", e.raw);
        assert_eq!(e.data["workspace_id"], app.workspace_id.as_str());
    }
    Ok(())
}

/// With NATS configured, the stream is fed by JetStream. Two fresh databases share the one
/// NATS stream here, as they do whenever a database is recreated within the duplicate window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_over_nats_on_postgres() -> anyhow::Result<()> {
    let Some(nats_url) = require_nats().await else {
        return Ok(());
    };
    for _ in 0..2 {
        let opts = Options {
            nats_url: Some(nats_url.clone()),
            ..Options::default()
        };
        let Some(app) = TestApp::spawn_with(Backend::Postgres, opts).await? else {
            return Ok(());
        };
        check_stream(&app).await?;
        check_resume(&app).await?;
        app.finish().await?;
    }
    Ok(())
}

/// A client that reconnects with the last id it saw gets exactly what was committed
/// since, in order, then the live events; with `?after=` too; an id the stream never
/// sends is refused.
async fn a_stream_resumes_after_the_last_event_it_sent(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    check_resume(&app).await?;
    app.finish().await
}

/// The `IntegrationCreated` events on `stream` until the one of `last`, as ids of the
/// integrations they created.
async fn created_until(stream: &mut Sse, last: &str) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    loop {
        let ev = stream
            .wait_for("IntegrationCreated", |e| e.event == "IntegrationCreated")
            .await?;
        let id = ev.data["aggregate_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        created.push(id.clone());
        if id == last {
            return Ok(created);
        }
    }
}

async fn check_resume(app: &TestApp) -> anyhow::Result<()> {
    let (_, viewer) = app.issue_token("viewer").await?;
    let mut first = Sse::open(app, &viewer).await?;
    let seen = app.create_integration(&app.admin, "Seen").await?;
    let last = first
        .wait_for("the first integration", |e| {
            e.event == "IntegrationCreated" && e.data["aggregate_id"] == seen.as_str()
        })
        .await?
        .id;
    drop(first);
    let mut missed = Vec::new();
    for name in ["Missed one", "Missed two"] {
        missed.push(app.create_integration(&app.admin, name).await?);
    }
    app.caught_up().await;

    for (n, from) in [Resume::LastEventId(&last), Resume::After(&last)]
        .into_iter()
        .enumerate()
    {
        let mut resumed = Sse::resume(app, &viewer, from).await?;
        let live = app
            .create_integration(&app.admin, &format!("Live {n}"))
            .await?;
        let got = created_until(&mut resumed, &live).await?;
        let mut want = missed.clone();
        want.push(live.clone());
        assert_eq!(
            got, want,
            "{from:?}: the missed ones in order, then live, once each"
        );
        missed.push(live);
    }

    for bad in ["yesterday", "-4", "1:2:3"] {
        let resp = app
            .client
            .get(app.url("/v1/events/stream"))
            .bearer_auth(&viewer)
            .header("last-event-id", bad)
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    Ok(())
}
