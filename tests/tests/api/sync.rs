//! Sync runs end to end through the API against the provider sandboxes: full and
//! incremental pulls, pushes of app edits, edits on both sides, conflicts, and the
//! refusals of the sync-runs endpoints.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{PipedriveSandboxConfig, Sandbox, SandboxConfig};
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    hubspot_two_way,
    sync_run_refusals,
    schedule_and_webhooks,
    shared_timestamps_across_pages,
    boundary_costs_no_repeats,
    push_failures_and_retry,
    remote_ids_shared_by_two_entities
);

// Shared with the security suite, so they live with the helpers.
pub use syncledger_testkit::app::{approve, connect, wait_run};

/// Starts a run and waits for it to end; returns its final view.
pub async fn run(app: &TestApp, integration: &str, kind: &str) -> anyhow::Result<Value> {
    let run_id = run_started(app, integration, kind).await?;
    wait_run(app, &run_id).await
}

/// Starts a run (201); returns its id.
pub async fn run_started(app: &TestApp, integration: &str, kind: &str) -> anyhow::Result<String> {
    let resp = app
        .post(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
            json!({"kind": kind}),
        )
        .await?;
    let started = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(started["kind"], kind);
    // A small run may already have ended by the time the answer is built.
    let statuses = [
        "queued",
        "running",
        "completed",
        "partial",
        "failed",
        "cancelled",
        "quota_exhausted",
    ];
    assert!(
        statuses.contains(&started["status"].as_str().unwrap_or("")),
        "{started}"
    );
    resp.str("id")
}

/// Every record of the workspace linked to the integration, by entity.
pub async fn records(app: &TestApp, integration: &str, entity: &str) -> anyhow::Result<Vec<Value>> {
    app.list_all(
        "/v1/records",
        &app.admin,
        &[("entity", entity), ("integration_id", integration)],
        200,
    )
    .await
}

/// A sandbox record's properties.
pub async fn remote(sandbox: &Sandbox, ty: &str, id: &str) -> anyhow::Result<Value> {
    let url = format!("{}/_sandbox/records/{ty}/{id}", sandbox.base_url());
    let resp = send(reqwest::Client::new().get(url)).await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

/// Edits a sandbox record as a CRM user would; its modification time advances.
pub async fn edit_remote(
    sandbox: &Sandbox,
    ty: &str,
    id: &str,
    props: Value,
) -> anyhow::Result<()> {
    let url = format!("{}/_sandbox/records/{ty}", sandbox.base_url());
    let resp = send(
        reqwest::Client::new()
            .post(url)
            .json(&json!({"id": id, "properties": props})),
    )
    .await?;
    resp.expect(StatusCode::OK);
    Ok(())
}

fn value<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record["fields"][field]["value"].as_str()
}

fn link<'a>(record: &'a Value, integration: &str) -> anyhow::Result<&'a str> {
    record["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["integration_id"] == integration))
        .and_then(|l| l["remote_id"].as_str())
        .context("a link to the integration")
}

/// Events of record aggregates in the store (read directly: the feed may lag).
pub async fn record_events(app: &TestApp) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events WHERE aggregate_type = 'record'")
            .fetch_one(&app.state.store.any)
            .await?,
    )
}

