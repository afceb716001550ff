//! Rolling back a sync run through the API: the preview, the rollback itself (in the app
//! and at the CRM), rolling back the rollback, and the refusals.

use crate::sync::{connect, records, remote, run, wait_run};
use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use syncledger_sandbox::Sandbox;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    bad_mapping_run_is_rolled_back_in_app_and_crm,
    rollback_archives_created_records_and_its_rollback_restores_them,
    rollback_refusals
);

/// Concurrent requests while setting up large scenarios.
const PARALLEL: usize = 16;

/// Per record: its field values, and per CRM link what it still owes that CRM and which
/// fields a rollback left diverged from it.
type AppState = BTreeMap<String, Value>;

fn app_state(records: &[Value]) -> AppState {
    records
        .iter()
        .map(|r| {
            let fields: BTreeMap<String, Value> = r["fields"]
                .as_object()
                .map(|f| {
                    f.iter()
                        .map(|(k, v)| (k.clone(), v["value"].clone()))
                        .collect()
                })
                .unwrap_or_default();
            let links: Vec<Value> = r["links"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|l| {
                            let diverged = match &l["diverged"] {
                                Value::Null => json!([]),
                                d => d.clone(),
                            };
                            json!([l["remote_id"], l["pending_push"], diverged])
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                json!({"fields": fields, "links": links}),
            )
        })
        .collect()
}

async fn all_records(app: &TestApp, integration: &str) -> anyhow::Result<AppState> {
    let mut all = records(app, integration, "contacts").await?;
    all.extend(records(app, integration, "companies").await?);
    Ok(app_state(&all))
}

fn remote_id(record: &Value) -> anyhow::Result<String> {
    record["links"][0]["remote_id"]
        .as_str()
        .map(str::to_string)
        .context("a linked record")
}

/// Every sandbox record's properties, without the modification times (every write
/// moves them).
async fn crm_state(
    sandbox: &Sandbox,
    app: &TestApp,
    integration: &str,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut ids = Vec::new();
    for entity in ["contacts", "companies"] {
        for r in records(app, integration, entity).await? {
            ids.push((entity, remote_id(&r)?));
        }
    }
    let got: Vec<(String, Value)> = futures::stream::iter(ids)
        .map(|(entity, id)| async move {
            let mut r = remote(sandbox, entity, &id).await?;
            if let Some(props) = r["properties"].as_object_mut() {
                props.retain(|k, _| !k.contains("lastmodified"));
            }
            anyhow::Ok((format!("{entity}/{id}"), r["properties"].clone()))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    Ok(got.into_iter().collect())
}

async fn patch_all(
    app: &TestApp,
    records: &[Value],
    fields: impl Fn(&Value) -> Value,
) -> anyhow::Result<()> {
    let bodies: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                json!({"fields": fields(r)}),
            )
        })
        .collect();
    futures::stream::iter(bodies)
        .map(|(id, body)| async move {
            let resp = app
                .patch(&format!("/v1/records/{id}"), &app.admin, body)
                .await?;
            resp.expect(StatusCode::OK);
            anyhow::Ok(())
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn rollback(app: &TestApp, run_id: &str, token: &str) -> anyhow::Result<Value> {
    let resp = app
        .post_empty(&format!("/v1/sync-runs/{run_id}/rollback"), token)
        .await?;
    let started = resp.expect(StatusCode::CREATED).clone();
    assert_eq!(started["kind"], "rollback", "{started}");
    assert_eq!(started["rollback_of"], run_id);
    let id = started["id"].as_str().context("run id")?;
    wait_run(app, id).await
}

async fn preview(app: &TestApp, run_id: &str) -> anyhow::Result<Value> {
    let resp = app
        .post_empty(
            &format!("/v1/sync-runs/{run_id}/rollback?dry_run=true"),
            &app.admin,
        )
        .await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

/// A mapping change gone wrong: first names and company names are mangled on the way in,
/// and the app's job titles and industries are sent into the CRM's last name and company
/// name.
fn bad_mappings() -> [(&'static str, Value); 2] {
    [
        (
            "contacts",
            json!([
                {"crm_field": "email", "app_field": "email", "direction": "both"},
                {"crm_field": "firstname", "app_field": "first_name", "direction": "both",
                 "transform": "value + ' #corrupted'"},
                {"crm_field": "lastname", "app_field": "last_name", "direction": "pull"},
                {"crm_field": "lastname", "app_field": "title", "direction": "push"}
            ]),
        ),
        (
            "companies",
            json!([
                {"crm_field": "domain", "app_field": "domain", "direction": "both"},
                {"crm_field": "name", "app_field": "name", "direction": "pull",
                 "transform": "value + ' #corrupted'"},
                {"crm_field": "name", "app_field": "industry", "direction": "push"}
            ]),
        ),
    ]
}

async fn audit_count(app: &TestApp, action: &str) -> anyhow::Result<usize> {
    Ok(app
        .list_all("/v1/audit", &app.admin, &[("action", action)], 500)
        .await?
        .len())
}

async fn bad_mapping_run_is_rolled_back_in_app_and_crm(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    // 500 contacts and 500 companies.
    let sandbox = sandbox::hubspot(500).await;
    let id = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "last_write_wins",
    )
    .await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["stats"]["created"], 1000, "{full}");

    // The app edits every record; the edits wait for the next run.
    let contacts = records(&app, &id, "contacts").await?;
    let companies = records(&app, &id, "companies").await?;
    patch_all(
        &app,
        &contacts,
        |r| json!({"title": format!("Title of {}", r["id"].as_str().unwrap_or_default())}),
    )
    .await?;
    patch_all(
        &app,
        &companies,
        |r| json!({"industry": format!("Industry of {}", r["id"].as_str().unwrap_or_default())}),
    )
    .await?;
    app.caught_up().await;
    let app_before = all_records(&app, &id).await?;
    let crm_before = crm_state(&sandbox, &app, &id).await?;

    // The bad run.
    for (entity, mappings) in bad_mappings() {
        let resp = syncledger_testkit::app::send(
            app.request(
                reqwest::Method::PUT,
                &format!("/v1/integrations/{id}/mappings/{entity}"),
                &app.admin,
            )
            .json(&json!({"mappings": mappings})),
        )
        .await?;
        resp.expect(StatusCode::OK);
    }
    let bad = run(&app, &id, "full").await?;
    assert_eq!(bad["status"], "completed", "{bad}");
    let bad_id = bad["id"].as_str().context("run id")?.to_string();
    let app_after = all_records(&app, &id).await?;
    let crm_after = crm_state(&sandbox, &app, &id).await?;
    let corrupted = |state: &BTreeMap<String, Value>| {
        state
            .values()
            .filter(|v| v.to_string().contains("#corrupted"))
            .count()
    };
    assert_eq!(
        corrupted(&app_after),
        1000,
        "every record took a mangled value"
    );
    assert_eq!(corrupted(&crm_before), 0);
    let c0_remote = remote_id(&contacts[0])?;
    assert_eq!(
        crm_after[&format!("contacts/{c0_remote}")]["lastname"],
        json!(format!(
            "Title of {}",
            contacts[0]["id"].as_str().unwrap_or_default()
        )),
        "the app's title went into the CRM's last name"
    );

    // Someone fixes one first name by hand after the bad run: the rollback must keep it.
    let c0 = contacts[0]["id"].as_str().context("id")?.to_string();
    app.patch(
        &format!("/v1/records/{c0}"),
        &app.admin,
        json!({"fields": {"first_name": "Fixed By Hand"}}),
    )
    .await?
    .expect(StatusCode::OK);

    // Preview: every record, the first names and company names to restore, the one
    // conflict, the CRM properties to write back; nothing changes.
    let events_before_preview = app.event_count().await?;
    let plan = preview(&app, &bad_id).await?;
    assert_eq!(app.event_count().await?, events_before_preview);
    assert_eq!(plan["summary"]["records"], 1000, "{}", plan["summary"]);
    assert_eq!(plan["summary"]["conflicts"], 1, "{}", plan["summary"]);
    assert_eq!(
        plan["summary"]["fields_restored"], 999,
        "{}",
        plan["summary"]
    );
    assert_eq!(
        plan["summary"]["crm_properties"], 1000,
        "{}",
        plan["summary"]
    );
    let entries = plan["records"].as_array().context("records")?;
    let c0_plan = entries
        .iter()
        .find(|r| r["record_id"] == c0.as_str())
        .context("the hand-fixed record is in the plan")?;
    assert_eq!(c0_plan["conflicts"][0]["field"], "first_name", "{c0_plan}");
    assert_eq!(c0_plan["conflicts"][0]["now"], "Fixed By Hand");
    assert_eq!(
        c0_plan["crm"][0]["properties"]["lastname"],
        crm_before[&format!("contacts/{c0_remote}")]["lastname"]
    );
    let other = entries
        .iter()
        .find(|r| r["entity"] == "contacts" && r["record_id"] != c0.as_str())
        .context("another contact")?;
    assert_eq!(other["action"], "restore");
    assert_eq!(other["restore"][0]["field"], "first_name");
    assert!(other["restore"][0]["now"]
        .as_str()
        .is_some_and(|v| v.ends_with("#corrupted")));
    assert_eq!(
        other["restore"][0]["before"],
        app_before[other["record_id"].as_str().unwrap_or_default()]["fields"]["first_name"]
    );

    // Only an admin rolls back.
    let (_, operator) = app.issue_token("operator").await?;
    app.post_empty(&format!("/v1/sync-runs/{bad_id}/rollback"), &operator)
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");

    let rolled = rollback(&app, &bad_id, &app.admin).await?;
    assert_eq!(rolled["status"], "completed", "{rolled}");
    assert_eq!(rolled["stats"]["processed"], 1000, "{rolled}");
    assert_eq!(rolled["stats"]["updated"], 1000, "{rolled}");
    assert_eq!(rolled["stats"]["conflicts_detected"], 1, "{rolled}");
    assert!(
        rolled["stats"]["api_calls"].as_u64().unwrap_or(0) >= 10,
        "{rolled}"
    );

    // The app is as before the bad run, except the hand fix; so is the CRM.
    let mut app_now = all_records(&app, &id).await?;
    assert_eq!(
        app_now[&c0]["fields"]["first_name"], "Fixed By Hand",
        "a value changed since the run is not overwritten"
    );
    // What the bad run reversed is not owed to the CRM again: the titles it pushed (put
    // back in the CRM) and the names it pulled (put back in the app) are diverged, held
    // until an admin keeps one side.
    let mut expected = app_before.clone();
    for state in expected.values_mut() {
        let contact = state["fields"].get("email").is_some();
        let diverged = if contact {
            json!(["first_name", "title"])
        } else {
            json!(["industry", "name"])
        };
        if let Some(links) = state["links"].as_array_mut() {
            for link in links {
                *link = json!([link[0], [], diverged]);
            }
        }
    }
    for state in [&mut app_now, &mut expected] {
        if let Some(fields) = state.get_mut(&c0).and_then(|s| s["fields"].as_object_mut()) {
            fields.remove("first_name");
        }
        if let Some(links) = state.get_mut(&c0).and_then(|s| s["links"].as_array_mut()) {
            links.clear();
        }
    }
    assert_eq!(
        app_now, expected,
        "the app's records are as before the bad run"
    );
    assert_eq!(
        crm_state(&sandbox, &app, &id).await?,
        crm_before,
        "the CRM's records are as before the bad run"
    );

    // The story is in the audit trail, and the chain verifies.
    assert_eq!(audit_count(&app, "RolledBack").await?, 1000);
    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);

    // Rolling back the rollback brings the bad run's effect back (the hand fix stays).
    let rolled_id = rolled["id"].as_str().context("id")?.to_string();
    let again = rollback(&app, &rolled_id, &app.admin).await?;
    assert_eq!(again["status"], "completed", "{again}");
    let mut app_again = all_records(&app, &id).await?;
    let mut bad_state = app_after.clone();
    for state in [&mut app_again, &mut bad_state] {
        state.remove(&c0);
    }
    assert_eq!(app_again, bad_state, "the bad run's values are back");
    let crm_again = crm_state(&sandbox, &app, &id).await?;
    assert_eq!(crm_again, crm_after, "and so are the CRM's");
    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true);
    sandbox.shutdown().await;
    app.finish().await
}

async fn rollback_archives_created_records_and_its_rollback_restores_them(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(10).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let full = run(&app, &id, "full").await?;
    let full_id = full["id"].as_str().context("id")?.to_string();
    let imported = all_records(&app, &id).await?;
    assert_eq!(imported.len(), 20);

    let plan = preview(&app, &full_id).await?;
    assert_eq!(plan["summary"]["archived"], 20, "{}", plan["summary"]);
    assert!(plan["records"]
        .as_array()
        .is_some_and(|r| r.iter().all(|r| r["action"] == "archive")));

    let rolled = rollback(&app, &full_id, &app.admin).await?;
    assert_eq!(rolled["status"], "completed", "{rolled}");
    assert_eq!(rolled["stats"]["updated"], 20, "{rolled}");
    assert_eq!(
        rolled["stats"]["api_calls"], 0,
        "nothing was written to the CRM"
    );
    assert!(
        all_records(&app, &id).await?.is_empty(),
        "archived records are not listed"
    );
    let some = imported.keys().next().context("a record")?;
    let one = app.get(&format!("/v1/records/{some}"), &app.admin).await?;
    assert_eq!(one.expect(StatusCode::OK)["archived"], true, "{}", one.text);
    let listed = app
        .list_all(
            "/v1/records",
            &app.admin,
            &[("include_archived", "true"), ("integration_id", &id)],
            100,
        )
        .await?;
    assert_eq!(listed.len(), 20);

    let rolled_id = rolled["id"].as_str().context("id")?;
    let back = rollback(&app, rolled_id, &app.admin).await?;
    assert_eq!(back["status"], "completed", "{back}");
    assert_eq!(all_records(&app, &id).await?, imported);
    sandbox.shutdown().await;
    app.finish().await
}

async fn rollback_refusals(backend: Backend) -> anyhow::Result<()> {
    use syncledger_domain::sync_run::{RunKind, SyncRun, SyncRunCommand, Trigger};
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let full = run(&app, &id, "full").await?;
    let full_id = full["id"].as_str().context("id")?.to_string();
    let mut tokens = Vec::new();
    for role in ["viewer", "auditor", "operator"] {
        tokens.push(app.issue_token(role).await?.1);
    }
    let other = app
        .new_workspace("other", syncledger_domain::Plan::Enterprise)
        .await?;
    let snapshot = app.snapshot().await?;

    // Unknown run, bad query, roles.
    app.post_empty("/v1/sync-runs/no-such-run/rollback", &app.admin)
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "sync run");
    app.post_empty(
        "/v1/sync-runs/no-such-run/rollback?dry_run=true",
        &app.admin,
    )
    .await?
    .expect_error(StatusCode::NOT_FOUND, "not_found", "sync run");
    app.post_empty(
        &format!("/v1/sync-runs/{full_id}/rollback?dry_run=maybe"),
        &app.admin,
    )
    .await?
    .expect(StatusCode::BAD_REQUEST);
    for token in &tokens {
        app.post_empty(&format!("/v1/sync-runs/{full_id}/rollback"), token)
            .await?
            .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    }
    // Another workspace cannot see the run.
    app.post_empty(
        &format!("/v1/sync-runs/{full_id}/rollback?dry_run=true"),
        &other.admin,
    )
    .await?
    .expect_error(StatusCode::NOT_FOUND, "not_found", "sync run");

    // A run still active cannot be rolled back.
    let active = uuid::Uuid::now_v7().to_string();
    app.state
        .store
        .cqrs::<SyncRun>()
        .execute(
            &active,
            SyncRunCommand::Queue {
                run_id: active.clone(),
                integration_id: id.clone(),
                workspace_id: app.workspace_id.clone(),
                kind: RunKind::Full,
                trigger: Trigger::Manual,
                retry_of: None,
                rollback_of: None,
                options: Default::default(),
                at: chrono::Utc::now(),
            },
            &syncledger_store::Metadata::system(app.workspace_id.clone()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for path in ["rollback", "rollback?dry_run=true"] {
        app.post_empty(&format!("/v1/sync-runs/{active}/{path}"), &app.admin)
            .await?
            .expect_error(StatusCode::CONFLICT, "invalid_state", "rolled back");
    }
    let mut now = app.snapshot().await?;
    // The queued run above is the only change.
    now.events -= 1;
    assert_eq!(now.events, snapshot.events, "refusals write nothing");
    sandbox.shutdown().await;
    app.finish().await
}
