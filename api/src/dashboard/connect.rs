//! The connect wizard: pick a provider (searchable), name the integration and set its sync,
//! authenticate (OAuth: to the provider and back here; API key or basic: masked inputs),
//! test the connection, done. The integration is created by the same use case and the
//! same checks as `POST /v1/integrations`; errors are shown beside their fields.
//!
//! OAuth comes back to `/connect/callback` (register `{public URL}/connect/callback` as a
//! redirect URI of the provider app beside `/v1/oauth/callback`). That navigation starts
//! at the provider, so the browser does not send the SameSite=Strict session cookie with
//! it: the callback is authorised by the single-use OAuth state, as the API's is, and then
//! moves the browser on with a same-site navigation that does carry the cookie.

use super::error::{PageError, PageResult};
use super::integration::view_of;
use super::layout::{badge, csrf_field, page, page_status, same_site_redirect, Section};
use super::session::{NoFields, Person, Writing};
use super::settings::{beside_a_field, error_for, field_error, sync_fields, SyncFields};
use crate::auth::RequestId;
use crate::error::ApiError;
use crate::routes::integration_view::IntegrationView;
use crate::routes::integrations::CreateIntegration;
use crate::routes::providers::Provider;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use syncledger_crm::custom::template_text;
use syncledger_domain::provider::{catalogue, find};
use syncledger_engine::integrations::StaticCredentials;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/connect", get(pick))
        .route("/connect/callback", get(callback))
        .route("/connect/{provider}", get(settings_form).post(create))
        .route("/integrations/{id}/authenticate", get(authenticate))
        .route("/integrations/{id}/oauth", post(start_oauth))
        .route("/integrations/{id}/credentials", post(credentials))
        .route("/integrations/{id}/test", get(test_page).post(test))
}

async fn pick(person: Person) -> PageResult<Response> {
    person.require_write()?;
    let providers: Vec<Provider> = catalogue().iter().map(Provider::from).collect();
    let body = html! {
        h1 { "Connect a CRM" }
        p.steps { strong { "1. Provider" } " → 2. Settings → 3. Authenticate → 4. Test" }
        div {
            label for="provider-search" { "Search providers" }
            input #provider-search type="search" data-filter="#providers li" placeholder="e.g. HubSpot";
        }
        ul.cards #providers {
            @for p in &providers {
                li.card {
                    h2 { a href={ "/connect/" (p.id) } { (p.name) } }
                    p.meta { (p.auth_type.replace('_', " ")) " · " (p.entities.join(", "))
                        @if template_text(&p.id).is_some() { " · template included" }
                        @else if p.auth_type == "none" { " · no API: CSV import or inbound webhook" }
                        @else if p.leads_only { " · leads only (push)" }
                        @else if p.via_custom_spec { " · needs a connector spec" } }
                }
            }
        }
    };
    Ok(page(&person, Section::Connect, "Connect a CRM", body))
}

/// The settings form's fields as posted (also what it is shown again with).
#[derive(Deserialize, Default, Clone)]
struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    frequency: String,
    #[serde(default)]
    interval_minutes: String,
    #[serde(default)]
    entities: Vec<String>,
    #[serde(default)]
    conflict_strategy: String,
    #[serde(default)]
    on_crm_delete: String,
    #[serde(default)]
    on_app_archive: String,
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    spec: String,
    /// The connection parameters the provider's template or spec declares, as pairs in
    /// the form's order: each name (a hidden field) with the value typed beside it.
    #[serde(default)]
    parameter_names: Vec<String>,
    #[serde(default)]
    parameter_values: Vec<String>,
}