async fn hubspot_two_way(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(60).await;
    let id = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "manual_review",
    )
    .await?;

    // Full pull: every contact and company becomes a record, linked by remote id.
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(full["stats"]["created"], 120, "{full}");
    assert_eq!(full["stats"]["failed"], 0);
    assert!(
        full["stats"]["api_calls"].as_u64().unwrap_or(0) >= 2,
        "{full}"
    );
    let contacts = records(&app, &id, "contacts").await?;
    let companies = records(&app, &id, "companies").await?;
    assert_eq!((contacts.len(), companies.len()), (60, 60));

    // Nothing changed anywhere: an incremental run writes no record event.
    let before = record_events(&app).await?;
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["stats"]["created"], 0, "{again}");
    assert_eq!(again["stats"]["updated"], 0, "{again}");
    assert_eq!(record_events(&app).await?, before);

    // Edits on both sides: the app changes one contact's phone, the CRM another's job
    // title, and both change a third contact's phone differently (a conflict).
    let (a, b, c) = (&contacts[0], &contacts[1], &contacts[2]);
    let (a_id, b_id, c_id) = (
        a["id"].as_str().context("id")?,
        b["id"].as_str().context("id")?,
        c["id"].as_str().context("id")?,
    );
    let a_remote = link(a, &id)?;
    let b_remote = link(b, &id)?;
    let c_remote = link(c, &id)?;
    app.patch(
        &format!("/v1/records/{a_id}"),
        &app.admin,
        json!({"fields": {"phone": "+1 555 000 0001"}}),
    )
    .await?
    .expect(StatusCode::OK);
    edit_remote(
        &sandbox,
        "contacts",
        b_remote,
        json!({"jobtitle": "Chief Sync Officer"}),
    )
    .await?;
    app.patch(
        &format!("/v1/records/{c_id}"),
        &app.admin,
        json!({"fields": {"phone": "+1 555 000 0003"}}),
    )
    .await?
    .expect(StatusCode::OK);
    edit_remote(
        &sandbox,
        "contacts",
        c_remote,
        json!({"phone": "+1 555 999 0003"}),
    )
    .await?;

    let two_way = run(&app, &id, "incremental").await?;
    assert_eq!(two_way["status"], "completed", "{two_way}");
    assert_eq!(two_way["stats"]["conflicts_detected"], 1, "{two_way}");
    // The app's edit reached the CRM; the CRM's edit reached the app.
    assert_eq!(
        remote(&sandbox, "contacts", a_remote).await?["properties"]["phone"],
        "+1 555 000 0001"
    );
    let b_now = app.get(&format!("/v1/records/{b_id}"), &app.admin).await?;
    assert_eq!(
        value(b_now.expect(StatusCode::OK), "title"),
        Some("Chief Sync Officer")
    );
    // The conflict is queued: neither side was overwritten.
    assert_eq!(
        remote(&sandbox, "contacts", c_remote).await?["properties"]["phone"],
        "+1 555 999 0003"
    );
    let c_now = app.get(&format!("/v1/records/{c_id}"), &app.admin).await?;
    assert_eq!(
        value(c_now.expect(StatusCode::OK), "phone"),
        Some("+1 555 000 0003")
    );

    // The push is not echoed back, and the open conflict is not raised again: the next
    // run writes no record event.
    let before = record_events(&app).await?;
    let quiet = run(&app, &id, "incremental").await?;
    assert_eq!(quiet["stats"]["created"], 0, "{quiet}");
    assert_eq!(record_events(&app).await?, before, "{quiet}");
    let a_now = app.get(&format!("/v1/records/{a_id}"), &app.admin).await?;
    let a_now = a_now.expect(StatusCode::OK);
    assert_eq!(a_now["fields"]["phone"]["source"], "app", "{a_now}");
    assert_eq!(a_now["links"][0]["pending_push"], json!([]), "{a_now}");

    // A reviewer settles the conflict for the app's value through the API; the next run
    // pushes it, and nothing is queued again.
    let open = app
        .get(
            &format!("/v1/conflicts?integration_id={id}&status=open"),
            &app.admin,
        )
        .await?;
    let open = open.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["record_id"], c_id);
    assert_eq!(open[0]["field"], "phone");
    let conflict = open[0]["id"].as_str().context("conflict id")?;
    app.post(
        &format!("/v1/conflicts/{conflict}/resolve"),
        &app.admin,
        json!({"resolution": "use_app"}),
    )
    .await?
    .expect(StatusCode::OK);
    let settled = run(&app, &id, "incremental").await?;
    assert_eq!(settled["stats"]["conflicts_detected"], 0, "{settled}");
    assert_eq!(
        remote(&sandbox, "contacts", c_remote).await?["properties"]["phone"],
        "+1 555 000 0003"
    );
    // An "always use the CRM" rule for the phone settles the next clash without review.
    let rule = format!("/v1/integrations/{id}/conflict-rules/phone");
    send(
        app.request(reqwest::Method::PUT, &rule, &app.admin)
            .json(&json!({"use": "crm"})),
    )
    .await?
    .expect(StatusCode::OK);
    app.patch(
        &format!("/v1/records/{c_id}"),
        &app.admin,
        json!({"fields": {"phone": "+1 555 000 0004"}}),
    )
    .await?
    .expect(StatusCode::OK);
    edit_remote(
        &sandbox,
        "contacts",
        c_remote,
        json!({"phone": "+1 555 999 0004"}),
    )
    .await?;
    let ruled = run(&app, &id, "incremental").await?;
    assert_eq!(ruled["stats"]["conflicts_resolved"], 1, "{ruled}");
    let c_now = app.get(&format!("/v1/records/{c_id}"), &app.admin).await?;
    assert_eq!(
        value(c_now.expect(StatusCode::OK), "phone"),
        Some("+1 555 999 0004")
    );

    // A record created in the app is created in the CRM and linked.
    let resp = app
        .post("/v1/records", &app.admin, json!({"entity": "contacts",
            "fields": {"email": "new.person@example.com", "first_name": "New", "last_name": "Person"}}))
        .await?;
    let new_id = resp.str("id")?;
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(pushed["stats"]["created"], 1, "{pushed}");
    let new_record = app
        .get(&format!("/v1/records/{new_id}"), &app.admin)
        .await?;
    let new_remote = link(new_record.expect(StatusCode::OK), &id)?.to_string();
    let at_crm = remote(&sandbox, "contacts", &new_remote).await?;
    assert_eq!(at_crm["properties"]["email"], "new.person@example.com");

    sandbox.shutdown().await;
    app.finish().await
}

