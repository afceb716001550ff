//! Concurrent commands: optimistic concurrency answers 409, never 500, and leaves a
//! consistent history behind.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use syncledger_domain::Plan;
use syncledger_testkit::app::{integration_body, on_both_backends, send, Backend, TestApp};

on_both_backends!(
    concurrent_pause_and_resume_stay_consistent,
    concurrent_creates_respect_the_plan,
    if_match_keeps_two_editors_from_overwriting_each_other
);

async fn concurrent_pause_and_resume_stay_consistent(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Contended").await?;
    app.set_api_key(&app.admin, &id, "sk_live_contended")
        .await?;
    let (_, operator) = app.issue_token("operator").await?;
    let paths: Vec<(String, &str)> = (0..10)
        .map(|n| {
            let verb = if n % 2 == 0 { "pause" } else { "resume" };
            let token = if n % 3 == 0 { &operator } else { &app.admin };
            (format!("/v1/integrations/{id}/{verb}"), token.as_str())
        })
        .collect();
    let requests = paths
        .iter()
        .map(|(path, token)| app.post_empty(path, token));
    let results = join_all(requests).await;
    let mut ok = 0;
    for r in results {
        let r = r?;
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                let code = r.body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    code == "invalid_transition" || code == "version_conflict",
                    "409 with code {code}: {}",
                    r.text
                );
            }
            other => panic!("concurrent pause/resume answered {other}: {}", r.text),
        }
    }
    assert!(ok >= 1, "at least one command should win");

    // The history alternates strictly, and the read model agrees with it.
    app.caught_up().await;
    let rows = app
        .list_all("/v1/audit", &app.admin, &[("integration_id", &id)], 500)
        .await?;
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    let toggles: Vec<&str> = actions[2..].to_vec();
    assert_eq!(actions[..2], ["IntegrationCreated", "CredentialsStored"]);
    assert_eq!(
        toggles.len(),
        ok,
        "one event per successful command: {actions:?}"
    );
    for (i, a) in toggles.iter().enumerate() {
        let want = if i % 2 == 0 {
            "IntegrationPaused"
        } else {
            "IntegrationResumed"
        };
        assert_eq!(*a, want, "history {actions:?}");
    }
    let status = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let want = if ok % 2 == 1 { "paused" } else { "connected" };
    assert_eq!(status.body["status"], want, "after {actions:?}");
    assert_eq!(status.body["version"].as_u64(), Some(2 + ok as u64));

    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    let total = app.list_all("/v1/audit", &app.admin, &[], 500).await?.len();
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    assert_eq!(verify.body["checked"].as_u64(), Some(total as u64));
    app.finish().await
}

/// Racing creates on a Professional plan (3 slots): at most 3 win, names stay unique, and
/// the rest of the plan stays usable. SQLite gets a smaller burst: a burst wider than its
/// connection pool stalls (see `sqlite_survives_a_burst_of_concurrent_creates`).
async fn concurrent_creates_respect_the_plan(backend: Backend) -> anyhow::Result<()> {
    let racers = match backend {
        Backend::Sqlite => 5,
        Backend::Postgres => 9,
    };
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let ws = app
        .new_workspace("Professional", Plan::Professional)
        .await?;
    let mut bodies: Vec<_> = (1..racers)
        .map(|n| integration_body(&format!("Racer {n}")))
        .collect();
    // Two of them race for the same name too.
    bodies.push(integration_body("racer 1"));
    let results = join_all(
        bodies
            .into_iter()
            .map(|b| app.post("/v1/integrations", &ws.admin, b)),
    )
    .await;
    let mut created = 0;
    for r in results {
        let r = r?;
        match (r.status, r.body["error"]["code"].as_str()) {
            (StatusCode::CREATED, _) => created += 1,
            (StatusCode::PAYMENT_REQUIRED, Some("plan_limit")) => {}
            (StatusCode::CONFLICT, Some("version_conflict" | "duplicate_name")) => {}
            (other, _) => panic!("concurrent create answered {other}: {}", r.text),
        }
    }
    assert!(
        (1..=3).contains(&created),
        "{created} created on a plan of 3"
    );
    let listed = app.list_all("/v1/integrations", &ws.admin, &[], 50).await?;
    assert_eq!(listed.len(), created, "{listed:?}");
    let mut names: Vec<String> = listed
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_lowercase))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        created,
        "duplicate names slipped through: {listed:?}"
    );
    // Whatever is left of the plan can still be used.
    for n in created..3 {
        app.create_integration(&ws.admin, &format!("Later {n}"))
            .await?;
    }
    let over = app
        .post("/v1/integrations", &ws.admin, integration_body("Over"))
        .await?;
    over.expect_error(StatusCode::PAYMENT_REQUIRED, "plan_limit", "");
    app.finish().await
}

