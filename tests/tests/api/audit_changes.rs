//! What the audit trail tells about each kind of action: the values a record event changed
//! (before and after), a sync run and the records it brought in under their integration,
//! mapping changes, conflict resolutions, and tokens with their roles; each entry with its
//! actor, correlation id and time.

use crate::sync::{connect, run};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use syncledger_domain::merge::{Fields, MergePolicy};
use syncledger_domain::record::RecordCommand;
use syncledger_domain::{ConflictStrategy, Entity};
use syncledger_store::Metadata;
use syncledger_testkit::app::{on_both_backends, send, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    record_entries_show_values_before_and_after,
    every_kind_of_action_is_in_the_trail
);

fn change(field: &str, before: Option<&str>, after: Option<&str>) -> Value {
    json!({"field": field, "before": before, "after": after})
}

/// A CRM version of `record` merged as a sync run would, with manual review of conflicts.
async fn ingest(
    app: &TestApp,
    record: &str,
    integration: &str,
    fields: &[(&str, &str)],
    modified: DateTime<Utc>,
) -> anyhow::Result<()> {
    let fields: Fields = fields
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    let command = RecordCommand::Ingest {
        record_id: record.into(),
        workspace_id: app.workspace_id.clone(),
        entity: Entity::Contacts,
        integration_id: integration.into(),
        remote_id: format!("crm-{record}"),
        remote_updated_at: modified,
        remote: fields.clone(),
        fields,
        policy: MergePolicy {
            strategy: ConflictStrategy::ManualReview,
            always: Default::default(),
        },
        run_id: "run-audit".into(),
        at: Utc::now(),
    };
    let meta = Metadata::new("worker:audit", &app.workspace_id, "corr-ingest");
    app.state.records.execute(record, command, &meta).await?;
    Ok(())
}

/// The record's audit entries, in chain order.
async fn entries_of(app: &TestApp, record: &str) -> anyhow::Result<Vec<Value>> {
    app.caught_up().await;
    let all = app.list_all("/v1/audit", &app.admin, &[], 500).await?;
    Ok(all
        .into_iter()
        .filter(|e| e["aggregate_id"] == record)
        .collect())
}

async fn record_entries_show_values_before_and_after(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let admin_actor = format!("token:{}", app.admin_id);

    // Created by the app: the creation changes nothing, its values come from nothing.
    let created = app
        .post(
            "/v1/records",
            &admin,
            json!({"entity": "contacts", "fields": {"email": "a@example.com", "phone": null}}),
        )
        .await?;
    let id = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let edit = |fields: Value| {
        let (app, path) = (&app, format!("/v1/records/{id}"));
        async move {
            let rb = app
                .request(Method::PATCH, &path, &app.admin)
                .header("x-request-id", "corr-edit")
                .json(&json!({ "fields": fields }));
            send(rb).await?.expect(StatusCode::OK);
            anyhow::Ok(())
        }
    };
    edit(json!({"email": "b@example.com", "phone": "+1 555", "name": "Ann"})).await?;
    edit(json!({"email": "b@example.com", "name": null})).await?;
    edit(json!({"email": "b@example.com"})).await?; // no change: no event
    let rows = entries_of(&app, &id).await?;
    let got: Vec<(&str, &Value)> = rows
        .iter()
        .map(|r| (r["action"].as_str().unwrap_or_default(), &r["changes"]))
        .collect();
    assert_eq!(
        got,
        [
            ("RecordCreated", &json!([])),
            (
                "FieldsChanged",
                &json!([change("email", None, Some("a@example.com"))])
            ),
            (
                "FieldsChanged",
                &json!([
                    change("email", Some("a@example.com"), Some("b@example.com")),
                    change("name", None, Some("Ann")),
                    change("phone", None, Some("+1 555")),
                ])
            ),
            ("FieldsChanged", &json!([change("name", Some("Ann"), None)])),
        ],
        "{rows:#?}"
    );
    for r in &rows {
        assert_eq!(r["actor"], admin_actor.as_str(), "{r}");
        assert_eq!(r["aggregate_type"], "record");
        assert_eq!(
            r["integration_id"],
            Value::Null,
            "an app edit names no integration"
        );
    }
    assert_eq!(rows[2]["request_id"], "corr-edit");
    assert_ne!(rows[2]["correlation_id"], "corr-edit");

    // Brought in by a sync, edited on both sides, the conflict resolved by a person.
    let x = app.create_integration(&admin, "Synced").await?;
    let synced = uuid::Uuid::now_v7().to_string();
    let t0 = Utc::now() - chrono::Duration::hours(1);
    ingest(
        &app,
        &synced,
        &x,
        &[("email", "old@example.com"), ("name", "Bo")],
        t0,
    )
    .await?;
    app.patch(
        &format!("/v1/records/{synced}"),
        &admin,
        json!({"fields": {"email": "app@example.com"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let t1 = t0 + chrono::Duration::minutes(1);
    ingest(
        &app,
        &synced,
        &x,
        &[("email", "crm@example.com"), ("name", "Bo")],
        t1,
    )
    .await?;
    app.caught_up().await;
    let open = app
        .list_all(
            "/v1/conflicts",
            &admin,
            &[("record_id", &synced), ("status", "open")],
            50,
        )
        .await?;
    assert_eq!(open.len(), 1, "{open:?}");
    let conflict = open[0]["id"].as_str().unwrap_or_default();
    app.post(
        &format!("/v1/conflicts/{conflict}/resolve"),
        &admin,
        json!({"resolution": "merged", "value": "merged@example.com"}),
    )
    .await?
    .expect(StatusCode::OK);
    let rows = entries_of(&app, &synced).await?;
    let got: Vec<(&str, &Value, &Value)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default(),
                &r["changes"],
                &r["integration_id"],
            )
        })
        .collect();
    let x_id = json!(x);
    assert_eq!(
        got,
        [
            (
                "RecordImported",
                &json!([
                    change("email", None, Some("old@example.com")),
                    change("name", None, Some("Bo"))
                ]),
                &x_id
            ),
            (
                "FieldsChanged",
                &json!([change(
                    "email",
                    Some("old@example.com"),
                    Some("app@example.com")
                )]),
                &Value::Null
            ),
            ("RemoteMerged", &json!([]), &x_id),
            (
                "ConflictResolved",
                &json!([change(
                    "email",
                    Some("app@example.com"),
                    Some("merged@example.com")
                )]),
                &x_id
            ),
        ],
        "{rows:#?}"
    );
    assert_eq!(rows[0]["actor"], "worker:audit");
    assert_eq!(rows[3]["actor"], admin_actor.as_str());
    let resolved = rows[3]["summary"].as_str().unwrap_or_default();
    assert!(resolved.contains("set a merged value"), "{resolved}");

    // The record rows of the integration are under its filter, beside its own.
    let by_x = app
        .list_all("/v1/audit", &admin, &[("integration_id", &x)], 500)
        .await?;
    let actions: Vec<&str> = by_x.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "IntegrationCreated",
            "RecordImported",
            "RemoteMerged",
            "ConflictResolved"
        ]
    );
    let verify = app.get("/v1/audit/verify", &admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    app.finish().await
}

