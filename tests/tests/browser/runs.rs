//! Runs in a browser: "Sync now" lands on the run's page, whose counters follow the run
//! live (no reload) until it completes; then a run that mangled records is rolled back
//! through its preview and the admin's confirmation, and the record shows its old value
//! again, and as it was in between through time travel.

use crate::{admin_link, backend_dir, follow_link, start};
use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_testkit::app::{connect, on_both_backends, send, wait_run, Backend, TestApp};
use syncledger_testkit::browser::Browser;
use syncledger_testkit::sandbox;

on_both_backends!(a_sync_updates_live_and_a_rollback_restores_records);

/// The status badge of the run page's live counters.
const STATUS: &str = "#counters .badge";

/// Marks the page, so a reload (which drops the mark) is told from an update in place.
async fn mark(browser: &Browser) -> anyhow::Result<()> {
    browser
        .execute("window.__notReloaded = true; return true;", vec![])
        .await?;
    Ok(())
}

async fn still_marked(browser: &Browser) -> anyhow::Result<bool> {
    Ok(browser
        .execute("return window.__notReloaded === true;", vec![])
        .await?
        == json!(true))
}

fn ended(status: &str) -> bool {
    !matches!(status.trim(), "queued" | "running" | "")
}

/// The run id of a `/runs/{id}` page the browser is on.
async fn run_on_page(browser: &Browser) -> anyhow::Result<String> {
    let path = browser.path().await?;
    Ok(path
        .strip_prefix("/runs/")
        .with_context(|| format!("a run's page, not {path}"))?
        .to_string())
}

async fn contact(app: &TestApp, integration: &str) -> anyhow::Result<Value> {
    let list = app
        .get(
            &format!("/v1/records?entity=contacts&integration_id={integration}&limit=1"),
            &app.admin,
        )
        .await?;
    Ok(list.expect(StatusCode::OK)["data"][0].clone())
}

