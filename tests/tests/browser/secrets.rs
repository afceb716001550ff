//! Secrets stay out of pages: once signed in, no page the browser gets holds the
//! workspace's admin bearer token or the sign-in link's code, and neither is in a cookie
//! or in the address bar. (The link page itself carries the code in its form: that page
//! is the link.)

use crate::{admin_link, follow_link, start};
use std::collections::BTreeSet;
use syncledger_testkit::app::{on_both_backends, Backend};

on_both_backends!(no_page_holds_the_token_or_the_code);

/// Every page reachable from the header's navigation, and `/`, checked as the browser
/// has them (after scripts ran), so pages added later are covered without a new test.
async fn no_page_holds_the_token_or_the_code(backend: Backend) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let (link, code) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;

    let secrets = [
        ("the admin token", app.admin.as_str()),
        ("the link code", code.as_str()),
    ];
    let address = browser.current_url().await?.to_string();
    for (what, secret) in secrets {
        assert!(
            !address.contains(secret),
            "{what} is in the address {address}"
        );
    }

    let mut paths = BTreeSet::from(["/".to_string()]);
    for a in browser
        .client()
        .find_all(fantoccini::Locator::Css("header nav a[href^='/']"))
        .await?
    {
        if let Some(href) = a.attr("href").await? {
            paths.insert(href);
        }
    }
    for path in &paths {
        browser.goto(&format!("{}{path}", app.base)).await?;
        let source = browser.page_source().await?;
        for (what, secret) in secrets {
            assert!(!source.contains(secret), "{what} is in the page at {path}");
        }
    }

    for cookie in browser.client().get_all_cookies().await? {
        for (what, secret) in secrets {
            assert!(
                !cookie.value().contains(secret),
                "{what} is in the cookie {}",
                cookie.name()
            );
        }
    }

    browser.close().await?;
    app.finish().await
}