/// Nine concurrent creates, five times over, on the embedded SQLite store: each answers
/// 201, 402 or 409, and promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_a_burst_of_concurrent_creates() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    for round in 0..5 {
        let ws = app
            .new_workspace(&format!("Burst {round}"), Plan::Professional)
            .await?;
        let started = Instant::now();
        let requests = (0..9).map(|n| {
            let rb = app
                .request(Method::POST, "/v1/integrations", &ws.admin)
                .json(&integration_body(&format!("Burst {n}")))
                // Long enough to see the answer rather than a client timeout.
                .timeout(Duration::from_secs(90));
            send(rb)
        });
        let statuses: Vec<u16> = join_all(requests)
            .await
            .into_iter()
            .map(|r| r.map(|r| r.status.as_u16()))
            .collect::<anyhow::Result<_>>()?;
        let took = started.elapsed();
        assert!(
            statuses.iter().all(|s| [201, 402, 409].contains(s)),
            "round {round}: {statuses:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(5), "round {round} took {took:?}");
    }
    app.finish().await
}

fn etag_of(resp: &syncledger_testkit::app::Resp) -> String {
    resp.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// PATCH with `If-Match` applies only at the version it names: a second editor working
/// from the same read gets 412 and changes nothing (both used to win in turn, the second
/// silently undoing the first). Without `If-Match`, or with `*`, the change applies to the
/// current version as before; a malformed `If-Match` is 400.
async fn if_match_keeps_two_editors_from_overwriting_each_other(
    backend: Backend,
) -> anyhow::Result<()> {
    use serde_json::json;
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Edited twice").await?;
    let path = format!("/v1/integrations/{id}");
    let read = app.get(&path, &app.admin).await?;
    let first = etag_of(&read);
    assert_eq!(first, format!("\"{}\"", read.body["version"]), "{read:?}");
    let mut config = syncledger_testkit::app::sync_config();
    let mut patch = |minutes: u32, tag: &str| {
        config["interval_minutes"] = json!(minutes);
        app.request(Method::PATCH, &path, &app.admin)
            .header("if-match", tag)
            .json(&json!({"sync_config": config.clone()}))
    };
    let one = send(patch(90, &first)).await?;
    one.expect(StatusCode::OK);
    let second = etag_of(&one);
    assert_ne!(second, first);
    let events = app.event_count().await?;
    let two = send(patch(120, &first)).await?;
    two.expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed", "");
    assert_eq!(
        app.event_count().await?,
        events,
        "a stale PATCH wrote something"
    );
    let now = app.get(&path, &app.admin).await?;
    assert_eq!(
        now.body["sync_config"]["interval_minutes"], 90,
        "{}",
        now.text
    );
    assert_eq!(etag_of(&now), second);
    send(patch(120, &format!("W/{second}")))
        .await?
        .expect(StatusCode::OK);
    send(patch(150, "*")).await?.expect(StatusCode::OK);
    let bad = send(patch(180, "\"twelve\"")).await?;
    bad.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "If-Match");

    // A record: an edit based on a version a sync or another editor has since moved past.
    let created = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": "ada@example.com"}}),
        )
        .await?;
    let record = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/v1/records/{record}");
    let tag = etag_of(&app.get(&path, &app.admin).await?);
    let edit = |name: &str, tag: &str| {
        app.request(Method::PATCH, &path, &app.admin)
            .header("if-match", tag)
            .json(&json!({"fields": {"first_name": name}}))
    };
    let edited = send(edit("Ada", &tag)).await?;
    edited.expect(StatusCode::OK);
    assert_ne!(etag_of(&edited), tag);
    let stale = send(edit("Augusta", &tag)).await?;
    stale.expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed", "");
    let now = app.get(&path, &app.admin).await?;
    assert_eq!(
        now.body["fields"]["first_name"]["value"], "Ada",
        "{}",
        now.text
    );
    app.finish().await
}
