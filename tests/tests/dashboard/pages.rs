//! The pages over a workspace with a synced HubSpot sandbox: a run started from its
//! integration's page, the run's page, records and time travel, the rollback preview and
//! its confirmation, the audit trail with verification and export, and tokens.

use crate::people::Person;
use anyhow::Context;
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{connect, on_both_backends, wait_run, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    a_synced_workspace_reads_and_rolls_back_through_pages,
    tokens_are_issued_once_and_revoked_through_pages,
    the_overview_counts_and_shows_the_plan_limit_as_a_message,
    an_active_run_page_keeps_looking_until_the_run_ends
);

/// The id after `prefix` in a redirect's location, up to `?`.
fn id_in(location: &str, prefix: &str) -> anyhow::Result<String> {
    let rest = location
        .strip_prefix(prefix)
        .with_context(|| format!("{location} starts with {prefix}"))?;
    Ok(rest.split('?').next().unwrap_or_default().to_string())
}

async fn a_synced_workspace_reads_and_rolls_back_through_pages(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    person.get(&format!("/integrations/{id}")).await?;

    let started = person
        .post(&format!("/integrations/{id}/sync"), &[("kind", "full")])
        .await?;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let run_id = id_in(&started.location.unwrap_or_default(), "/runs/")?;
    let ended = wait_run(&app, &run_id).await?;
    assert_eq!(ended["status"], "completed", "{ended}");
    let processed = ended["stats"]["processed"].as_u64().context("processed")?;
    assert!(processed >= 6, "{ended}");

    let run_page = person.get(&format!("/runs/{run_id}")).await?;
    assert_eq!(run_page.status, StatusCode::OK, "{}", run_page.body);
    assert!(run_page
        .body
        .contains(&format!(r#"<dd id="processed">{processed}"#)));
    assert!(run_page.body.contains(&format!("/runs/{run_id}/rollback")));
    // An ended run is not looked at again (a queued or running one is: `data-active`).
    assert!(!run_page.body.contains("data-active"), "{}", run_page.body);
    let history = person.get(&format!("/integrations/{id}/runs")).await?;
    assert!(history.body.contains(&format!("/runs/{run_id}")));
    let index = person.get("/runs").await?;
    assert!(index.body.contains(&format!("/integrations/{id}/runs")));

    // Records: the list, one record's page, and the record as it was before a change.
    let list = person.get("/records?entity=contacts").await?;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let records = app.get("/v1/records?entity=contacts", &app.admin).await?;
    let record = records.body["data"][0].clone();
    let record_id = record["id"].as_str().context("a record")?.to_string();
    assert!(list.body.contains(&format!("/records/{record_id}")));
    let first_name = record["fields"]["first_name"]["value"]
        .as_str()
        .context("a first name")?
        .to_string();
    let edited = app
        .patch(
            &format!("/v1/records/{record_id}"),
            &app.admin,
            serde_json::json!({"fields": {"first_name": "Renamed"}}),
        )
        .await?;
    edited.expect(StatusCode::OK);
    app.caught_up().await;
    let now = person.get(&format!("/records/{record_id}")).await?;
    assert_eq!(now.status, StatusCode::OK, "{}", now.body);
    assert!(now.body.contains("Renamed") && now.body.contains(r#"id="history""#));
    // The timeline links each change to the record as it was then; the first one is the
    // record as the sync created it.
    let href_at = now
        .body
        .find("class=\"as-of\" href=\"")
        .context("a time-travel link")?;
    let rest = &now.body[href_at + "class=\"as-of\" href=\"".len()..];
    let href = rest[..rest.find('"').context("the link's end")?].replace("&amp;", "&");
    let then = person.get(&href).await?;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert!(then.body.contains(r#"id="as-of-banner""#));
    assert!(then.body.contains(&first_name), "{}", then.body);
    assert!(
        then.body.contains(r#"class="changed""#),
        "the edited field is highlighted"
    );
    let bad = person
        .get(&format!("/records/{record_id}?as_of=yesterday"))
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("as_of"));

    // The rollback: its preview as a table, then the admin's confirmation.
    let preview = person.get(&format!("/runs/{run_id}/rollback")).await?;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(
        preview.body.contains(r#"id="rollback-preview""#),
        "{}",
        preview.body
    );
    assert!(preview.body.contains(r#"id="confirm-rollback""#));
    let confirmed = person
        .post(&format!("/runs/{run_id}/rollback"), &[])
        .await?;
    assert_eq!(
        confirmed.status,
        StatusCode::SEE_OTHER,
        "{}",
        confirmed.body
    );
    let rollback_id = id_in(&confirmed.location.unwrap_or_default(), "/runs/")?;
    let rolled = wait_run(&app, &rollback_id).await?;
    assert_eq!(rolled["kind"], "rollback", "{rolled}");
    let rollback_page = person.get(&format!("/runs/{rollback_id}")).await?;
    assert!(rollback_page.body.contains(&format!("/runs/{run_id}")));

    // The audit trail: entries with their changes, verification, export.
    let trail = person.get("/audit?action=FieldsChanged").await?;
    assert_eq!(trail.status, StatusCode::OK, "{}", trail.body);
    assert!(trail.body.contains("Renamed"), "the change before → after");
    let bad = person.get("/audit?from=last+week").await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("RFC 3339"));
    let verified = person.get("/audit/verify").await?;
    assert!(
        verified.body.contains("The chain is intact"),
        "{}",
        verified.body
    );
    let csv = person.get("/audit/export?format=csv").await?;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.content_type.starts_with("text/csv"),
        "{}",
        csv.content_type
    );
    assert!(csv.body.lines().count() > 10, "{}", csv.body);
    assert!(!csv.body.contains(&app.admin));
    let refused = person.get("/audit/export?format=xml").await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    app.finish().await
}

async fn tokens_are_issued_once_and_revoked_through_pages(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut admin = Person::sign_in(&app, Role::Admin).await?;
    let list = admin.get("/tokens").await?;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let issued = admin
        .post("/tokens", &[("role", "viewer"), ("label", "wall screen")])
        .await?;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let at = issued
        .body
        .find("value=\"slk_")
        .context("the secret, once")?
        + 7;
    let secret = &issued.body[at..at + issued.body[at..].find('"').context("end")?];
    app.get("/v1/integrations", secret)
        .await?
        .expect(StatusCode::OK);
    let token_id = secret.split('_').nth(1).context("an id")?.to_string();

    let list = admin.get("/tokens").await?;
    assert!(list.body.contains("wall screen") && !list.body.contains(secret));
    let bad = admin.post("/tokens", &[("role", "owner")]).await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let revoked = admin
        .post(&format!("/tokens/{token_id}/revoke"), &[])
        .await?;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    let resp = app.get("/v1/integrations", secret).await?;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    app.finish().await
}

async fn the_overview_counts_and_shows_the_plan_limit_as_a_message(
    backend: Backend,
) -> anyhow::Result<()> {
    let options = syncledger_testkit::app::Options {
        plan: syncledger_domain::Plan::Starter,
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await? else {
        return Ok(());
    };
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let empty = person.get("/").await?;
    assert!(empty.body.contains("No integrations yet"), "{}", empty.body);
    assert!(empty
        .body
        .contains("0 of 1 integrations on the starter plan"));

    let sandbox = sandbox::hubspot(2).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let run = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            serde_json::json!({"kind": "full"}),
        )
        .await?;
    let ended = wait_run(&app, &run.str("id")?).await?;
    let processed = ended["stats"]["processed"].as_u64().context("processed")?;
    let card = person.get("/").await?;
    assert!(
        card.body.contains(&format!(r#"id="integration-{id}""#)),
        "{}",
        card.body
    );
    assert!(
        card.body.contains(&format!(
            r#"<a href="/records?integration={id}">{processed}</a>"#
        )),
        "records linked: {}",
        card.body
    );
    assert!(card.body.contains("1 of 1 integrations"), "{}", card.body);
    assert!(card.body.contains("the plan's limit is reached"));
    assert!(!card.body.contains(r#"class="button" href="/connect""#));

    // Past the limit the wizard answers with the plan's message in the form, not an
    // error page, and creates nothing.
    let refused = person
        .post(
            "/connect/hubspot",
            &[
                ("name", "Second"),
                ("direction", "pull"),
                ("frequency", "manual"),
                ("entities", "contacts"),
                ("conflict_strategy", "crm_wins"),
            ],
        )
        .await?;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"id="form-error""#),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"id="settings""#),
        "the form is still there"
    );
    app.finish().await
}

/// A queued run (no worker in this server takes it) is shown with `data-active`, which
/// makes the page look again every few seconds until the run ends, whatever the event
/// stream delivers (the page used to wait for events only, and stayed at "running" when the
/// read model was slower than the stream).
async fn an_active_run_page_keeps_looking_until_the_run_ends(
    backend: Backend,
) -> anyhow::Result<()> {
    let opts = syncledger_testkit::app::Options {
        tweak: |s| syncledger_api::config::Settings { workers: 0, ..s },
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(1).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let started = person
        .post(&format!("/integrations/{id}/sync"), &[("kind", "full")])
        .await?;
    let run_id = id_in(&started.location.unwrap_or_default(), "/runs/")?;
    let page = person.get(&format!("/runs/{run_id}")).await?;
    assert!(page.body.contains("queued"), "{}", page.body);
    assert!(page.body.contains("<dd data-active>"), "{}", page.body);
    let src = page
        .body
        .split("src=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|src| src.starts_with("/assets/app-") && src.ends_with(".js"))
        .context("the page's script")?
        .to_string();
    let script = person.get(&src).await?;
    assert!(
        script.body.contains("[data-live] [data-active]"),
        "{}",
        script.body
    );
    sandbox.shutdown().await;
    app.finish().await
}