async fn sync_run_refusals(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(5).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let path = format!("/v1/integrations/{id}/sync-runs");
    let events = app.event_count().await?;
    for (body, code) in [
        (json!({"kind": "sideways"}), Some("validation_failed")),
        (json!({"kind": "full", "extra": 1}), None),
        (json!({"kind": "push"}), Some("integration_unusable")),
    ] {
        let resp = app.post(&path, &app.admin, body.clone()).await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text
        );
        if let Some(code) = code {
            assert_eq!(resp.body["error"]["code"], code, "{body}: {}", resp.text);
        }
    }
    assert_eq!(app.event_count().await?, events, "refusals change nothing");
    // Unknown ids and other workspaces' runs are 404.
    app.get("/v1/sync-runs/nope", &app.admin)
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "");
    let other = app
        .new_workspace("Other", syncledger_domain::Plan::Enterprise)
        .await?;
    app.post(&path, &other.admin, json!({"kind": "full"}))
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "");
    // A viewer cannot start runs.
    let (_, viewer) = app.issue_token("viewer").await?;
    app.post(&path, &viewer, json!({"kind": "full"}))
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");

    // A paused integration does not run: 400 with the reason.
    app.post_empty(&format!("/v1/integrations/{id}/pause"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    app.post(&path, &app.admin, json!({"kind": "full"}))
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "integration_unusable", "paused");
    app.post_empty(&format!("/v1/integrations/{id}/resume"), &app.admin)
        .await?
        .expect(StatusCode::OK);

    // A finished run cannot be cancelled; a run without failures has nothing to retry.
    let done = run(&app, &id, "full").await?;
    let run_id = done["id"].as_str().context("id")?;
    app.post_empty(&format!("/v1/sync-runs/{run_id}/cancel"), &app.admin)
        .await?
        .expect_error(StatusCode::CONFLICT, "invalid_state", "");
    app.post_empty(&format!("/v1/sync-runs/{run_id}/retry"), &app.admin)
        .await?
        .expect_error(StatusCode::CONFLICT, "nothing_to_retry", "");
    let list = app.get(&path, &app.admin).await?;
    assert_eq!(list.expect(StatusCode::OK)["data"][0]["id"], run_id);
    sandbox.shutdown().await;
    app.finish().await
}

