//! The ways in for a CRM that publishes no API (Dubsado, HoneyBook, 17hats, Studio
//! Ninja, Pixieset, Iris Works), end to end through the API: an integration created
//! without a spec, CSV imports that create, update on a re-import (no duplicates) and
//! roll back like any run; the inbound webhook that Zapier or Make call, deduplicating
//! by id or email, with a wrong or missing secret refused and nothing changed, and the
//! secret never in a log; pull, push and on-demand runs refused with a clear 400; bad
//! files refused naming their line; what the catalogue says of each way in.
//!
//! Runs here are of HoneyBook, 17hats and Pixieset only: `metrics.rs` counts the runs of
//! Dubsado, Studio Ninja and Iris Works in the process's one recorder.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_testkit::app::{captured_logs, on_both_backends, send, Backend, Resp, TestApp};

use crate::sync::{records, wait_run};

on_both_backends!(
    csv_imports_create_update_and_roll_back,
    inbound_webhook_deduplicates_by_id_or_email,
    wrong_secrets_change_nothing,
    runs_and_writes_are_refused,
    bad_files_are_refused_naming_the_line,
    failed_rows_are_retried_like_any_run,
    an_import_whose_records_are_gone_fails_saying_so,
    the_catalogue_says_which_way_in,
);

fn pull_only() -> Value {
    json!({"direction": "pull", "frequency": "manual", "entities": ["contacts"],
           "conflict_strategy": "crm_wins"})
}

