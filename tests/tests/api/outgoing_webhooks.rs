//! Outgoing webhooks end to end: endpoints created through the API receive a HubSpot
//! import's events, signed as Standard Webhooks (checked with the `standardwebhooks`
//! crate, not our signer), in feed order; a receiver that hangs or fails delays no other
//! endpoint and gets its message again under the same `webhook-id`; attempts are listed,
//! one is sent again, a replay sends everything again; a rotated secret and the previous
//! one both verify for a day.

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use syncledger_api::Settings;
use syncledger_testkit::app::{connect, on_both_backends, wait_run, Backend, Options, TestApp};
use syncledger_testkit::wait::{poll_every, poll_until};
use tokio::sync::Notify;

on_both_backends!(
    an_import_reaches_every_endpoint_signed_and_in_order,
    failing_endpoints_give_up_messages_and_are_disabled,
    an_endpoint_created_off_receives_what_followed_its_creation
);

/// What a receiver does with a request: answer with this status, after waiting for the
/// notify if one is given.
#[derive(Clone)]
enum Answer {
    Status(u16),
    HoldThen(Arc<Notify>, u16),
}

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    fn id(&self) -> String {
        self.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answers for the next requests, in order; then 200.
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> anyhow::Result<(Receiver, String)> {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.into())),
            ..Receiver::default()
        };
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((receiver, url))
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn of_type(&self, t: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.json()["type"] == t)
            .collect()
    }

    async fn wait_for(&self, t: &str, n: usize) -> Vec<Received> {
        poll_until(
            std::time::Duration::from_secs(60),
            &format!("{n} {t} message(s)"),
            || async {
                let got = self.of_type(t);
                if got.len() >= n {
                    Ok(got)
                } else {
                    Err(format!("{} of {n}", got.len()))
                }
            },
        )
        .await
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    if let Ok(mut got) = r.got.lock() {
        got.push(Received { headers, body });
    }
    let next = r.script.lock().ok().and_then(|mut s| s.pop_front());
    let code = match next {
        None => 200,
        Some(Answer::Status(code)) => code,
        Some(Answer::HoldThen(release, code)) => {
            release.notified().await;
            code
        }
    };
    AxumStatus::from_u16(code).unwrap_or(AxumStatus::OK)
}

fn quick_retries(settings: Settings) -> Settings {
    Settings {
        webhook_first_retry_ms: 50,
        ..settings
    }
}

/// Retries every 50 ms at first, messages given up after 1 s, endpoints disabled after 2 s
/// without a success: production's 24 hours and 3 days, shrunk.
fn short_windows(settings: Settings) -> Settings {
    Settings {
        webhook_first_retry_ms: 50,
        webhook_retry_window_secs: 1,
        webhook_disable_after_secs: 2,
        ..settings
    }
}

async fn create_record(app: &TestApp, email: &str) -> anyhow::Result<()> {
    app.post(
        "/v1/records",
        &app.admin,
        json!({"entity": "contacts", "fields": {"email": email}}),
    )
    .await?
    .expect(StatusCode::CREATED);
    Ok(())
}

/// An endpoint's messages start at its creation, not when its worker first runs: one
/// created turned off and turned on later gets what was committed meanwhile (its worker
/// used to start from the head of the log when it first ran, losing those).
async fn an_endpoint_created_off_receives_what_followed_its_creation(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    create_record(&app, "before@example.com").await?;
    let (r, url) = Receiver::start(vec![]).await?;
    let resp = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin,
            json!({"url": url, "event_types": ["record.created"], "enabled": false}),
        )
        .await?;
    assert_eq!(resp.expect(StatusCode::CREATED)["enabled"], false);
    let id = resp.str("id")?;
    create_record(&app, "meanwhile@example.com").await?;
    app.patch(
        &format!("/v1/webhook-endpoints/{id}"),
        &app.admin,
        json!({"enabled": true}),
    )
    .await?
    .expect(StatusCode::OK);
    create_record(&app, "after@example.com").await?;
    let got = r.wait_for("record.created", 2).await;
    let emails: Vec<Value> = got
        .iter()
        .map(|m| m.json()["data"]["fields"]["email"].clone())
        .collect();
    assert_eq!(
        emails,
        [json!("meanwhile@example.com"), json!("after@example.com")]
    );
    app.finish().await
}

