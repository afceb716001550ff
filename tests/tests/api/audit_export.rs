//! `GET /v1/audit/export`: the filtered trail as JSON lines or CSV, the same entries the
//! list shows, streamed from the database a chunk at a time, complete and in chain order
//! however long, and as of the moment it started.

use anyhow::Context;
use chrono::Utc;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordEvent, Source};
use syncledger_domain::Entity;
use syncledger_store::append::{append, NewEvent};
use syncledger_store::Metadata;
use syncledger_testkit::app::{integration_body, on_both_backends, send, Backend, TestApp};

on_both_backends!(
    exports_equal_the_list_for_every_filter,
    export_refusals_change_nothing,
    a_large_export_streams_complete_in_chain_order,
);

/// A finished export: its headers and body.
pub struct Exported {
    pub headers: HeaderMap,
    pub text: String,
}

/// `GET /v1/audit/export` with `query`, which must answer 200.
pub async fn export(
    app: &TestApp,
    token: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<Exported> {
    let resp = app
        .request(Method::GET, "/v1/audit/export", token)
        .query(query)
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "export {query:?}: {status} {text}"
    );
    Ok(Exported { headers, text })
}

/// JSON lines back into entries.
pub fn parse_jsonl(text: &str) -> anyhow::Result<Vec<Value>> {
    anyhow::ensure!(
        text.is_empty() || text.ends_with('\n'),
        "a line is cut short"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("line {l:?}")))
        .collect()
}

/// CSV back into entries shaped as the list gives them: numbers as numbers, empty
/// optional columns as null, `changes` as JSON.
pub fn parse_csv(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record?;
        let mut entry = Map::new();
        for (name, field) in header.iter().zip(record.iter()) {
            let value = match name.as_str() {
                "position" | "chain_seq" => json!(field.parse::<i64>()?),
                "integration_id" | "causation_id" | "request_id" | "acting_for"
                    if field.is_empty() =>
                {
                    Value::Null
                }
                "changes" => serde_json::from_str(field)?,
                _ => json!(field),
            };
            entry.insert(name.clone(), value);
        }
        entries.push(Value::Object(entry));
    }
    Ok(entries)
}

/// Both formats for `query`, parsed, with their headers checked.
async fn both_formats(
    app: &TestApp,
    token: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let mut jsonl_query = query.to_vec();
    jsonl_query.push(("format", "jsonl"));
    let jsonl = export(app, token, &jsonl_query).await?;
    let mut csv_query = query.to_vec();
    csv_query.push(("format", "csv"));
    let csv = export(app, token, &csv_query).await?;
    for (e, content_type, extension) in [
        (&jsonl, "application/x-ndjson", ".jsonl\""),
        (&csv, "text/csv", ".csv\""),
    ] {
        let header = |name: &str| {
            e.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{:?}",
            e.headers
        );
        let disposition = header("content-disposition");
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
        assert!(disposition.ends_with(extension), "{disposition}");
    }
    assert!(
        csv.text.starts_with("position,chain_seq,time,"),
        "{}",
        csv.text
    );
    Ok((parse_jsonl(&jsonl.text)?, parse_csv(&csv.text)?))
}

async fn exports_equal_the_list_for_every_filter(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let admin = app.admin.clone();
    let (op_id, operator) = app.issue_token("operator").await?;
    let (_, auditor) = app.issue_token("auditor").await?;
    let x = app
        .create_integration(&admin, "Exported, \"quoted\"\nand on two lines")
        .await?;
    app.set_api_key(&admin, &x, "sk_live_export").await?;
    app.post_empty(&format!("/v1/integrations/{x}/pause"), &operator)
        .await?
        .expect(StatusCode::OK);
    let record = app
        .post(
            "/v1/records",
            &operator,
            json!({"entity": "contacts", "fields": {"email": "a@example.com", "note": "x,\"y\"\nz"}}),
        )
        .await?;
    let record_id = record.expect(StatusCode::CREATED)["id"].clone();
    app.patch(
        &format!("/v1/records/{}", record_id.as_str().unwrap_or_default()),
        &admin,
        json!({"fields": {"email": "b@example.com", "note": null}}),
    )
    .await?
    .expect(StatusCode::OK);
    app.caught_up().await;

    let all = app.list_all("/v1/audit", &admin, &[], 500).await?;
    let pivot = all[all.len() / 2]["time"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let op_actor = format!("token:{op_id}");
    let filters: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("integration_id", &x)],
        vec![("actor", &op_actor)],
        vec![("action", "FieldsChanged")],
        vec![("from", &pivot)],
        vec![("to", &pivot)],
        vec![("actor", &op_actor), ("action", "IntegrationPaused")],
        vec![("action", "NoSuchAction")],
    ];
    for query in filters {
        let listed = app.list_all("/v1/audit", &admin, &query, 7).await?;
        for token in [&admin, &auditor] {
            let (jsonl, csv) = both_formats(&app, token, &query).await?;
            assert_eq!(jsonl, listed, "JSON lines for {query:?}");
            assert_eq!(csv, listed, "CSV for {query:?}");
        }
    }
    assert!(all.len() > 10, "{all:?}");
    // The edit's before and after values survive the CSV's quoting.
    let (_, csv) = both_formats(&app, &admin, &[("action", "FieldsChanged")]).await?;
    assert_eq!(
        csv[1]["changes"],
        json!([{"field": "email", "before": "a@example.com", "after": "b@example.com"},
               {"field": "note", "before": "x,\"y\"\nz", "after": null}])
    );
    // No entries at all: an empty JSON-lines body, a CSV with its header only.
    let none = [("action", "NoSuchAction")];
    let empty = export(&app, &admin, &none).await?;
    assert_eq!(empty.text, "");
    let empty = export(&app, &admin, &[none[0], ("format", "csv")]).await?;
    assert_eq!(empty.text.lines().count(), 1, "{}", empty.text);
    app.finish().await
}

