//! The app's records through the API: create and edit as the app, read with the source
//! and time of every value, list with filters and cursor paging, and history.

use reqwest::StatusCode;
use serde_json::json;
use syncledger_domain::Plan;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(
    create_edit_read_and_history,
    listing_filters_and_pages,
    refusals_change_nothing,
    search_by_match_key_prefix
);

async fn create(app: &TestApp, entity: &str, fields: serde_json::Value) -> anyhow::Result<String> {
    let resp = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": entity, "fields": fields}),
        )
        .await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

async fn create_edit_read_and_history(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let resp = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": "ada@example.com", "phone": null}}),
        )
        .await?;
    let body = resp.expect(StatusCode::CREATED).clone();
    let id = resp.str("id")?;
    assert_eq!(body["entity"], "contacts");
    assert_eq!(body["fields"]["email"]["value"], "ada@example.com");
    assert_eq!(body["fields"]["email"]["source"], "app");
    assert!(body["fields"]["email"]["actor"]
        .as_str()
        .is_some_and(|a| a.starts_with("token:")));
    assert!(body["fields"]["phone"]["value"].is_null());
    assert_eq!(body["version"], 2);

    let resp = app
        .patch(
            &format!("/v1/records/{id}"),
            &app.admin,
            json!({"fields": {"phone": "+1 555 0100", "email": "ada@example.com"}}),
        )
        .await?;
    let body = resp.expect(StatusCode::OK).clone();
    assert_eq!(body["fields"]["phone"]["value"], "+1 555 0100");
    assert_eq!(body["version"], 3, "only the changed field was written");
    // The same values again write nothing.
    let events = app.event_count().await?;
    let resp = app
        .patch(
            &format!("/v1/records/{id}"),
            &app.admin,
            json!({"fields": {"phone": "+1 555 0100"}}),
        )
        .await?;
    assert_eq!(resp.expect(StatusCode::OK)["version"], 3);
    assert_eq!(app.event_count().await?, events);

    let resp = app.get(&format!("/v1/records/{id}"), &app.admin).await?;
    assert_eq!(
        resp.expect(StatusCode::OK)["fields"]["phone"]["value"],
        "+1 555 0100"
    );

    let resp = app
        .get(&format!("/v1/records/{id}/history"), &app.admin)
        .await?;
    let history = resp.expect(StatusCode::OK)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let types: Vec<&str> = history.iter().filter_map(|h| h["type"].as_str()).collect();
    assert_eq!(
        types,
        ["RecordCreated", "FieldsChanged", "FieldsChanged"],
        "{}",
        resp.text
    );
    assert_eq!(history[2]["fields"], json!({"phone": "+1 555 0100"}));
    assert!(history
        .iter()
        .all(|h| h["actor"].as_str().is_some_and(|a| a.starts_with("token:"))));
    assert!(history
        .iter()
        .all(|h| h["correlation_id"].is_string() && h["at"].is_string()));
    app.finish().await
}

async fn listing_filters_and_pages(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut contacts = Vec::new();
    for i in 0..5 {
        contacts.push(
            create(
                &app,
                "contacts",
                json!({"email": format!("c{i}@example.com")}),
            )
            .await?,
        );
    }
    let company = create(&app, "companies", json!({"domain": "acme.com"})).await?;
    let listed = app
        .list_all("/v1/records", &app.admin, &[("entity", "contacts")], 2)
        .await?;
    let ids: Vec<String> = listed
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, contacts, "every contact once, oldest change first");
    let all = app.list_all("/v1/records", &app.admin, &[], 4).await?;
    assert_eq!(all.len(), 6);
    assert!(all.iter().any(|r| r["id"] == company.as_str()));
    // An edit moves a record to the end; `updated_since` finds it.
    let since = chrono::Utc::now().to_rfc3339();
    app.patch(
        &format!("/v1/records/{}", contacts[0]),
        &app.admin,
        json!({"fields": {"email": "first@example.com"}}),
    )
    .await?
    .expect(StatusCode::OK);
    let recent = app
        .list_all(
            "/v1/records",
            &app.admin,
            &[("updated_since", since.as_str())],
            10,
        )
        .await?;
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0]["id"], contacts[0].as_str());
    let linked = app
        .list_all(
            "/v1/records",
            &app.admin,
            &[("integration_id", "no-such-integration")],
            10,
        )
        .await?;
    assert!(linked.is_empty(), "no record is linked to that integration");
    app.finish().await
}

