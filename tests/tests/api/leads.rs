//! Write-only CRMs end to end through the API: Light Blue and ShootQ integrations push
//! only (pull and two-way refused: no read API), each new app record reaches a receiver
//! that checks the vendor's wire format as one lead, once; later runs, edits and archiving
//! send nothing; Light Blue's duplicate answer (-4) counts as delivered; a refused lead
//! (-3, an error dict) is a failure of its record in the run's results.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_sandbox::{LeadVendor, LeadsSandboxConfig, Sandbox};
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};

use crate::sync::run;

on_both_backends!(
    a_two_way_config_stored_before_the_rule_cannot_run,
    lightblue_sends_each_new_record_once,
    lightblue_refusals_fail_their_record,
    shootq_submits_each_new_record_once,
    write_only_refusals_and_catalogue
);

fn push_config() -> Value {
    json!({"direction": "push", "frequency": "manual", "entities": ["contacts"],
           "conflict_strategy": "app_wins"})
}

fn stat(run: &Value, name: &str) -> u64 {
    run["stats"][name].as_u64().unwrap_or(u64::MAX)
}

async fn received(sandbox: &Sandbox) -> anyhow::Result<Vec<Value>> {
    let url = format!("{}/_sandbox/received", sandbox.base_url());
    let resp = send(reqwest::Client::new().get(url)).await?;
    let list = resp.expect(StatusCode::OK).as_array().cloned();
    list.context("a list")
}

async fn counter(sandbox: &Sandbox, key: &str) -> anyhow::Result<u64> {
    let url = format!("{}/_sandbox/counters", sandbox.base_url());
    let resp = send(reqwest::Client::new().get(url)).await?;
    Ok(resp.expect(StatusCode::OK)[key].as_u64().unwrap_or(0))
}