async fn export_refusals_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    app.post("/v1/integrations", &app.admin, integration_body("Kept"))
        .await?
        .expect(StatusCode::CREATED);
    app.caught_up().await;
    let before = app.snapshot().await?;
    let bad: &[(&str, &str)] = &[
        ("format=xml", "format"),
        ("format=", "format"),
        ("format=csv&from=yesterday", "from"),
        ("to=2024-13-45", "to"),
        ("limit=10", "limit"),
        ("cursor=abc", "cursor"),
        ("integraton=x", "integraton"),
    ];
    for (query, needle) in bad {
        let resp = app
            .get(&format!("/v1/audit/export?{query}"), &app.admin)
            .await?;
        resp.expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    let (_, viewer) = app.issue_token("viewer").await?;
    let (_, operator) = app.issue_token("operator").await?;
    let snapshot = app.snapshot().await?;
    for token in [&viewer, &operator] {
        let resp = app.get("/v1/audit/export", token).await?;
        resp.expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    }
    let resp = app.get("/v1/audit/export", "").await?;
    resp.expect_error(StatusCode::UNAUTHORIZED, "unauthorized", "");
    assert_eq!(
        app.snapshot().await?,
        snapshot,
        "refused exports changed something"
    );
    assert_eq!(before.integrations, snapshot.integrations);
    app.finish().await
}

/// Records created and edited straight in the event store (as bulk ingestion writes
/// them): two events each.
async fn bulk_records(app: &TestApp, count: usize) -> anyhow::Result<()> {
    let meta = Metadata::new(
        "user:bulk",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let mut events = Vec::with_capacity(2 * count);
    for i in 0..count {
        let id = uuid::Uuid::now_v7().to_string();
        let created = RecordEvent::RecordCreated {
            record_id: id.clone(),
            workspace_id: app.workspace_id.clone(),
            entity: Entity::Contacts,
            at: Utc::now(),
        };
        let fields: Fields = [("email".to_string(), Some(format!("c{i}@example.com")))].into();
        let filled = RecordEvent::FieldsChanged {
            fields,
            source: Source::App {
                actor: "user:bulk".into(),
            },
            run_id: None,
            at: Utc::now(),
        };
        events.push(NewEvent::of::<Record>(&id, 1, &created, &meta)?);
        events.push(NewEvent::of::<Record>(&id, 2, &filled, &meta)?);
    }
    for chunk in events.chunks(500) {
        append(&app.state.store.events, chunk).await?;
    }
    app.caught_up().await;
    Ok(())
}

async fn a_large_export_streams_complete_in_chain_order(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    // Several internal chunks (500 rows each) and a partial last one.
    bulk_records(&app, 1_300).await?;
    let total = app.list_all("/v1/audit", &app.admin, &[], 500).await?;
    assert!(total.len() > 2_600, "{}", total.len());

    let resp = app
        .request(Method::GET, "/v1/audit/export", &app.admin)
        .query(&[("format", "jsonl")])
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("content-length").is_none(),
        "a streamed body has no length up front: {:?}",
        resp.headers()
    );
    // Events written once the export has begun are not part of it.
    bulk_records(&app, 3).await?;
    let mut body = Vec::new();
    let mut frames = 0;
    let mut stream = resp.bytes_stream();
    while let Some(frame) = stream.next().await {
        body.extend_from_slice(&frame?);
        frames += 1;
    }
    assert!(frames > 1, "the body arrived in {frames} piece(s)");
    let entries = parse_jsonl(std::str::from_utf8(&body)?)?;
    assert_eq!(
        entries, total,
        "the export is the whole trail as it was when it began"
    );
    let seqs: Vec<i64> = entries
        .iter()
        .filter_map(|e| e["chain_seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=total.len() as i64).collect::<Vec<_>>());
    let edits = entries
        .iter()
        .filter(|e| e["action"] == "FieldsChanged")
        .count();
    assert_eq!(edits, 1_300);

    // CSV too, and the later events are in the next export.
    let csv = export(&app, &app.admin, &[("format", "csv")]).await?;
    let rows = parse_csv(&csv.text)?;
    assert_eq!(rows.len(), total.len() + 6);
    assert_eq!(rows[..total.len()], total[..]);
    let verify = app.get("/v1/audit/verify", &app.admin).await?;
    assert_eq!(verify.expect(StatusCode::OK)["ok"], true, "{}", verify.text);
    let resp = send(app.request(Method::GET, "/v1/audit/verify", &app.admin)).await?;
    assert_eq!(resp.body["checked"].as_u64(), Some(rows.len() as u64));
    app.finish().await
}
