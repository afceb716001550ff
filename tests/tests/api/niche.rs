//! The shipped Chatwoot and Tave / VSCO Workspace templates end to end through the API,
//! against sandboxes speaking each vendor's dialect: an integration created with no spec
//! (Chatwoot's `account_id` as a connection parameter), connected with its API key,
//! full and incremental runs (Chatwoot: full scans that write nothing when nothing
//! changed and count missing contacts as deletions; Tave: a newest-first scan that stops
//! past the high-water mark, across records sharing one modification time at a page
//! boundary), pushes (Tave: the whole document written back), and what
//! `GET /v1/providers/{id}` says about each.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{Dialect, NicheSandboxConfig, Sandbox};
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};

use crate::sync::{record_events, records, run};

on_both_backends!(
    chatwoot_full_scans_and_deletions,
    tave_descending_scans_and_full_document_writes,
    template_refusals,
    provider_capabilities
);

pub(crate) fn config(entities: &[&str]) -> Value {
    json!({"direction": "bidirectional", "frequency": "manual", "entities": entities,
           "conflict_strategy": "crm_wins"})
}

/// Creates an integration from the shipped template and stores the sandbox's key.
pub(crate) async fn create(app: &TestApp, body: Value, key: &str) -> anyhow::Result<String> {
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let stored = app.set_api_key(&app.admin, &id, key).await?;
    assert!(!stored.text.contains(key), "the key in a response");
    let tested = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(tested.expect(StatusCode::OK)["ok"], true, "{}", tested.text);
    Ok(id)
}

pub(crate) fn control(sandbox: &Sandbox, path: &str) -> String {
    format!("{}/_sandbox/records{path}", sandbox.base_url())
}

