//! The dashboard on a 390 px phone screen and with the keyboard alone: signing in by
//! link with Tab and Enter, no page wider than the screen (tables scroll inside their own
//! box, not the page), and a label for every field on every page.

use crate::{admin_link, backend_dir, start};
use fantoccini::key::Key;
use serde_json::json;
use syncledger_testkit::app::{connect, on_both_backends, wait_run, Backend};
use syncledger_testkit::browser::Browser;
use syncledger_testkit::sandbox;

on_both_backends!(pages_fit_a_phone_and_signing_in_needs_only_the_keyboard);

/// Presses Tab until the focused element matches `css`; fails after `most` presses.
async fn tab_to(browser: &Browser, css: &str, most: usize) -> anyhow::Result<()> {
    for _ in 0..most {
        let here = browser
            .execute(
                "return document.activeElement && document.activeElement.matches(arguments[0]);",
                vec![json!(css)],
            )
            .await?;
        if here == json!(true) {
            return Ok(());
        }
        browser
            .client()
            .active_element()
            .await?
            .send_keys(&char::from(Key::Tab).to_string())
            .await?;
    }
    anyhow::bail!("{css} is not reached with {most} presses of Tab")
}

async fn pages_fit_a_phone_and_signing_in_needs_only_the_keyboard(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let run = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let run_id = run.str("id")?;
    wait_run(&app, &run_id).await?;
    let record = app.get("/v1/records?limit=1", &app.admin).await?.body["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    browser.resize(390, 844).await?;
    let (link, _) = admin_link(&app).await?;
    browser.goto(&link).await?;
    tab_to(&browser, "form#sign-in-link button[type=submit]", 10).await?;
    browser
        .client()
        .active_element()
        .await?
        .send_keys(&char::from(Key::Enter).to_string())
        .await?;
    browser.wait_for_path("/").await?;
    browser.wait_for("form#sign-out").await?;

    let pages = [
        "/".to_string(),
        "/connect".to_string(),
        "/connect/hubspot".to_string(),
        format!("/integrations/{id}"),
        format!("/integrations/{id}/settings"),
        format!("/integrations/{id}/mappings/contacts"),
        format!("/integrations/{id}/runs"),
        format!("/runs/{run_id}"),
        format!("/runs/{run_id}/rollback"),
        "/runs".to_string(),
        "/records".to_string(),
        format!("/records/{record}"),
        "/conflicts".to_string(),
        "/audit".to_string(),
        "/audit/verify".to_string(),
        "/tokens".to_string(),
    ];
    for path in &pages {
        browser.goto(&format!("{}{path}", app.base)).await?;
        browser.wait_for("main").await?;
        // Every field a person can fill has a name a screen reader reads out.
        let unlabelled = browser
            .execute(
                "return Array.from(document.querySelectorAll('input, select, textarea'))\
                   .filter(e => e.type !== 'hidden')\
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')\
                     && !e.getAttribute('aria-labelledby'))\
                   .map(e => e.outerHTML);",
                vec![],
            )
            .await?;
        assert_eq!(unlabelled, json!([]), "inputs without a label at {path}");
        // The page's width, and the outermost elements reaching past the screen's edge.
        let widths = browser
            .execute(
                "const w = document.documentElement.clientWidth;\
                 const wide = Array.from(document.querySelectorAll('body *'))\
                   .filter(e => e.getBoundingClientRect().right > w + 1\
                     && !(e.parentElement && e.parentElement.getBoundingClientRect().right > w + 1))\
                   .slice(0, 5)\
                   .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')\
                     + (e.className ? '.' + String(e.className).split(' ').join('.') : ''));\
                 return [document.documentElement.scrollWidth, w, wide];",
                vec![],
            )
            .await?;
        let (page, screen) = (widths[0].as_u64(), widths[1].as_u64());
        assert!(
            page.is_some() && page <= screen,
            "{path} is wider than the {screen:?} px the screen shows: {page:?} px, past the edge: {}",
            widths[2]
        );
    }
    browser.goto(&format!("{}/", app.base)).await?;
    browser
        .screenshot(&format!("{}/phone-overview.png", backend_dir(backend)))
        .await?;

    browser.close().await?;
    sandbox.shutdown().await;
    app.finish().await
}