/// The runs of an integration, newest first.
pub(crate) async fn runs_of(app: &TestApp, integration: &str) -> anyhow::Result<Vec<Value>> {
    let resp = app
        .get(
            &format!("/v1/integrations/{integration}/sync-runs"),
            &app.admin,
        )
        .await?;
    Ok(resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn schedule_and_webhooks(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(5).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    // Hourly: the next run is due an hour after the schedule changed.
    let config = json!({"sync_config": {"direction": "pull", "frequency": "interval", "interval_minutes": 60,
        "entities": ["contacts", "companies"], "conflict_strategy": "crm_wins"}});
    app.patch(&format!("/v1/integrations/{id}"), &app.admin, config)
        .await?
        .expect(StatusCode::OK);
    let view = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let next = view.expect(StatusCode::OK)["next_sync_at"]
        .as_str()
        .context("next_sync_at")?
        .to_string();
    let next: chrono::DateTime<chrono::Utc> = next.parse()?;
    let now = chrono::Utc::now();
    assert!(
        next > now + chrono::Duration::minutes(59) && next <= now + chrono::Duration::minutes(61)
    );

    let runs = &app.state.runs;
    let dispatcher = app.state.dispatcher.as_ref();
    let started = syncledger_engine::scheduler::tick(runs, dispatcher, now).await?;
    assert!(started.is_empty(), "nothing is due yet");
    let started =
        syncledger_engine::scheduler::tick(runs, dispatcher, next + chrono::Duration::seconds(1))
            .await?;
    assert_eq!(started.len(), 1);
    let scheduled = wait_run(&app, &started[0]).await?;
    assert_eq!(scheduled["trigger"], "scheduled");
    assert_eq!(scheduled["kind"], "incremental");
    assert_eq!(scheduled["status"], "completed", "{scheduled}");
    // The period restarts when a run begins.
    let view = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let view = view.expect(StatusCode::OK);
    let time = |k: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        Ok(view[k].as_str().context("a time")?.parse()?)
    };
    assert_eq!(
        time("next_sync_at")?,
        time("last_sync_at")? + chrono::Duration::minutes(60),
        "{view}"
    );
    assert!(
        time("last_sync_at")? >= now - chrono::Duration::seconds(1),
        "{view}"
    );

    // A signed webhook for the integration's portal starts an incremental run.
    let url = app.url("/v1/webhooks/hubspot");
    let event = json!({"portalId": 62515, "objectId": 1, "subscriptionType": "contact.propertyChange",
        "propertyName": "phone", "occurredAt": 1_700_000_000_000_i64});
    assert_eq!(sandbox.send_webhook(&url, vec![event.clone()]).await?, 204);
    app.caught_up().await;
    let webhook_run = runs_of(&app, &id).await?;
    assert_eq!(webhook_run.len(), 2, "{webhook_run:?}");
    assert_eq!(webhook_run[0]["trigger"], "webhook");
    let done = wait_run(&app, webhook_run[0]["id"].as_str().context("id")?).await?;
    assert_eq!(done["status"], "completed", "{done}");

    // A webhook while a run is active is not lost: the next tick starts its follow-up.
    let resp = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let active = resp.str("id")?;
    assert_eq!(sandbox.send_webhook(&url, vec![event]).await?, 204);
    wait_run(&app, &active).await?;
    let started = syncledger_engine::scheduler::tick(runs, dispatcher, chrono::Utc::now()).await?;
    app.caught_up().await;
    let runs_now = runs_of(&app, &id).await?;
    // Either the webhook found the run still active (follow-up now) or it had already
    // ended (a webhook run then): one webhook run either way.
    let webhook_runs = runs_now
        .iter()
        .filter(|r| r["trigger"] == "webhook")
        .count();
    assert_eq!(webhook_runs, 2, "{runs_now:?}");
    for id in started {
        wait_run(&app, &id).await?;
    }
    sandbox.shutdown().await;
    app.finish().await
}

/// 1,000 contacts share one modification time, split over search pages of 200: the next
/// incremental run starts at that time (inclusive) and sees every one of them again,
/// skipping none and writing nothing for those unchanged.
async fn shared_timestamps_across_pages(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot_with(SandboxConfig {
        records: 1000,
        same_timestamp_group: 1000,
        ..SandboxConfig::default()
    })
    .await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["stats"]["created"], 2000, "{full}");
    let contacts = records(&app, &id, "contacts").await?;
    // Three of them change in the CRM after the import.
    for c in contacts.iter().take(3) {
        edit_remote(
            &sandbox,
            "contacts",
            link(c, &id)?,
            json!({"jobtitle": "Moved on"}),
        )
        .await?;
    }
    let before = record_events(&app).await?;
    let incremental = run(&app, &id, "incremental").await?;
    assert_eq!(incremental["status"], "completed", "{incremental}");
    let stats = &incremental["stats"];
    // Every record of the boundary timestamp was read again (both entities), across pages.
    assert!(
        stats["processed"].as_u64().unwrap_or(0) >= 2000,
        "{incremental}"
    );
    assert_eq!(stats["updated"], 3, "{incremental}");
    assert_eq!(stats["created"], 0, "{incremental}");
    let pages = incremental["passes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pass"] == "contacts/pull"))
        .and_then(|p| p["pages"].as_u64())
        .unwrap_or(0);
    assert!(pages >= 5, "the boundary group spans pages: {incremental}");
    // Two events per changed record (the values, the merge), none for the others.
    assert_eq!(record_events(&app).await? - before, 6);
    sandbox.shutdown().await;
    app.finish().await
}

