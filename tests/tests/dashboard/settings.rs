//! An integration's sync settings and always-use rules through pages: the settings page
//! edits what the API's `PATCH` edits (a refused value shown beside its field, nothing
//! changed), every frequency the forms offer is one the API accepts, and the rules are
//! listed, added and removed on the integration's page.

use crate::people::Person;
use anyhow::Context;
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};

on_both_backends!(
    settings_are_edited_with_errors_beside_their_fields,
    the_settings_page_renames_and_never_overwrites_a_later_change,
    every_frequency_offered_is_accepted,
    always_use_rules_are_listed_added_and_removed
);

async fn config(app: &TestApp, id: &str) -> anyhow::Result<serde_json::Value> {
    let resp = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    Ok(resp.expect(StatusCode::OK)["sync_config"].clone())
}

/// The `value`s of the `<option>`s of the select named `name` on `page`.
fn options(page: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let start = page
        .find(&format!(r#"<select id="{name}" name="{name}">"#))
        .with_context(|| format!("a select {name}"))?;
    let rest = &page[start..];
    let select = &rest[..rest.find("</select>").context("the select's end")?];
    Ok(select
        .split(r#"<option value=""#)
        .skip(1)
        .filter_map(|o| o.split('"').next().map(str::to_string))
        .collect())
}

async fn settings_are_edited_with_errors_beside_their_fields(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Edited").await?;
    let mut person = Person::sign_in(&app, Role::Operator).await?;
    let shown = person.get(&format!("/integrations/{id}")).await?;
    assert!(shown
        .body
        .contains(&format!(r#"href="/integrations/{id}/settings""#)));
    let form = person.get(&format!("/integrations/{id}/settings")).await?;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains(r#"value="60""#),
        "the stored interval is filled in"
    );
    let path = format!("/integrations/{id}/settings");
    let before = config(&app, &id).await?;
    let mut fields = vec![
        ("direction", "pull"),
        ("frequency", "interval"),
        ("interval_minutes", "5"),
        ("entities", "contacts"),
        ("conflict_strategy", "crm_wins"),
        ("on_crm_delete", "unlink"),
        ("on_app_archive", "nothing"),
    ];
    let refused = person.post(&path, &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains(r#"id="interval_minutes-error""#),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"value="5""#),
        "what was typed stays"
    );
    fields[2] = ("interval_minutes", "many");
    let refused = person.post(&path, &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    fields[2] = ("interval_minutes", "45");
    fields[4] = ("conflict_strategy", "whoever_shouts");
    let refused = person.post(&path, &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(config(&app, &id).await?, before, "nothing changed");

    fields[4] = ("conflict_strategy", "crm_wins");
    let saved = person.post(&path, &fields).await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let now = config(&app, &id).await?;
    assert_eq!(now["direction"], "pull", "{now}");
    assert_eq!(now["interval_minutes"], 45, "{now}");
    assert_eq!(now["entities"], serde_json::json!(["contacts"]), "{now}");
    assert_eq!(now["conflict_strategy"], "crm_wins", "{now}");
    assert_eq!(now["on_crm_delete"], "unlink", "{now}");

    // Manual: the interval the form still carries is dropped, not refused.
    fields[1] = ("frequency", "manual");
    let saved = person.post(&path, &fields).await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let now = config(&app, &id).await?;
    assert_eq!(now["frequency"], "manual", "{now}");
    assert!(now.get("interval_minutes").is_none(), "{now}");

    let mut viewer = Person::sign_in(&app, Role::Viewer).await?;
    let page = viewer.get(&format!("/integrations/{id}")).await?;
    assert!(!page.body.contains(&path), "a viewer has no edit link");
    assert_eq!(viewer.get(&path).await?.status, StatusCode::FORBIDDEN);
    let forged = viewer.post(&path, &fields).await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let missing = person
        .post("/integrations/no-such-id/settings", &fields)
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.finish().await
}

fn refs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The version a settings page was filled from (its hidden `version` field).
fn version_of(page: &str) -> anyhow::Result<String> {
    let start = page
        .find(r#"name="version" value=""#)
        .context("a version field")?
        + r#"name="version" value=""#.len();
    Ok(page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The settings page renames the integration, and sends the version it was filled from:
/// a second editor saving a page opened before the first one saved gets the page back
/// with the current settings and a message, and overwrites nothing (the form used to
/// save whatever it carried over the other's change).
async fn the_settings_page_renames_and_never_overwrites_a_later_change(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Edited").await?;
    app.create_integration(&app.admin, "Taken").await?;
    let mut person = Person::sign_in(&app, Role::Operator).await?;
    let path = format!("/integrations/{id}/settings");
    let form = person.get(&path).await?;
    assert!(form.body.contains(r#"value="Edited""#), "{}", form.body);
    let opened = version_of(&form.body)?;
    let fields = |name: &'static str, frequency: &'static str, version: String| {
        vec![
            ("name", name.to_string()),
            ("version", version),
            ("direction", "pull".into()),
            ("frequency", frequency.into()),
            ("interval_minutes", "45".into()),
            ("entities", "contacts".into()),
            ("conflict_strategy", "crm_wins".into()),
            ("on_crm_delete", "unlink".into()),
            ("on_app_archive", "nothing".into()),
        ]
    };

    // A name another integration has is refused beside the field; nothing changes.
    let before = config(&app, &id).await?;
    let refused = person
        .post(&path, &refs(&fields("taken", "interval", opened.clone())))
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("already exists"), "{}", refused.body);
    assert_eq!(config(&app, &id).await?, before);

    let saved = person
        .post(&path, &refs(&fields("Renamed", "interval", opened.clone())))
        .await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(shown.body["name"], "Renamed", "{}", shown.text);
    let after_first = config(&app, &id).await?;
    assert_eq!(after_first["interval_minutes"], 45, "{after_first}");

    // A second editor whose page was opened before that save.
    let stale = person
        .post(&path, &refs(&fields("Mine", "manual", opened)))
        .await?;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert!(
        stale.body.contains("Someone else changed"),
        "{}",
        stale.body
    );
    assert!(stale.body.contains(r#"value="Renamed""#), "{}", stale.body);
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(shown.body["name"], "Renamed", "{}", shown.text);
    assert_eq!(config(&app, &id).await?, after_first, "overwritten");

    // Saving the page it got back applies.
    let current = version_of(&stale.body)?;
    let saved = person
        .post(&path, &refs(&fields("Mine", "manual", current)))
        .await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(config(&app, &id).await?["frequency"], "manual");
    app.finish().await
}

/// Every frequency the connect wizard and the settings page offer is one the API takes
/// for that provider (the wizard once offered `webhook`, which the API refuses, and would
/// offer `realtime` to a provider without webhooks). HubSpot sends webhooks; Pipedrive
/// does not.
async fn every_frequency_offered_is_accepted(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let pipedrive = options(&person.get("/connect/pipedrive").await?.body, "frequency")?;
    assert!(
        !pipedrive.contains(&"realtime".to_string()),
        "{pipedrive:?}"
    );
    let wizard = person.get("/connect/hubspot").await?;
    let offered = options(&wizard.body, "frequency")?;
    assert!(offered.contains(&"realtime".to_string()), "{offered:?}");
    let id = app.create_integration(&app.admin, "Frequent").await?;
    let page = person.get(&format!("/integrations/{id}/settings")).await?;
    assert_eq!(options(&page.body, "frequency")?, offered);
    for (n, frequency) in offered.iter().enumerate() {
        let name = format!("Frequency {n}");
        let made = person
            .post(
                "/connect/hubspot",
                &[
                    ("name", name.as_str()),
                    ("direction", "pull"),
                    ("frequency", frequency.as_str()),
                    ("interval_minutes", "60"),
                    ("entities", "contacts"),
                    ("conflict_strategy", "crm_wins"),
                ],
            )
            .await?;
        assert_eq!(
            made.status,
            StatusCode::SEE_OTHER,
            "{frequency}: {}",
            made.body
        );
        let saved = person
            .post(
                &format!("/integrations/{id}/settings"),
                &[
                    ("direction", "pull"),
                    ("frequency", frequency.as_str()),
                    ("interval_minutes", "60"),
                    ("entities", "contacts"),
                    ("conflict_strategy", "crm_wins"),
                ],
            )
            .await?;
        assert_eq!(
            saved.status,
            StatusCode::SEE_OTHER,
            "{frequency}: {}",
            saved.body
        );
        assert_eq!(config(&app, &id).await?["frequency"], frequency.as_str());
    }
    app.finish().await
}

async fn always_use_rules_are_listed_added_and_removed(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Ruled").await?;
    let rules = format!("/v1/integrations/{id}/conflict-rules");
    let mut person = Person::sign_in(&app, Role::Operator).await?;
    let page = person.get(&format!("/integrations/{id}")).await?;
    assert!(page.body.contains(r#"id="always-use""#), "{}", page.body);
    assert!(page.body.contains("No rules"), "{}", page.body);

    let added = person
        .post(
            &format!("/integrations/{id}/rules"),
            &[("field", " phone "), ("use", "crm")],
        )
        .await?;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let listed = app.get(&rules, &app.admin).await?;
    assert_eq!(listed.body["data"][0]["field"], "phone", "{}", listed.text);
    assert_eq!(listed.body["data"][0]["use"], "crm", "{}", listed.text);
    let page = person.get(&format!("/integrations/{id}")).await?;
    assert!(page.body.contains(r#"id="rules-table""#), "{}", page.body);
    assert!(page.body.contains("<code>phone</code>"), "{}", page.body);

    for bad in [
        vec![("field", "phone"), ("use", "both")],
        vec![("field", ""), ("use", "app")],
    ] {
        let refused = person
            .post(&format!("/integrations/{id}/rules"), &bad)
            .await?;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let mut viewer = Person::sign_in(&app, Role::Viewer).await?;
    let read_only = viewer.get(&format!("/integrations/{id}")).await?;
    assert!(read_only.body.contains("<code>phone</code>"));
    assert!(!read_only.body.contains(r#"id="add-rule""#));
    let forged = viewer
        .post(
            &format!("/integrations/{id}/rules/remove"),
            &[("field", "phone")],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let removed = person
        .post(
            &format!("/integrations/{id}/rules/remove"),
            &[("field", "phone")],
        )
        .await?;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    let listed = app.get(&rules, &app.admin).await?;
    assert_eq!(
        listed.body["data"],
        serde_json::json!([]),
        "{}",
        listed.text
    );
    let again = person
        .post(
            &format!("/integrations/{id}/rules/remove"),
            &[("field", "phone")],
        )
        .await?;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    app.finish().await
}
