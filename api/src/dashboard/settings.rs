//! An integration's sync settings as a form: the fields the connect wizard asks for and
//! the integration's settings page edits (direction, frequency and interval, entities,
//! conflict strategy, what deletions do), their errors shown beside them, and the form
//! turned into the API's `sync_config` body so the API's own checks decide.

use super::error::{PageError, PageResult};
use super::integration::view_of;
use super::layout::{csrf_field, page, page_status, Section};
use super::session::{Person, Writing};
use crate::error::ApiError;
use crate::routes::integration_view::{IntegrationView, SyncConfigBody};
use crate::routes::providers::Provider;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};
use syncledger_domain::provider::{deletes_records, find, leads_only, sends_webhooks};
use syncledger_engine::integrations::UpdateIntegration;

pub fn routes() -> Router<AppState> {
    Router::new().route("/integrations/{id}/settings", get(edit).post(save))
}

/// The choices of the frequency select: every value the API accepts. `realtime` is
/// offered only for providers whose webhooks syncledger receives.
const FREQUENCIES: [(&str, &str); 4] = [
    ("interval", "Every N minutes"),
    ("daily", "Once a day"),
    ("realtime", "When the CRM tells us (webhooks)"),
    ("manual", "Only when asked"),
];

/// What a deletion in the app may do in the CRM; `delete_in_crm` only where syncledger
/// can delete records.
const ON_APP_ARCHIVE: [(&str, &str); 2] = [
    ("nothing", "Leave the CRM record"),
    ("delete_in_crm", "Delete it in the CRM"),
];

/// The fields of the form every place that edits sync settings posts.
#[derive(Deserialize, Default, Clone)]
pub struct SyncFields {
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub frequency: String,
    #[serde(default)]
    pub interval_minutes: String,
    #[serde(default)]
    pub entities: Vec<String>,
    #[serde(default)]
    pub conflict_strategy: String,
    #[serde(default)]
    pub on_crm_delete: String,
    #[serde(default)]
    pub on_app_archive: String,
    /// The settings page of an existing integration only: its name...
    #[serde(default)]
    pub name: Option<String>,
    /// ...and the version the page was filled from, sent as `If-Match`.
    #[serde(default)]
    pub version: Option<String>,
}

impl SyncFields {
    /// The form filled with a stored configuration (the API's view of it).
    fn of(config: &Value) -> SyncFields {
        let text = |k: &str| config[k].as_str().unwrap_or_default().to_string();
        SyncFields {
            direction: text("direction"),
            frequency: text("frequency"),
            interval_minutes: config["interval_minutes"]
                .as_u64()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            entities: config["entities"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            conflict_strategy: text("conflict_strategy"),
            on_crm_delete: text("on_crm_delete"),
            on_app_archive: text("on_app_archive"),
            name: None,
            version: None,
        }
    }

    /// The API's `sync_config` body: the posted fields over `base` (what is stored, or
    /// nothing for a new integration), so fields this form does not show are kept.
    pub fn config(&self, mut base: Value) -> Result<Value, ApiError> {
        if !base.is_object() {
            base = json!({});
        }
        base["direction"] = json!(self.direction);
        base["frequency"] = json!(self.frequency);
        base["entities"] = json!(self.entities);
        base["conflict_strategy"] = json!(self.conflict_strategy);
        for (key, value) in [
            ("on_crm_delete", &self.on_crm_delete),
            ("on_app_archive", &self.on_app_archive),
        ] {
            if !value.is_empty() {
                base[key] = json!(value);
            }
        }
        if let Some(map) = base.as_object_mut() {
            map.remove("interval_minutes");
        }
        if self.frequency == "interval" {
            let minutes: u32 = self.interval_minutes.trim().parse().map_err(|_| {
                ApiError::invalid_field(
                    "interval_minutes",
                    "must be a whole number from 15 to 1440",
                )
            })?;
            base["interval_minutes"] = json!(minutes);
        }
        Ok(base)
    }
}

/// The form field an API error names (`sync_config.interval_minutes` →
/// `interval_minutes`). Errors inside a connector spec belong to the spec editor.
pub fn form_field(e: &ApiError) -> Option<&str> {
    e.field.as_deref().map(|f| {
        if f == "spec" || f.starts_with("spec.") || f.starts_with("spec[") {
            "spec"
        } else {
            f.rsplit('.').next().unwrap_or(f)
        }
    })
}

/// The message of `error` when it is about `field`.
pub fn error_for<'a>(error: Option<&'a ApiError>, field: &str) -> Option<&'a str> {
    error
        .filter(|e| form_field(e) == Some(field))
        .map(|e| e.message.as_str())
}