async fn create(app: &TestApp, provider: &str) -> anyhow::Result<String> {
    let body = json!({"provider": provider, "name": format!("{provider} clients"),
                      "sync_config": pull_only()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    let created = resp.expect(StatusCode::CREATED);
    // Nothing to connect to: it takes imports from the start.
    assert_eq!(created["status"], "connected", "{}", resp.text);
    resp.str("id")
}

async fn import_csv(app: &TestApp, id: &str, csv: &str) -> anyhow::Result<Resp> {
    send(
        app.request(
            Method::POST,
            &format!("/v1/integrations/{id}/imports"),
            &app.admin,
        )
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv.to_owned()),
    )
    .await
}

/// The import run as it ended, once its integration let it go. The request answers 201
/// when the run ended within its wait and 202 when it is still going (a loaded machine):
/// both are the API's contract, and either way the run is followed to its end.
async fn imported(app: &TestApp, resp: &Resp) -> anyhow::Result<Value> {
    assert!(
        matches!(resp.status, StatusCode::CREATED | StatusCode::ACCEPTED),
        "{}",
        resp.text
    );
    let run = &resp.body;
    assert_eq!(run["kind"], "import", "{}", resp.text);
    let id = resp.str("id")?;
    wait_run(app, &id).await
}

fn stat(run: &Value, name: &str) -> u64 {
    run["stats"][name].as_u64().unwrap_or(u64::MAX)
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    &record["fields"][name]["value"]
}

/// The integration's records by their CRM id.
async fn by_remote_id(
    app: &TestApp,
    id: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
    Ok(records(app, id, "contacts")
        .await?
        .into_iter()
        .map(|r| {
            let remote = r["links"][0]["remote_id"].as_str().unwrap_or("").to_owned();
            (remote, r)
        })
        .collect())
}

async fn csv_imports_create_update_and_roll_back(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "honeybook").await?;
    let first = "id,email,first_name,last_name,phone\n\
                 d1,ada@example.com,Ada,Lovelace,+44 1\n\
                 d2,grace@example.com,Grace,Hopper,\n\
                 ,alan@example.com,Alan,\"Turing, A.\",+44 3\n";
    let run = imported(&app, &import_csv(&app, &id, first).await?).await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        (stat(&run, "created"), stat(&run, "failed")),
        (3, 0),
        "{run}"
    );
    assert_eq!(stat(&run, "api_calls"), 0, "{run}");
    let listed = by_remote_id(&app, &id).await?;
    let keys: Vec<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(keys, ["d1", "d2", "email:alan@example.com"]);
    assert_eq!(field(&listed["d1"], "first_name"), "Ada");
    assert_eq!(
        field(&listed["email:alan@example.com"], "last_name"),
        "Turing, A."
    );

    // A re-import with edits updates: Ada's name changed, Alan (no id: his email) and
    // Grace as they were, one new row. No record twice.
    let second = "email,id,first_name,last_name,phone\n\
                  ada@example.com,d1,Augusta,Lovelace,+44 1\n\
                  grace@example.com,d2,Grace,Hopper,\n\
                  alan@example.com,,Alan,\"Turing, A.\",+44 3\n\
                  kat@example.com,d4,Katherine,Johnson,\n";
    let again = imported(&app, &import_csv(&app, &id, second).await?).await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        (
            stat(&again, "created"),
            stat(&again, "updated"),
            stat(&again, "unchanged")
        ),
        (1, 1, 2),
        "{again}"
    );
    let listed = by_remote_id(&app, &id).await?;
    assert_eq!(listed.len(), 4);
    assert_eq!(field(&listed["d1"], "first_name"), "Augusta");
    let ada = listed["d1"]["id"].as_str().unwrap_or_default().to_owned();

    // Each import is in the integration's run history and the audit trail.
    let history = app
        .get(&format!("/v1/integrations/{id}/sync-runs"), &app.admin)
        .await?;
    let kinds: Vec<&str> = history.expect(StatusCode::OK)["data"]
        .as_array()
        .map(|runs| runs.iter().filter_map(|r| r["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["import", "import"], "{}", history.text);
    let trail = app
        .get(
            &format!("/v1/audit?integration_id={id}&limit=500"),
            &app.admin,
        )
        .await?;
    assert!(
        trail.expect(StatusCode::OK)["data"]
            .as_array()
            .is_some_and(|entries| entries.len() >= 10),
        "{}",
        trail.text
    );

    // Rolling the re-import back: Ada's name back, Katherine (created by it) archived.
    let rollback = app
        .post_empty(
            &format!(
                "/v1/sync-runs/{}/rollback",
                again["id"].as_str().unwrap_or_default()
            ),
            &app.admin,
        )
        .await?;
    let rollback_id = rollback.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let undone = wait_run(&app, &rollback_id).await?;
    assert_eq!(undone["status"], "completed", "{undone}");
    let record = app.get(&format!("/v1/records/{ada}"), &app.admin).await?;
    assert_eq!(field(record.expect(StatusCode::OK), "first_name"), "Ada");
    let listed = by_remote_id(&app, &id).await?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!listed.contains_key("d4"));
    app.finish().await
}

async fn new_secret(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post_empty(
            &format!("/v1/integrations/{id}/inbound-webhook"),
            &app.admin,
        )
        .await?;
    Ok(resp.expect(StatusCode::CREATED).clone())
}

async fn deliver(
    app: &TestApp,
    url: &str,
    secret: Option<&str>,
    body: Value,
) -> anyhow::Result<Resp> {
    let path = url.strip_prefix(&app.url("")).unwrap_or(url).to_owned();
    let rb = app.request(Method::POST, &path, "").json(&body);
    let rb = match secret {
        Some(secret) => rb.bearer_auth(secret),
        None => rb,
    };
    send(rb).await
}

async fn inbound_webhook_deduplicates_by_id_or_email(backend: Backend) -> anyhow::Result<()> {
    let logs = captured_logs();
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "honeybook").await?;
    let made = new_secret(&app, &id).await?;
    let secret = made["secret"].as_str().unwrap_or_default().to_owned();
    let url = made["url"].as_str().unwrap_or_default().to_owned();
    let with_secret = made["url_with_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("slin_") && secret.len() > 40, "{made}");
    assert_eq!(url, app.url(&format!("/v1/inbound/{id}")));
    assert_eq!(
        made["integration"]["credential_kind"], "inbound_webhook",
        "{made}"
    );
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert!(!shown.text.contains(&secret), "the secret shown again");

    // By id: a second delivery with the same id updates the record.
    let one = json!({"id": "hb-1", "email": "ada@example.com", "first_name": "Ada"});
    let resp = deliver(&app, &url, Some(&secret), one).await?;
    let run = imported(&app, &resp).await?;
    assert_eq!(
        (run["trigger"].as_str(), stat(&run, "created")),
        (Some("webhook"), 1),
        "{run}"
    );
    let edit = json!({"id": "hb-1", "email": "ada@example.com", "first_name": "Augusta"});
    let run = imported(&app, &deliver(&app, &url, Some(&secret), edit).await?).await?;
    assert_eq!(
        (stat(&run, "created"), stat(&run, "updated")),
        (0, 1),
        "{run}"
    );

    // By email when there is no id (the secret in the URL this time); an array of two,
    // one of them the same person as before in other letters.
    let grace = json!({"email": "Grace@Example.com", "first_name": "Grace"});
    let run = imported(&app, &deliver(&app, &with_secret, None, grace).await?).await?;
    assert_eq!(stat(&run, "created"), 1, "{run}");
    let both = json!([{"email": "grace@example.com ", "first_name": "Grace", "last_name": "Hopper"},
                      {"id": 17, "email": null, "first_name": "Kat"}]);
    let run = imported(&app, &deliver(&app, &with_secret, None, both).await?).await?;
    assert_eq!(
        (stat(&run, "created"), stat(&run, "updated")),
        (1, 1),
        "{run}"
    );
    let listed = by_remote_id(&app, &id).await?;
    let keys: Vec<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(keys, ["17", "email:grace@example.com", "hb-1"]);
    assert_eq!(field(&listed["hb-1"], "first_name"), "Augusta");
    assert_eq!(
        field(&listed["email:grace@example.com"], "last_name"),
        "Hopper"
    );

    // Deliveries at once (Zapier sends each record as it comes): one run at a time per
    // integration, so each waits for the one before; all are taken.
    let sends = (0..4).map(|i| {
        let record = json!({"id": format!("burst-{i}"), "first_name": format!("Burst {i}")});
        deliver(&app, &url, Some(&secret), record)
    });
    for resp in futures::future::join_all(sends).await {
        let resp = resp?;
        assert!(
            matches!(resp.status, StatusCode::CREATED | StatusCode::ACCEPTED),
            "{}",
            resp.text
        );
        wait_run(&app, &resp.str("id")?).await?;
    }
    let listed = by_remote_id(&app, &id).await?;
    assert_eq!(listed.len(), 7, "{:?}", listed.keys());

    // A delivery can be rolled back like any run.
    let rollback = app
        .post_empty(
            &format!(
                "/v1/sync-runs/{}/rollback",
                run["id"].as_str().unwrap_or_default()
            ),
            &app.admin,
        )
        .await?;
    let rollback_id = rollback.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(wait_run(&app, &rollback_id).await?["status"], "completed");
    assert_eq!(by_remote_id(&app, &id).await?.len(), 6);

    let text = logs
        .lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    assert!(!text.contains(&secret), "the secret in a log line");
    app.finish().await
}

async fn wrong_secrets_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "seventeen").await?;
    let record = json!({"id": "c1", "email": "ada@example.com"});
    // No secret made yet: every delivery is refused.
    let resp = deliver(
        &app,
        &app.url(&format!("/v1/inbound/{id}")),
        Some("slin_guess"),
        record.clone(),
    )
    .await?;
    resp.expect_error(
        StatusCode::UNAUTHORIZED,
        "invalid_secret",
        "missing or wrong",
    );
    let old = new_secret(&app, &id).await?["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let first = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let set_at = first.str("credentials_set_at")?;
    assert!(
        first.body["credentials_rotated_at"].is_null(),
        "{}",
        first.text
    );
    let made = new_secret(&app, &id).await?;
    let secret = made["secret"].as_str().unwrap_or_default().to_owned();
    assert_ne!(old, secret);
    // Regression: every rotation (OAuth refreshes too) was taken for a first secret, as
    // the status read model folds the events without the ciphertext.
    assert_eq!(
        made["integration"]["credentials_set_at"],
        set_at.as_str(),
        "{made}"
    );
    assert!(
        made["integration"]["credentials_rotated_at"].is_string(),
        "{made}"
    );
    app.caught_up().await;
    let before = app.event_count().await?;
    let url = app.url(&format!("/v1/inbound/{id}"));
    let wrong = format!("{secret}x");
    for (url, given) in [
        (url.clone(), Some(old.as_str())),
        (url.clone(), Some(wrong.as_str())),
        (url.clone(), None),
        (url.clone(), Some("")),
        (format!("{url}/{old}"), None),
        (
            app.url(&format!("/v1/inbound/{}/{secret}", uuid::Uuid::now_v7())),
            None,
        ),
        (
            app.url("/v1/inbound/not-an-integration"),
            Some(secret.as_str()),
        ),
    ] {
        let resp = deliver(&app, &url, given, record.clone()).await?;
        resp.expect_error(
            StatusCode::UNAUTHORIZED,
            "invalid_secret",
            "missing or wrong",
        );
        assert!(!resp.text.contains(&old) && !resp.text.contains(&secret));
    }
    // A bad payload with the right secret is 400 naming the record, and writes nothing.
    let nested = json!([{"id": "c1"}, {"id": "c2", "tags": ["a"]}]);
    let resp = deliver(&app, &url, Some(&secret), nested).await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "invalid_payload", "record 2");
    let neither = json!({"first_name": "Nobody"});
    let resp = deliver(&app, &url, Some(&secret), neither).await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "invalid_payload", "neither an id");
    app.caught_up().await;
    assert_eq!(
        app.event_count().await?,
        before,
        "a refused delivery wrote events"
    );
    assert!(by_remote_id(&app, &id).await?.is_empty());
    app.finish().await
}