pub(crate) async fn put_remote(sandbox: &Sandbox, record: Value) -> anyhow::Result<Value> {
    let resp = send(
        reqwest::Client::new()
            .post(control(sandbox, ""))
            .json(&record),
    )
    .await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

pub(crate) async fn remote(sandbox: &Sandbox, id: &str) -> anyhow::Result<Value> {
    let resp = send(reqwest::Client::new().get(control(sandbox, &format!("/{id}")))).await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

pub(crate) fn remote_id(record: &Value) -> anyhow::Result<String> {
    record["links"][0]["remote_id"]
        .as_str()
        .map(str::to_owned)
        .context("a link")
}

pub(crate) fn stat(run: &Value, name: &str) -> u64 {
    run["stats"][name].as_u64().unwrap_or(u64::MAX)
}

async fn new_contact(app: &TestApp, email: &str, first_name: &str) -> anyhow::Result<String> {
    let body = json!({"entity": "contacts", "fields": {"email": email, "first_name": first_name}});
    let resp = app.post("/v1/records", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

async fn chatwoot_full_scans_and_deletions(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = Sandbox::start_niche(NicheSandboxConfig::new(Dialect::Chatwoot)).await?;
    let key = NicheSandboxConfig::new(Dialect::Chatwoot).api_key;
    let body = json!({"provider": "chatwoot", "name": "Support desk", "base_url": sandbox.base_url(),
        "parameters": {"account_id": "7"}, "sync_config": config(&["contacts"])});
    let id = create(&app, body, &key).await?;

    // 20 contacts, 15 a page: pages 1, 2 and the empty page 3.
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(
        (stat(&full, "created"), stat(&full, "failed")),
        (20, 0),
        "{full}"
    );
    assert_eq!(stat(&full, "api_calls"), 3, "{full}");

    // No modification time: an incremental run reads everything and writes nothing.
    let before = record_events(&app).await?;
    let again = run(&app, &id, "incremental").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(
        (stat(&again, "created"), stat(&again, "updated")),
        (0, 0),
        "{again}"
    );
    assert_eq!(stat(&again, "api_calls"), 3, "{again}");
    assert_eq!(record_events(&app).await?, before);

    // Two contacts deleted in Chatwoot, one added: after the complete scan the two are
    // confirmed gone (404) and their records archived; the new one is imported.
    let listed = records(&app, &id, "contacts").await?;
    let (gone_a, gone_b) = (remote_id(&listed[0])?, remote_id(&listed[1])?);
    for gone in [&gone_a, &gone_b] {
        let url = control(&sandbox, &format!("/{gone}"));
        let resp = send(reqwest::Client::new().delete(url)).await?;
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
    }
    put_remote(&sandbox, json!({"name": "Ada", "email": "ada@example.org"})).await?;
    let third = run(&app, &id, "incremental").await?;
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(stat(&third, "created"), 1, "{third}");
    // The pull (2 pages and the empty one) and one confirmation per missing contact.
    assert_eq!(stat(&third, "api_calls"), 5, "{third}");
    let archived = app
        .get(
            &format!("/v1/records/{}", listed[0]["id"].as_str().context("id")?),
            &app.admin,
        )
        .await?;
    assert_eq!(archived.body["archived"], true, "{}", archived.text);
    assert_eq!(archived.body["links"][0]["state"], "deleted_in_crm");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 19);
    // Nothing more is missing: the next run deletes nothing and asks nothing more.
    let fourth = run(&app, &id, "incremental").await?;
    assert_eq!(
        (stat(&fourth, "updated"), stat(&fourth, "api_calls")),
        (0, 3),
        "{fourth}"
    );

    // A contact made in the app is created in Chatwoot, one request for it.
    let made = new_contact(&app, "grace@example.org", "Grace").await?;
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");
    let record = app.get(&format!("/v1/records/{made}"), &app.admin).await?;
    let in_crm = remote(&sandbox, &remote_id(&record.body)?).await?;
    assert_eq!(
        (in_crm["email"].as_str(), in_crm["name"].as_str()),
        (Some("grace@example.org"), Some("Grace"))
    );

    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    assert!(!audit.text.contains(&key), "the key in the audit trail");
    sandbox.shutdown().await;
    app.finish().await
}

async fn tave_descending_scans_and_full_document_writes(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    // 8 people and 4 companies, seeded in groups of 3 an hour apart; pages of 3.
    let mut config_ = NicheSandboxConfig::new(Dialect::Tave);
    config_.records = 8;
    config_.max_page_size = 3;
    let key = config_.api_key.clone();
    let sandbox = Sandbox::start_niche(config_).await?;
    let body = json!({"provider": "tave", "name": "Studio", "base_url": format!("{}/api/v2", sandbox.base_url()),
        "sync_config": config(&["contacts", "companies"])});
    let id = create(&app, body, &key).await?;

    // The address book is read once per entity: 12 entries, 4 pages and the empty one.
    let full = run(&app, &id, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    assert_eq!(
        (stat(&full, "created"), stat(&full, "failed")),
        (12, 0),
        "{full}"
    );
    assert_eq!(stat(&full, "api_calls"), 10, "{full}");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 8);
    assert_eq!(records(&app, &id, "companies").await?.len(), 4);

    // Four new people and one edited share one modification time, newer than all:
    // they straddle the first page boundary, and all of them arrive.
    let at = "2030-01-01T00:00:00Z";
    for n in 0..4 {
        put_remote(
            &sandbox,
            json!({"kind": "person", "firstName": format!("New{n}"),
            "lastName": "Client", "email": format!("new{n}@example.org"), "modified": at}),
        )
        .await?;
    }
    let first = "01hq0000000000000000000001";
    let mut edited = remote(&sandbox, first).await?;
    edited["lastName"] = json!("Renamed");
    edited["modified"] = json!(at);
    put_remote(&sandbox, edited).await?;
    let incremental = run(&app, &id, "incremental").await?;
    assert_eq!(incremental["status"], "completed", "{incremental}");
    assert_eq!(
        (stat(&incremental, "created"), stat(&incremental, "updated")),
        (4, 1),
        "{incremental}"
    );
    // Newest first, each pass stops at the first page reaching past its mark (less
    // the overlap): people after 3 pages, companies after 4 — not the 6 of a full read.
    assert_eq!(stat(&incremental, "api_calls"), 7, "{incremental}");
    assert_eq!(records(&app, &id, "contacts").await?.len(), 12);
    // Again, with nothing new: the records at the mark are read again and deduplicated.
    let before = record_events(&app).await?;
    let quiet = run(&app, &id, "incremental").await?;
    assert_eq!(
        (stat(&quiet, "created"), stat(&quiet, "updated")),
        (0, 0),
        "{quiet}"
    );
    assert_eq!(record_events(&app).await?, before);

    // An app edit is written back as the whole document (read, modify, write): what
    // the mapping does not cover (brandId, the kind) survives the PUT.
    let person = records(&app, &id, "contacts")
        .await?
        .into_iter()
        .find(|r| r["fields"]["email"]["value"] == "person7@example.org")
        .context("person 7")?;
    let rid = person["id"].as_str().context("id")?;
    app.patch(
        &format!("/v1/records/{rid}"),
        &app.admin,
        json!({"fields": {"phone": "+1 555 0107"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let made = new_contact(&app, "lead@example.org", "Lead").await?;
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");
    assert_eq!(stat(&pushed, "failed"), 0, "{pushed}");
    let written = remote(&sandbox, &remote_id(&person)?).await?;
    assert_eq!(written["cellPhone"], "+1 555 0107", "{written}");
    assert_eq!(
        (written["brandId"].as_str(), written["lastName"].as_str()),
        (Some("brand-1"), Some("Last7")),
        "{written}"
    );
    let record = app.get(&format!("/v1/records/{made}"), &app.admin).await?;
    let created = remote(&sandbox, &remote_id(&record.body)?).await?;
    assert_eq!(
        (created["kind"].as_str(), created["firstName"].as_str()),
        (Some("person"), Some("Lead")),
        "{created}"
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// Connection parameters missing, malformed or unknown, and parameters for a provider
/// that takes none: 400 naming the parameter, nothing written.
async fn template_refusals(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let events = app.event_count().await?;
    let cases = [
        ("chatwoot", json!({}), "parameters.account_id"),
        (
            "chatwoot",
            json!({"account_id": "7/../../admin"}),
            "parameters.account_id",
        ),
        (
            "chatwoot",
            json!({"account_id": "7?x=1"}),
            "parameters.account_id",
        ),
        (
            "chatwoot",
            json!({"account_id": "7", "inbox": "1"}),
            "parameters.inbox",
        ),
        ("tave", json!({"account_id": "7"}), "parameters.account_id"),
        ("hubspot", json!({"account_id": "7"}), "parameters"),
    ];
    for (provider, parameters, needle) in cases {
        let body = json!({"provider": provider, "name": "x", "parameters": parameters,
            "sync_config": config(&["contacts"])});
        app.post("/v1/integrations", &app.admin, body)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    assert_eq!(app.event_count().await?, events);
    app.finish().await
}

async fn provider_capabilities(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let chatwoot = app.get("/v1/providers/chatwoot", &app.admin).await?;
    let body = chatwoot.expect(StatusCode::OK);
    assert_eq!(
        (body["template"].as_bool(), body["spec_required"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(body["auth"]["header"], "api_access_token");
    assert_eq!(body["parameters"][0]["name"], "account_id");
    assert_eq!(body["capabilities"][0]["sync"], "full_scan", "{body}");
    assert_eq!(body["capabilities"][0]["deletions"], "after_full_scan");
    assert_eq!(body["capabilities"][0]["one_record_per_request"], true);
    assert_eq!(body["capabilities"][0]["limit"], Value::Null);
    // Companies: Enterprise only, and said so.
    let companies = &body["capabilities"][1];
    assert_eq!(
        (companies["entity"].as_str(), companies["sync"].as_str()),
        (Some("companies"), Some("full_scan")),
        "{body}"
    );
    let limit = companies["limit"].as_str().unwrap_or_default();
    assert!(
        limit.contains("403 or 404") && limit.contains("Enterprise"),
        "{limit}"
    );
    assert_eq!(body["entities"], json!(["contacts", "companies"]), "{body}");
    let tave = app.get("/v1/providers/tave", &app.admin).await?;
    let body = tave.expect(StatusCode::OK);
    assert_eq!(body["auth"]["header"], "X-API-KEY");
    assert_eq!(body["capabilities"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["capabilities"][1]["sync"], "descending_scan");
    assert_eq!(body["capabilities"][1]["full_document_writes"], true);
    assert_eq!(body["capabilities"][1]["deletions"], "none");
    let hubspot = app.get("/v1/providers/hubspot", &app.admin).await?;
    assert!(hubspot.expect(StatusCode::OK)["webhooks"].is_string());
    app.get("/v1/providers/myspace", &app.admin)
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "provider");
    let anonymous = send(app.client.get(app.url("/v1/providers/tave"))).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    app.finish().await
}