impl SettingsForm {
    /// The value typed for parameter `name`, if any.
    fn parameter(&self, name: &str) -> &str {
        self.parameter_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.parameter_values.get(i))
            .map_or("", String::as_str)
    }

    /// Its sync settings, as every settings form has them.
    fn sync(&self) -> SyncFields {
        SyncFields {
            direction: self.direction.clone(),
            frequency: self.frequency.clone(),
            interval_minutes: self.interval_minutes.clone(),
            entities: self.entities.clone(),
            conflict_strategy: self.conflict_strategy.clone(),
            on_crm_delete: self.on_crm_delete.clone(),
            on_app_archive: self.on_app_archive.clone(),
            ..SyncFields::default()
        }
    }
}

fn settings_markup(
    person: &Person,
    p: &Provider,
    f: &SettingsForm,
    error: Option<&ApiError>,
) -> Markup {
    // What the provider's shipped template asks for at creation (Chatwoot's account id).
    let parameters = syncledger_engine::providers::describe(&p.id)
        .ok()
        .flatten()
        .map(|d| d.parameters)
        .unwrap_or_default();
    let mut beside = vec!["name", "base_url", "spec"];
    beside.extend(parameters.iter().map(|d| d.name.as_str()));
    let general = error.filter(|e| !beside_a_field(e, &beside));
    html! {
        p { a href="/connect" { "← Providers" } }
        h1 { "Connect " (p.name) }
        p.steps { "1. Provider → " strong { "2. Settings" } " → 3. Authenticate → 4. Test" }
        @if let Some(e) = general { p.field-error role="alert" #form-error { (e.message) } }
        form.stack method="post" action={ "/connect/" (p.id) } #settings {
            (csrf_field(person))
            div {
                label for="name" { "Name" }
                input #name name="name" value=(f.name) required maxlength="200"
                    aria-invalid=[error_for(error, "name").map(|_| "true")];
                (field_error(error, "name"))
            }
            @for d in &parameters {
                div {
                    input type="hidden" name="parameter_names" value=(d.name);
                    label for={ "parameter-" (d.name) } {
                        (d.description.clone().unwrap_or_else(|| d.name.clone()))
                        " (" code { (d.name) } ")"
                    }
                    input id={ "parameter-" (d.name) } name="parameter_values" value=(f.parameter(&d.name)) required
                        aria-invalid=[error_for(error, &d.name).map(|_| "true")];
                    (field_error(error, &d.name))
                }
            }
            (sync_fields(&f.sync(), &p.id, &p.entities, error))
            details open[!f.base_url.is_empty() || (p.via_custom_spec && p.auth_type != "none")] {
                summary { "Advanced" }
                div {
                    label for="base_url" { "API base URL (optional)" }
                    input #base_url name="base_url" value=(f.base_url) placeholder="https://…";
                    (field_error(error, "base_url"))
                }
                @if p.via_custom_spec {
                    div {
                        label for="spec" {
                            @if template_text(&p.id).is_some() {
                                "Connector spec (JSON or TOML; optional: replaces the shipped template)"
                            } @else if p.auth_type == "none" {
                                "Connector spec (leave empty: the vendor publishes no API; records come by CSV import or inbound webhook)"
                            } @else { "Connector spec (JSON or TOML)" }
                        }
                        textarea #spec name="spec" rows="14" spellcheck="false" { (f.spec) }
                        (field_error(error, "spec"))
                    }
                }
            }
            div { button type="submit" { "Create and continue" } }
        }
    }
}

fn provider(id: &str) -> PageResult<Provider> {
    find(id)
        .map(Provider::from)
        .ok_or_else(|| PageError::not_found("provider"))
}

async fn settings_form(person: Person, Path(id): Path<String>) -> PageResult<Response> {
    person.require_write()?;
    let p = provider(&id)?;
    let body = settings_markup(&person, &p, &SettingsForm::default(), None);
    Ok(page(&person, Section::Connect, "Connect", body))
}

