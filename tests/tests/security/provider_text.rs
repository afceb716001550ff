//! A hostile (or compromised) provider answers garbage: a huge body, control
//! characters, ANSI escapes, bidi overrides, and secrets echoed back. What reaches API
//! answers and events is the status, a category and at most 200 visible characters of
//! its message, credentials redacted. Transport failures read the same whatever
//! happened, so the text is no oracle into the network.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use syncledger_testkit::app::{sync_config, Backend, TestApp};
use syncledger_testkit::wait::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRETS: &[&str] = &[
    "SECRETBEARER123",
    "SECRETACCESS456",
    "SECRETREFRESH789",
    "SECRETCLIENT000",
    "SECRETCATEGORY42",
];

/// Everything a hostile provider might put into an error message.
fn hostile_message() -> String {
    format!(
        "\u{1b}[2J\u{1b}[31mEVIL\u{1b}[0m \u{1b}]8;;http://evil.example\u{7}click\u{1b}]8;;\u{7} \
         \u{202e}exe.txt\u{202c}\u{200b} Authorization: Bearer SECRETBEARER123 \
         ?access_token=SECRETACCESS456&refresh_token=SECRETREFRESH789 \
         {{\"client_secret\": \"SECRETCLIENT000\"}}\r\nINFO injected log line\u{0}\u{7f}{}",
        "A".repeat(200_000)
    )
}

/// Serves every request with `status` and `body` (or, with `None`, accepts the
/// connection and closes it without answering).
async fn provider(reply: Option<(u16, String)>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let Some((status, body)) = reply else {
                    return; // dropped: the connection closes unanswered
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} Hostile\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(base)
}

/// A port nothing listens on.
async fn closed_port() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    drop(listener);
    Ok(base)
}

/// A custom API-key integration at `base`, with a key stored (so it is connected).
async fn integration(app: &TestApp, name: &str, base: &str) -> anyhow::Result<String> {
    let spec = json!({
        "name": "Hostile CRM",
        "base_url": base,
        "auth": {"type": "api_key", "header": "X-Api-Key"},
        "contacts": {
            "list": {"path": "/contacts", "records_path": "data", "id_path": "id",
                     "updated_at_path": "updated", "fields": {"email": "email"}},
            "pagination": {"type": "none"}
        }
    });
    let body = json!({"provider": "custom", "name": name, "sync_config": sync_config(),
        "spec": spec});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    app.set_api_key(&app.admin, &id, "the-api-key")
        .await?
        .expect(StatusCode::OK);
    Ok(id)
}

/// Provider text as shown: short, visible, no echoed secret.
fn assert_clean(text: &str, what: &str) {
    assert!(
        text.chars().count() <= 300,
        "{what} keeps {} characters: {text:?}",
        text.chars().count()
    );
    assert!(
        !text.contains(&"A".repeat(201)),
        "{what}: more than 200 characters of the message"
    );
    for c in text.chars() {
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!c.is_control() && !invisible, "{what} has {c:?}: {text:?}");
    }
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} echoes {secret}: {text:?}");
    }
}

/// The raw JSON of an answer or stored row: escaped control characters count too.
fn assert_clean_json(text: &str, what: &str) {
    for needle in [
        "\\u001b", "\\u0000", "\\u0007", "\\u202e", "\u{202e}", "\\r\\n",
    ] {
        assert!(!text.contains(needle), "{what} holds {needle}");
    }
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} echoes {secret}");
    }
}

async fn test_connection(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    let body = resp.expect(StatusCode::OK).clone();
    assert_eq!(body["ok"], false, "{}", resp.text);
    assert_clean_json(&resp.text, "the test answer");
    Ok(body)
}

#[tokio::test]
async fn a_hostile_error_message_reaches_answers_and_events_only_cleaned() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let body = json!({"message": hostile_message(),
        "category": "\u{1b}[1mVALIDATION Bearer SECRETCATEGORY42"})
    .to_string();
    let base = provider(Some((400, body))).await?;

    // The connection test.
    let tested = integration(&app, "tested", &base).await?;
    let answer = test_connection(&app, &tested).await?;
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert_clean(detail, "the test detail");
    assert!(detail.contains("400"), "the status is kept: {detail}");
    assert!(
        detail.contains("VALIDATION"),
        "the category is kept: {detail}"
    );
    assert!(
        detail.contains("EVIL"),
        "the visible message is kept: {detail}"
    );

    // A sync run.
    let synced = integration(&app, "synced", &base).await?;
    let resp = app
        .post(
            &format!("/v1/integrations/{synced}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let run_id = resp.expect(StatusCode::CREATED).clone()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/v1/sync-runs/{run_id}");
    wait_until(Duration::from_secs(60), "the hostile run ends", || async {
        app.get(&path, &app.admin)
            .await
            .is_ok_and(|r| !matches!(r.body["status"].as_str(), Some("queued" | "running")))
    })
    .await;
    let run = app.get(&path, &app.admin).await?;
    assert_eq!(run.body["status"], "failed", "{}", run.text);
    let reason = run.body["reason"].as_str().unwrap_or_default();
    assert_clean(reason, "the run's reason");
    assert!(reason.contains("400"), "{reason}");
    assert_clean_json(&run.text, "the run answer");

    // What was stored: the events behind the audit trail and the integrations.
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    audit.expect(StatusCode::OK);
    assert_clean_json(&audit.text, "the audit trail");
    let stored: Vec<String> = sqlx::query_scalar("SELECT CAST(payload AS TEXT) FROM events")
        .fetch_all(&app.state.store.any)
        .await?;
    assert!(!stored.is_empty());
    for payload in &stored {
        assert_clean_json(payload, "a stored event");
        assert!(
            !payload.contains(&"A".repeat(201)),
            "a stored event holds the huge message"
        );
    }
    app.finish().await
}

#[tokio::test]
async fn a_closed_port_and_a_dropped_connection_read_the_same() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    let refused = integration(&app, "refused", &closed_port().await?).await?;
    let dropped = integration(&app, "dropped", &provider(None).await?).await?;
    let refused = test_connection(&app, &refused).await?;
    let dropped = test_connection(&app, &dropped).await?;
    assert_eq!(refused["detail"], dropped["detail"]);
    assert_eq!(refused["detail"], "could not reach the provider");
    app.finish().await
}
