//! Field mappings through the HTTP API: effective mappings (provider defaults until set),
//! replacing them with CEL transforms and a filter, refusals that change nothing, previews
//! and proposals against the provider sandboxes, and re-applying a changed mapping to the
//! CRM data already fetched without calling the provider.

use anyhow::Context;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_domain::merge::{Fields, MergePolicy};
use syncledger_domain::record::RecordCommand;
use syncledger_domain::{ConflictStrategy, Entity, IntegrationCommand};
use syncledger_sandbox::{SalesforceSandboxConfig, Sandbox, SandboxConfig};
use syncledger_store::Metadata;
use syncledger_testkit::app::{on_both_backends, send, sync_config, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    mappings_are_read_replaced_and_refused_without_changes,
    previews_and_proposals_map_sandbox_records_without_writing,
    reapply_remaps_fetched_data_without_calling_the_provider
);

/// Create an integration on `provider` pointed at `sandbox` and connect it through the
/// OAuth redirect, as a user would; answers its id.
async fn connected(app: &TestApp, provider: &str, sandbox: &Sandbox) -> anyhow::Result<String> {
    let body = json!({"provider": provider, "name": format!("Sandbox {provider}"),
        "sync_config": sync_config(), "base_url": sandbox.base_url()});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let resp = app
        .post_empty(&format!("/v1/integrations/{id}/connect"), &app.admin)
        .await?;
    let authorization_url = resp.str("authorization_url")?;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let approved = no_redirects.get(&authorization_url).send().await?;
    assert_eq!(approved.status(), StatusCode::FOUND, "the sandbox approves");
    let callback = approved
        .headers()
        .get(reqwest::header::LOCATION)
        .context("a Location header")?
        .to_str()?
        .to_string();
    let resp = send(app.client.get(&callback)).await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "connected");
    Ok(id)
}

async fn put(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<syncledger_testkit::app::Resp> {
    send(app.request(Method::PUT, path, token).json(&body)).await
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// HubSpot's default contact mappings with `first_name` upper-cased on the way in.
fn shouting_mappings() -> Value {
    json!([
        {"crm_field": "email", "app_field": "email", "direction": "both"},
        {"crm_field": "firstname", "app_field": "first_name", "direction": "both",
         "transform": "value.upperAscii()"},
        {"crm_field": "lastname", "app_field": "last_name", "direction": "pull"}
    ])
}

async fn mappings_are_read_replaced_and_refused_without_changes(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let id = app.create_integration(&admin, "Hub").await?;
    let base = format!("/v1/integrations/{id}/mappings");

    // Nothing stored: every synced entity shows the provider's defaults.
    let resp = app.get(&base, &admin).await?;
    let data = resp.expect(StatusCode::OK)["data"].clone();
    assert_eq!(data.as_array().map(Vec::len), Some(2), "{}", resp.text);
    assert_eq!(data[0]["entity"], "contacts");
    assert_eq!(data[0]["source"], "default");
    assert!(data[0]["filter"].is_null());
    assert_eq!(
        data[0]["mappings"][0],
        json!({"crm_field": "email", "app_field": "email", "direction": "both"})
    );
    assert_eq!(data[1]["entity"], "companies");
    assert_eq!(data[1]["mappings"][1]["crm_field"], "domain");
    let resp = app.get(&format!("{base}/contacts"), &admin).await?;
    assert_eq!(resp.expect(StatusCode::OK), &data[0]);

    // Custom mappings with a transform and a filter.
    let filter = "record.lifecyclestage == 'customer'";
    let body = json!({"mappings": shouting_mappings(), "filter": filter});
    let resp = put(&app, &format!("{base}/contacts"), &admin, body.clone()).await?;
    let saved = resp.expect(StatusCode::OK).clone();
    assert_eq!(saved["source"], "custom");
    assert_eq!(saved["filter"], filter);
    assert_eq!(saved["mappings"], shouting_mappings());
    let resp = app.get(&format!("{base}/contacts"), &admin).await?;
    assert_eq!(resp.expect(StatusCode::OK), &saved);
    let resp = app.get(&base, &admin).await?;
    let data = resp.expect(StatusCode::OK)["data"].clone();
    assert_eq!((&data[0], &data[1]["source"]), (&saved, &json!("default")));
    // The same again writes nothing.
    let events = app.event_count().await?;
    put(&app, &format!("{base}/contacts"), &admin, body)
        .await?
        .expect(StatusCode::OK);
    assert_eq!(app.event_count().await?, events);

    // Refusals leave the stored mapping and the event log as they were.
    let mut broken = shouting_mappings();
    broken[1]["transform"] = json!("value +");
    let refusals = [
        (
            json!({"mappings": broken, "filter": null}),
            "mappings[1].transform",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mappings": shouting_mappings(), "filter": "secrets.token == 1"}),
            "filter",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mappings": [
                {"crm_field": "email", "app_field": "email", "direction": "pull"},
                {"crm_field": "work_email", "app_field": "email", "direction": "both"}]}),
            "filled by more than one",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mappings": [{"crm_field": "email", "app_field": "email", "direction": "sideways"}]}),
            "mappings[0].direction",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"mappings": [{"crm_field": " ", "app_field": "email", "direction": "pull"}]}),
            "must not be empty",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, needle, status) in refusals {
        let resp = put(&app, &format!("{base}/contacts"), &admin, body).await?;
        resp.expect_error(status, "validation_failed", needle);
    }
    let resp = put(
        &app,
        &format!("{base}/contacts"),
        &admin,
        json!({"mappings": broken}),
    )
    .await?;
    assert!(resp.text.contains("firstname"), "{}", resp.text);
    let resp = put(
        &app,
        &format!("{base}/deals"),
        &admin,
        json!({"mappings": []}),
    )
    .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "entity");
    // An entity the integration does not sync.
    let body = json!({"provider": "hubspot", "name": "Contacts only", "sync_config": {
        "direction": "pull", "frequency": "manual", "entities": ["contacts"],
        "conflict_strategy": "crm_wins"}});
    let resp = app.post("/v1/integrations", &admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let narrow = resp.str("id")?;
    let events = app.event_count().await?;
    let resp = put(
        &app,
        &format!("/v1/integrations/{narrow}/mappings/companies"),
        &admin,
        json!({"mappings": []}),
    )
    .await?;
    resp.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "does not sync companies",
    );
    let resp = app
        .get(&format!("/v1/integrations/{narrow}/mappings"), &admin)
        .await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["data"].as_array().map(Vec::len),
        Some(1)
    );
    let (_, viewer) = app.issue_token("viewer").await?;
    let events = events + 1;
    let resp = put(
        &app,
        &format!("{base}/contacts"),
        &viewer,
        json!({"mappings": []}),
    )
    .await?;
    resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    let resp = app.get(&format!("{base}/contacts"), &viewer).await?;
    assert_eq!(resp.expect(StatusCode::OK), &saved);
    let resp = app
        .get(
            "/v1/integrations/00000000-0000-0000-0000-000000000000/mappings",
            &admin,
        )
        .await?;
    resp.expect_error(StatusCode::NOT_FOUND, "not_found", "integration");
    assert_eq!(app.event_count().await?, events);
    app.finish().await
}

