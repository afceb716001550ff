//! The destinations pages (admin): each destination with its database (never its
//! password) and tables, a destination's held records with why, and a rebuild asked for
//! from its page.

use crate::people::Person;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::db::PgTestDb;
use syncledger_testkit::wait::poll_every;

on_both_backends!(destinations_and_their_held_records_are_shown_to_admins);

async fn destinations_and_their_held_records_are_shown_to_admins(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let target = PgTestDb::create()
        .await
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL for the app's database"))?;
    let pool = sqlx::PgPool::connect(&target.url).await?;
    sqlx::query("CREATE TABLE people (ref text PRIMARY KEY, name text NOT NULL)")
        .execute(&pool)
        .await?;
    let mut admin = Person::sign_in(&app, Role::Admin).await?;
    let empty = admin.get("/destinations").await?;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("No destinations"), "{}", empty.body);

    let url = target
        .url
        .replacen("postgres://postgres@", "postgres://postgres:hidden-pw@", 1);
    let created = app
        .post(
            "/v1/destinations",
            &app.admin,
            json!({"name": "Studio app", "database_url": url, "mappings": [{
                "entity": "contacts", "table": "people",
                "key": {"column": "ref", "source": "record_id"},
                "columns": [{"column": "name", "field": "first_name", "type": "text", "required": true}]}]}),
        )
        .await?;
    let id = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Without a first name the record is held.
    let record = app
        .post(
            "/v1/records",
            &app.admin,
            json!({"entity": "contacts", "fields": {"email": "nameless@example.com"}}),
        )
        .await?;
    let record = record.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let list = admin.get("/destinations").await?;
    assert!(list.body.contains("Studio app"), "{}", list.body);
    assert!(
        list.body.contains(&format!("href=\"/destinations/{id}\"")),
        "{}",
        list.body
    );
    let page = poll_every(
        Duration::from_millis(250),
        Duration::from_secs(30),
        "the held record on the destination's page",
        || {
            let (base, cookie, client) = (
                admin.base.clone(),
                admin.cookie.clone(),
                admin.client.clone(),
            );
            let (id, record) = (id.clone(), record.clone());
            async move {
                let mut req = client.get(format!("{base}/destinations/{id}"));
                if let Some(c) = cookie {
                    req = req.header(reqwest::header::COOKIE, c);
                }
                let text = req
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .text()
                    .await
                    .map_err(|e| e.to_string())?;
                if text.contains(&record) && text.contains("required") {
                    Ok(text)
                } else {
                    Err(text)
                }
            }
        },
    )
    .await;
    assert!(page.contains("1 held"), "{page}");
    for p in [&list.body, &page] {
        assert!(!p.contains("hidden-pw"), "the database password on a page");
    }

    // A rebuild from the page: asked, shown, and done by the sink.
    let asked = admin
        .post(&format!("/destinations/{id}/rebuild"), &[])
        .await?;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    assert_eq!(
        asked.location.as_deref(),
        Some(format!("/destinations/{id}?done=rebuilding").as_str())
    );
    let after = admin
        .get(&format!("/destinations/{id}?done=rebuilding"))
        .await?;
    assert!(after.body.contains("Rebuild asked for"), "{}", after.body);
    let shown = app
        .get(&format!("/v1/destinations/{id}"), &app.admin)
        .await?;
    assert_eq!(shown.expect(StatusCode::OK)["generation"], 1);
    let forged = admin
        .post_raw(&format!("/destinations/{id}/rebuild"), &[])
        .await?;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "a post without the form token"
    );

    // Not for other roles, and not in their navigation.
    let mut operator = Person::sign_in(&app, Role::Operator).await?;
    assert_eq!(
        operator.get("/destinations").await?.status,
        StatusCode::FORBIDDEN
    );
    let home = operator.get("/").await?;
    assert!(
        !home.body.contains("href=\"/destinations\""),
        "{}",
        home.body
    );
    let missing = admin.get("/destinations/no-such-destination").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    pool.close().await;
    target.cleanup().await;
    app.finish().await
}
