//! The conflict review queue through the API: conflicts found by merges (CRM versions are
//! ingested straight through the record aggregate, the app's edits go through the API),
//! read, resolved each way or ignored, filtered and paged, kept to their workspace, and
//! the "always use" rules per integration and field.

use chrono::{DateTime, Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncledger_domain::merge::{Fields, MergePolicy, Side};
use syncledger_domain::record::Record;
use syncledger_domain::{ConflictStrategy, Entity, Integration, Plan};
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::conflicts::{ingest_email, manual, APP, CRM, OLD};

on_both_backends!(
    a_conflict_is_read_and_resolved_each_way,
    an_ignored_conflict_stays_quiet_until_a_side_changes,
    the_queue_filters_and_pages,
    refusals_change_nothing,
    conflict_rules_round_trip_and_settle_conflicts,
);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::seconds(secs)
}

async fn ingest(
    app: &TestApp,
    record: &str,
    integration: &str,
    entity: Entity,
    email: &str,
    secs: i64,
    policy: &MergePolicy,
) -> anyhow::Result<()> {
    ingest_email(app, (record, integration, entity), email, at(secs), policy).await
}

/// The conflicts listed with these filters (all pages).
async fn listed(app: &TestApp, query: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
    app.list_all("/v1/conflicts", &app.admin, query, 50).await
}

/// A record imported with OLD, edited by the app to `app_value` through the API, then
/// changed in the CRM to `crm_value`: its id and the open conflict's.
async fn conflicted(
    app: &TestApp,
    integration: &str,
    entity: Entity,
    app_value: &str,
    crm_value: &str,
) -> anyhow::Result<(String, String)> {
    let record = uuid::Uuid::now_v7().to_string();
    ingest(app, &record, integration, entity, OLD, 1, &manual()).await?;
    app.patch(
        &format!("/v1/records/{record}"),
        &app.admin,
        json!({"fields": {"email": app_value}}),
    )
    .await?
    .expect(StatusCode::OK);
    ingest(app, &record, integration, entity, crm_value, 2, &manual()).await?;
    app.caught_up().await;
    let open = listed(app, &[("record_id", &record), ("status", "open")]).await?;
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0]["id"].as_str().unwrap_or_default().to_string();
    Ok((record, id))
}

/// What the record owes the integration's CRM.
async fn pending(app: &TestApp, record: &str, integration: &str) -> anyhow::Result<Fields> {
    let r: Record = app.state.records.load(record).await?;
    Ok(r.links
        .get(integration)
        .map(|l| l.pending_push.clone())
        .unwrap_or_default())
}