async fn runs_and_writes_are_refused(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    for (config, field) in [
        (
            json!({"direction": "push", "frequency": "manual", "entities": ["contacts"], "conflict_strategy": "crm_wins"}),
            "sync_config.direction",
        ),
        (
            json!({"direction": "bidirectional", "frequency": "manual", "entities": ["contacts"], "conflict_strategy": "crm_wins"}),
            "sync_config.direction",
        ),
        (
            json!({"direction": "pull", "frequency": "interval", "interval_minutes": 60, "entities": ["contacts"], "conflict_strategy": "crm_wins"}),
            "sync_config.frequency",
        ),
    ] {
        let body = json!({"provider": "pixieset", "name": "Studio", "sync_config": config});
        let resp = app.post("/v1/integrations", &app.admin, body).await?;
        resp.expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "publishes no API",
        );
        let message = resp.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(field), "{}", resp.text);
    }
    let body = json!({"provider": "pixieset", "name": "Studio", "sync_config": pull_only(),
                      "parameters": {"account_id": "7"}});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "publishes no API",
    );

    let id = create(&app, "seventeen").await?;
    for kind in ["incremental", "full", "push"] {
        let resp = app
            .post(
                &format!("/v1/integrations/{id}/sync-runs"),
                &app.admin,
                json!({"kind": kind}),
            )
            .await?;
        resp.expect_error(
            StatusCode::BAD_REQUEST,
            "integration_unusable",
            "publishes no API",
        );
    }
    for action in ["connect", "test"] {
        let resp = app
            .post_empty(&format!("/v1/integrations/{id}/{action}"), &app.admin)
            .await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "unsupported", "publishes no API");
    }
    // Regression: an API key stored on it replaced the inbound webhook's secret, and
    // every delivery was refused from then on.
    let secret = new_secret(&app, &id).await?["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = json!({"type": "api_key", "api_key": "k"});
    let resp = app
        .post(
            &format!("/v1/integrations/{id}/credentials"),
            &app.admin,
            key,
        )
        .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "unsupported", "no key to store");
    let url = app.url(&format!("/v1/inbound/{id}"));
    let record = json!({"id": "n1", "email": "n1@example.com"});
    let delivered = deliver(&app, &url, Some(&secret), record).await?;
    assert_eq!(imported(&app, &delivered).await?["status"], "completed");
    // Refused without a trace: the integration stays connected (a failed connection
    // test would have put it in error).
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(
        shown.expect(StatusCode::OK)["status"],
        "connected",
        "{}",
        shown.text
    );
    let two_way = json!({"sync_config": {"direction": "bidirectional", "frequency": "manual",
                         "entities": ["contacts"], "conflict_strategy": "crm_wins"}});
    let resp = app
        .patch(&format!("/v1/integrations/{id}"), &app.admin, two_way)
        .await?;
    resp.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "cannot write to it",
    );

    // Imports are for CRMs without an API.
    let hubspot = app.create_integration(&app.admin, "HubSpot").await?;
    let resp = import_csv(&app, &hubspot, "id,email\n1,a@example.com\n").await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "unsupported", "has an API");
    let resp = app
        .post_empty(
            &format!("/v1/integrations/{hubspot}/inbound-webhook"),
            &app.admin,
        )
        .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "unsupported", "has an API");
    // A viewer imports nothing.
    let (_, viewer) = app.issue_token("viewer").await?;
    let resp = send(
        app.request(
            Method::POST,
            &format!("/v1/integrations/{id}/imports"),
            &viewer,
        )
        .header("content-type", "text/csv")
        .body("id\n1\n"),
    )
    .await?;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text);
    app.finish().await
}

