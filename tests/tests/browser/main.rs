//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! ([`syncledger_testkit::browser::Browser`]), against an in-process server on SQLite and
//! on PostgreSQL. These tests see what a person sees: cookies kept by the browser, forms
//! posted by clicking, redirects followed. One binary: this file declares the modules and
//! the steps they share.
//!
//! Skipped when Chromium or chromedriver is not installed, except under `CI=true`.

mod secrets;
mod sign_in;
mod sign_out;

use syncledger_domain::Role;
use syncledger_store::Metadata;
use syncledger_testkit::app::{Backend, TestApp};
use syncledger_testkit::browser::Browser;

/// The link page's form and the button that uses the link up.
pub const LINK_BUTTON: &str = "form#sign-in-link button[type=submit]";
/// The sign-out button in the header of every signed-in page.
pub const SIGN_OUT_BUTTON: &str = "form#sign-out button[type=submit]";

/// A server on `backend` and a browser, or `None` (the test skips) when either cannot run
/// here outside CI.
pub async fn start(backend: Backend) -> anyhow::Result<Option<(TestApp, Browser)>> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(None);
    };
    match Browser::start().await {
        Ok(Some(browser)) => Ok(Some((app, browser))),
        Ok(None) => {
            app.finish().await?;
            Ok(None)
        }
        Err(e) => {
            app.finish().await?;
            Err(e)
        }
    }
}

/// A one-time admin sign-in link for the app's workspace, as the operator's
/// `syncledger dashboard link` makes it: its URL and its code.
pub async fn admin_link(app: &TestApp) -> anyhow::Result<(String, String)> {
    let meta = Metadata::new(
        "system",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    )
    .caused_by("test:browser");
    let issued = app
        .state
        .engine
        .sign_in()
        .issue_link(&meta, &app.workspace_id, Role::Admin)
        .await?;
    let url = syncledger_api::dashboard::link_url(&app.base, &issued.code);
    Ok((url, issued.code))
}

/// Opens `link` and clicks its button, as a person following the link does; returns once
/// the browser has followed the redirect away from the link page.
pub async fn follow_link(browser: &Browser, link: &str) -> anyhow::Result<()> {
    browser.goto(link).await?;
    browser.click(LINK_BUTTON).await?;
    browser.wait_for_path("/").await
}

/// A name for files a test writes (screenshots), distinct per backend.
pub fn backend_dir(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}
