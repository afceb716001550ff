//! The connect wizard over HTTP: provider, settings (errors beside their fields, nothing
//! created), OAuth through the HubSpot sandbox and back to the wizard, the connection
//! test; API keys through masked inputs, never shown again.

use crate::people::Person;
use anyhow::Context;
use reqwest::StatusCode;
use syncledger_domain::Role;
use syncledger_testkit::app::{on_both_backends, Backend, TestApp};
use syncledger_testkit::sandbox;

on_both_backends!(
    the_wizard_connects_hubspot_by_oauth_and_tests_it,
    api_keys_go_in_through_masked_inputs_and_never_come_back,
    credentials_show_when_they_were_set_and_rotated,
    a_template_asks_for_its_connection_parameters,
    a_write_only_crm_offers_push_only
);

async fn integration_count(app: &TestApp) -> anyhow::Result<usize> {
    let list = app.get("/v1/integrations", &app.admin).await?;
    Ok(list.body["data"].as_array().map(Vec::len).unwrap_or(0))
}

async fn the_wizard_connects_hubspot_by_oauth_and_tests_it(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let catalogue = person.get("/connect").await?;
    assert_eq!(catalogue.status, StatusCode::OK, "{}", catalogue.body);
    assert!(catalogue.body.contains(r#"href="/connect/hubspot""#));
    // Tave's and Chatwoot's templates ship: the catalogue does not ask for a spec.
    let tave = catalogue
        .body
        .split(r#"href="/connect/tave""#)
        .nth(1)
        .and_then(|rest| rest.split("</li>").next())
        .unwrap_or_default();
    assert!(tave.contains("template included"), "{tave}");
    let form = person.get("/connect/hubspot").await?;
    assert!(form.body.contains(r#"id="settings""#));
    assert_eq!(
        person.get("/connect/no-such-crm").await?.status,
        StatusCode::NOT_FOUND
    );

    let base_url = sandbox.base_url();
    let mut fields = vec![
        ("name", "Sales"),
        ("direction", "bidirectional"),
        ("frequency", "interval"),
        ("interval_minutes", "5"),
        ("entities", "contacts"),
        ("entities", "companies"),
        ("conflict_strategy", "manual_review"),
        ("base_url", base_url.as_str()),
    ];
    // An interval below 15 minutes: the form again, the error beside its field.
    let refused = person.post("/connect/hubspot", &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains(r#"id="interval_minutes-error""#),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(r#"value="Sales""#),
        "the form keeps what was typed"
    );
    assert_eq!(integration_count(&app).await?, 0);

    fields[3] = ("interval_minutes", "30");
    let made = person.post("/connect/hubspot", &fields).await?;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let auth_path = made.location.context("on to authenticate")?;
    let id = auth_path
        .trim_start_matches("/integrations/")
        .trim_end_matches("/authenticate")
        .to_string();
    let auth = person.get(&auth_path).await?;
    assert!(auth.body.contains(r#"id="oauth""#), "{}", auth.body);

    // The button goes to the provider; the provider comes back to the wizard.
    let to_provider = person
        .post(&format!("/integrations/{id}/oauth"), &[])
        .await?;
    assert_eq!(
        to_provider.status,
        StatusCode::SEE_OTHER,
        "{}",
        to_provider.body
    );
    let authorize = to_provider.location.context("the provider's URL")?;
    assert!(authorize.starts_with(&base_url), "{authorize}");
    let callback = sandbox::approve(&authorize).await?;
    assert!(
        callback.starts_with(&format!("{}/connect/callback?", app.base)),
        "{callback}"
    );
    // The provider's redirect arrives without the SameSite=Strict cookie.
    let mut arriving = Person::new(&app)?;
    let back = arriving.get(callback.trim_start_matches(&app.base)).await?;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let next = format!("/integrations/{id}/test?done=connected");
    assert!(
        back.body.contains(&format!("0;url={next}")),
        "{}",
        back.body
    );
    // Its state is single use.
    let replayed = arriving.get(callback.trim_start_matches(&app.base)).await?;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        replayed.body
    );

    let test_page = person.get(&next).await?;
    assert!(test_page.body.contains("connected"), "{}", test_page.body);
    let tested = person
        .post(&format!("/integrations/{id}/test"), &[])
        .await?;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert!(
        tested.body.contains("The connection works"),
        "{}",
        tested.body
    );

    let shown = person.get(&format!("/integrations/{id}")).await?;
    assert!(shown.body.contains("oauth2"));

    // A custom provider's spec editor: its validation error is shown beside the spec,
    // naming the field inside it, and nothing is created.
    let custom = person.get("/connect/custom").await?;
    assert!(custom.body.contains(r#"id="spec""#), "{}", custom.body);
    let before = integration_count(&app).await?;
    let spec = serde_json::json!({"base_url": "https://api.example.com",
        "auth": {"type": "oauth2", "authorize_url": "https://auth.example.com/authorize",
                 "token_url": "https://auth.example.com/token"},
        "contacts": {"list": {"path": "contacts", "records_path": "items", "id_path": "id",
            "updated_at_path": "updated"}}})
    .to_string();
    let bad = person
        .post(
            "/connect/custom",
            &[
                ("name", "Studio"),
                ("direction", "pull"),
                ("frequency", "manual"),
                ("entities", "contacts"),
                ("conflict_strategy", "crm_wins"),
                ("spec", spec.as_str()),
            ],
        )
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains(r#"id="spec-error""#), "{}", bad.body);
    assert!(
        bad.body.contains("contacts.list.path: must start with"),
        "{}",
        bad.body
    );
    assert_eq!(integration_count(&app).await?, before);
    let stored = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    assert_eq!(stored.str("status")?, "connected");
    assert_eq!(stored.body["sync_config"]["interval_minutes"], 30);
    app.finish().await
}

async fn api_keys_go_in_through_masked_inputs_and_never_come_back(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let id = app.create_integration(&app.admin, "Keyed").await?;
    let mut person = Person::sign_in(&app, Role::Operator).await?;
    let auth = person
        .get(&format!("/integrations/{id}/authenticate"))
        .await?;
    assert_eq!(auth.status, StatusCode::OK, "{}", auth.body);
    assert!(
        auth.body
            .contains(r#"id="api_key" name="api_key" type="password""#),
        "{}",
        auth.body
    );
    let empty = person
        .post(
            &format!("/integrations/{id}/credentials"),
            &[("type", "api_key"), ("api_key", " ")],
        )
        .await?;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let key = "pd-key-3f9a1c77e2";
    let saved = person
        .post(
            &format!("/integrations/{id}/credentials"),
            &[("type", "api_key"), ("api_key", key)],
        )
        .await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    for path in [
        format!("/integrations/{id}"),
        format!("/integrations/{id}/authenticate"),
        format!("/integrations/{id}/test"),
        "/".to_string(),
    ] {
        let page = person.get(&path).await?;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(!page.body.contains(key), "{path} shows the key");
    }
    let shown = person.get(&format!("/integrations/{id}")).await?;
    assert!(shown.body.contains("api_key"), "the kind is shown");
    app.finish().await
}

/// A credential is shown only by its kind and dates: set when connected, then rotated
/// when the run after an expired access token refreshed it.
async fn credentials_show_when_they_were_set_and_rotated(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let sandbox = sandbox::hubspot(2).await;
    let id =
        syncledger_testkit::app::connect(&app, "hubspot", &sandbox.base_url(), "pull", "crm_wins")
            .await?;
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let set_at = shown.str("credentials_set_at")?;
    assert!(!set_at.is_empty(), "{}", shown.text);
    assert!(
        shown.body["credentials_rotated_at"].is_null(),
        "{}",
        shown.text
    );
    let mut person = Person::sign_in(&app, Role::Viewer).await?;
    let page = person.get(&format!("/integrations/{id}")).await?;
    assert!(
        page.body.contains(r#"id="credentials-set""#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("not since they were set"),
        "{}",
        page.body
    );

    reqwest::Client::new()
        .post(format!("{}/_sandbox/tokens/expire", sandbox.base_url()))
        .send()
        .await?
        .error_for_status()?;
    let run = app
        .post(
            &format!("/v1/integrations/{id}/sync-runs"),
            &app.admin,
            serde_json::json!({"kind": "full"}),
        )
        .await?;
    let ended = syncledger_testkit::app::wait_run(&app, &run.str("id")?).await?;
    assert_eq!(ended["status"], "completed", "{ended}");
    let shown = app
        .get(&format!("/v1/integrations/{id}"), &app.admin)
        .await?;
    let rotated_at = shown.str("credentials_rotated_at")?;
    assert!(rotated_at >= set_at, "{}", shown.text);
    assert_eq!(
        shown.str("credentials_set_at")?,
        set_at,
        "a rotation keeps it"
    );
    let page = person.get(&format!("/integrations/{id}")).await?;
    assert!(
        page.body.contains(r#"id="credentials-rotated"><time"#),
        "{}",
        page.body
    );
    sandbox.shutdown().await;
    app.finish().await
}

/// Chatwoot's shipped template needs the account id: the wizard asks for it beside the
/// name, refuses a malformed one beside its input (nothing created), and creates the
/// integration with it (the form used to have no input for it, so the wizard could not
/// create a Chatwoot integration at all).
async fn a_template_asks_for_its_connection_parameters(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let form = person.get("/connect/chatwoot").await?;
    assert!(
        form.body.contains(r#"name="parameter_values""#),
        "{}",
        form.body
    );
    assert!(form.body.contains("account_id"), "{}", form.body);
    let mut fields = vec![
        ("name", "Support inbox"),
        ("direction", "pull"),
        ("frequency", "manual"),
        ("entities", "contacts"),
        ("conflict_strategy", "crm_wins"),
        ("parameter_names", "account_id"),
        ("parameter_values", "4 2/../x"),
    ];
    let refused = person.post("/connect/chatwoot", &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains(r#"id="account_id-error""#),
        "{}",
        refused.body
    );
    assert_eq!(integration_count(&app).await?, 0);
    fields[6] = ("parameter_values", "42");
    let made = person.post("/connect/chatwoot", &fields).await?;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let list = app.get("/v1/integrations", &app.admin).await?;
    let providers: Vec<&str> = list.body["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["provider"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(providers, ["chatwoot"]);
    app.finish().await
}

/// Light Blue and ShootQ: "leads only" in the catalogue, push as the only direction, and
/// ShootQ's form link code asked beside the name (a pull posted anyway is refused beside
/// its field).
async fn a_write_only_crm_offers_push_only(backend: Backend) -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(backend).await? else {
        return Ok(());
    };
    let mut person = Person::sign_in(&app, Role::Admin).await?;
    let catalogue = person.get("/connect").await?;
    let shootq = catalogue
        .body
        .split(r#"href="/connect/shootq""#)
        .nth(1)
        .and_then(|rest| rest.split("</li>").next())
        .unwrap_or_default();
    assert!(shootq.contains("leads only (push)"), "{shootq}");
    let form = person.get("/connect/shootq").await?;
    assert!(form.body.contains("form_link_code"), "{}", form.body);
    assert!(form.body.contains(r#"value="push""#), "{}", form.body);
    assert!(!form.body.contains(r#"value="pull""#), "{}", form.body);
    let mut fields = vec![
        ("name", "Website form"),
        ("direction", "pull"),
        ("frequency", "manual"),
        ("entities", "contacts"),
        ("conflict_strategy", "app_wins"),
        ("parameter_names", "form_link_code"),
        ("parameter_values", "studio-form-1"),
    ];
    let refused = person.post("/connect/shootq", &fields).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.body.contains("no read API"), "{}", refused.body);
    assert_eq!(integration_count(&app).await?, 0);
    fields[1] = ("direction", "push");
    let made = person.post("/connect/shootq", &fields).await?;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let list = app.get("/v1/integrations", &app.admin).await?;
    assert_eq!(list.body["data"][0]["provider"], "shootq", "{}", list.text);
    assert_eq!(list.body["data"][0]["status"], "connected", "{}", list.text);
    app.finish().await
}
