//! The records page's search: by the start of a record's email or domain, on the server,
//! any case, `%` and `_` taken literally, paged with the search kept; an over-long search
//! is a clear 400.

use crate::people::Person;
use anyhow::Context;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(the_records_page_searches_on_the_server);

async fn create(app: &TestApp, email: &str) -> anyhow::Result<String> {
    let resp = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": email}}),
        )
        .await?;
    resp.expect(StatusCode::CREATED);
    resp.str("id")
}

/// The record ids a records page links to, in order.
fn listed(body: &str) -> Vec<String> {
    body.split(r#"<a href="/records/"#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

/// The page's "next page" link, unescaped.
fn next_link(body: &str) -> Option<String> {
    let at = body.find(r#"rel="next" href=""#)? + r#"rel="next" href=""#.len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].replace("&amp;", "&"))
}

async fn the_records_page_searches_on_the_server(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let ada = create(&app, "Ada@Example.com").await?;
    let percent = create(&app, "a%c@x.com").await?;
    let plain = create(&app, "abc@x.com").await?;
    let mut paged = BTreeSet::new();
    for i in 0..52 {
        paged.insert(create(&app, &format!("page{i:02}@example.com")).await?);
    }
    let mut person = Person::sign_in(&app, Role::Viewer).await?;

    let found = person.get("/records?q=%20ADA").await?;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(listed(&found.body), [ada]);
    assert!(
        found.body.contains(r#"name="q" value=" ADA""#),
        "{}",
        found.body
    );
    let literal = person.get("/records?q=a%25").await?;
    assert_eq!(listed(&literal.body), [percent], "{}", literal.body);
    assert!(!listed(&literal.body).contains(&plain));

    // 52 matches: a full page, and a next page that keeps the search.
    let first = person.get("/records?q=page").await?;
    let first_ids = listed(&first.body);
    assert_eq!(first_ids.len(), 50);
    let next = next_link(&first.body).context("a next page")?;
    assert!(next.starts_with("/records?q=page&cursor="), "{next}");
    let second = person.get(&next).await?;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let mut seen: Vec<String> = first_ids;
    seen.extend(listed(&second.body));
    assert_eq!(seen.len(), 52);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), paged);
    assert!(next_link(&second.body).is_none());

    let none = person.get("/records?q=zzz").await?;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.contains("No matching records"), "{}", none.body);
    let long = person
        .get(&format!("/records?q={}", "a".repeat(201)))
        .await?;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{}", long.body);
    assert!(
        long.body.contains("at most 200 characters"),
        "{}",
        long.body
    );
    app.finish().await
}