/// The incremental boundary is inclusive, yet the records the previous run already
/// held at its last instant are not fetched again: a run after 3 CRM edits costs one
/// search page and one deletions page per entity, nothing more (the property catalogue
/// is kept from the full run), and a record that reaches the CRM's search late, stamped
/// exactly at that instant, is still fetched.
async fn boundary_costs_no_repeats(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(30).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["stats"]["created"], 60, "{full}");
    let contacts = records(&app, &id, "contacts").await?;
    let mut last_ms = i64::MIN;
    for c in &contacts {
        let raw = remote(&sandbox, "contacts", link(c, &id)?).await?;
        let at = raw["updatedAt"].as_str().context("updatedAt")?;
        last_ms = last_ms.max(chrono::DateTime::parse_from_rfc3339(at)?.timestamp_millis());
    }
    let client = reqwest::Client::new();
    let control = |path: &str| format!("{}/_sandbox/{path}", sandbox.base_url());
    send(client.post(control("counters/reset")))
        .await?
        .expect(StatusCode::NO_CONTENT);
    for c in contacts.iter().take(3) {
        edit_remote(
            &sandbox,
            "contacts",
            link(c, &id)?,
            json!({"jobtitle": "Moved on"}),
        )
        .await?;
    }
    // A contact stamped at the import's last instant, visible to search only now.
    let late = send(client.post(control("records/contacts")).json(&json!({
        "properties": {"email": "late@example.com", "lastname": "Late"},
        "modified_ms": last_ms,
    })))
    .await?;
    late.expect(StatusCode::OK);

    let incremental = run(&app, &id, "incremental").await?;
    assert_eq!(incremental["status"], "completed", "{incremental}");
    let stats = &incremental["stats"];
    assert_eq!(stats["processed"], 4, "{incremental}");
    assert_eq!(stats["created"], 1, "{incremental}");
    assert_eq!(stats["updated"], 3, "{incremental}");
    let calls = sandbox.counters();
    let count = |key: &str| calls.get(key).copied().unwrap_or(0);
    for entity in ["contacts", "companies"] {
        assert_eq!(
            count(&format!("POST /crm/v3/objects/{entity}/search")),
            1,
            "{calls:?}"
        );
        assert_eq!(
            count(&format!("GET /crm/v3/objects/{entity}")),
            1,
            "{calls:?}"
        );
        assert_eq!(
            count(&format!("GET /crm/v3/properties/{entity}")),
            0,
            "{calls:?}"
        );
    }
    assert_eq!(stats["api_calls"], 4, "{incremental}");
    let contacts = records(&app, &id, "contacts").await?;
    let emails: Vec<&str> = contacts
        .iter()
        .filter_map(|r| value(r, "email"))
        .filter(|e| *e == "late@example.com")
        .collect();
    assert_eq!(emails.len(), 1);

    // Nothing changed since: nothing is fetched again.
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["stats"]["processed"], 0, "{again}");
    sandbox.shutdown().await;
    app.finish().await
}

