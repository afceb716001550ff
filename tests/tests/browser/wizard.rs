//! The connect wizard in a browser: search the catalogue, fill in the settings, go to the
//! HubSpot sandbox's consent URL and follow its real redirect back to the wizard, test
//! the connection. The credential never appears; only its kind does.

use crate::{admin_link, backend_dir, follow_link, start};
use anyhow::Context;
use reqwest::StatusCode;
use syncledger_testkit::app::{on_both_backends, Backend};
use syncledger_testkit::sandbox;

on_both_backends!(the_wizard_connects_hubspot_through_its_oauth_redirect);

async fn the_wizard_connects_hubspot_through_its_oauth_redirect(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let (link, _) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;

    // The catalogue, searched: only matching providers stay visible.
    browser.goto(&format!("{}/connect", app.base)).await?;
    browser.fill("#provider-search", "hubsp").await?;
    let visible = browser
        .execute(
            "return Array.from(document.querySelectorAll('#providers li'))\
               .filter(li => !li.hidden).map(li => li.querySelector('a').getAttribute('href'));",
            vec![],
        )
        .await?;
    assert_eq!(
        visible,
        serde_json::json!(["/connect/hubspot"]),
        "the search"
    );
    browser.click("a[href='/connect/hubspot']").await?;
    browser.wait_for_path("/connect/hubspot").await?;

    browser.fill("#name", "Sales pipeline").await?;
    browser.fill("#interval_minutes", "30").await?;
    browser.click("#settings details summary").await?;
    browser.fill("#base_url", &sandbox.base_url()).await?;
    browser.click("form#settings button[type=submit]").await?;
    browser.wait_for("form#oauth").await?;
    let path = browser.path().await?;
    let id = path
        .strip_prefix("/integrations/")
        .and_then(|rest| rest.strip_suffix("/authenticate"))
        .with_context(|| format!("the authenticate step, not {path}"))?
        .to_string();

    // To the provider and back: the sandbox approves at once and redirects to the
    // callback, which hands over to the wizard's test step.
    browser.click("form#oauth button[type=submit]").await?;
    browser
        .wait_for_path(&format!("/integrations/{id}/test"))
        .await?;
    let landed = browser.text("main").await?;
    assert!(landed.contains("oauth2"), "the credential's kind: {landed}");
    browser.click("form#test button[type=submit]").await?;
    let result = browser
        .wait_for_text("#test-result", "the test's result", |t| {
            t.contains("The connection")
        })
        .await?;
    assert!(result.contains("The connection works"), "{result}");
    browser
        .screenshot(&format!("{}/wizard-tested.png", backend_dir(backend)))
        .await?;

    let stored = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let stored = stored.expect(StatusCode::OK);
    assert_eq!(stored["status"], "connected", "{stored}");
    assert_eq!(stored["name"], "Sales pipeline", "{stored}");
    assert_eq!(stored["sync_config"]["interval_minutes"], 30, "{stored}");

    browser.close().await?;
    sandbox.shutdown().await;
    app.finish().await
}
