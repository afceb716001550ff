//! Refusals in a browser: a viewer sees no control that changes anything, and a post it
//! forges anyway (with its own valid form token) is refused; a post without the form
//! token is refused even for an admin. Neither changes the integration.

use crate::{follow_link, forge_post, link_for, start};
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(
    a_viewer_sees_no_write_control_and_its_forged_post_is_refused,
    a_post_without_the_form_token_is_refused
);

async fn status(app: &TestApp, id: &str) -> anyhow::Result<String> {
    let resp = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

async fn a_viewer_sees_no_write_control_and_its_forged_post_is_refused(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Watched").await?;
    app.set_api_key(&app.admin, &id, "pd-key-9c1e").await?;
    let before = status(&app, &id).await?;
    let (link, _) = link_for(&app, Role::Viewer).await?;
    follow_link(&browser, &link).await?;

    for path in [
        format!("/integrations/{id}"),
        format!("/integrations/{id}/mappings/contacts"),
        "/".to_string(),
        "/runs".to_string(),
        "/conflicts".to_string(),
    ] {
        browser.goto(&format!("{}{path}", app.base)).await?;
        browser.wait_for("main").await?;
        // The only form that posts is signing out.
        let posting = browser
            .execute(
                "return Array.from(document.querySelectorAll('form'))\
                   .filter(f => f.method === 'post' && f.id !== 'sign-out')\
                   .map(f => f.getAttribute('action'));",
                vec![],
            )
            .await?;
        assert_eq!(posting, serde_json::json!([]), "write controls at {path}");
    }

    browser
        .goto(&format!("{}/integrations/{id}", app.base))
        .await?;
    let token = browser
        .execute(
            "return document.querySelector('form#sign-out input[name=_csrf]').value;",
            vec![],
        )
        .await?;
    let token = token.as_str().unwrap_or_default().to_string();
    assert!(!token.is_empty(), "the viewer's own form token");
    forge_post(
        &browser,
        &format!("/integrations/{id}/pause"),
        &[("_csrf", &token)],
    )
    .await?;
    let page = browser
        .wait_for_text("main", "the refusal", |t| !t.is_empty())
        .await?;
    assert!(page.to_lowercase().contains("not allowed"), "{page}");
    assert_eq!(status(&app, &id).await?, before, "nothing changed");

    browser.close().await?;
    app.finish().await
}

async fn a_post_without_the_form_token_is_refused(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Guarded").await?;
    app.set_api_key(&app.admin, &id, "pd-key-41ab").await?;
    let before = status(&app, &id).await?;
    let (link, _) = link_for(&app, Role::Admin).await?;
    follow_link(&browser, &link).await?;
    browser
        .goto(&format!("{}/integrations/{id}", app.base))
        .await?;
    forge_post(&browser, &format!("/integrations/{id}/pause"), &[]).await?;
    let page = browser
        .wait_for_text("main", "the refusal", |t| !t.is_empty())
        .await?;
    assert!(
        page.contains("did not come from this dashboard"),
        "the refusal names the form token: {page}"
    );
    assert_eq!(status(&app, &id).await?, before, "nothing changed");

    // The same post through the page's own button works: the refusal was the token.
    browser
        .goto(&format!("{}/integrations/{id}", app.base))
        .await?;
    browser
        .click("form[action$='/pause'] button[type=submit]")
        .await?;
    browser
        .wait_for_text("p.notice", "the paused notice", |t| !t.is_empty())
        .await?;
    assert_eq!(status(&app, &id).await?, "paused");

    browser.close().await?;
    app.finish().await
}