async fn bad_files_are_refused_naming_the_line(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "seventeen").await?;
    app.caught_up().await;
    let before = app.event_count().await?;
    for (csv, needle) in [
        (
            "id,email\n1,a@example.com\n2,b@example.com,extra\n",
            "line 3: 3 field(s)",
        ),
        ("id,email\n1,a@example.com\n\n3\n", "line 4: 1 field(s)"),
        ("", "empty"),
        ("id,email\n", "line 1: a header but no rows"),
        ("id,,email\n1,2,3\n", "line 1: column 2 has no name"),
        ("id,email\n1,a@example.com\n,\n", "line 3: neither an id"),
        (
            "id,email\n1,a@example.com\n1,b@example.com\n",
            "line 3: the same record as line 2",
        ),
    ] {
        let resp = import_csv(&app, &id, csv).await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "invalid_csv", needle);
    }
    let latin1 = send(
        app.request(
            Method::POST,
            &format!("/v1/integrations/{id}/imports"),
            &app.admin,
        )
        .header("content-type", "text/csv")
        .body(b"id,first_name\n1,Jos\xe9\n".to_vec()),
    )
    .await?;
    latin1.expect_error(
        StatusCode::BAD_REQUEST,
        "invalid_csv",
        "line 2: column \"first_name\" is not UTF-8",
    );
    let json = send(
        app.request(
            Method::POST,
            &format!("/v1/integrations/{id}/imports"),
            &app.admin,
        )
        .json(&json!({"id": 1})),
    )
    .await?;
    json.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "text/csv",
    );
    let resp = send(
        app.request(
            Method::POST,
            &format!("/v1/integrations/{id}/imports?entity=companies"),
            &app.admin,
        )
        .header("content-type", "text/csv")
        .body("id\n1\n"),
    )
    .await?;
    resp.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "does not sync companies",
    );
    // Over 20 MiB: refused on its declared length, before it is read.
    let (status, body) = post_length(
        &app,
        &format!("/v1/integrations/{id}/imports"),
        20 * 1024 * 1024 + 1,
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("payload_too_large") && body.contains("20 MiB"),
        "{body}"
    );
    app.caught_up().await;
    assert_eq!(
        app.event_count().await?,
        before,
        "a refused file wrote events"
    );
    // Between 1 MiB and 20 MiB is taken: 30,000 rows.
    let mut large = String::from("id,email,first_name\n");
    for i in 0..30_000 {
        large.push_str(&format!(
            "r{i},person{i}@example.com,Person number {i} with a longer name\n"
        ));
    }
    assert!(large.len() > 1024 * 1024);
    let resp = import_csv(&app, &id, &large).await?;
    assert!(
        matches!(resp.status, StatusCode::CREATED | StatusCode::ACCEPTED),
        "{}",
        resp.text
    );
    let run = wait_run(&app, &resp.str("id")?).await?;
    assert_eq!(
        (run["status"].as_str(), stat(&run, "created")),
        (Some("completed"), 30_000),
        "{run}"
    );
    app.finish().await
}