async fn a_conflict_is_read_and_resolved_each_way(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Main").await?;
    let actor = format!("token:{}", app.admin_id);
    for (body, kind, chosen) in [
        (json!({"resolution": "use_app"}), "use_app", json!(APP)),
        (json!({"resolution": "use_crm"}), "use_crm", json!(CRM)),
        (
            json!({"resolution": "merged", "value": "ada@example.com"}),
            "merged",
            json!("ada@example.com"),
        ),
        (
            json!({"resolution": "merged", "value": null}),
            "merged",
            Value::Null,
        ),
    ] {
        let (record, id) = conflicted(&app, &integration, Entity::Contacts, APP, CRM).await?;
        let resp = app.get(&format!("/v1/conflicts/{id}"), &app.admin).await?;
        let c = resp.expect(StatusCode::OK).clone();
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["record_id"], record.as_str());
        assert_eq!(c["integration_id"], integration.as_str());
        assert_eq!(c["entity"], "contacts");
        assert_eq!(c["field"], "email");
        assert_eq!(
            (&c["base_value"], &c["app_value"], &c["crm_value"]),
            (&json!(OLD), &json!(APP), &json!(CRM))
        );
        assert_eq!(c["status"], "open");
        assert!(c["detected_at"].is_string());
        assert!(c["resolution"].is_null() && c["resolved_at"].is_null());
        assert_eq!(c["current"]["value"], APP, "the record's value now");
        assert_eq!(c["current"]["source"], "app");

        let resp = app
            .post(
                &format!("/v1/conflicts/{id}/resolve"),
                &app.admin,
                body.clone(),
            )
            .await?;
        let done = resp.expect(StatusCode::OK).clone();
        assert_eq!(done["status"], "resolved", "{body}");
        assert_eq!(done["resolution"], kind);
        assert_eq!(done["resolved_by"], actor.as_str());
        assert_eq!(done["resolved_value"], chosen);
        assert!(done["resolved_at"].is_string());
        let resp = app
            .get(&format!("/v1/records/{record}"), &app.admin)
            .await?;
        let email = &resp.expect(StatusCode::OK)["fields"]["email"];
        assert_eq!(email["value"], chosen, "{body}");
        if kind == "use_crm" {
            // The CRM's value keeps the CRM as its source; the resolver decided.
            assert_eq!(email["source"], "crm", "{body}");
            assert_eq!(email["integration_id"], integration.as_str());
            assert_eq!(email["decided_by"], actor.as_str());
            assert!(email["actor"].is_null(), "{email}");
        } else {
            assert_eq!(email["source"], "app");
            assert_eq!(email["actor"], actor.as_str());
            assert!(email["decided_by"].is_null(), "{email}");
        }
        // The chosen value is owed to the CRM unless the CRM already holds it.
        let owed = pending(&app, &record, &integration).await?;
        let expected: Fields = match kind {
            "use_crm" => Fields::new(),
            _ => [("email".to_string(), chosen.as_str().map(str::to_string))].into(),
        };
        assert_eq!(owed, expected, "{body}");

        // Decided once only.
        app.post(&format!("/v1/conflicts/{id}/resolve"), &app.admin, body)
            .await?
            .expect_error(StatusCode::CONFLICT, "conflict_not_open", "resolved");
        app.post_empty(&format!("/v1/conflicts/{id}/ignore"), &app.admin)
            .await?
            .expect_error(StatusCode::CONFLICT, "conflict_not_open", "resolved");
        // The same CRM version again raises nothing and leaves the choice owed.
        ingest(
            &app,
            &record,
            &integration,
            Entity::Contacts,
            CRM,
            2,
            &manual(),
        )
        .await?;
        app.caught_up().await;
        let all = listed(&app, &[("record_id", &record)]).await?;
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0]["status"], "resolved");
        assert_eq!(pending(&app, &record, &integration).await?, expected);

        let resp = app
            .get(&format!("/v1/records/{record}/history"), &app.admin)
            .await?;
        let history = resp.expect(StatusCode::OK)["data"].clone();
        let entry = history
            .as_array()
            .and_then(|h| h.iter().find(|e| e["type"] == "ConflictResolved"))
            .cloned()
            .unwrap_or_default();
        let summary = entry["summary"].as_str().unwrap_or_default();
        assert!(
            summary.starts_with(&format!("conflict on email resolved by {actor}")),
            "{summary}"
        );
    }
    app.finish().await
}

async fn an_ignored_conflict_stays_quiet_until_a_side_changes(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Main").await?;
    let (record, id) = conflicted(&app, &integration, Entity::Contacts, APP, CRM).await?;
    let resp = app
        .post_empty(&format!("/v1/conflicts/{id}/ignore"), &app.admin)
        .await?;
    let done = resp.expect(StatusCode::OK).clone();
    assert_eq!(done["status"], "ignored");
    assert_eq!(done["resolution"], "ignored");
    assert_eq!(done["resolved_by"], format!("token:{}", app.admin_id));
    app.post_empty(&format!("/v1/conflicts/{id}/ignore"), &app.admin)
        .await?
        .expect_error(StatusCode::CONFLICT, "conflict_not_open", "ignored");
    let resp = app
        .get(&format!("/v1/records/{record}"), &app.admin)
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["fields"]["email"]["value"], APP);
    assert!(pending(&app, &record, &integration).await?.is_empty());

    // The same pair again: nothing new.
    ingest(
        &app,
        &record,
        &integration,
        Entity::Contacts,
        CRM,
        3,
        &manual(),
    )
    .await?;
    app.caught_up().await;
    assert_eq!(listed(&app, &[("record_id", &record)]).await?.len(), 1);
    // The CRM changes: a new open conflict, the ignored one stays ignored.
    ingest(
        &app,
        &record,
        &integration,
        Entity::Contacts,
        "newer@example.com",
        4,
        &manual(),
    )
    .await?;
    app.caught_up().await;
    let all = listed(&app, &[("record_id", &record)]).await?;
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default(),
                c["crm_value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("ignored", CRM), ("open", "newer@example.com")],
        "oldest first"
    );
    app.finish().await
}