/// An endpoint's delivery attempts once `n` are listed, newest first. A receiver has
/// its message before the attempt is recorded, so a test that saw the message waits
/// for the record (asked every 200 ms: the API's rate limit holds for tests too).
async fn attempts_listed(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    poll_every(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(30),
        &format!("{n} attempts listed for {id}"),
        || async {
            let resp = app
                .get(
                    &format!("/v1/webhook-endpoints/{id}/deliveries"),
                    &app.admin,
                )
                .await
                .map_err(|e| e.to_string())?;
            let data = resp.body["data"].as_array().cloned().unwrap_or_default();
            if data.len() >= n {
                Ok(data)
            } else {
                Err(resp.text)
            }
        },
    )
    .await
}

/// An endpoint that refuses a message (410) gets the next one, the refused one not
/// retried; one that keeps failing gives each message up at the end of the retry window
/// and is disabled once nothing has succeeded for the disabling period, which its trail
/// records with the reason.
async fn failing_endpoints_give_up_messages_and_are_disabled(
    backend: Backend,
) -> anyhow::Result<()> {
    let opts = Options {
        tweak: short_windows,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let (gone, gone_url) = Receiver::start(vec![Answer::Status(410)]).await?;
    let (down, down_url) = Receiver::start(vec![Answer::Status(500); 1000]).await?;
    let (gone_id, _) = create(&app, &gone_url, &["record.created"]).await?;
    let (down_id, _) = create(&app, &down_url, &["record.created"]).await?;
    // Four messages, each retried for at most the 1 s window: the failing streak lasts
    // past the 2 s that disable an endpoint, whatever the timing.
    let emails: Vec<String> = (1..=4).map(|i| format!("r{i}@example.com")).collect();
    for email in &emails {
        create_record(&app, email).await?;
    }

    let got = gone.wait_for("record.created", emails.len()).await;
    let seen: Vec<Value> = got
        .iter()
        .map(|r| r.json()["data"]["fields"]["email"].clone())
        .collect();
    let expected: Vec<Value> = emails.iter().map(|e| json!(e)).collect();
    assert_eq!(seen, expected, "the refused message is not sent again");
    // The receiver has answered before the attempt is recorded: wait for the fourth.
    let statuses: Vec<(Value, Value)> = attempts_listed(&app, &gone_id, emails.len())
        .await
        .iter()
        .rev()
        .map(|d| (d["status"].clone(), d["response_code"].clone()))
        .collect();
    let mut wanted = vec![(json!("failed"), json!(410))];
    wanted.extend(std::iter::repeat_n((json!("delivered"), json!(200)), 3));
    assert_eq!(statuses, wanted);

    // Asked every 200 ms: the API's rate limit holds for tests too.
    let disabled = poll_every(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(30),
        "the failing endpoint disabled",
        || async {
            let resp = app
                .get(&format!("/v1/webhook-endpoints/{down_id}"), &app.admin)
                .await
                .map_err(|e| e.to_string())?;
            if resp.body["enabled"] == false {
                return Ok(resp.body.clone());
            }
            let attempts = app
                .get(
                    &format!("/v1/webhook-endpoints/{down_id}/deliveries"),
                    &app.admin,
                )
                .await
                .map_err(|e| e.to_string())?;
            Err(format!("{} (attempts: {})", resp.text, attempts.text))
        },
    )
    .await;
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no delivery succeeded since"), "{disabled}");
    // The first message was given up at the end of its window, after several attempts
    // under one webhook-id; the worker went on to the second.
    let first: Vec<Received> = down
        .got()
        .into_iter()
        .filter(|r| r.json()["data"]["fields"]["email"] == "r1@example.com")
        .collect();
    assert!(first.len() >= 3, "{} attempt(s)", first.len());
    assert!(first.iter().all(|r| r.id() == first[0].id()));
    assert!(
        down.got()
            .iter()
            .any(|r| r.json()["data"]["fields"]["email"] == "r2@example.com"),
        "the second message was never tried"
    );
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    assert!(
        audit.text.contains("WebhookEndpointDisabled"),
        "{}",
        audit.text
    );
    app.finish().await
}

async fn create(app: &TestApp, url: &str, types: &[&str]) -> anyhow::Result<(String, String)> {
    let resp = app
        .post(
            "/v1/webhook-endpoints",
            &app.admin,
            json!({"url": url, "event_types": types}),
        )
        .await?;
    let body = resp.expect(StatusCode::CREATED).clone();
    let secret = body["secret"].as_str().context("the secret")?.to_owned();
    assert!(secret.starts_with("whsec_"), "{body}");
    Ok((body["id"].as_str().context("id")?.to_owned(), secret))
}

fn verifies(secret: &str, r: &Received) -> bool {
    standardwebhooks::Webhook::new(secret)
        .and_then(|w| w.verify(&r.body, &r.headers))
        .is_ok()
}

async fn an_import_reaches_every_endpoint_signed_and_in_order(
    backend: Backend,
) -> anyhow::Result<()> {
    let opts = Options {
        tweak: quick_retries,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let started = chrono::Utc::now();
    let (a, a_url) = Receiver::start(vec![]).await?;
    // B hangs on its first request until released, then fails twice, then takes it.
    let release = Arc::new(Notify::new());
    let (b, b_url) = Receiver::start(vec![
        Answer::HoldThen(release.clone(), 503),
        Answer::Status(500),
        Answer::Status(429),
    ])
    .await?;

    // Refusals name their cause and create nothing.
    for (body, needle) in [
        (
            json!({"url": a_url, "event_types": ["record.deleted"]}),
            "record.deleted",
        ),
        (json!({"url": a_url, "event_types": []}), "event_types"),
        (
            json!({"url": "http://169.254.169.254/latest", "event_types": ["record.created"]}),
            "url",
        ),
        (
            json!({"url": "ftp://example.com/x", "event_types": ["record.created"]}),
            "url",
        ),
        (
            json!({"url": a_url, "event_types": ["record.created"], "secret": "mine"}),
            "secret",
        ),
    ] {
        let resp = app
            .post("/v1/webhook-endpoints", &app.admin, body.clone())
            .await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text
        );
        assert!(resp.text.contains(needle), "{body}: {}", resp.text);
    }
    let listed = app.get("/v1/webhook-endpoints", &app.admin).await?;
    assert_eq!(listed.expect(StatusCode::OK)["data"], json!([]));
    // A viewer cannot see or make endpoints.
    let (_, viewer) = app.issue_token("viewer").await?;
    let resp = app.get("/v1/webhook-endpoints", &viewer).await?;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text);

    let (a_id, a_secret) = create(&app, &a_url, &["record.created", "sync_run.completed"]).await?;
    let (b_id, b_secret) = create(&app, &b_url, &["sync_run.completed"]).await?;
    let shown = app
        .get(&format!("/v1/webhook-endpoints/{a_id}"), &app.admin)
        .await?;
    assert!(!shown.text.contains(&a_secret), "the secret is shown once");

    let sandbox = syncledger_testkit::sandbox::hubspot(4).await;
    let integration = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let run = app
        .post(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let run_id = run.str("id")?;
    assert_eq!(wait_run(&app, &run_id).await?["status"], "completed");
    let records = app.get("/v1/records?limit=500", &app.admin).await?;
    let imported = records.expect(StatusCode::OK)["data"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(imported >= 8, "{}", records.text);

    // A gets every record and the run's end while B's first request still hangs.
    let created = a.wait_for("record.created", imported).await;
    let ended = a.wait_for("sync_run.completed", 1).await;
    b.wait_for("sync_run.completed", 1).await;
    assert_eq!(b.got().len(), 1, "B is still on its first attempt");
    for r in a.got() {
        assert!(verifies(&a_secret, &r), "A's signature: {:?}", r.headers);
        assert!(
            !verifies(&b_secret, &r),
            "verified with another endpoint's secret"
        );
        assert_eq!(
            r.json()["workspace_id"],
            json!(app.workspace_id),
            "{}",
            r.json()
        );
    }
    let ids: std::collections::BTreeSet<String> = a.got().iter().map(Received::id).collect();
    assert_eq!(ids.len(), a.got().len(), "one webhook-id per message");
    // Feed order: the run ends after its records.
    let order: Vec<Value> = a.got().iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        order.last(),
        Some(&json!("sync_run.completed")),
        "{order:?}"
    );
    let first = created[0].json();
    assert!(first["data"]["record_id"].is_string(), "{first}");
    assert!(first["data"]["fields"].is_object(), "{first}");
    assert!(first["data"]["changed"].is_array(), "{first}");
    assert_eq!(ended[0].json()["data"]["run_id"], json!(run_id));
    assert_eq!(ended[0].json()["data"]["status"], "completed");

    // B: released, it fails twice more, then takes the same message.
    release.notify_one();
    let b_got = b.wait_for("sync_run.completed", 4).await;
    let b_ids: std::collections::BTreeSet<String> = b_got.iter().map(Received::id).collect();
    assert_eq!(b_ids.len(), 1, "the same webhook-id on every attempt");
    assert!(b_got.iter().all(|r| verifies(&b_secret, r)));
    let attempts = attempts_listed(&app, &b_id, 4).await;
    let statuses: Vec<(Value, Value)> = attempts
        .iter()
        .rev()
        .map(|d| (d["status"].clone(), d["response_code"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!("retrying"), json!(503)),
            (json!("retrying"), json!(500)),
            (json!("retrying"), json!(429)),
            (json!("delivered"), json!(200)),
        ],
        "{attempts:?}"
    );

    // Paging through A's deliveries, two at a time, sees each message once.
    let mut seen = Vec::new();
    let mut path = format!("/v1/webhook-endpoints/{a_id}/deliveries?limit=2");
    loop {
        let page = app.get(&path, &app.admin).await?;
        let body = page.expect(StatusCode::OK).clone();
        for d in body["data"].as_array().cloned().unwrap_or_default() {
            seen.push(d["message_id"].as_str().unwrap_or_default().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/webhook-endpoints/{a_id}/deliveries?limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    let mut expected: Vec<String> = ids.iter().cloned().collect();
    expected.sort();
    assert_eq!(seen, expected);

    // One message sent again on request: the same id and body, verified.
    let again = &created[0];
    let resp = app
        .post_empty(
            &format!(
                "/v1/webhook-endpoints/{a_id}/deliveries/{}/resend",
                again.id()
            ),
            &app.admin,
        )
        .await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["status"],
        "delivered",
        "{}",
        resp.text
    );
    let resent: Vec<Received> = a
        .got()
        .into_iter()
        .filter(|r| r.id() == again.id())
        .collect();
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[1].json()["data"], again.json()["data"]);

    // A rotated secret: both verify for a day.
    let rotated = app
        .post_empty(
            &format!("/v1/webhook-endpoints/{a_id}/rotate-secret"),
            &app.admin,
        )
        .await?;
    let new_secret = rotated.expect(StatusCode::OK)["secret"]
        .as_str()
        .context("the new secret")?
        .to_owned();
    assert_ne!(new_secret, a_secret);
    let before = a.of_type("record.created").len();
    app.post(
        "/v1/records",
        &app.admin,
        json!({"entity": "contacts", "fields": {"email": "after.rotation@example.com"}}),
    )
    .await?
    .expect(StatusCode::CREATED);
    let after = a.wait_for("record.created", before + 1).await;
    let newest = after.last().context("the newest message")?;
    assert_eq!(
        newest.json()["data"]["fields"]["email"],
        "after.rotation@example.com"
    );
    assert!(verifies(&new_secret, newest) && verifies(&a_secret, newest));

    // A replay since before the import sends everything again, with the same ids.
    let total = a.got().len();
    let resp = app
        .post(
            &format!("/v1/webhook-endpoints/{a_id}/replay"),
            &app.admin,
            json!({"since": started.to_rfc3339()}),
        )
        .await?;
    resp.expect(StatusCode::ACCEPTED);
    let replayed = a.wait_for("sync_run.completed", 2).await;
    assert_eq!(replayed[1].id(), replayed[0].id());
    poll_until(
        std::time::Duration::from_secs(60),
        "every message replayed",
        || async {
            let got = a.got();
            let again = got[total..]
                .iter()
                .map(Received::id)
                .collect::<std::collections::BTreeSet<_>>();
            if ids.is_subset(&again) {
                Ok(())
            } else {
                Err(format!("{} of {}", again.len(), ids.len()))
            }
        },
    )
    .await;

    // Turned off and on again: it resumes where it stopped; deleted: gone.
    let off = app
        .patch(
            &format!("/v1/webhook-endpoints/{b_id}"),
            &app.admin,
            json!({"enabled": false}),
        )
        .await?;
    assert_eq!(off.expect(StatusCode::OK)["enabled"], false);
    assert!(off.text.contains("disabled by"), "{}", off.text);
    let resp = app
        .delete(&format!("/v1/webhook-endpoints/{b_id}"), &app.admin)
        .await?;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let resp = app
        .get(&format!("/v1/webhook-endpoints/{b_id}"), &app.admin)
        .await?;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);

    // The trail records every change, no secret in it.
    app.caught_up().await;
    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    for action in [
        "WebhookEndpointCreated",
        "WebhookSecretRotated",
        "WebhookEndpointDisabled",
        "WebhookEndpointDeleted",
    ] {
        assert!(audit.text.contains(action), "no {action}");
    }
    for secret in [&a_secret, &b_secret, &new_secret] {
        assert!(
            !audit.text.contains(secret.as_str()),
            "a secret in the audit trail"
        );
    }
    sandbox.shutdown().await;
    app.finish().await
}