/// A row the mapping cannot map fails alone (the run is partial); once the mapping is
/// fixed, a retry of the run takes that row again from the copy kept with the failure.
async fn failed_rows_are_retried_like_any_run(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "pixieset").await?;
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    let strict = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "pull"},
        {"crm_field": "age", "app_field": "age", "direction": "pull",
         "transform": "string(int(value) + 1)"}
    ]});
    let resp = send(app.request(Method::PUT, &base, &app.admin).json(&strict)).await?;
    resp.expect(StatusCode::OK);
    let csv = "id,email,age\np1,a@example.com,30\np2,b@example.com,old\n";
    let run = imported(&app, &import_csv(&app, &id, csv).await?).await?;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(
        (stat(&run, "created"), stat(&run, "failed")),
        (1, 1),
        "{run}"
    );
    assert_eq!(run["failures"][0]["remote_id"], "p2", "{run}");

    let lenient = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "pull"},
        {"crm_field": "age", "app_field": "age", "direction": "pull"}
    ]});
    let resp = send(app.request(Method::PUT, &base, &app.admin).json(&lenient)).await?;
    resp.expect(StatusCode::OK);
    let retry = app
        .post_empty(
            &format!(
                "/v1/sync-runs/{}/retry",
                run["id"].as_str().unwrap_or_default()
            ),
            &app.admin,
        )
        .await?;
    let retry_id = retry.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let retried = wait_run(&app, &retry_id).await?;
    assert_eq!(
        (retried["status"].as_str(), stat(&retried, "created")),
        (Some("completed"), 1),
        "{retried}"
    );
    let listed = by_remote_id(&app, &id).await?;
    assert_eq!(field(&listed["p2"], "age"), "old");
    assert_eq!(field(&listed["p1"], "age"), "31");
    app.finish().await
}

