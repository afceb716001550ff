//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! ([`syncledger_testkit::browser::Browser`]), against an in-process server on SQLite and
//! on PostgreSQL. These tests see what a person sees: cookies kept by the browser, forms
//! posted by clicking, redirects followed. One binary: this file declares the modules and
//! the steps they share.
//!
//! Skipped when Chromium or chromedriver is not installed, except under `CI=true`.

mod audit;
mod conflicts;
mod live;
mod mappings;
mod phone;
mod refusals;
mod runs;
mod secrets;
mod sign_in;
mod sign_out;
mod wizard;

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
    start_in_zone(backend, None).await
}

/// [`start`] with the browser in the time zone `zone`.
pub async fn start_in_zone(
    backend: Backend,
    zone: Option<&str>,
) -> anyhow::Result<Option<(TestApp, Browser)>> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(None);
    };
    match Browser::start_in_zone(zone).await {
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
    link_for(app, Role::Admin).await
}

/// A one-time sign-in link for `role` in the app's workspace: its URL and its code.
pub async fn link_for(app: &TestApp, role: Role) -> anyhow::Result<(String, String)> {
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
        .issue_link(&meta, &app.workspace_id, role)
        .await?;
    let url = syncledger_api::dashboard::link_url(&app.base, &issued.code);
    Ok((url, issued.code))
}

/// Opens `link` and clicks its button, as a person following the link does; returns once
/// the browser shows a signed-in page (the overview, or the trail for an auditor).
pub async fn follow_link(browser: &Browser, link: &str) -> anyhow::Result<()> {
    browser.goto(link).await?;
    browser.click(LINK_BUTTON).await?;
    browser.wait_for(SIGN_OUT_BUTTON).await?;
    Ok(())
}

/// Submits a form the page did not have, built by a script as a forger would: posting
/// `fields` to `action`. Returns once the browser has left the page it was on.
pub async fn forge_post(
    browser: &Browser,
    action: &str,
    fields: &[(&str, &str)],
) -> anyhow::Result<()> {
    let fields: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
        .collect();
    browser
        .execute(
            "window.__beforeForgery = true;\
             const form = document.createElement('form');\
             form.method = 'post'; form.action = arguments[0];\
             for (const [name, value] of Object.entries(arguments[1])) {\
               const input = document.createElement('input');\
               input.type = 'hidden'; input.name = name; input.value = value;\
               form.appendChild(input);\
             }\
             document.body.appendChild(form); form.submit(); return true;",
            vec![serde_json::json!(action), serde_json::Value::Object(fields)],
        )
        .await?;
    syncledger_testkit::wait::poll_every(
        std::time::Duration::from_millis(50),
        syncledger_testkit::browser::BROWSER_TIMEOUT,
        "the forged form's answer",
        || async {
            match browser
                .execute(
                    "return window.__beforeForgery === true && document.readyState;",
                    vec![],
                )
                .await
            {
                Ok(serde_json::Value::Bool(false)) => Ok(()),
                Ok(other) => Err(format!("still on the page ({other})")),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await;
    Ok(())
}

/// A name for files a test writes (screenshots), distinct per backend.
pub fn backend_dir(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}
