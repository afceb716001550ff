//! The field-mapping editor over HTTP: the live field catalogue, a preview on real CRM
//! records before saving, a refused expression that changes nothing, save, auto-map and
//! re-apply; no controls for a viewer.

use crate::people::Person;
use anyhow::Context;
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{connect, on_both_backends, wait_run, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    mappings_are_previewed_checked_saved_and_reapplied,
    expressions_are_checked_as_typed
);

async fn stored(app: &TestApp, id: &str) -> anyhow::Result<serde_json::Value> {
    let resp = app
        .get(
            &format!("/v1/integrations/{id}/mappings/contacts"),
            &app.admin,
        )
        .await?;
    Ok(resp.expect(StatusCode::OK).clone())
}

async fn mappings_are_previewed_checked_saved_and_reapplied(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(3).await;
    let id = connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins").await?;
    let mut person = Person::sign_in(&app, Role::Operator).await?;
    let path = format!("/integrations/{id}/mappings/contacts");

    let editor = person.get(&path).await?;
    assert_eq!(editor.status, StatusCode::OK, "{}", editor.body);
    assert!(
        editor.body.contains(r#"<datalist id="crm-fields">"#),
        "{}",
        editor.body
    );
    assert!(
        editor.body.contains(r#"<option value="firstname">"#),
        "the live catalogue"
    );
    let integration = person.get(&format!("/integrations/{id}")).await?;
    assert!(integration.body.contains(&path));

    let before = stored(&app, &id).await?;
    let row = |transform: &'static str| {
        vec![
            ("crm_field", "email"),
            ("app_field", "email"),
            ("direction", "both"),
            ("transform", ""),
            ("crm_field", "firstname"),
            ("app_field", "first_name"),
            ("direction", "both"),
            ("transform", transform),
            ("crm_field", ""),
            ("app_field", ""),
            ("direction", "both"),
            ("transform", ""),
            ("filter", ""),
        ]
    };
    // A transform that does not compile: refused beside its rule, nothing saved.
    for action in [format!("{path}/preview"), path.clone()] {
        let refused = person.post(&action, &row("value.(")).await?;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{action}: {}",
            refused.body
        );
        assert!(
            refused.body.contains(r#"id="mapping-error""#),
            "{}",
            refused.body
        );
        assert!(refused.body.contains("mappings[1]"), "{}", refused.body);
        assert!(
            refused.body.contains(r#"value="value.(""#),
            "what was typed stays"
        );
    }
    assert_eq!(stored(&app, &id).await?, before);

    let preview = person
        .post(&format!("{path}/preview"), &row("value.upperAscii()"))
        .await?;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains(r#"id="mapping-preview""#));
    let names: Vec<&str> = preview
        .body
        .split("<dt>first_name</dt><dd>")
        .skip(1)
        .filter_map(|rest| rest.split('<').next())
        .collect();
    assert!(!names.is_empty(), "{}", preview.body);
    for name in &names {
        assert_eq!(*name, name.to_uppercase(), "previewed with the transform");
    }
    assert_eq!(stored(&app, &id).await?, before, "a preview saves nothing");

    let saved = person.post(&path, &row("value.upperAscii()")).await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let now = stored(&app, &id).await?;
    assert_eq!(now["source"], "custom", "{now}");
    assert_eq!(now["mappings"].as_array().map(Vec::len), Some(2), "{now}");
    assert_eq!(
        now["mappings"][1]["transform"], "value.upperAscii()",
        "{now}"
    );

    let proposed = person.post(&format!("{path}/auto"), &[]).await?;
    assert_eq!(proposed.status, StatusCode::OK, "{}", proposed.body);
    assert!(proposed.body.contains("Nothing is saved until you save"));
    assert_eq!(stored(&app, &id).await?, now, "auto-map saves nothing");

    // Re-apply needs fetched data: a first sync, then the re-apply run.
    let run = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            serde_json::json!({"kind": "full"}),
        )
        .await?;
    wait_run(&app, &run.str("id")?).await?;
    let reapplied = person.post(&format!("{path}/reapply"), &[]).await?;
    assert_eq!(
        reapplied.status,
        StatusCode::SEE_OTHER,
        "{}",
        reapplied.body
    );
    let run_path = reapplied.location.context("to the run")?;
    assert!(run_path.starts_with("/runs/") && run_path.ends_with("?done=reapplied"));
    let run_id = run_path
        .trim_start_matches("/runs/")
        .trim_end_matches("?done=reapplied");
    wait_run(&app, run_id).await?;

    let mut viewer = Person::sign_in(&app, Role::Viewer).await?;
    let read_only = viewer.get(&path).await?;
    assert_eq!(read_only.status, StatusCode::OK);
    for control in ["save-button", "preview-button", "/reapply"] {
        assert!(!read_only.body.contains(control), "a viewer sees {control}");
    }
    let forged = viewer.post(&path, &row("")).await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(stored(&app, &id).await?, now);
    app.finish().await
}

/// The editor's inputs name the check its script calls as a person types; the check
/// answers with the same verdict saving would give, stores nothing, and needs the form
/// token like every post.
async fn expressions_are_checked_as_typed(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Checked").await?;
    let mut person = Person::sign_in(&app, Role::Viewer).await?;
    let editor = person
        .get(&format!("/integrations/{id}/mappings/contacts"))
        .await?;
    assert_eq!(editor.status, StatusCode::OK, "{}", editor.body);
    assert!(
        editor.body.contains(r#"data-check="/mappings/check""#),
        "{}",
        editor.body
    );
    assert!(editor.body.contains(r#"aria-describedby="filter-check""#));
    let before = stored(&app, &id).await?;
    let events = app.event_count().await?;

    for (expression, ok) in [
        ("value.lowerAscii()", true),
        ("", true),
        ("value.(", false),
        ("[1, 2].map(x, x * 2)", false),
    ] {
        let answer = person
            .post("/mappings/check", &[("expression", expression)])
            .await?;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let json: serde_json::Value = serde_json::from_str(&answer.body)?;
        assert_eq!(json["ok"], ok, "{expression}: {json}");
        if !ok {
            let why = json["error"].as_str().context("an error")?;
            assert!(!why.is_empty(), "{json}");
        }
    }
    let long = "a".repeat(20_000);
    let answer = person
        .post("/mappings/check", &[("expression", long.as_str())])
        .await?;
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    assert_eq!(json["ok"], false, "an over-long expression is refused");

    let forged = person
        .post_raw("/mappings/check", &[("expression", "value")])
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no form token");
    assert_eq!(stored(&app, &id).await?, before);
    assert_eq!(app.event_count().await?, events, "checking stores nothing");
    app.finish().await
}