/// The match keys of a list's records, in its order.
fn keys(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let field = if r["entity"] == "companies" {
                "domain"
            } else {
                "email"
            };
            r["fields"][field]["value"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect()
}

async fn search_by_match_key_prefix(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    for email in [
        "Ada@Example.com",
        "adam@example.com",
        "bob@example.com",
        "a%c@x.com",
        "abc@x.com",
        "a_c@x.com",
        "azc@x.com",
        "a|b@x.com",
        "a|c@x.com",
    ] {
        create(&app, "contacts", json!({"email": email})).await?;
    }
    create(&app, "companies", json!({"domain": "ADA.io"})).await?;
    let archived = create(&app, "contacts", json!({"email": "ada.old@example.com"})).await?;
    app.post(
        &format!("/v1/records/{archived}/archive"),
        &app.admin,
        json!({}),
    )
    .await?
    .expect(StatusCode::OK);
    let search = |q: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let app = &app;
        async move {
            let mut query = vec![("q", q)];
            query.extend_from_slice(extra);
            // One record per page: every page's cursor is used.
            let found = app.list_all("/v1/records", &app.admin, &query, 1).await?;
            anyhow::Ok(keys(&found))
        }
    };
    // Any case, surrounding spaces ignored, in match-key order (byte order: `.` < `@`).
    assert_eq!(
        search(" ADA ", &[]).await?,
        ["ada.io", "ada@example.com", "adam@example.com"]
    );
    assert_eq!(search("ada@", &[]).await?, ["ada@example.com"]);
    assert_eq!(search("ada", &[("entity", "companies")]).await?, ["ada.io"]);
    assert_eq!(
        search("ada.", &[("include_archived", "true")]).await?,
        ["ada.io", "ada.old@example.com"]
    );
    // LIKE's wildcards are plain characters, and a key may hold the cursor's separator.
    assert_eq!(search("a%", &[]).await?, ["a%c@x.com"]);
    assert_eq!(search("a_", &[]).await?, ["a_c@x.com"]);
    assert_eq!(search("a|", &[]).await?, ["a|b@x.com", "a|c@x.com"]);
    assert!(search("zz", &[]).await?.is_empty());
    // No search: every record that is not archived.
    assert_eq!(search("   ", &[]).await?.len(), 10);
    let longest = "a".repeat(200);
    app.get(&format!("/v1/records?q={longest}"), &app.admin)
        .await?
        .expect(StatusCode::OK);
    let events = app.event_count().await?;
    app.get(&format!("/v1/records?q={longest}b"), &app.admin)
        .await?
        .expect_error(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "q: must be at most 200 characters",
        );
    assert_eq!(app.event_count().await?, events);
    app.finish().await
}

async fn refusals_change_nothing(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = create(&app, "contacts", json!({"email": "a@example.com"})).await?;
    let (_, viewer) = app.issue_token("viewer").await?;
    let other = app.new_workspace("Other", Plan::Starter).await?;
    let events = app.event_count().await?;
    let cases = [
        (json!({"entity": "deals"}), "entity"),
        (
            json!({"entity": "contacts", "fields": {"Bad Name": "x"}}),
            "fields",
        ),
        (
            json!({"entity": "contacts", "fields": {"email": 7}}),
            "fields",
        ),
        (json!({"entity": "contacts", "extra": 1}), "extra"),
        (
            json!({"entity": "contacts", "fields": {"notes": "x".repeat(70_000)}}),
            "bytes",
        ),
    ];
    for (body, needle) in cases {
        let resp = app.post("/v1/records", &app.admin, body).await?;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text);
        let code = resp.body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            matches!(code, "validation_failed" | "malformed_json"),
            "{}",
            resp.text
        );
        assert!(resp.text.contains(needle), "{needle}: {}", resp.text);
    }
    for (query, needle) in [
        ("updated_since=yesterday", "updated_since"),
        ("entity=deals", "entity"),
        ("cursor=zz", "cursor"),
    ] {
        app.get(&format!("/v1/records?{query}"), &app.admin)
            .await?
            .expect_error(StatusCode::BAD_REQUEST, "validation_failed", needle);
    }
    app.post("/v1/records", &viewer, json!({"entity": "contacts"}))
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    app.patch(&format!("/v1/records/{id}"), &viewer, json!({"fields": {}}))
        .await?
        .expect_error(StatusCode::FORBIDDEN, "forbidden", "");
    app.get(&format!("/v1/records/{id}"), &viewer)
        .await?
        .expect(StatusCode::OK);
    // Another workspace sees nothing of it.
    for path in [
        format!("/v1/records/{id}"),
        format!("/v1/records/{id}/history"),
    ] {
        app.get(&path, &other.admin).await?.expect_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "record",
        );
    }
    app.patch(
        &format!("/v1/records/{id}"),
        &other.admin,
        json!({"fields": {"email": "x"}}),
    )
    .await?
    .expect_error(StatusCode::NOT_FOUND, "not_found", "record");
    let theirs = app.list_all("/v1/records", &other.admin, &[], 10).await?;
    assert!(theirs.is_empty());
    assert_eq!(
        app.event_count().await?,
        events,
        "no refusal wrote anything"
    );
    app.finish().await
}
