//! Forged HubSpot webhooks.

/// A server without a HubSpot app secret trusts no signature: before the fix, a
/// delivery signed with the empty key (what an unset secret verified against) was
/// accepted and started runs.
mod no_secret {
    use crate::helpers::{send, Backend, TestApp};
    use reqwest::StatusCode;
    use serde_json::json;
    use syncledger_sandbox::sign_v3;

    #[tokio::test]
    async fn forged_webhooks_are_refused_without_a_configured_secret() -> anyhow::Result<()> {
        let app = TestApp::spawn_production(Backend::Sqlite, |s| s)
            .await?
            .ok_or_else(|| anyhow::anyhow!("SQLite always runs"))?;
        let url = app.url("/v1/webhooks/hubspot");
        let body = json!([{"portalId": 62515, "objectId": 17,
            "subscriptionType": "contact.propertyChange"}])
        .to_string();
        let events = app.event_count().await?;
        let now = chrono::Utc::now().timestamp_millis();
        // Signed with the empty key, and with the development sandbox's secret,
        // which counts only in development.
        for key in ["", "sandbox-secret"] {
            let signature = sign_v3(key, "POST", &url, &body, now);
            let resp = send(
                app.client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("X-HubSpot-Signature-v3", signature)
                    .header("X-HubSpot-Request-Timestamp", now.to_string())
                    .body(body.clone()),
            )
            .await?;
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{key:?}: {}",
                resp.text
            );
        }
        assert_eq!(app.event_count().await?, events);
        app.finish().await
    }
}
