//! The overview as a person elsewhere sees it: its cards update in place when a run ends
//! (no reload), and its times are in the browser's time zone, not the server's.

use crate::{admin_link, follow_link, start_in_zone};
use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::json;
use syncledger_testkit::app::{connect, on_both_backends, wait_run, Backend};
use syncledger_testkit::sandbox;

on_both_backends!(the_overview_updates_live_in_the_browsers_time_zone);

/// Tokyo keeps no daylight saving time: always UTC+9.
const ZONE: &str = "Asia/Tokyo";
const ZONE_HOURS: i32 = 9;

async fn the_overview_updates_live_in_the_browsers_time_zone(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some((app, browser)) = start_in_zone(backend, Some(ZONE)).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let (link, _) = admin_link(&app).await?;
    follow_link(&browser, &link).await?;
    browser.goto(&format!("{}/", app.base)).await?;
    assert_eq!(browser.text("#cards .last-run").await?, "none yet");
    // Live once the page's event stream is open (the script marks the document).
    browser
        .wait_for("html[data-live='open']")
        .await
        .context("the overview's event stream opens")?;
    browser
        .execute("window.__notReloaded = true; return true;", vec![])
        .await?;

    let run = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            json!({"kind": "full"}),
        )
        .await?;
    let ended = wait_run(&app, &run.str("id")?).await?;
    let card = browser
        .wait_for_text("#cards .last-run", "the run's end", |t| {
            t.contains("completed")
        })
        .await?;
    assert!(card.contains("6 processed"), "{card}");
    let kept = browser
        .execute("return window.__notReloaded === true;", vec![])
        .await?;
    assert_eq!(kept, json!(true), "updated in place, not reloaded");

    // The run's end, as the card shows it: Tokyo's wall clock.
    let at: DateTime<Utc> = ended["ended_at"].as_str().context("ended_at")?.parse()?;
    let tokyo = at.with_timezone(&FixedOffset::east_opt(ZONE_HOURS * 3600).context("offset")?);
    let wall = tokyo.format("%-I:%M %p").to_string();
    assert!(
        card.contains(&wall),
        "the end ({at}) in {ZONE} time, {wall}: {card}"
    );
    let utc_wall = at.format("%-I:%M %p").to_string();
    assert!(!card.contains(&utc_wall), "not the server's UTC: {card}");

    browser.close().await?;
    sandbox.shutdown().await;
    app.finish().await
}
