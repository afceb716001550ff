//! The field-mapping editor in a browser: a transform is checked as it is typed (a
//! broken one is flagged beside its input before anything is posted), previewed on the
//! CRM's real records, then saved.

use crate::{admin_link, backend_dir, follow_link, start};
use anyhow::Context;
use reqwest::StatusCode;
use serde_json::json;
use syncledger_testkit::app::{connect, on_both_backends, Backend};
use syncledger_testkit::sandbox::{self, sandbox_records};

on_both_backends!(a_mapping_is_checked_as_typed_previewed_and_saved);

async fn a_mapping_is_checked_as_typed_previewed_and_saved(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let (link, _) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;
    browser
        .goto(&format!("{}/integrations/{id}/mappings/contacts", app.base))
        .await?;
    browser.wait_for("#mapping-editor").await?;

    // The row mapping the CRM's first name, or the first blank row made into one.
    let row = browser
        .execute(
            "const rows = Array.from(document.querySelectorAll('#mappings tbody tr'));\
             let row = rows.find(r => r.querySelector('[name=crm_field]').value === 'firstname');\
             if (!row) {\
               row = rows.find(r => r.querySelector('[name=crm_field]').value === '');\
               row.querySelector('[name=crm_field]').value = 'firstname';\
               row.querySelector('[name=app_field]').value = 'first_name';\
             }\
             return row.querySelector('[name=transform]').id;",
            vec![],
        )
        .await?;
    let input = format!("#{}", row.as_str().context("a transform input")?);
    let check = format!("{input}-check");

    browser.fill(&input, "value.(").await?;
    let said = browser
        .wait_for_text(&check, "the expression's error", |t| !t.is_empty())
        .await?;
    assert!(!said.is_empty());
    let invalid = browser
        .execute(
            "return document.querySelector(arguments[0]).getAttribute('aria-invalid');",
            vec![json!(input)],
        )
        .await?;
    assert_eq!(invalid, json!("true"), "the input is marked invalid");

    browser.fill(&input, "value.upperAscii()").await?;
    browser
        .wait_for_text(&check, "no error", str::is_empty)
        .await?;

    browser.click("#preview-button").await?;
    let preview = browser.text("#mapping-preview").await?;
    let crm = sandbox_records(&sandbox, "contacts", "firstname").await;
    let first = crm[0]["properties"]["firstname"]
        .as_str()
        .with_context(|| format!("a first name in the CRM: {crm:?}"))?;
    assert!(
        preview.contains(&first.to_uppercase()),
        "previewed with the transform: {preview}"
    );
    // The preview shows the form again with what was typed, nothing saved yet.
    let stored = app
        .get(
            &format!("/v1/integrations/{id}/mappings/contacts"),
            &app.admin,
        )
        .await?;
    let unchanged = stored.expect(StatusCode::OK).to_string();
    assert!(!unchanged.contains("upperAscii"), "{unchanged}");
    browser
        .screenshot(&format!("{}/mapping-editor.png", backend_dir(backend)))
        .await?;

    browser.click("#save-button").await?;
    browser
        .wait_for_text("p.notice", "the saved notice", |t| t == "Saved.")
        .await?;
    let stored = app
        .get(
            &format!("/v1/integrations/{id}/mappings/contacts"),
            &app.admin,
        )
        .await?;
    let mappings = stored.expect(StatusCode::OK)["mappings"].clone();
    let firstname = mappings
        .as_array()
        .and_then(|all| all.iter().find(|m| m["crm_field"] == "firstname"))
        .with_context(|| format!("the first-name mapping in {mappings}"))?;
    assert_eq!(firstname["transform"], "value.upperAscii()", "{mappings}");

    browser.close().await?;
    sandbox.shutdown().await;
    app.finish().await
}