/// The CRM refuses some records of a push batch: the rest land, the refused ones are
/// named on the run (partial) and on each record, and a retry pushes only those.
async fn push_failures_and_retry(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "app_wins",
    )
    .await?;
    run(&app, &id, "full").await?;
    let mut made = Vec::new();
    for i in 0..6 {
        let resp = app
            .post("/v1/records", &app.admin, json!({"entity": "contacts",
                "fields": {"email": format!("person{i}@example.com"), "last_name": format!("Person {i}")}}))
            .await?;
        made.push(resp.str("id")?);
    }
    // Every third input of the next batch call is refused.
    let faults = format!("{}/_sandbox/faults", sandbox.base_url());
    send(
        reqwest::Client::new()
            .post(&faults)
            .json(&json!({"kind": "partial_batch", "fail_every": 3, "count": 1})),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);
    let first = run(&app, &id, "push").await?;
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(first["stats"]["created"], 4, "{first}");
    assert_eq!(first["stats"]["failed"], 2, "{first}");
    let failed: Vec<String> = first["failures"]
        .as_array()
        .context("failures")?
        .iter()
        .filter_map(|f| f["record_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(failed.len(), 2, "{first}");
    for record_id in &made {
        let r = app
            .get(&format!("/v1/records/{record_id}"), &app.admin)
            .await?;
        let r = r.expect(StatusCode::OK);
        let linked = r["links"].as_array().is_some_and(|l| !l.is_empty());
        assert_eq!(linked, !failed.contains(record_id), "{r}");
    }
    // Retry: only the two failed records are pushed, and they land.
    let resp = app
        .post_empty(
            &format!(
                "/v1/sync-runs/{}/retry",
                first["id"].as_str().context("id")?
            ),
            &app.admin,
        )
        .await?;
    let retry = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(retry["retry_of"], first["id"]);
    let retry = wait_run(&app, retry["id"].as_str().context("id")?).await?;
    assert_eq!(retry["status"], "completed", "{retry}");
    assert_eq!(retry["stats"]["created"], 2, "{retry}");
    assert_eq!(retry["stats"]["processed"], 2, "{retry}");
    for record_id in &failed {
        let r = app
            .get(&format!("/v1/records/{record_id}"), &app.admin)
            .await?;
        let remote_id = link(r.expect(StatusCode::OK), &id)?.to_string();
        assert!(
            remote(&sandbox, "contacts", &remote_id).await?["properties"]["email"]
                .as_str()
                .is_some_and(|e| e.ends_with("@example.com"))
        );
    }
    sandbox.shutdown().await;
    app.finish().await
}

/// Pipedrive numbers persons and organizations each from 1 (as its sandbox does): person 1
/// and organization 1 are two records, each linked to its own id. Links were keyed by the
/// remote id alone, so the organizations' pass found the persons' links and wrote the
/// companies' values onto the contacts. Now each pass finds only its entity's links, and a
/// CRM edit of person 1 changes that contact and leaves company 1 as it was.
async fn remote_ids_shared_by_two_entities(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_pipedrive(PipedriveSandboxConfig {
        records: 3,
        ..PipedriveSandboxConfig::default()
    })
    .await?;
    let id = connect(&app, "pipedrive", &sandbox.base_url(), "pull", "crm_wins").await?;

    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(full["stats"]["created"], 6, "{full}");
    let by_remote =
        |records: Vec<Value>| -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
            records
                .into_iter()
                .map(|r| Ok((link(&r, &id)?.to_string(), r)))
                .collect()
        };
    let contacts = by_remote(records(&app, &id, "contacts").await?)?;
    let companies = by_remote(records(&app, &id, "companies").await?)?;
    let ids: Vec<&str> = contacts.keys().map(String::as_str).collect();
    assert_eq!(ids, ["1", "2", "3"], "persons numbered from 1");
    let ids: Vec<&str> = companies.keys().map(String::as_str).collect();
    assert_eq!(ids, ["1", "2", "3"], "organizations numbered from 1 too");

    let url = format!("{}/_sandbox/records/persons", sandbox.base_url());
    let body = json!({"id": 1, "name": "Renamed Person", "first_name": "Renamed"});
    send(reqwest::Client::new().post(url).json(&body))
        .await?
        .expect(StatusCode::OK);
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(again["stats"]["updated"], 1, "{again}");
    assert_eq!(again["stats"]["created"], 0, "{again}");
    let contacts_after = by_remote(records(&app, &id, "contacts").await?)?;
    let companies_after = by_remote(records(&app, &id, "companies").await?)?;
    assert_ne!(
        contacts_after["1"]["fields"], contacts["1"]["fields"],
        "person 1's edit reached contact 1"
    );
    for n in ["1", "2", "3"] {
        assert_eq!(
            companies_after[n]["fields"], companies[n]["fields"],
            "company {n} untouched"
        );
        assert_eq!(companies_after[n]["entity"], "companies");
    }
    assert_eq!(contacts_after["2"]["fields"], contacts["2"]["fields"]);
    sandbox.shutdown().await;
    Ok(())
}