/// The records of an import live in the process that received them. A queued import
/// run another process holds is left to it; a running one whose process stopped (here:
/// started, its records never held) fails saying so, and frees the integration.
async fn an_import_whose_records_are_gone_fails_saying_so(backend: Backend) -> anyhow::Result<()> {
    use syncledger_domain::sync_run::{RunKind, RunOptions, RunStatus, SyncRunCommand, Trigger};
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "pixieset").await?;
    let runs = &app.state.engine.runs;
    let meta = syncledger_store::Metadata::new(
        "test",
        app.workspace_id.clone(),
        uuid::Uuid::now_v7().to_string(),
    );
    let run_id = runs
        .trigger_with(
            &id,
            RunKind::Import,
            Trigger::Manual,
            RunOptions::default(),
            &meta,
        )
        .await?;
    // A polling worker that sees it queued leaves it to its holder.
    assert_eq!(runs.execute(&run_id).await?, RunStatus::Queued);
    let start = SyncRunCommand::Start {
        worker: "gone#00000000".into(),
        at: chrono::Utc::now(),
    };
    app.state
        .store
        .cqrs::<syncledger_domain::sync_run::SyncRun>()
        .execute(&run_id, start, &meta)
        .await?;
    assert_eq!(runs.execute(&run_id).await?, RunStatus::Failed);
    let run = wait_run(&app, &run_id).await?;
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("held by the process that received them"),
        "{run}"
    );
    // The integration takes the next import.
    let resp = import_csv(&app, &id, "id,email\n1,a@example.com\n").await?;
    assert_eq!(imported(&app, &resp).await?["status"], "completed");
    app.finish().await
}

async fn the_catalogue_says_which_way_in(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let list = app.get("/v1/providers", &app.admin).await?;
    let providers = list.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in &providers {
        assert!(
            p["ways_in"].as_array().is_some_and(|w| !w.is_empty()),
            "{p}"
        );
        assert!(
            p["ways_in_reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{p}"
        );
    }
    let ways = |id: &str| {
        providers
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["ways_in"].clone())
            .unwrap_or(Value::Null)
    };
    for id in [
        "dubsado",
        "honeybook",
        "seventeen",
        "studio_ninja",
        "pixieset",
        "iris_works",
    ] {
        assert_eq!(ways(id), json!(["csv_import", "inbound_webhook"]), "{id}");
    }
    assert_eq!(ways("hubspot"), json!(["api"]));
    assert_eq!(ways("lightblue"), json!(["leads_push"]));
    let one = app.get("/v1/providers/dubsado", &app.admin).await?;
    let dubsado = one.expect(StatusCode::OK);
    assert_eq!(
        (
            &dubsado["spec_required"],
            &dubsado["auth"]["kind"],
            &dubsado["capabilities"][0]["sync"]
        ),
        (&json!(false), &json!("none"), &json!("import")),
        "{}",
        one.text
    );
    assert!(dubsado["ways_in_reason"]
        .as_str()
        .is_some_and(|r| r.contains("no API")));
    app.finish().await
}

/// Sends only the head of a CSV import declaring `length` bytes, and reads the answer.
async fn post_length(app: &TestApp, path: &str, length: usize) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: text/csv\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n",
        app.admin
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, answer))
}
