//! Signing in with a one-time link: the link page's button starts a session and lands on
//! the overview of the workspace; the same link a second time is refused.

use crate::{admin_link, backend_dir, follow_link, start, LINK_BUTTON, SIGN_OUT_BUTTON};
use syncledger_testkit::app::{on_both_backends, Backend};

on_both_backends!(a_link_signs_in_to_the_overview, a_used_link_is_refused);

/// Opening the link only shows a button (a mail scanner fetching the URL uses nothing);
/// clicking it lands on `/` signed in, with the workspace on the page.
async fn a_link_signs_in_to_the_overview(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let (link, _code) = admin_link(&app).await?;

    browser.goto(&link).await?;
    browser.wait_for("form#sign-in-link").await?;
    browser.click(LINK_BUTTON).await?;
    browser.wait_for_path("/").await?;

    // The signed-in frame: the sign-out button, the role, the workspace ("Acme", the
    // name `TestApp` gives it).
    browser.wait_for(SIGN_OUT_BUTTON).await?;
    let role = browser.text("header .who .role").await?;
    assert_eq!(role, "admin", "the header names the role signed in with");
    let page = browser.text("body").await?;
    assert!(
        page.contains("Acme"),
        "the overview shows the workspace's name; the page says:\n{page}"
    );
    let shot = browser
        .screenshot(&format!("{}/signed-in.png", backend_dir(backend)))
        .await?;
    assert!(shot.is_file(), "a screenshot at {}", shot.display());

    browser.close().await?;
    app.finish().await
}

/// A link works once: opened again after it signed someone in, its button is refused
/// with a page saying so, and no session is started by it.
async fn a_used_link_is_refused(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let (link, _code) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;

    browser.goto(&link).await?;
    browser.click(LINK_BUTTON).await?;
    browser.wait_for_path("/sign-in/link").await?;
    let page = browser.text("body").await?;
    assert!(
        page.contains("cannot be used"),
        "the second use of a link is refused; the page says:\n{page}"
    );
    browser
        .screenshot(&format!("{}/link-refused.png", backend_dir(backend)))
        .await?;

    browser.close().await?;
    app.finish().await
}