/// The form as the API's request body, so the API's checks apply unchanged.
fn request(provider: &str, f: &SettingsForm) -> Result<CreateIntegration, ApiError> {
    let config = f.sync().config(Value::Null)?;
    let mut body = json!({"provider": provider, "name": f.name.trim(), "sync_config": config});
    if !f.base_url.trim().is_empty() {
        body["base_url"] = json!(f.base_url.trim());
    }
    let parameters: serde_json::Map<String, Value> = f
        .parameter_names
        .iter()
        .zip(&f.parameter_values)
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(n, v)| (n.clone(), json!(v.trim())))
        .collect();
    if !parameters.is_empty() {
        body["parameters"] = Value::Object(parameters);
    }
    if !f.spec.trim().is_empty() {
        // JSON when it parses as JSON, else the text (TOML), as the API accepts both.
        body["spec"] = serde_json::from_str::<Value>(&f.spec)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::String(f.spec.clone()));
    }
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("{e}")))
}

async fn create(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<SettingsForm>,
) -> PageResult<Response> {
    let person = posted.person;
    let p = provider(&id)?;
    let form = posted.form;
    let made = match request(&p.id, &form).and_then(CreateIntegration::into_new) {
        Ok(new) => state
            .engine
            .integrations()
            .create(&person.caller.metadata(), new)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match made {
        Ok(created) => {
            let v = IntegrationView::from(created);
            Ok(Redirect::to(&format!("/integrations/{}/authenticate", v.id)).into_response())
        }
        // Shown again with the error beside its field; a plan limit is a message here,
        // not an error page.
        Err(e) if e.status.is_client_error() && e.status != StatusCode::NOT_FOUND => {
            let body = settings_markup(&person, &p, &form, Some(&e));
            Ok(page_status(
                e.status,
                &person,
                Section::Connect,
                "Connect",
                body,
            ))
        }
        Err(e) => Err(PageError(e)),
    }
}

async fn authenticate(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
) -> PageResult<Response> {
    person.require_write()?;
    let v = view_of(&state, &person, &id).await?;
    let p = provider(&v.provider)?;
    let body = html! {
        p { a href={ "/integrations/" (v.id) } { "← " (v.name) } }
        h1 { "Authenticate " (v.name) }
        p.steps { "1. Provider → 2. Settings → " strong { "3. Authenticate" } " → 4. Test" }
        @if let Some(kind) = &v.credential_kind {
            p { "Credentials of kind " strong { (kind) } " are stored. Replacing them here rotates them." }
        }
        @if p.auth_type == "oauth2" {
            p { "You will approve access at " (p.name) " and come back here." }
            form method="post" action={ "/integrations/" (v.id) "/oauth" } #oauth {
                (csrf_field(&person))
                button type="submit" { "Connect with " (p.name) }
            }
            details {
                summary { "Use an API key (private app token) instead" }
                (api_key_form(&person, &v.id))
            }
        } @else if p.auth_type == "basic" {
            form.stack method="post" action={ "/integrations/" (v.id) "/credentials" } #credentials {
                (csrf_field(&person))
                input type="hidden" name="type" value="basic";
                div { label for="username" { "Username" } input #username name="username" autocomplete="off" required; }
                div { label for="password" { "Password" } input #password name="password" type="password" autocomplete="new-password" required; }
                div { button type="submit" { "Save and continue" } }
            }
        } @else if p.auth_type == "none" {
            // A vendor without an API: nothing to authenticate to.
            p { (p.ways_in_reason) "." }
            p {
                "Its records come in by CSV import (" code { "POST /v1/integrations/" (v.id) "/imports" }
                " or " code { "syncledger import --integration " (v.id) " FILE.csv" } "), or through its inbound webhook ("
                code { "POST /v1/integrations/" (v.id) "/inbound-webhook" } " makes its URL and secret)."
            }
            p { a href={ "/integrations/" (v.id) } { "Go to the integration" } }
        } @else {
            (api_key_form(&person, &v.id))
        }
    };
    Ok(page(&person, Section::Connect, "Authenticate", body))
}

/// Masked: the key is typed once and never shown again, here or anywhere.
fn api_key_form(person: &Person, id: &str) -> Markup {
    html! {
        form.stack method="post" action={ "/integrations/" (id) "/credentials" } #credentials {
            (csrf_field(person))
            input type="hidden" name="type" value="api_key";
            div { label for="api_key" { "API key" } input #api_key name="api_key" type="password" autocomplete="new-password" required; }
            div { button type="submit" { "Save and continue" } }
        }
    }
}

async fn start_oauth(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let redirect_uri = format!("{}/connect/callback", state.public_url);
    let url = state
        .engine
        .oauth()
        .connect(&posted.person.caller.metadata(), &id, &redirect_uri)
        .await?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
    #[serde(rename = "accounts-server")]
    accounts_server: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    Query(q): Query<CallbackQuery>,
) -> PageResult<Response> {
    let redirect = syncledger_engine::oauth::Redirect {
        code: q.code,
        state: q.state,
        error: q.error,
        iss: q.iss,
        accounts_server: q.accounts_server,
    };
    let connected = state
        .engine
        .oauth()
        .callback(redirect, &request_id.0)
        .await?;
    let v = IntegrationView::from(connected.integration);
    Ok(same_site_redirect(&format!(
        "/integrations/{}/test?done=connected",
        v.id
    )))
}

#[derive(Deserialize)]
struct CredentialsForm {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<CredentialsForm>,
) -> PageResult<Response> {
    let f = posted.form;
    let given = match f.kind.as_str() {
        "api_key" if !f.api_key.trim().is_empty() => {
            StaticCredentials::ApiKey(SecretString::from(f.api_key))
        }
        "basic" if !f.username.trim().is_empty() && !f.password.is_empty() => {
            StaticCredentials::Basic {
                username: f.username,
                password: SecretString::from(f.password),
            }
        }
        _ => {
            return Err(PageError::bad_request(
                "fill in the credentials: an API key, or a username and a password",
            ))
        }
    };
    state
        .engine
        .integrations()
        .set_credentials(&posted.person.caller.metadata(), &id, given)
        .await?;
    Ok(Redirect::to(&format!("/integrations/{id}/test?done=connected")).into_response())
}

#[derive(Deserialize, Default)]
struct Done {
    #[serde(default)]
    done: Option<String>,
}

fn test_markup(person: &Person, v: &IntegrationView, result: Option<(bool, &str)>) -> Markup {
    html! {
        p { a href={ "/integrations/" (v.id) } { "← " (v.name) } }
        h1 { "Test " (v.name) }
        p.steps { "1. Provider → 2. Settings → 3. Authenticate → " strong { "4. Test" } }
        p { "Status: " (badge(&v.status)) @if let Some(kind) = &v.credential_kind { " · credentials: " (kind) } }
        @if let Some((ok, detail)) = result {
            section.panel #test-result role="status" {
                @if ok { p { (badge("ok")) " The connection works. " (detail) } }
                @else { p { (badge("failed")) " The connection failed: " (detail) } }
            }
        }
        form.inline method="post" action={ "/integrations/" (v.id) "/test" } #test {
            (csrf_field(person))
            button type="submit" { "Test the connection" }
        }
        p { a.button href={ "/integrations/" (v.id) } { "Done" } }
    }
}

async fn test_page(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> PageResult<Response> {
    person.require_write()?;
    let v = view_of(&state, &person, &id).await?;
    let body =
        html! { (super::layout::notice(q.done.as_deref())) (test_markup(&person, &v, None)) };
    Ok(page(&person, Section::Connect, "Test", body))
}

async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let person = posted.person;
    let tested = state
        .engine
        .oauth()
        .test(&person.caller.metadata(), &id)
        .await?;
    let v = IntegrationView::from(tested.integration);
    let body = test_markup(&person, &v, Some((tested.ok, &tested.detail)));
    Ok(page(&person, Section::Connect, "Test", body))
}
