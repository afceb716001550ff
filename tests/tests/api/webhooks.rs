//! HubSpot webhook deliveries: accepted only with a valid v3 signature over this
//! endpoint's public URL, made with the app's client secret.

use reqwest::StatusCode;
use serde_json::json;
use syncledger_sandbox::{sign_v3, SandboxConfig};
use syncledger_testkit::app::{send, Backend, TestApp};
use syncledger_testkit::sandbox;

#[tokio::test]
async fn signed_hubspot_deliveries_are_accepted_and_others_refused() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    // The sandbox signs with the same client secret the app is configured with.
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let url = app.url("/v1/webhooks/hubspot");
    let event = json!({"portalId": 62515, "objectId": 17, "subscriptionType": "contact.propertyChange",
        "propertyName": "email", "occurredAt": 1_700_000_000_000_i64});
    let status = sandbox.send_webhook(&url, vec![event.clone()]).await?;
    assert_eq!(status, 204);

    let events = app.event_count().await?;
    let body = json!([event]).to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let deliver = |signature: String, timestamp: i64, body: String| {
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .header("X-HubSpot-Signature-v3", signature)
            .header("X-HubSpot-Request-Timestamp", timestamp.to_string())
            .body(body)
    };
    // Signed with another secret.
    let forged = sign_v3("not-the-secret", "POST", &url, &body, now);
    send(deliver(forged, now, body.clone()))
        .await?
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature", "signature");
    // A correct signature over a different body.
    let signed = sign_v3("sandbox-secret", "POST", &url, &body, now);
    send(deliver(signed.clone(), now, "[]".into()))
        .await?
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature", "");
    // A replay of an old delivery.
    let old = now - 10 * 60 * 1000;
    let replay = sign_v3("sandbox-secret", "POST", &url, &body, old);
    send(deliver(replay, old, body.clone()))
        .await?
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature", "older");
    // Signed but not a batch of events.
    let junk = "{\"not\":\"a list\"}".to_string();
    let signed_junk = sign_v3("sandbox-secret", "POST", &url, &junk, now);
    send(deliver(signed_junk, now, junk)).await?.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "array",
    );
    // No headers at all.
    send(app.client.post(&url).body(body)).await?.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "missing",
    );
    assert_eq!(app.event_count().await?, events, "refusals change nothing");
    sandbox.shutdown().await;
    app.finish().await
}
