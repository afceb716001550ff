//! Signing out: the header's button ends the session, and the dashboard then asks to
//! sign in again instead of showing a page.

use crate::{admin_link, follow_link, start, SIGN_OUT_BUTTON};
use syncledger_testkit::app::{on_both_backends, Backend};

on_both_backends!(sign_out_ends_the_session);

/// After "Sign out", `/` redirects to `/sign-in`: the browser's cookie no longer opens a
/// session (the server ended it, and told the browser to forget the cookie).
async fn sign_out_ends_the_session(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let (link, _code) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;

    browser.click(SIGN_OUT_BUTTON).await?;
    browser.wait_for_path("/sign-in").await?;

    browser.goto(&format!("{}/", app.base)).await?;
    browser.wait_for_path("/sign-in").await?;
    browser.wait_for("form#sign-in").await?;

    browser.close().await?;
    app.finish().await
}