async fn previews_and_proposals_map_sandbox_records_without_writing(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let id = connected(&app, "hubspot", &sandbox).await?;
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    let events = app.event_count().await?;

    // The defaults, on the first page's first ten records.
    let resp = app.post_empty(&format!("{base}/preview"), &admin).await?;
    let body = resp.expect(StatusCode::OK).clone();
    let records = body["records"].as_array().context("records")?.clone();
    assert_eq!(records.len(), 10, "{}", resp.text);
    for r in &records {
        assert!(r["remote_id"].is_string() && r["filtered"] == false && r["error"].is_null());
        assert_eq!(r["app"]["email"], r["crm"]["email"], "{r}");
        assert_eq!(r["app"]["title"], r["crm"]["jobtitle"], "{r}");
    }
    assert_eq!(strings(&body["unmapped_app_fields"]), Vec::<String>::new());
    assert_eq!(strings(&body["unmapped_required"]), Vec::<String>::new());

    // Stored custom mappings with a filter: customers only, first names upper-cased.
    let filter = "record.lifecyclestage == 'customer'";
    put(
        &app,
        &base,
        &admin,
        json!({"mappings": shouting_mappings(), "filter": filter}),
    )
    .await?
    .expect(StatusCode::OK);
    let events = events + 1;
    let resp = app
        .post(&format!("{base}/preview"), &admin, json!({"limit": 50}))
        .await?;
    let body = resp.expect(StatusCode::OK).clone();
    let records = body["records"].as_array().context("records")?.clone();
    assert_eq!(records.len(), 50);
    let (mut kept, mut left_out) = (0, 0);
    for r in &records {
        if r["crm"]["lifecyclestage"] == "customer" {
            kept += 1;
            assert_eq!(r["filtered"], false, "{r}");
            let first = r["crm"]["firstname"].as_str().unwrap_or_default();
            assert_eq!(r["app"]["first_name"], first.to_uppercase(), "{r}");
            assert!(r["app"].get("title").is_none(), "not mapped: {r}");
        } else {
            left_out += 1;
            assert_eq!(
                (&r["filtered"], &r["app"]),
                (&json!(true), &Value::Null),
                "{r}"
            );
        }
    }
    assert!(kept > 0 && left_out > 0, "{kept} kept, {left_out} filtered");
    let mut unmapped = strings(&body["unmapped_app_fields"]);
    unmapped.sort();
    assert_eq!(unmapped, ["company", "phone", "title"]);

    // Mappings under test, without a filter; a transform that fails shows per record.
    let trial = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "pull"},
        {"crm_field": "city", "app_field": "city", "direction": "pull",
         "transform": "value + record.no_such_field"}],
        "filter": null, "limit": 3});
    let resp = app.post(&format!("{base}/preview"), &admin, trial).await?;
    let records = resp.expect(StatusCode::OK)["records"].clone();
    assert_eq!(records.as_array().map(Vec::len), Some(3));
    for r in records.as_array().into_iter().flatten() {
        assert_eq!(
            (&r["filtered"], &r["app"]),
            (&json!(false), &Value::Null),
            "{r}"
        );
        assert!(
            r["error"].as_str().is_some_and(|e| e.contains("city")),
            "{r}"
        );
    }
    for (body, needle) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 51}), "limit"),
        (json!({"filter": "record."}), "filter"),
        (json!({"unknown": 1}), "unknown"),
    ] {
        let resp = app.post(&format!("{base}/preview"), &admin, body).await?;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text);
        assert!(resp.text.contains(needle), "{}", resp.text);
    }

    // A proposal from the catalogue: names that normalize alike, nothing saved.
    let resp = app.post_empty(&format!("{base}/auto"), &admin).await?;
    let body = resp.expect(StatusCode::OK).clone();
    let proposed: Vec<(String, String)> = body["mappings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["crm_field"].as_str().unwrap_or_default().to_owned(),
                m["app_field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for pair in [
        ("email", "email"),
        ("firstname", "first_name"),
        ("lastname", "last_name"),
    ] {
        assert!(
            proposed.contains(&(pair.0.to_owned(), pair.1.to_owned())),
            "{pair:?} in {}",
            resp.text
        );
    }
    assert_eq!(body["mappings"][0]["direction"], "both");
    assert_eq!(strings(&body["unmapped_app_fields"]), ["title"]);
    assert!(body["unmapped_required"].is_array());
    let resp = app.get(&base, &admin).await?;
    assert_eq!(resp.expect(StatusCode::OK)["mappings"], shouting_mappings());
    assert_eq!(
        app.event_count().await?,
        events,
        "previews and proposals write nothing"
    );
    sandbox.shutdown().await;

    // A provider with required fields: a preview flags the one no mapping fills.
    let salesforce = Sandbox::start_salesforce(SalesforceSandboxConfig::default()).await?;
    let sf = connected(&app, "salesforce", &salesforce).await?;
    let sf_base = format!("/v1/integrations/{sf}/mappings/contacts");
    let resp = app
        .post_empty(&format!("{sf_base}/preview"), &admin)
        .await?;
    assert_eq!(
        strings(&resp.expect(StatusCode::OK)["unmapped_required"]),
        Vec::<String>::new()
    );
    let trial =
        json!({"mappings": [{"crm_field": "Email", "app_field": "email", "direction": "both"}]});
    let resp = app
        .post(&format!("{sf_base}/preview"), &admin, trial)
        .await?;
    let body = resp.expect(StatusCode::OK);
    assert_eq!(
        strings(&body["unmapped_required"]),
        ["LastName"],
        "{}",
        resp.text
    );
    assert!(
        body["records"][0]["app"]["email"].is_string(),
        "{}",
        resp.text
    );
    salesforce.shutdown().await;
    app.finish().await
}

