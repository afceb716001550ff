//! A conflict resolved in a browser: the queue links to it, its page shows the three
//! values side by side, and "Use the CRM's value" settles it and updates the record.

use crate::{follow_link, link_for, start};
use reqwest::StatusCode;
use syncledger_domain::{Entity, Role};
use syncledger_testkit::app::{on_both_backends, Backend};
use syncledger_testkit::conflicts::{conflicted, APP, CRM, OLD};

on_both_backends!(a_conflict_is_resolved_with_the_crm_value);

async fn a_conflict_is_resolved_with_the_crm_value(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Conflicted").await?;
    let (record, conflict) = conflicted(&app, &integration, Entity::Contacts).await?;
    let (link, _) = link_for(&app, Role::Operator).await?;
    follow_link(&browser, &link).await?;

    browser.goto(&format!("{}/conflicts", app.base)).await?;
    browser
        .click(&format!("a[href='/conflicts/{conflict}']"))
        .await?;
    browser
        .wait_for_path(&format!("/conflicts/{conflict}"))
        .await?;
    let values = browser.text("#sides #values").await?;
    for v in [OLD, APP, CRM] {
        assert!(values.contains(v), "{v} side by side: {values}");
    }
    browser.click("form#use-crm button[type=submit]").await?;
    browser
        .wait_for_text("p.notice", "the resolved notice", |t| {
            t.contains("resolved")
        })
        .await?;
    assert!(
        browser
            .page_source()
            .await?
            .contains(r#"id="resolved-value""#),
        "the value taken is shown"
    );

    let stored = app
        .get(&format!("/v1/conflicts/{conflict}"), &app.admin)
        .await?;
    let stored = stored.expect(StatusCode::OK);
    assert_eq!(stored["status"], "resolved", "{stored}");
    app.caught_up().await;
    let now = app
        .get(&format!("/v1/records/{record}"), &app.admin)
        .await?;
    assert_eq!(
        now.expect(StatusCode::OK)["fields"]["email"]["value"],
        CRM,
        "the CRM's value taken"
    );

    browser.close().await?;
    app.finish().await
}
