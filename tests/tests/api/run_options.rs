//! Per-run options of `POST /v1/integrations/{id}/sync-runs`: `entities` (a subset of the
//! integration's), `direction` (no wider than its own) and `import_historical` (false:
//! only records changed from now on), against the HubSpot sandbox.

use crate::sync::{edit_remote, records};
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_testkit::app::{connect, wait_run, Backend, TestApp};
use syncledger_testkit::sandbox;

syncledger_testkit::app::on_both_backends!(
    a_run_covers_only_the_entities_asked_for,
    run_options_wider_than_the_integration_are_refused,
    a_run_without_history_imports_only_later_changes,
    a_run_shows_its_progress_where_the_provider_counts,
    a_post_without_a_body_starts_an_incremental_run
);

async fn start(app: &TestApp, id: &str, body: Value) -> anyhow::Result<Value> {
    let resp = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            body,
        )
        .await?;
    let started = resp.expect(StatusCode::CREATED).clone();
    wait_run(app, &resp.str("id")?).await.map(|ended| {
        assert_eq!(ended["id"], started["id"]);
        ended
    })
}

async fn integration(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let resp = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

fn passes(run: &Value) -> Vec<&str> {
    run["passes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pass"].as_str())
        .collect()
}

async fn a_run_covers_only_the_entities_asked_for(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(5).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let view = integration(&app, &id).await?;
    assert_eq!(view["last_run"], Value::Null, "no run yet: {view}");
    let run = start(
        &app,
        &id,
        json!({"kind": "full", "entities": ["companies"]}),
    )
    .await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["entities"], json!(["companies"]), "{run}");
    assert_eq!(run["import_historical"], true, "{run}");
    assert!(
        passes(&run).iter().all(|p| p.starts_with("companies/")),
        "{run}"
    );
    assert_eq!(run["stats"]["created"], 5, "{run}");
    assert_eq!(records(&app, &id, "companies").await?.len(), 5);
    assert!(records(&app, &id, "contacts").await?.is_empty());
    // The integration view shows the last run's status and counts.
    let last = integration(&app, &id).await?["last_run"].clone();
    assert_eq!(last["id"], run["id"], "{last}");
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["kind"], "full", "{last}");
    assert_eq!(last["stats"]["created"], 5, "{last}");
    assert!(last["ended_at"].is_string(), "{last}");
    // Without options: every entity.
    let run = start(&app, &id, json!({"kind": "full"})).await?;
    assert_eq!(run["entities"], Value::Null, "{run}");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 5);
    let listed = app.get("/v1/integrations", &app.admin).await?;
    let listed = listed.expect(StatusCode::OK)["data"].clone();
    let last = listed
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == id.as_str()))
        .map(|i| i["last_run"].clone())
        .unwrap_or_default();
    assert_eq!(
        last["id"], run["id"],
        "the list shows the newest run: {last}"
    );
    assert_eq!(last["stats"]["created"], 5, "{last}");
    sandbox.shutdown().await;
    app.finish().await
}

/// 400 naming the field, and no run queued.
async fn run_options_wider_than_the_integration_are_refused(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let path = format!("/v1/integrations/{id}/sync-runs");
    let cases = [
        (
            json!({"entities": ["deals"]}),
            "entities: must be contacts or companies",
        ),
        (
            json!({"entities": []}),
            "entities: name at least one entity",
        ),
        (
            json!({"entities": ["contacts", "contacts"]}),
            "entities: contacts is named twice",
        ),
        (
            json!({"direction": "push"}),
            "direction: push is wider than the integration's direction pull",
        ),
        (
            json!({"direction": "bidirectional"}),
            "direction: bidirectional is wider",
        ),
        (
            json!({"direction": "sideways"}),
            "direction: must be pull, push or bidirectional",
        ),
        (json!({"import_historical": "no"}), "import_historical"),
    ];
    for (body, needle) in cases {
        let resp = app.post(&path, &app.admin, body.clone()).await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text
        );
        assert!(resp.text.contains(needle), "{body}: {}", resp.text);
    }
    let listed = app.get(&path, &app.admin).await?;
    assert_eq!(
        listed.expect(StatusCode::OK)["data"],
        json!([]),
        "no run queued"
    );
    // A narrower direction is fine on a two-way integration.
    let both = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "crm_wins",
    )
    .await?;
    let run = start(&app, &both, json!({"kind": "full", "direction": "pull"})).await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["direction"], "pull", "{run}");
    assert!(passes(&run).iter().all(|p| !p.ends_with("/push")), "{run}");
    sandbox.shutdown().await;
    app.finish().await
}