fn props(pairs: &[(&str, Option<&str>)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

/// Default HubSpot contact mapping of `remote`.
fn mapped(remote: &Fields) -> Fields {
    [
        ("email", "email"),
        ("firstname", "first_name"),
        ("lastname", "last_name"),
    ]
    .into_iter()
    .filter_map(|(crm, app)| remote.get(crm).map(|v| (app.to_string(), v.clone())))
    .collect()
}

/// A contact fetched earlier from `integration_id`, through the command path.
async fn fetched(
    app: &TestApp,
    integration_id: &str,
    remote_id: &str,
    remote: Fields,
) -> anyhow::Result<String> {
    let record_id = uuid::Uuid::now_v7().to_string();
    let meta = Metadata::new(
        "user:test",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let ingest = RecordCommand::Ingest {
        record_id: record_id.clone(),
        workspace_id: app.workspace_id.clone(),
        entity: Entity::Contacts,
        integration_id: integration_id.into(),
        remote_id: remote_id.into(),
        remote_updated_at: Utc::now(),
        fields: mapped(&remote),
        remote,
        policy: MergePolicy {
            strategy: ConflictStrategy::ManualReview,
            always: Default::default(),
        },
        run_id: "seed-run".into(),
        at: Utc::now(),
    };
    app.state.records.execute(&record_id, ingest, &meta).await?;
    Ok(record_id)
}

async fn record_events(app: &TestApp) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE aggregate_type = 'record'")
            .fetch_one(&app.state.store.any)
            .await?,
    )
}

async fn first_name(app: &TestApp, record_id: &str) -> anyhow::Result<Value> {
    let resp = app
        .get(&format!("/v1/records/{record_id}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK)["fields"]["first_name"].clone())
}

/// The records a rollback of `run_id` would touch, by id, from its preview.
async fn rollback_targets(app: &TestApp, run_id: &str) -> anyhow::Result<Vec<String>> {
    let resp = app
        .post_empty(
            &format!("/v1/sync-runs/{run_id}/rollback?dry_run=true"),
            &app.admin,
        )
        .await?;
    let plan = resp.expect(StatusCode::OK);
    let mut ids: Vec<String> = plan["records"]
        .as_array()
        .context("the planned records")?
        .iter()
        .filter_map(|r| r["record_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn reapply_remaps_fetched_data_without_calling_the_provider(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let sandbox = sandbox::hubspot_with(SandboxConfig::default()).await;
    let id = connected(&app, "hubspot", &sandbox).await?;
    let other = app.create_integration(&admin, "Other hub").await?;
    let customer = |email, first| {
        props(&[
            ("email", Some(email)),
            ("firstname", first),
            ("lastname", Some("Lovelace")),
            ("lifecyclestage", Some("customer")),
        ])
    };
    let ada = fetched(&app, &id, "501", customer("ada@x.io", Some("ada"))).await?;
    let cy = fetched(&app, &id, "502", customer("cy@x.io", Some("cy"))).await?;
    let lead = props(&[
        ("email", Some("bob@x.io")),
        ("firstname", Some("bob")),
        ("lifecyclestage", Some("lead")),
    ]);
    let bob = fetched(&app, &id, "503", lead).await?;
    // A null first name cannot be upper-cased: that record fails, the others go on.
    let dee = fetched(&app, &id, "504", customer("dee@x.io", None)).await?;
    let elsewhere = fetched(&app, &other, "505", customer("eve@x.io", Some("eve"))).await?;
    let filter = "record.lifecyclestage == 'customer'";
    let base = format!("/v1/integrations/{id}/mappings/contacts");
    put(
        &app,
        &base,
        &admin,
        json!({"mappings": shouting_mappings(), "filter": filter}),
    )
    .await?
    .expect(StatusCode::OK);

    let (_, viewer) = app.issue_token("viewer").await?;
    let resp = app.post_empty(&format!("{base}/reapply"), &viewer).await?;
    resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");

    let calls = sandbox.counters();
    let record_events_before = record_events(&app).await?;
    let resp = app.post_empty(&format!("{base}/reapply"), &admin).await?;
    let run = resp.expect(StatusCode::OK).clone();
    assert_eq!(
        sandbox.counters(),
        calls,
        "a reapply never calls the provider"
    );
    assert_eq!(
        (&run["kind"], &run["status"]),
        (&json!("reapply"), &json!("partial")),
        "{}",
        resp.text
    );
    let stats = &run["stats"];
    assert_eq!(
        [
            &stats["processed"],
            &stats["updated"],
            &stats["unchanged"],
            &stats["skipped"],
            &stats["failed"]
        ],
        [&json!(4), &json!(2), &json!(0), &json!(1), &json!(1)],
        "{}",
        resp.text
    );
    assert_eq!(run["failures"].as_array().map(Vec::len), Some(1));
    assert_eq!(run["failures"][0]["record_id"], dee.as_str());
    assert_eq!(run["failures"][0]["remote_id"], "504");
    assert!(run["failures"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("firstname")));

    for (record, value) in [(&ada, "ADA"), (&cy, "CY")] {
        let field = first_name(&app, record).await?;
        assert_eq!(
            (&field["value"], &field["source"]),
            (&json!(value), &json!("crm"))
        );
        assert_eq!(field["integration_id"], id.as_str());
    }
    // Filtered out now: skipped, neither changed nor unlinked.
    assert_eq!(first_name(&app, &bob).await?["value"], "bob");
    let resp = app.get(&format!("/v1/records/{bob}"), &admin).await?;
    assert_eq!(resp.expect(StatusCode::OK)["links"][0]["remote_id"], "503");
    assert!(first_name(&app, &dee).await?["value"].is_null());
    assert_eq!(first_name(&app, &elsewhere).await?["value"], "eve");
    let written = record_events(&app).await? - record_events_before;
    assert_eq!(
        written, 4,
        "a field change and a merge for each of two records"
    );

    // A rollback finds the run's record events by the run's id as their correlation id
    // (the request that started the run is their cause). Runs written by older versions
    // carried the request's id instead: rewritten that way, the run is still found, by
    // the run id in its record events within the run's span.
    let run_id = run["id"].as_str().context("run id")?.to_owned();
    let mut expected = vec![ada.clone(), cy.clone()];
    expected.sort();
    assert_eq!(rollback_targets(&app, &run_id).await?, expected);
    let legacy = if app.state.store.is_postgres() {
        "UPDATE events SET metadata = CAST(jsonb_set(CAST(metadata AS jsonb), '{correlation_id}',
                '\"a-request\"') AS json)
          WHERE metadata->>'correlation_id' = $1"
    } else {
        "UPDATE events SET metadata = json_set(metadata, '$.correlation_id', 'a-request')
          WHERE json_extract(metadata, '$.correlation_id') = $1"
    };
    let rewritten = sqlx::query(legacy)
        .bind(&run_id)
        .execute(&app.state.store.any)
        .await?
        .rows_affected();
    assert!(
        rewritten >= 8,
        "the run's own events and its 4 record events"
    );
    assert_eq!(rollback_targets(&app, &run_id).await?, expected);

    // Again: nothing left to change, so no record event.
    let record_events_before = record_events(&app).await?;
    let resp = app.post_empty(&format!("{base}/reapply"), &admin).await?;
    let again = resp.expect(StatusCode::OK).clone();
    assert_eq!(
        [
            &again["stats"]["updated"],
            &again["stats"]["unchanged"],
            &again["stats"]["skipped"]
        ],
        [&json!(0), &json!(2), &json!(1)],
        "{}",
        resp.text
    );
    assert_eq!(record_events(&app).await?, record_events_before);
    assert_eq!(sandbox.counters(), calls);

    // Both runs are in the sync-runs read model, as reapply runs of this integration.
    app.caught_up().await;
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, kind, trigger_kind, status FROM sync_runs WHERE integration_id = $1
          ORDER BY queued_at, id",
    )
    .bind(&id)
    .fetch_all(&app.state.store.any)
    .await?;
    let expected: Vec<(String, String, String, String)> = [&run, &again]
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                "reapply".to_owned(),
                "manual".to_owned(),
                "partial".to_owned(),
            )
        })
        .collect();
    assert_eq!(rows, expected);
    let stats: String = sqlx::query_scalar("SELECT stats FROM sync_runs WHERE id = $1")
        .bind(run["id"].as_str().unwrap_or_default())
        .fetch_one(&app.state.store.any)
        .await?;
    let stats: Value = serde_json::from_str(&stats)?;
    assert_eq!(
        (&stats["updated"], &stats["failed"]),
        (&json!(2), &json!(1))
    );

    // One run at a time: another active run makes a reapply wait its turn.
    let meta = Metadata::new(
        "user:test",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let begin = IntegrationCommand::BeginSyncRun {
        run_id: "busy".into(),
        rollback: false,
        at: Utc::now(),
    };
    app.state.integrations.execute(&id, begin, &meta).await?;
    let events = app.event_count().await?;
    let resp = app.post_empty(&format!("{base}/reapply"), &admin).await?;
    resp.expect_error(StatusCode::CONFLICT, "run_active", "busy");
    assert_eq!(app.event_count().await?, events);
    let finish = IntegrationCommand::FinishSyncRun {
        run_id: "busy".into(),
        at: Utc::now(),
    };
    app.state.integrations.execute(&id, finish, &meta).await?;
    let resp = app
        .post_empty(
            &format!("/v1/integrations/{id}/mappings/deals/reapply"),
            &admin,
        )
        .await?;
    resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", "entity");
    sandbox.shutdown().await;
    app.finish().await
}
