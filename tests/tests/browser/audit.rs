//! The audit trail in a browser, as a compliance officer uses it: verify the chain (the
//! result on the page) and export the trail as CSV (a file the browser saves).

use crate::{follow_link, link_for, start};
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend};

on_both_backends!(the_chain_is_verified_and_the_trail_exported_as_csv);

async fn the_chain_is_verified_and_the_trail_exported_as_csv(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start(backend).await? else {
        return Ok(());
    };
    let integration = app.create_integration(&app.admin, "Audited").await?;
    app.caught_up().await;
    let (link, code) = link_for(&app, Role::Auditor).await?;
    follow_link(&browser, &link).await?;
    // An auditor lands on the trail: the only pages it has.
    browser.goto(&format!("{}/audit", app.base)).await?;
    let trail = browser.text("main").await?;
    assert!(trail.contains(&integration), "the trail lists it: {trail}");

    browser.click("#verify-chain").await?;
    let result = browser
        .wait_for_text("#verify-result", "the verification", |t| !t.is_empty())
        .await?;
    assert!(result.contains("The chain is intact"), "{result}");

    browser.goto(&format!("{}/audit", app.base)).await?;
    browser.click("#export-csv").await?;
    let file = browser.wait_for_download(".csv").await?;
    let csv = std::fs::read_to_string(&file)?;
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers()?.clone();
    assert!(header.iter().any(|h| h == "position"), "{header:?}");
    let rows: Vec<csv::StringRecord> = rows.records().collect::<Result<_, _>>()?;
    assert!(
        rows.iter()
            .any(|r| r.iter().any(|cell| cell.contains(&integration))),
        "the export holds the integration's events:\n{csv}"
    );
    assert!(
        !csv.contains(&app.admin) && !csv.contains(&code),
        "no secret"
    );

    browser.close().await?;
    app.finish().await
}