/// The error beside `field` (with its path inside the field when deeper), or nothing.
pub fn field_error(error: Option<&ApiError>, field: &str) -> Markup {
    html! {
        @if let Some(message) = error_for(error, field) {
            p.field-error id={ (field) "-error" } role="alert" {
                @if let Some(path) = error.and_then(|e| e.field.as_deref()).filter(|p| *p != field) {
                    code { (path) } ": "
                }
                (message)
            }
        }
    }
}

/// A labelled select of `options` (value, text) with `chosen` selected.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], chosen: &str) -> Markup {
    html! {
        div {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == chosen] { (text) }
                }
            }
        }
    }
}

/// The fields the API's sync settings are made of, with the choices `provider` supports
/// and errors beside them; `offered` are its entities (all checked on a blank form).
pub fn sync_fields(
    f: &SyncFields,
    provider: &str,
    offered: &[String],
    error: Option<&ApiError>,
) -> Markup {
    let frequencies: Vec<(&str, &str)> = FREQUENCIES
        .into_iter()
        .filter(|(v, _)| *v != "realtime" || sends_webhooks(provider))
        .collect();
    let on_archive: Vec<(&str, &str)> = ON_APP_ARCHIVE
        .into_iter()
        .filter(|(v, _)| *v != "delete_in_crm" || deletes_records(provider))
        .collect();
    let chosen: Vec<&str> = if f.entities.is_empty() {
        offered.iter().map(String::as_str).collect()
    } else {
        f.entities.iter().map(String::as_str).collect()
    };
    // A write-only CRM (Light Blue, ShootQ) has no read API: push is its only direction.
    let directions: &[(&str, &str)] = if leads_only(provider) {
        &[("push", "App → CRM (new records sent as leads)")]
    } else {
        &[
            ("bidirectional", "Both ways"),
            ("pull", "CRM → app (pull)"),
            ("push", "App → CRM (push)"),
        ]
    };
    html! {
        (select("direction", "Direction", directions, &f.direction))
        (field_error(error, "direction"))
        (select("frequency", "When to sync", &frequencies, &f.frequency))
        (field_error(error, "frequency"))
        div {
            label for="interval_minutes" { "Interval in minutes (15 to 1440, for “Every N minutes”)" }
            input #interval_minutes name="interval_minutes" type="number" min="15" max="1440"
                value=(if f.interval_minutes.is_empty() { "60" } else { f.interval_minutes.as_str() })
                aria-invalid=[error_for(error, "interval_minutes").map(|_| "true")];
            (field_error(error, "interval_minutes"))
        }
        fieldset {
            legend { "Entities" }
            @for e in offered {
                label.check {
                    input type="checkbox" name="entities" value=(e) checked[chosen.contains(&e.as_str())];
                    " " (e)
                }
            }
            (field_error(error, "entities"))
        }
        (select("conflict_strategy", "When both sides changed a field", &[("manual_review", "Ask me (review queue)"), ("last_write_wins", "Latest change wins"), ("crm_wins", "The CRM wins"), ("app_wins", "The app wins")], &f.conflict_strategy))
        (field_error(error, "conflict_strategy"))
        (select("on_crm_delete", "When a record is deleted in the CRM", &[("archive_record", "Archive it in the app"), ("unlink", "Keep it in the app, unlinked"), ("keep_and_recreate", "Keep it and create it in the CRM again")], &f.on_crm_delete))
        (field_error(error, "on_crm_delete"))
        (select("on_app_archive", "When a record is archived in the app", &on_archive, &f.on_app_archive))
        (field_error(error, "on_app_archive"))
    }
}

/// The errors this form shows beside a field; any other is shown above the form.
const FIELDS: [&str; 7] = [
    "direction",
    "frequency",
    "interval_minutes",
    "entities",
    "conflict_strategy",
    "on_crm_delete",
    "on_app_archive",
];

