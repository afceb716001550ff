//! `Idempotency-Key` on the operations that create: a retry returns the first answer and
//! creates nothing; the same key with another request is 422; a refused first request
//! keeps nothing; concurrent first requests create once; a new token's secret is never
//! replayed.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_testkit::app::{integration_body, on_both_backends, send, Backend, Resp, TestApp};

on_both_backends!(
    a_retry_with_the_same_key_returns_the_first_answer_and_creates_nothing,
    concurrent_first_requests_with_one_key_create_once
);

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: Value) -> anyhow::Result<Resp> {
    send(
        app.request(Method::POST, path, &app.admin)
            .header("idempotency-key", key)
            .json(&body),
    )
    .await
}

fn replayed(resp: &Resp) -> bool {
    resp.headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

async fn a_retry_with_the_same_key_returns_the_first_answer_and_creates_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let contact = json!({"entity": "contacts", "fields": {"email": "ada@example.com"}});
    let first = post_with_key(&app, "/v1/records", "key-1", contact.clone()).await?;
    let created = first.expect(StatusCode::CREATED).clone();
    assert!(!replayed(&first));
    let events = app.event_count().await?;
    let again = post_with_key(&app, "/v1/records", "key-1", contact.clone()).await?;
    assert_eq!(again.expect(StatusCode::CREATED), &created);
    assert!(replayed(&again), "{:?}", again.headers);
    assert_eq!(
        app.event_count().await?,
        events,
        "the retry created something"
    );

    // The same key for another request: refused, nothing created.
    let other = json!({"entity": "contacts", "fields": {"email": "grace@example.com"}});
    let reused = post_with_key(&app, "/v1/records", "key-1", other.clone()).await?;
    reused.expect_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "",
    );
    assert_eq!(app.event_count().await?, events);
    // Another key: a new record.
    let second = post_with_key(&app, "/v1/records", "key-2", contact).await?;
    assert_ne!(second.expect(StatusCode::CREATED)["id"], created["id"]);

    // A refused first request keeps nothing: the corrected retry under the same key runs.
    let mut bad = integration_body("Keyed");
    bad["sync_config"]["interval_minutes"] = json!(1);
    post_with_key(&app, "/v1/integrations", "key-3", bad)
        .await?
        .expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "interval_minutes",
        );
    let made = post_with_key(&app, "/v1/integrations", "key-3", integration_body("Keyed")).await?;
    let integration = made.expect(StatusCode::CREATED).clone();
    let again = post_with_key(&app, "/v1/integrations", "key-3", integration_body("Keyed")).await?;
    assert_eq!(again.expect(StatusCode::CREATED)["id"], integration["id"]);

    // A token's secret is shown once: the replay shows the token without it, and no
    // stored answer holds it.
    let token = post_with_key(&app, "/v1/tokens", "key-4", json!({"role": "viewer"})).await?;
    let issued = token.expect(StatusCode::CREATED).clone();
    let secret = issued["token"].as_str().unwrap_or_default().to_string();
    assert!(secret.starts_with("slk_"), "{issued}");
    let again = post_with_key(&app, "/v1/tokens", "key-4", json!({"role": "viewer"})).await?;
    let replay = again.expect(StatusCode::CREATED).clone();
    assert_eq!(replay["id"], issued["id"]);
    assert_eq!(replay["token"], Value::Null, "{replay}");
    let kept: Vec<String> = sqlx::query_scalar("SELECT response FROM idempotency_keys")
        .fetch_all(&app.state.store.any)
        .await?;
    assert!(
        kept.iter().all(|r| !r.contains(&secret)),
        "a secret was kept"
    );

    // A key that is not 1 to 255 visible characters: 400 naming the header.
    for key in ["with space", &"k".repeat(256)] {
        post_with_key(
            &app,
            "/v1/records",
            key,
            json!({"entity": "contacts", "fields": {}}),
        )
        .await?
        .expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "Idempotency-Key",
        );
    }
    app.finish().await
}

async fn concurrent_first_requests_with_one_key_create_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let body = json!({"entity": "contacts", "fields": {"email": "once@example.com"}});
    let answers =
        join_all((0..6).map(|_| post_with_key(&app, "/v1/records", "same-key", body.clone())))
            .await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        let answer = answer?;
        match answer.status {
            StatusCode::CREATED => {
                ids.insert(answer.body["id"].as_str().unwrap_or_default().to_string());
            }
            StatusCode::CONFLICT => {
                assert_eq!(answer.body["error"]["code"], "idempotency_key_in_use")
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let listed = app.list_all("/v1/records", &app.admin, &[], 50).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    app.finish().await
}