async fn the_queue_filters_and_pages(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let main = app.create_integration(&app.admin, "Main").await?;
    let second = app.create_integration(&app.admin, "Second").await?;
    let (r1, c1) = conflicted(&app, &main, Entity::Contacts, APP, CRM).await?;
    let (_, c2) = conflicted(&app, &main, Entity::Companies, APP, CRM).await?;
    let (_, c3) = conflicted(&app, &second, Entity::Contacts, APP, CRM).await?;
    app.post(
        &format!("/v1/conflicts/{c2}/resolve"),
        &app.admin,
        json!({"resolution": "use_crm"}),
    )
    .await?
    .expect(StatusCode::OK);
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect()
    };
    let (c1, c2, c3) = (c1.as_str(), c2.as_str(), c3.as_str());
    let all = app.list_all("/v1/conflicts", &app.admin, &[], 1).await?;
    assert_eq!(ids(all), [c1, c2, c3], "every conflict once, oldest first");
    for (query, expected) in [
        (vec![("integration_id", main.as_str())], vec![c1, c2]),
        (vec![("integration_id", second.as_str())], vec![c3]),
        (vec![("status", "open")], vec![c1, c3]),
        (vec![("status", "resolved")], vec![c2]),
        (vec![("status", "superseded")], Vec::<&str>::new()),
        (vec![("entity", "companies")], vec![c2]),
        (vec![("entity", "contacts")], vec![c1, c3]),
        (vec![("record_id", r1.as_str())], vec![c1]),
        (
            vec![("status", "open"), ("integration_id", main.as_str())],
            vec![c1],
        ),
    ] {
        let got = app.list_all("/v1/conflicts", &app.admin, &query, 1).await?;
        assert_eq!(ids(got), expected, "{query:?}");
    }
    app.finish().await
}

async fn refusals_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Main").await?;
    let (_, id) = conflicted(&app, &integration, Entity::Contacts, APP, CRM).await?;
    let (_, viewer) = app.issue_token("viewer").await?;
    let other = app.new_workspace("Other", Plan::Starter).await?;
    let events = app.event_count().await?;
    let resolve = format!("/v1/conflicts/{id}/resolve");
    for (body, needle) in [
        (json!({}), "resolution"),
        (json!({"resolution": "use_both"}), "resolution"),
        (json!({"resolution": "merged"}), "value"),
        (json!({"resolution": "use_app", "value": "x"}), "value"),
        (json!({"resolution": "merged", "value": 7}), "value"),
        (json!({"resolution": "use_crm", "extra": 1}), "extra"),
        (
            json!({"resolution": "merged", "value": "x".repeat(70_000)}),
            "bytes",
        ),
    ] {
        let resp = app.post(&resolve, &app.admin, body.clone()).await?;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text
        );
        assert_eq!(
            resp.body["error"]["code"], "validation_failed",
            "{}",
            resp.text
        );
        assert!(resp.text.contains(needle), "{needle}: {}", resp.text);
    }
    let resp = app
        .request(reqwest::Method::POST, &resolve, &app.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    for (query, needle) in [
        ("status=closed", "status"),
        ("entity=deals", "entity"),
        ("cursor=zz", "cursor"),
        ("limit=0", "limit"),
    ] {
        app.get(&format!("/v1/conflicts?{query}"), &app.admin)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    // Unknown ids, and another workspace's conflict, are not found.
    for token in [app.admin.as_str(), other.admin.as_str()] {
        let unknown = if token == app.admin {
            "nope"
        } else {
            id.as_str()
        };
        app.get(&format!("/v1/conflicts/{unknown}"), token)
            .await?
            .expect_error(StatusCode::NOT_FOUND, "not_found", "conflict");
        app.post(
            &format!("/v1/conflicts/{unknown}/resolve"),
            token,
            json!({"resolution": "use_app"}),
        )
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "conflict");
        app.post_empty(&format!("/v1/conflicts/{unknown}/ignore"), token)
            .await?
            .expect_error(StatusCode::NOT_FOUND, "not_found", "conflict");
    }
    assert!(app
        .list_all("/v1/conflicts", &other.admin, &[], 10)
        .await?
        .is_empty());
    let rules = format!("/v1/integrations/{integration}/conflict-rules");
    app.get(&rules, &other.admin).await?.expect_error(
        StatusCode::NOT_FOUND,
        "not_found",
        "integration",
    );
    send_put(
        &app,
        format!("{rules}/email"),
        &other.admin,
        json!({"use": "crm"}),
    )
    .await?
    .expect_error(StatusCode::NOT_FOUND, "not_found", "integration");
    // Viewers read but do not decide.
    app.get(&format!("/v1/conflicts/{id}"), &viewer)
        .await?
        .expect(StatusCode::OK);
    app.get(&rules, &viewer).await?.expect(StatusCode::OK);
    app.post(&resolve, &viewer, json!({"resolution": "use_app"}))
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    app.post_empty(&format!("/v1/conflicts/{id}/ignore"), &viewer)
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    send_put(
        &app,
        format!("{rules}/email"),
        &viewer,
        json!({"use": "crm"}),
    )
    .await?
    .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    app.delete(&format!("{rules}/email"), &viewer)
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    assert_eq!(
        app.event_count().await?,
        events,
        "no refusal wrote anything"
    );
    let resp = app.get(&format!("/v1/conflicts/{id}"), &app.admin).await?;
    assert_eq!(resp.expect(StatusCode::OK)["status"], "open");
    app.finish().await
}