/// Whether `error` is shown beside one of the sync fields (else above the form).
pub fn beside_a_field(error: &ApiError, others: &[&str]) -> bool {
    form_field(error).is_some_and(|f| FIELDS.contains(&f) || others.contains(&f))
}

fn edit_markup(
    person: &Person,
    v: &IntegrationView,
    f: &SyncFields,
    error: Option<&ApiError>,
) -> Markup {
    let offered: Vec<String> = find(&v.provider)
        .map(|p| Provider::from(p).entities)
        .unwrap_or_else(|| vec!["contacts".into(), "companies".into()]);
    html! {
        p { a href={ "/integrations/" (v.id) } { "← " (v.name) } }
        h1 { "Sync settings of " (v.name) }
        @if let Some(e) = error.filter(|e| !beside_a_field(e, &["name"])) {
            p.field-error role="alert" #form-error { (e.message) }
        }
        form.stack method="post" action={ "/integrations/" (v.id) "/settings" } #edit-settings {
            (csrf_field(person))
            input type="hidden" name="version" value=(v.version);
            div {
                label for="name" { "Name" }
                input #name name="name" value=(f.name.as_deref().unwrap_or(&v.name)) required maxlength="200"
                    aria-invalid=[error_for(error, "name").map(|_| "true")];
                (field_error(error, "name"))
            }
            (sync_fields(f, &v.provider, &offered, error))
            div { button type="submit" { "Save settings" } " " a href={ "/integrations/" (v.id) } { "Cancel" } }
        }
    }
}

async fn edit(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
) -> PageResult<Response> {
    person.require_write()?;
    let v = view_of(&state, &person, &id).await?;
    let fields = SyncFields::of(&serde_json::to_value(&v.sync_config).unwrap_or_default());
    let body = edit_markup(&person, &v, &fields, None);
    Ok(page(&person, Section::Overview, "Sync settings", body))
}

/// `POST /integrations/{id}/settings`: the API's change of the name and the sync
/// configuration, at the version the page was filled from; a refused value shows the
/// form again with the error beside its field, nothing changed. A change made by someone
/// else since the page was filled is never overwritten: the form comes back with the
/// current settings and says so.
async fn save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<SyncFields>,
) -> PageResult<Response> {
    let person = posted.person;
    let v = view_of(&state, &person, &id).await?;
    let stored = serde_json::to_value(&v.sync_config).unwrap_or_default();
    let expected = match posted.form.version.as_deref().map(str::parse::<i64>) {
        Some(Ok(version)) => Some(version),
        Some(Err(_)) => return Err(PageError(ApiError::bad_request("version: not a number"))),
        None => None,
    };
    let changed = match posted.form.config(stored).and_then(|body| {
        serde_json::from_value::<SyncConfigBody>(body)
            .map_err(|e| ApiError::bad_request(format!("the settings are not valid: {e}")))
            .and_then(SyncConfigBody::into_domain)
    }) {
        Ok(config) => {
            let edit = UpdateIntegration {
                name: posted.form.name.clone(),
                sync_config: Some(config),
                ..UpdateIntegration::default()
            };
            state
                .engine
                .integrations()
                .update(&person.caller.metadata(), &id, edit, expected)
                .await
                .map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    match changed {
        Ok(_) => {
            Ok(Redirect::to(&format!("/integrations/{id}?done=settings-saved")).into_response())
        }
        Err(e) if e.status == StatusCode::PRECONDITION_FAILED => {
            let e = ApiError::new(
                e.status,
                e.code,
                "Someone else changed these settings since this page was opened. They are shown as they are now: make your change again.",
            );
            let v = view_of(&state, &person, &id).await?;
            let current = SyncFields::of(&serde_json::to_value(&v.sync_config).unwrap_or_default());
            let body = edit_markup(&person, &v, &current, Some(&e));
            Ok(page_status(
                e.status,
                &person,
                Section::Overview,
                "Sync settings",
                body,
            ))
        }
        Err(e) if e.status.is_client_error() && e.status != StatusCode::NOT_FOUND => {
            let body = edit_markup(&person, &v, &posted.form, Some(&e));
            Ok(page_status(
                e.status,
                &person,
                Section::Overview,
                "Sync settings",
                body,
            ))
        }
        Err(e) => Err(PageError(e)),
    }
}
