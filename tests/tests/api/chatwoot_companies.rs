//! Chatwoot's companies (Enterprise) through the shipped template, end to end against
//! the Chatwoot sandbox: full scans of 25 a page that write nothing when nothing
//! changed and count a company gone after a complete scan as deleted, pushes creating
//! and updating companies under the `company` body root, the one upstream index that
//! ignores `page` (read once, not looped over), and instances without companies (403,
//! 404) ending only the companies pass, with a clear error, while contacts sync on; a
//! spec without companies (an integration made before the template had them) likewise.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{CompaniesMode, Dialect, NicheSandboxConfig, Sandbox};
use syncledger_testkit::app::{captured_logs, on_both_backends, send, Backend, TestApp};

use crate::niche::{config, control, create, remote_id, stat};
use crate::sync::{record_events, records, run};

on_both_backends!(
    chatwoot_companies_full_scans_deletions_and_pushes,
    an_unpaginated_companies_index_is_read_once,
    an_instance_without_companies_still_syncs_contacts,
    a_spec_without_companies_ends_only_their_pass
);

/// A Chatwoot sandbox with 20 contacts and `companies` companies, and an integration
/// syncing contacts and companies from it.
async fn chatwoot(
    app: &TestApp,
    companies: usize,
    mode: CompaniesMode,
) -> anyhow::Result<(Sandbox, String)> {
    let mut sandbox_config = NicheSandboxConfig::new(Dialect::Chatwoot);
    sandbox_config.companies = companies;
    sandbox_config.companies_mode = mode;
    let key = sandbox_config.api_key.clone();
    let sandbox = Sandbox::start_niche(sandbox_config).await?;
    let body = json!({"provider": "chatwoot", "name": format!("Support desk ({mode:?})"), "base_url": sandbox.base_url(),
        "parameters": {"account_id": "7"}, "sync_config": config(&["contacts", "companies"])});
    let id = create(app, body, &key).await?;
    Ok((sandbox, id))
}

fn company_control(sandbox: &Sandbox, path: &str) -> String {
    format!("{}/_sandbox/companies{path}", sandbox.base_url())
}

