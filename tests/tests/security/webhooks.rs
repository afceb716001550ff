//! Forged and replayed HubSpot webhook deliveries.

/// A server without a HubSpot app secret trusts no signature: before the fix, a
/// delivery signed with the empty key (what an unset secret verified against) was
/// accepted and started runs.
mod no_secret {
    use reqwest::StatusCode;
    use serde_json::json;
    use syncledger_sandbox::sign_v3;
    use syncledger_testkit::app::{send, Backend, TestApp};

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

/// A captured, correctly signed delivery sent again within its five-minute window.
mod replay {
    use reqwest::StatusCode;
    use serde_json::json;
    use syncledger_sandbox::sign_v3;
    use syncledger_testkit::app::{send, Backend, TestApp};

    #[tokio::test]
    async fn a_replayed_delivery_is_refused_and_changes_nothing() -> anyhow::Result<()> {
        let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
            return Ok(());
        };
        let url = app.url("/v1/webhooks/hubspot");
        let body = json!([{"portalId": 62515, "objectId": 17,
            "subscriptionType": "contact.propertyChange", "occurredAt": 1_700_000_000_000_i64}])
        .to_string();
        let now = chrono::Utc::now().timestamp_millis();
        let deliver = |signature: &str, timestamp: i64| {
            app.client
                .post(&url)
                .header("content-type", "application/json")
                .header("X-HubSpot-Signature-v3", signature)
                .header("X-HubSpot-Request-Timestamp", timestamp.to_string())
                .body(body.clone())
        };
        let signature = sign_v3("sandbox-secret", "POST", &url, &body, now);
        let first = send(deliver(&signature, now)).await?;
        assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text);
        let events = app.event_count().await?;
        for _ in 0..3 {
            send(deliver(&signature, now)).await?.expect_error(
                StatusCode::CONFLICT,
                "replayed_delivery",
                "already accepted",
            );
        }
        // The same body signed at another instant is another delivery.
        let later = now + 1;
        let again = sign_v3("sandbox-secret", "POST", &url, &body, later);
        let second = send(deliver(&again, later)).await?;
        assert_eq!(second.status, StatusCode::NO_CONTENT, "{}", second.text);
        // A forged signature is refused as forged, and does not poison the cache.
        send(deliver("Zm9yZ2Vk", later + 1)).await?.expect_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "signature",
        );
        let valid = sign_v3("sandbox-secret", "POST", &url, &body, later + 1);
        let third = send(deliver(&valid, later + 1)).await?;
        assert_eq!(third.status, StatusCode::NO_CONTENT, "{}", third.text);
        assert_eq!(app.event_count().await?, events, "a replay changes nothing");
        app.finish().await
    }
}