async fn every_kind_of_action_is_in_the_trail(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let admin_actor = format!("token:{}", app.admin_id);
    let sandbox = sandbox::hubspot(3).await;
    let x = connect(
        &app,
        "hubspot",
        &sandbox.base_url(),
        "bidirectional",
        "crm_wins",
    )
    .await?;
    let mappings = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "both"},
        {"crm_field": "firstname", "app_field": "first_name", "direction": "both"}
    ], "filter": null});
    let put = app
        .request(
            Method::PUT,
            &format!("/v1/integrations/{x}/mappings/contacts"),
            &admin,
        )
        .json(&mappings);
    send(put).await?.expect(StatusCode::OK);
    let full = run(&app, &x, "full").await?;
    assert_eq!(full["status"], "completed", "{full}");
    let run_id = full["id"].as_str().unwrap_or_default().to_string();
    let (viewer_id, _) = app.issue_token("viewer").await?;
    app.delete(&format!("/v1/tokens/{viewer_id}"), &admin)
        .await?
        .expect(StatusCode::NO_CONTENT);
    app.caught_up().await;

    let all = app.list_all("/v1/audit", &admin, &[], 500).await?;
    let of =
        |action: &str| -> Vec<&Value> { all.iter().filter(|r| r["action"] == action).collect() };
    for action in [
        "IntegrationCreated",
        "CredentialsStored",
        "FieldMappingsChanged",
        "RunQueued",
        "RunStarted",
        "PageCommitted",
        "RunEnded",
        "RecordImported",
        "TokenIssued",
        "TokenRevoked",
    ] {
        assert!(!of(action).is_empty(), "no {action} in the trail");
    }
    for r in &all {
        for key in ["actor", "correlation_id", "summary", "time"] {
            assert!(
                r[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} of {r}"
            );
        }
        let time = r["time"].as_str().unwrap_or_default();
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{r}");
        assert!(r["changes"].is_array(), "{r}");
    }
    // Mappings, runs and tokens read as what they were, by whom.
    let mapped = of("FieldMappingsChanged");
    assert_eq!(mapped[0]["actor"], admin_actor.as_str());
    assert_eq!(mapped[0]["integration_id"], x.as_str());
    assert!(mapped[0]["summary"]
        .as_str()
        .unwrap_or_default()
        .contains("2 mapping(s)"));
    let queued = of("RunQueued");
    assert_eq!(
        queued[0]["actor"],
        admin_actor.as_str(),
        "the person who started the run"
    );
    let revoked = of("TokenRevoked")[0]["summary"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        revoked,
        format!("API token {viewer_id} with role viewer revoked")
    );
    let issued = of("TokenIssued");
    let issued = issued
        .last()
        .and_then(|r| r["summary"].as_str())
        .unwrap_or_default();
    assert!(issued.contains("with role viewer"), "{issued}");

    // Every row of the run and of the records it brought in is under the integration.
    let imported = of("RecordImported");
    assert_eq!(imported.len(), 6, "3 contacts and 3 companies");
    for r in imported {
        assert_eq!(r["integration_id"], x.as_str(), "{r}");
        assert!(
            r["changes"].as_array().is_some_and(|c| !c.is_empty()),
            "{r}"
        );
    }
    let run_rows: Vec<&Value> = all
        .iter()
        .filter(|r| r["aggregate_id"] == run_id.as_str())
        .collect();
    assert!(run_rows.len() >= 4, "{run_rows:?}");
    for r in &run_rows {
        assert_eq!(r["integration_id"], x.as_str(), "{r}");
    }
    assert!(run_rows[1..].iter().all(|r| r["actor"]
        .as_str()
        .is_some_and(|a| a.starts_with("worker:"))));
    let by_x = app
        .list_all("/v1/audit", &admin, &[("integration_id", &x)], 500)
        .await?;
    let runs_under_x = by_x
        .iter()
        .filter(|r| r["aggregate_id"] == run_id.as_str())
        .count();
    assert_eq!(runs_under_x, run_rows.len());
    let verify = app.get("/v1/audit/verify", &admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    sandbox.shutdown().await;
    app.finish().await
}