async fn a_sync_updates_live_and_a_rollback_restores_records(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(250).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    // Slow pages and one 429, so the run is still going when its page first shows and
    // has a wait to count.
    let faults = json!([
        {"kind": "slow", "millis": 1500, "count": 2, "path_prefix": "/crm/v3/objects/contacts"},
        {"kind": "status", "status": 429, "count": 1, "path_prefix": "/crm/v3/objects/companies"},
    ]);
    let http = reqwest::Client::new();
    send(
        http.post(format!("{}/_sandbox/faults", sandbox.base_url()))
            .json(&faults),
    )
    .await?
    .expect(StatusCode::NO_CONTENT);

    let (link, _) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;
    browser
        .goto(&format!("{}/integrations/{id}", app.base))
        .await?;
    browser
        .execute(
            "document.querySelector('#sync-now select[name=kind]').value = 'full'; return true;",
            vec![],
        )
        .await?;
    browser.click("#sync-now button[type=submit]").await?;
    browser.wait_for("#counters").await?;
    let run_id = run_on_page(&browser).await?;
    mark(&browser).await?;
    let first = browser.text(STATUS).await?;
    assert!(
        !ended(&first),
        "the run is still going when its page shows (slow pages): {first}"
    );

    // The counters follow the run in place until it ends.
    let status = browser
        .wait_for_text(STATUS, "the run's end", ended)
        .await?;
    assert_eq!(status, "completed");
    assert!(still_marked(&browser).await?, "updated without a reload");
    let done = wait_run(&app, &run_id).await?;
    let processed = done["stats"]["processed"].as_u64().context("processed")?;
    assert_eq!(processed, 500, "{done}");
    browser
        .wait_for_text("#processed", "every record", |t| {
            t.starts_with(&processed.to_string())
        })
        .await?;
    assert_eq!(browser.text("#rate-limited").await?, "1", "the 429 waited");
    assert_eq!(
        browser.text("#api-calls").await?,
        done["stats"]["api_calls"].to_string()
    );
    browser
        .screenshot(&format!("{}/run-completed.png", backend_dir(backend)))
        .await?;
    // The overview's card shows the run that just ended.
    browser.goto(&format!("{}/", app.base)).await?;
    let card = browser.text("main").await?;
    assert!(
        card.contains("completed"),
        "the last run on its card: {card}"
    );
    browser
        .screenshot(&format!("{}/overview.png", backend_dir(backend)))
        .await?;

    // A second run brings a bad change from the CRM.
    let before = contact(&app, &id).await?;
    let record_id = before["id"].as_str().context("a record")?.to_string();
    let original = before["fields"]["first_name"]["value"]
        .as_str()
        .context("a first name")?
        .to_string();
    let remote = before["links"][0]["remote_id"]
        .as_str()
        .context("its CRM id")?
        .to_string();
    send(
        http.post(format!("{}/_sandbox/records/contacts", sandbox.base_url()))
            .json(&json!({"id": remote, "properties": {"firstname": "MANGLED"}})),
    )
    .await?
    .expect(StatusCode::OK);
    let bad = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "incremental"}),
        )
        .await?;
    let bad_run = bad.str("id")?;
    wait_run(&app, &bad_run).await?;
    let mangled = app
        .get(&format!("/v1/records/{record_id}"), &app.admin)
        .await?;
    assert_eq!(
        mangled.expect(StatusCode::OK)["fields"]["first_name"]["value"],
        "MANGLED"
    );

    // Its rollback: the preview lists the restore, the admin confirms, the rollback run
    // is followed live, and the record is as it was.
    browser
        .goto(&format!("{}/runs/{bad_run}", app.base))
        .await?;
    browser.click("#run-actions a[href$='/rollback']").await?;
    browser
        .wait_for_path(&format!("/runs/{bad_run}/rollback"))
        .await?;
    let table = browser.text("#rollback-preview").await?;
    assert!(
        table.contains("MANGLED") && table.contains(&original),
        "now → before in the preview: {table}"
    );
    browser
        .screenshot(&format!("{}/rollback-preview.png", backend_dir(backend)))
        .await?;
    browser
        .click("form#confirm-rollback button[type=submit]")
        .await?;
    browser.wait_for("#counters").await?;
    let rollback_run = run_on_page(&browser).await?;
    assert_ne!(rollback_run, bad_run);
    let status = browser
        .wait_for_text(STATUS, "the rollback's end", ended)
        .await?;
    assert_eq!(status, "completed");
    let restored = app
        .get(&format!("/v1/records/{record_id}"), &app.admin)
        .await?;
    assert_eq!(
        restored.expect(StatusCode::OK)["fields"]["first_name"]["value"],
        original.as_str()
    );

    // The record's page shows the old value again; time travel to the mangled moment.
    browser
        .goto(&format!("{}/records/{record_id}", app.base))
        .await?;
    let fields = browser.text("#fields").await?;
    assert!(fields.contains(&original), "{fields}");
    let moments = browser
        .execute(
            "return Array.from(document.querySelectorAll('#history > li'))\
               .filter(li => li.textContent.includes('MANGLED'))\
               .map(li => li.querySelector('a.as-of').getAttribute('href'));",
            vec![],
        )
        .await?;
    let href = moments[0]
        .as_str()
        .with_context(|| format!("a history entry with the bad value: {moments}"))?
        .to_string();
    browser.goto(&format!("{}{href}", app.base)).await?;
    browser.wait_for("#as-of-banner").await?;
    let changed = browser.text("#fields tr.changed").await?;
    assert!(
        changed.contains("MANGLED") && changed.contains(&original),
        "then and now, highlighted: {changed}"
    );
    browser
        .screenshot(&format!("{}/record-time-travel.png", backend_dir(backend)))
        .await?;

    browser.close().await?;
    sandbox.shutdown().await;
    app.finish().await
}