async fn send_put(
    app: &TestApp,
    path: String,
    token: &str,
    body: Value,
) -> anyhow::Result<syncledger_testkit::app::Resp> {
    syncledger_testkit::app::send(app.request(reqwest::Method::PUT, &path, token).json(&body)).await
}

fn rule_list(resp: &syncledger_testkit::app::Resp) -> Vec<(String, String)> {
    resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["field"].as_str().unwrap_or_default().to_string(),
                r["use"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn rules(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect()
}

async fn conflict_rules_round_trip_and_settle_conflicts(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Main").await?;
    let path = format!("/v1/integrations/{integration}/conflict-rules");
    assert!(rule_list(&app.get(&path, &app.admin).await?).is_empty());
    let put = |field: &str, side: &str| {
        send_put(
            &app,
            format!("{path}/{field}"),
            &app.admin,
            json!({ "use": side }),
        )
    };
    assert_eq!(
        rule_list(&put("email", "crm").await?),
        rules(&[("email", "crm")])
    );
    put("phone", "app").await?.expect(StatusCode::OK);
    assert_eq!(
        rule_list(&put("email", "app").await?),
        rules(&[("email", "app"), ("phone", "app")]),
        "a second rule for a field replaces the first"
    );
    assert_eq!(
        rule_list(&app.delete(&format!("{path}/phone"), &app.admin).await?),
        rules(&[("email", "app")])
    );
    app.delete(&format!("{path}/phone"), &app.admin)
        .await?
        .expect_error(StatusCode::NOT_FOUND, "not_found", "conflict rule");
    let events = app.event_count().await?;
    put("email", "both")
        .await?
        .expect_error(StatusCode::BAD_REQUEST, "validation_failed", "use");
    put("bad%0Aname", "crm").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "control",
    );
    put(&"f".repeat(201), "crm").await?.expect_error(
        StatusCode::BAD_REQUEST,
        "validation_failed",
        "200",
    );
    assert_eq!(app.event_count().await?, events, "refusals wrote nothing");
    assert_eq!(
        rule_list(&app.get(&path, &app.admin).await?),
        rules(&[("email", "app")])
    );

    // The integration's merge policy now settles email for the app, unasked.
    let state: Integration = app.state.integrations.load(&integration).await?;
    let policy = state.merge_policy();
    assert_eq!(policy.strategy, ConflictStrategy::ManualReview);
    assert_eq!(
        policy.always,
        std::collections::BTreeMap::from([("email".to_string(), Side::App)])
    );
    let record = uuid::Uuid::now_v7().to_string();
    ingest(
        &app,
        &record,
        &integration,
        Entity::Contacts,
        OLD,
        1,
        &policy,
    )
    .await?;
    app.patch(
        &format!("/v1/records/{record}"),
        &app.admin,
        json!({"fields": {"email": APP}}),
    )
    .await?
    .expect(StatusCode::OK);
    ingest(
        &app,
        &record,
        &integration,
        Entity::Contacts,
        CRM,
        2,
        &policy,
    )
    .await?;
    app.caught_up().await;
    let all = listed(&app, &[("record_id", &record)]).await?;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (
            &all[0]["status"],
            &all[0]["resolution"],
            &all[0]["resolved_value"]
        ),
        (&json!("resolved"), &json!("auto"), &json!(APP))
    );
    assert!(listed(&app, &[("status", "open")]).await?.is_empty());
    assert_eq!(
        pending(&app, &record, &integration).await?,
        Fields::from([("email".to_string(), Some(APP.to_string()))])
    );

    // A disconnected integration's rules are closed.
    app.delete(&format!("/v1/integrations/{integration}"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    put("email", "crm").await?.expect_error(
        StatusCode::CONFLICT,
        "invalid_transition",
        "disconnected",
    );

    // The OpenAPI document describes the queue and the rules.
    let doc = app.get("/v1/openapi.json", "").await?;
    let doc = doc.expect(StatusCode::OK);
    for (p, methods) in [
        ("/v1/conflicts", &["get"][..]),
        ("/v1/conflicts/{id}", &["get"]),
        ("/v1/conflicts/{id}/resolve", &["post"]),
        ("/v1/conflicts/{id}/ignore", &["post"]),
        ("/v1/integrations/{id}/conflict-rules", &["get"]),
        (
            "/v1/integrations/{id}/conflict-rules/{field}",
            &["put", "delete"],
        ),
    ] {
        for m in methods {
            assert!(
                doc["paths"][p][*m].is_object(),
                "the document lacks {m} {p}"
            );
        }
    }
    app.finish().await
}