async fn remote_company(sandbox: &Sandbox, id: &str) -> anyhow::Result<Value> {
    let url = company_control(sandbox, &format!("/{id}"));
    let resp = send(reqwest::Client::new().get(url)).await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

/// The stats of the run's pass `key` (`companies/pull`, ...).
fn pass(run: &Value, key: &str) -> Value {
    run["passes"]
        .as_array()
        .and_then(|passes| passes.iter().find(|p| p["pass"] == key))
        .map(|p| p["stats"].clone())
        .unwrap_or(Value::Null)
}

async fn chatwoot_companies_full_scans_deletions_and_pushes(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (sandbox, id) = chatwoot(&app, 30, CompaniesMode::Enabled).await?;

    // 20 contacts (15 a page: 3 requests) and 30 companies (25 a page: 3 requests).
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(
        (stat(&full, "created"), stat(&full, "failed")),
        (50, 0),
        "{full}"
    );
    assert_eq!(pass(&full, "companies/pull")["created"], 30, "{full}");
    assert_eq!(stat(&full, "api_calls"), 6, "{full}");
    let companies = records(&app, &id, "companies").await?;
    assert_eq!(companies.len(), 30);
    let acme = companies
        .iter()
        .find(|r| r["fields"]["domain"]["value"] == "company0.example")
        .context("company 0")?;
    assert_eq!(acme["fields"]["name"]["value"], "Company 0", "{acme}");

    // Nothing changed: every page read again, nothing written.
    let before = record_events(&app).await?;
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        (stat(&again, "created"), stat(&again, "updated")),
        (0, 0),
        "{again}"
    );
    assert_eq!(stat(&again, "api_calls"), 6, "{again}");
    assert_eq!(record_events(&app).await?, before);

    // A company deleted in Chatwoot: after the complete scan it is confirmed gone (404)
    // and its record archived.
    let gone = remote_id(&companies[0])?;
    let url = company_control(&sandbox, &format!("/{gone}"));
    let resp = send(reqwest::Client::new().delete(url)).await?;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let third = run(&app, &id, "incremental").await?;
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(pass(&third, "companies/deletions")["updated"], 1, "{third}");
    assert_eq!(stat(&third, "api_calls"), 7, "{third}");
    let record_id = companies[0]["id"].as_str().context("id")?;
    let archived = app
        .get(&format!("/v1/records/{record_id}"), &app.admin)
        .await?;
    assert_eq!(archived.body["archived"], true, "{}", archived.text);
    assert_eq!(archived.body["links"][0]["state"], "deleted_in_crm");

    // A company made in the app is created in Chatwoot, an edited one updated: one
    // request each, under the `company` root (the sandbox refuses any other body).
    let made = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "companies", "fields": {"name": "Acme", "domain": "acme.example"}}),
        )
        .await?;
    made.expect(StatusCode::CREATED);
    let made = made.str("id")?;
    let edited = &companies[1];
    let edited_id = edited["id"].as_str().context("id")?;
    app.patch(
        &format!("/v1/records/{edited_id}"),
        &app.admin,
        json!({"fields": {"name": "Renamed Inc"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");
    assert_eq!(stat(&pushed, "failed"), 0, "{pushed}");
    let record = app.get(&format!("/v1/records/{made}"), &app.admin).await?;
    let created = remote_company(&sandbox, &remote_id(&record.body)?).await?;
    assert_eq!(
        (created["name"].as_str(), created["domain"].as_str()),
        (Some("Acme"), Some("acme.example")),
        "{created}"
    );
    let updated = remote_company(&sandbox, &remote_id(edited)?).await?;
    assert_eq!(updated["name"], "Renamed Inc", "{updated}");
    assert_eq!(
        updated["domain"], edited["fields"]["domain"]["value"],
        "{updated}"
    );
    let counters = sandbox.counters();
    assert_eq!(
        (
            counters.get("POST companies"),
            counters.get("PATCH company")
        ),
        (Some(&1), Some(&1)),
        "{counters:?}"
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// The index of one upstream version lists every company whatever `page` says: the
/// second page repeats the first, which ends the read; each company is imported once.
async fn an_unpaginated_companies_index_is_read_once(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let (sandbox, id) = chatwoot(&app, 40, CompaniesMode::Unpaginated).await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    let companies = pass(&full, "companies/pull");
    assert_eq!(
        (
            companies["created"].as_u64(),
            companies["processed"].as_u64()
        ),
        (Some(40), Some(40)),
        "{full}"
    );
    assert_eq!(companies["api_calls"], 2, "{full}");
    assert_eq!(records(&app, &id, "companies").await?.len(), 40);
    // The read was complete: nothing is taken for deleted, and a re-run writes nothing.
    let before = record_events(&app).await?;
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        (stat(&again, "created"), stat(&again, "updated")),
        (0, 0),
        "{again}"
    );
    assert_eq!(record_events(&app).await?, before);
    assert_eq!(sandbox.counters().get("GET companies"), Some(&4));
    sandbox.shutdown().await;
    app.finish().await
}

/// A Community-edition instance (404, no route) and an Enterprise one with the feature
/// off (403): the companies pass ends with an error naming the cause, the run is
/// partial, and contacts are pulled, deleted after their complete scan and pushed as
/// ever; no company is sent. The key appears in no answer or log.
async fn an_instance_without_companies_still_syncs_contacts(
    backend: Backend,
) -> anyhow::Result<()> {
    let logs = captured_logs();
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let key = NicheSandboxConfig::new(Dialect::Chatwoot).api_key;
    let expected = |status: u16| {
        format!("Chatwoot answered {status}: companies are not enabled for this account (an Enterprise feature)")
    };
    let (absent, absent_id) = chatwoot(&app, 5, CompaniesMode::Absent).await?;
    let run_404 = run(&app, &absent_id, "full").await?;
    assert_eq!(run_404["status"], "partial", "{run_404}");
    assert_eq!(run_404["failures"][0]["error"], expected(404), "{run_404}");
    assert_eq!(stat(&run_404, "created"), 20, "{run_404}");
    absent.shutdown().await;

    let (sandbox, id) = chatwoot(&app, 5, CompaniesMode::Disabled).await?;
    app.post(
        "/v1/records",
        &app.admin,
        json!({"entity": "companies", "fields": {"name": "Acme", "domain": "acme.example"}}),
    )
    .await?
    .expect(StatusCode::CREATED);
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "partial", "{full}");
    assert_eq!(full["failures_total"], 1, "{full}");
    let failure = &full["failures"][0];
    assert_eq!(
        (failure["entity"].as_str(), failure["phase"].as_str()),
        (Some("companies"), Some("pull")),
        "{full}"
    );
    assert_eq!(failure["error"], expected(403), "{full}");
    // The same 20 contacts as the first instance's: linked to the records it made.
    let contacts_pull = pass(&full, "contacts/pull");
    assert_eq!(
        (
            contacts_pull["processed"].as_u64(),
            contacts_pull["failed"].as_u64()
        ),
        (Some(20), Some(0)),
        "{full}"
    );
    assert_eq!(records(&app, &id, "contacts").await?.len(), 20);
    assert!(!full.to_string().contains(&key), "the key in {full}");

    // Contacts go on: a contact deleted in Chatwoot is archived after the complete scan
    // (the missing companies hold back no deletion), and no company is ever sent.
    let contacts = records(&app, &id, "contacts").await?;
    let gone = remote_id(&contacts[0])?;
    let resp = send(reqwest::Client::new().delete(control(&sandbox, &format!("/{gone}")))).await?;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let next = run(&app, &id, "incremental").await?;
    assert_eq!(next["status"], "partial", "{next}");
    assert_eq!(pass(&next, "contacts/deletions")["updated"], 1, "{next}");
    let contact_id = contacts[0]["id"].as_str().context("id")?;
    let archived = app
        .get(&format!("/v1/records/{contact_id}"), &app.admin)
        .await?;
    assert_eq!(archived.body["archived"], true, "{}", archived.text);
    let counters = sandbox.counters();
    assert_eq!(counters.get("POST companies"), None, "{counters:?}");
    // Turned on in Chatwoot, the companies come in with the next run.
    let on = send(
        reqwest::Client::new()
            .post(company_control(&sandbox, "/mode"))
            .json(&json!({"mode": "enabled"})),
    )
    .await?;
    assert_eq!(on.status, StatusCode::NO_CONTENT);
    let enabled = run(&app, &id, "incremental").await?;
    assert_eq!(enabled["status"], "completed", "{enabled}");
    assert_eq!(pass(&enabled, "companies/pull")["created"], 5, "{enabled}");

    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    assert!(!audit.text.contains(&key), "the key in the audit trail");
    let logged =
        String::from_utf8_lossy(&logs.lock().map(|l| l.clone()).unwrap_or_default()).into_owned();
    assert!(!logged.contains(&key), "the key in the logs");
    sandbox.shutdown().await;
    app.finish().await
}

/// An integration whose spec has no companies (the template as it was before them)
/// but whose sync config names them: the companies pass ends saying so, contacts sync.
async fn a_spec_without_companies_ends_only_their_pass(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let config_ = NicheSandboxConfig::new(Dialect::Chatwoot);
    let key = config_.api_key.clone();
    let sandbox = Sandbox::start_niche(config_).await?;
    let template = syncledger_crm::custom::template("chatwoot").context("the template")??;
    let mut spec = serde_json::to_value(&template)?;
    spec.as_object_mut()
        .context("a spec object")?
        .remove("companies");
    let body = json!({"provider": "chatwoot", "name": "Older desk", "base_url": sandbox.base_url(),
        "parameters": {"account_id": "7"}, "spec": spec,
        "sync_config": config(&["contacts", "companies"])});
    let id = create(&app, body, &key).await?;
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "partial", "{full}");
    assert_eq!(
        full["failures"][0]["error"],
        "the integration's spec for Chatwoot describes no companies endpoint",
        "{full}"
    );
    assert_eq!(pass(&full, "contacts/pull")["created"], 20, "{full}");
    assert_eq!(sandbox.counters().get("GET companies"), None);
    sandbox.shutdown().await;
    app.finish().await
}