async fn contact(app: &TestApp, fields: Value) -> anyhow::Result<String> {
    let body = json!({"entity": "contacts", "fields": fields});
    let resp = app.post("/v1/records", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

/// A Light Blue integration named `name` at the sandbox with `key`.
async fn lightblue(
    app: &TestApp,
    sandbox: &Sandbox,
    name: &str,
    key: &str,
) -> anyhow::Result<String> {
    let body = json!({"provider": "lightblue", "name": name,
        "base_url": sandbox.base_url(), "sync_config": push_config()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let stored = app.set_api_key(&app.admin, &id, key).await?;
    assert!(!stored.text.contains(key), "the key in a response");
    Ok(id)
}

async fn lightblue_sends_each_new_record_once(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let config = LeadsSandboxConfig::new(LeadVendor::LightBlue);
    let key = config.api_key.clone();
    let sandbox = Sandbox::start_leads(config).await?;
    let id = lightblue(&app, &sandbox, "Studio inbox", &key).await?;
    let tested = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(tested.expect(StatusCode::OK)["ok"], true, "{}", tested.text);

    let ada = contact(
        &app,
        json!({"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace",
               "phone": "+44 20 7946 0000", "title": "Countess"}),
    )
    .await?;
    let grace = contact(
        &app,
        json!({"email": "grace@example.org", "first_name": "Grace"}),
    )
    .await?;
    // A lead Light Blue already has (sent just before a crash, say): its ID answers -4.
    let early = contact(
        &app,
        json!({"email": "early@example.org", "first_name": "Early"}),
    )
    .await?;
    let seeded = json!({"type": "contact form", "ContactEmail": "early@example.org",
                        "Source": "syncledger", "ID": early});
    let url = format!("{}/_sandbox/received", sandbox.base_url());
    let resp = send(reqwest::Client::new().post(url).json(&seeded)).await?;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);

    let pushed = run(&app, &id, "push").await?;
    assert_eq!(pushed["status"], "completed", "{pushed}");
    assert_eq!(
        (stat(&pushed, "created"), stat(&pushed, "failed")),
        (3, 0),
        "{pushed}"
    );
    assert_eq!(counter(&sandbox, "POST /api.php").await?, 3);
    let leads = received(&sandbox).await?;
    assert_eq!(leads.len(), 3, "the duplicate is not kept twice: {leads:?}");
    let sent = leads
        .iter()
        .find(|l| l["ID"] == ada.as_str())
        .context("Ada's lead")?;
    // Exactly the form: type, the mapped parameters, Source and ID (the sandbox checked
    // the key and keeps everything else); the title is not mapped.
    assert_eq!(
        sent,
        &json!({"type": "contact form", "ContactEmail": "ada@example.org",
                "ContactNameFirst": "Ada", "ContactNameLast": "Lovelace",
                "ContactPhoneMobile": "+44 20 7946 0000", "Source": "syncledger", "ID": ada})
    );
    // Each record is linked to its lead (the reference is the remote id).
    for record in [&ada, &grace, &early] {
        let got = app
            .get(&format!("/v1/records/{record}"), &app.admin)
            .await?;
        assert_eq!(
            got.body["links"][0]["remote_id"],
            record.as_str(),
            "{}",
            got.text
        );
        // The reference is the lead's, not a property of a CRM record kept on the link.
        assert!(!got.text.contains("$reference"), "{}", got.text);
    }

    // Nothing new: nothing sent.
    let again = run(&app, &id, "push").await?;
    assert_eq!(again["status"], "completed", "{again}");
    assert_eq!(stat(&again, "created"), 0, "{again}");
    assert_eq!(counter(&sandbox, "POST /api.php").await?, 3);

    // An edit and an archive of leads already sent: nothing sent, no failure.
    app.patch(
        &format!("/v1/records/{ada}"),
        &app.admin,
        json!({"fields": {"phone": "+44 20 7946 0999"}}),
    )
    .await?
    .expect(StatusCode::OK);
    app.post(
        &format!("/v1/records/{grace}/archive"),
        &app.admin,
        json!({}),
    )
    .await?
    .expect(StatusCode::OK);
    let edited = run(&app, &id, "push").await?;
    assert_eq!(edited["status"], "completed", "{edited}");
    assert_eq!(
        (stat(&edited, "created"), stat(&edited, "failed")),
        (0, 0),
        "{edited}"
    );
    assert_eq!(counter(&sandbox, "POST /api.php").await?, 3);

    // A new record is the next lead.
    let later = contact(
        &app,
        json!({"email": "later@example.org", "last_name": "Later"}),
    )
    .await?;
    let fourth = run(&app, &id, "push").await?;
    assert_eq!(stat(&fourth, "created"), 1, "{fourth}");
    let leads = received(&sandbox).await?;
    assert_eq!(leads.len(), 4);
    assert_eq!(leads[3]["ID"], later.as_str());

    let audit = app.get("/v1/audit?limit=500", &app.admin).await?;
    assert!(!audit.text.contains(&key), "the key in the audit trail");
    let runs = app
        .get(&format!("/v1/integrations/{id}/sync-runs"), &app.admin)
        .await?;
    assert!(!runs.text.contains(&key), "the key in the runs");
    sandbox.shutdown().await;
    app.finish().await
}

async fn lightblue_refusals_fail_their_record(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let config = LeadsSandboxConfig::new(LeadVendor::LightBlue);
    let key = config.api_key.clone();
    let sandbox = Sandbox::start_leads(config).await?;
    let id = lightblue(&app, &sandbox, "Studio inbox", &key).await?;
    // Only blank values: the form carries no contact parameter, and Light Blue says -3.
    let blank = contact(&app, json!({"first_name": "   "})).await?;
    let fine = contact(&app, json!({"email": "fine@example.org"})).await?;
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(
        (stat(&pushed, "created"), stat(&pushed, "failed")),
        (1, 1),
        "{pushed}"
    );
    let failures = pushed["failures"].as_array().context("failures")?;
    assert_eq!(failures.len(), 1, "{pushed}");
    assert_eq!(failures[0]["record_id"], blank.as_str());
    let error = failures[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("status -3"), "{error}");
    let leads = received(&sandbox).await?;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["ID"], fine.as_str());

    // A wrong key: every lead is refused (the vendor's code), the key shown nowhere.
    let wrong = "lb-wrong-key-0123456789";
    let other = lightblue(&app, &sandbox, "Wrong key", wrong).await?;
    let refused = run(&app, &other, "push").await?;
    assert_eq!(stat(&refused, "created"), 0, "{refused}");
    assert_eq!(stat(&refused, "failed"), 2, "{refused}");
    assert!(refused["failures"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("status -1")));
    assert!(!refused.to_string().contains(wrong), "{refused}");
    assert_eq!(received(&sandbox).await?.len(), 1);
    sandbox.shutdown().await;
    app.finish().await
}

async fn shootq_submits_each_new_record_once(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let config = LeadsSandboxConfig::new(LeadVendor::ShootQ);
    let code = config.form_link_code.clone();
    let sandbox = Sandbox::start_leads(config).await?;
    // The form's link code is the only connection parameter, and all ShootQ asks for.
    let body = json!({"provider": "shootq", "name": "Website form", "base_url": sandbox.base_url(),
        "parameters": {"form_link_code": code}, "sync_config": push_config()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    let created = resp.expect(StatusCode::CREATED);
    assert!(!resp.text.contains(&code), "the code in a response");
    let id = created["id"].as_str().context("id")?.to_owned();
    let tested = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(tested.expect(StatusCode::OK)["ok"], true, "{}", tested.text);

    let ada = contact(
        &app,
        json!({"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace",
               "phone": "+44 20 7946 0000", "company": "Analytical"}),
    )
    .await?;
    contact(
        &app,
        json!({"email": "grace@example.org", "first_name": "Grace"}),
    )
    .await?;
    // No email: ShootQ's error dict, a failure of this record only.
    let nameless = contact(&app, json!({"first_name": "Nomail"})).await?;
    let pushed = run(&app, &id, "push").await?;
    assert_eq!(
        (stat(&pushed, "created"), stat(&pushed, "failed")),
        (2, 1),
        "{pushed}"
    );
    let failure = &pushed["failures"][0];
    assert_eq!(failure["record_id"], nameless.as_str(), "{pushed}");
    let error = failure["error"].as_str().unwrap_or_default();
    assert!(error.contains("email: This field is required."), "{error}");
    // The form viewed by the connection test is not viewed again for the run's leads
    // (its id is kept a few minutes); each lead is submitted once.
    assert_eq!(counter(&sandbox, "GET view").await?, 1);
    assert_eq!(counter(&sandbox, "POST submit").await?, 3);
    let leads = received(&sandbox).await?;
    assert_eq!(leads.len(), 2);
    assert_eq!(
        leads
            .iter()
            .find(|l| l["email"] == "ada@example.org")
            .context("Ada's lead")?,
        &json!({"email": "ada@example.org", "first_name": "Ada", "last_name": "Lovelace",
                "phone": "+44 20 7946 0000", "company_name": "Analytical"})
    );

    // Again, and after an edit of a lead already sent: nothing new arrives (the record
    // ShootQ refused is tried again and refused again).
    app.patch(
        &format!("/v1/records/{ada}"),
        &app.admin,
        json!({"fields": {"last_name": "King"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let again = run(&app, &id, "push").await?;
    assert_eq!(
        (stat(&again, "created"), stat(&again, "failed")),
        (0, 1),
        "{again}"
    );
    assert_eq!(counter(&sandbox, "POST submit").await?, 4);
    assert_eq!(received(&sandbox).await?.len(), 2);

    // Another form's code (PATCH parameters) replaces the integration's: a form ShootQ
    // does not know refuses the next lead (404), the right one takes it.
    let patch = |code: &str| json!({"parameters": {"form_link_code": code}});
    let path = format!("/v1/integrations/{id}");
    let resp = app.patch(&path, &app.admin, patch("gone-form")).await?;
    resp.expect(StatusCode::OK);
    assert!(!resp.text.contains("gone-form"), "the code in a response");
    app.patch(&path, &app.admin, patch("../x"))
        .await?
        .expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "parameters.form_link_code",
        );
    // With a stale If-Match, a new code alone is refused too (nothing changes).
    let stale = app
        .request(reqwest::Method::PATCH, &path, &app.admin)
        .header("if-match", "\"1\"")
        .json(&patch(&code));
    send(stale)
        .await?
        .expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed", "");
    contact(&app, json!({"email": "new@example.org"})).await?;
    let lost = run(&app, &id, "push").await?;
    assert_eq!(stat(&lost, "created"), 0, "{lost}");
    assert!(lost["failures"].to_string().contains("404"), "{lost}");
    app.patch(&path, &app.admin, patch(&code))
        .await?
        .expect(StatusCode::OK);
    let found = run(&app, &id, "push").await?;
    assert_eq!(stat(&found, "created"), 1, "{found}");
    assert_eq!(received(&sandbox).await?.len(), 3);
    sandbox.shutdown().await;
    app.finish().await
}

/// Pull and two-way refused at creation, on a change of direction and for one run;
/// ShootQ's form code required and checked; the catalogue says "leads only".
async fn write_only_refusals_and_catalogue(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let events = app.event_count().await?;
    let form = json!({"form_link_code": "studio-form-1"});
    for (provider, parameters) in [("lightblue", json!({})), ("shootq", form.clone())] {
        for direction in ["pull", "bidirectional"] {
            let body = json!({"provider": provider, "name": "x", "parameters": parameters,
                "sync_config": {"direction": direction, "frequency": "manual",
                                "entities": ["contacts"], "conflict_strategy": "crm_wins"}});
            let resp = app.post("/v1/integrations", &app.admin, body).await?;
            resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "no read API");
            assert!(resp.text.contains("sync_config.direction"), "{}", resp.text);
        }
    }
    let cases = [
        ("shootq", json!({}), "parameters.form_link_code"),
        (
            "shootq",
            json!({"form_link_code": "../admin"}),
            "parameters.form_link_code",
        ),
        (
            "shootq",
            json!({"form_link_code": "a", "api_key": "b"}),
            "parameters.api_key",
        ),
        ("lightblue", form.clone(), "parameters"),
    ];
    for (provider, parameters, needle) in cases {
        let body = json!({"provider": provider, "name": "x", "parameters": parameters,
            "sync_config": push_config()});
        app.post("/v1/integrations", &app.admin, body)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    // The outbound policy: a base URL off the vendor's domains, or to a metadata
    // address, is refused before anything is stored.
    for (provider, base_url, parameters) in [
        ("lightblue", "https://evil.example", json!({})),
        (
            "lightblue",
            "https://lightbluesoftware.com.evil.example",
            json!({}),
        ),
        ("shootq", "http://169.254.169.254", form.clone()),
    ] {
        let body = json!({"provider": provider, "name": "x", "base_url": base_url,
            "parameters": parameters, "sync_config": push_config()});
        let resp = app.post("/v1/integrations", &app.admin, body).await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{base_url}: {}",
            resp.text
        );
        assert!(resp.text.contains("base_url"), "{}", resp.text);
    }
    assert_eq!(app.event_count().await?, events, "a refusal wrote events");

    // A push integration cannot turn to pulling, nor run one pull.
    let body = json!({"provider": "lightblue", "name": "Inbox", "sync_config": push_config()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let mut two_way = push_config();
    two_way["direction"] = json!("bidirectional");
    app.patch(
        &format!("/v1/integrations/{id}"),
        &app.admin,
        json!({"sync_config": two_way}),
    )
    .await?
    .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "no read API");
    app.set_api_key(&app.admin, &id, "lb-key").await?;
    let pull = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full", "direction": "pull"}),
        )
        .await?;
    pull.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "direction");

    let list = app.get("/v1/providers", &app.admin).await?;
    let providers = list.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .context("data")?;
    for p in &providers {
        let leads = matches!(p["id"].as_str(), Some("lightblue" | "shootq"));
        assert_eq!(p["leads_only"], leads, "{p}");
        if leads {
            assert_eq!(p["via_custom_spec"], false, "{p}");
        }
    }
    let shootq = app.get("/v1/providers/shootq", &app.admin).await?;
    let body = shootq.expect(StatusCode::OK);
    assert_eq!(body["spec_required"], false);
    assert_eq!(body["parameters"][0]["name"], "form_link_code");
    assert_eq!(
        (
            &body["capabilities"][0]["sync"],
            &body["capabilities"][0]["creates"],
            &body["capabilities"][0]["updates"]
        ),
        (&json!("none"), &json!(true), &json!(false))
    );
    assert!(body["notes"].to_string().contains("no read API"), "{body}");
    app.finish().await
}

/// An integration whose two-way config was stored before write-only providers pushed only
/// (appended here as an event, past the rule) gets a 400 for every run that would pull,
/// instead of asking the vendor for a read it has no API for.
async fn a_two_way_config_stored_before_the_rule_cannot_run(
    backend: Backend,
) -> anyhow::Result<()> {
    use syncledger_domain::{Integration, IntegrationEvent, SyncConfig};
    use syncledger_store::append::{append, NewEvent};
    use syncledger_store::Metadata;
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let body = json!({"provider": "lightblue", "name": "Inbox", "sync_config": push_config()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let stored = app.set_api_key(&app.admin, &id, "lb-key").await?;
    let version = stored.body["version"].as_i64().context("version")?;
    let two_way = SyncConfig {
        direction: syncledger_domain::sync_config::Direction::Bidirectional,
        entities: vec![syncledger_domain::Entity::Contacts],
        ..SyncConfig::default()
    };
    let legacy = IntegrationEvent::SyncConfigChanged {
        sync_config: two_way,
        at: chrono::Utc::now(),
    };
    let meta = Metadata::new(
        "user:test",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let event = NewEvent::of::<Integration>(&id, version + 1, &legacy, &meta)?;
    append(&app.state.store.events, &[event]).await?;
    app.state.projections_wake.notify_waiters();
    app.caught_up().await;
    for kind in ["incremental", "full", "push"] {
        app.post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": kind}),
        )
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "no read API");
    }
    app.finish().await
}