/// `import_historical: false`: the run imports none of the existing records and leaves a
/// cursor of "now", so the next incremental run brings only what changed since.
async fn a_run_without_history_imports_only_later_changes(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(8).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let run = start(
        &app,
        &id,
        json!({"kind": "full", "entities": ["contacts"], "import_historical": false}),
    )
    .await?;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["import_historical"], false, "{run}");
    assert_eq!(run["stats"]["created"], 0, "{run}");
    assert!(records(&app, &id, "contacts").await?.is_empty());
    edit_remote(
        &sandbox,
        "contacts",
        "1",
        json!({"jobtitle": "Changed after the start"}),
    )
    .await?;
    let next = start(
        &app,
        &id,
        json!({"kind": "incremental", "entities": ["contacts"]}),
    )
    .await?;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(
        next["stats"]["created"], 1,
        "only the record changed since: {next}"
    );
    assert_eq!(records(&app, &id, "contacts").await?.len(), 1);
    sandbox.shutdown().await;
    app.finish().await
}

/// A run shows `records_total` and `progress_percent` where the provider gives a count:
/// HubSpot's search (incremental runs) does, its list endpoint (full runs) does not.
async fn a_run_shows_its_progress_where_the_provider_counts(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(20).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let full = start(&app, &id, json!({"kind": "full"})).await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(
        (&full["records_total"], &full["progress_percent"]),
        (&Value::Null, &Value::Null),
        "the list endpoint gives no count: {full}"
    );
    let contacts = records(&app, &id, "contacts").await?;
    for c in contacts.iter().take(3) {
        let remote_id = c["links"][0]["remote_id"].as_str().unwrap_or_default();
        edit_remote(
            &sandbox,
            "contacts",
            remote_id,
            json!({"phone": "+1 555 0300"}),
        )
        .await?;
    }
    let incremental = start(&app, &id, json!({"kind": "incremental"})).await?;
    assert_eq!(incremental["status"], "completed", "{incremental}");
    // The search counts what it matches: the three contacts changed, and the records at
    // the previous run's last modification time that the boundary lists again.
    let total = incremental["records_total"].as_u64().unwrap_or(0);
    let processed = incremental["stats"]["processed"].as_u64().unwrap_or(0);
    assert!(total >= 3, "{incremental}");
    assert_eq!(total, processed, "{incremental}");
    assert_eq!(incremental["progress_percent"], 100, "{incremental}");
    sandbox.shutdown().await;
    app.finish().await
}

/// `POST …/sync-runs` with no body at all (with or without a content type) is an
/// incremental run of every entity; a body that is not JSON is still refused (it used to
/// be 415 even when empty).
async fn a_post_without_a_body_starts_an_incremental_run(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let path = format!("/v1/integrations/{id}/sync-runs");
    let resp = app.post_empty(&path, &app.admin).await?;
    let started = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(started["kind"], "incremental", "{started}");
    assert_eq!(started["entities"], Value::Null, "{started}");
    let ended = wait_run(&app, &resp.str("id")?).await?;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 3);

    let typed_but_empty = syncledger_testkit::app::send(
        app.request(reqwest::Method::POST, &path, &app.admin)
            .header("content-type", "application/json"),
    )
    .await?;
    assert_eq!(
        typed_but_empty.expect(StatusCode::CREATED)["kind"],
        "incremental"
    );
    let resp = wait_run(&app, &typed_but_empty.str("id")?).await?;
    assert_eq!(resp["status"], "completed", "{resp}");

    let not_json = syncledger_testkit::app::send(
        app.request(reqwest::Method::POST, &path, &app.admin)
            .header("content-type", "text/plain")
            .body("full"),
    )
    .await?;
    not_json.expect_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "",
    );
    sandbox.shutdown().await;
    app.finish().await
}
