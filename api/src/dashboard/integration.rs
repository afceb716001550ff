//! An integration's page: its settings and credentials (their kind and dates, never the
//! secret), pause/resume, sync now, disconnect, and its latest runs.

use super::error::{PageError, PageResult};
use super::layout::{badge, csrf_field, notice, page, post_button, time_str, value, Section};
use super::runs::runs_table;
use super::session::{NoFields, Person, Writing};
use crate::routes::integration_view::IntegrationView;
use crate::routes::sync_runs::{view, RunView};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::BTreeMap;
use syncledger_domain::merge::Side;
use syncledger_engine::run_control::StartRequest;

/// The integration `id` of the signed-in person's workspace, as the API shows it (404
/// when it is not theirs).
pub(super) async fn view_of(
    state: &AppState,
    person: &Person,
    id: &str,
) -> PageResult<IntegrationView> {
    let found = state
        .engine
        .integrations()
        .get(&person.caller.workspace_id, id)
        .await?;
    Ok(IntegrationView::from(found))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/integrations/{id}", get(show))
        .route("/integrations/{id}/pause", post(pause))
        .route("/integrations/{id}/resume", post(resume))
        .route(
            "/integrations/{id}/disconnect",
            get(confirm_disconnect).post(disconnect),
        )
        .route("/integrations/{id}/sync", post(sync_now))
        .route("/integrations/{id}/rules", post(add_rule))
        .route("/integrations/{id}/rules/remove", post(remove_rule))
}

/// The integration's "always use this side" rules (field → side), each removable, and a
/// form to add one, for writers.
fn rules_markup(person: &Person, id: &str, rules: &BTreeMap<String, Side>) -> Markup {
    let side = |s: &Side| {
        if *s == Side::App {
            "the app"
        } else {
            "the CRM"
        }
    };
    html! {
        div #rules {
            @if rules.is_empty() {
                p { "No rules: conflicts follow the strategy. A conflict's page can add one for its field." }
            } @else {
                div.table-wrap { table #rules-table {
                    thead { tr { th { "Field" } th { "Conflicts use" } @if person.can_write() { th { span.visually-hidden { "Actions" } } } } }
                    tbody {
                        @for (field, s) in rules {
                            tr {
                                td { code { (field) } }
                                td { (side(s)) }
                                @if person.can_write() {
                                    td {
                                        form.inline method="post" action={ "/integrations/" (id) "/rules/remove" } {
                                            (csrf_field(person))
                                            input type="hidden" name="field" value=(field);
                                            button.danger type="submit" aria-label={ "Remove the rule for " (field) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            @if person.can_write() {
                form.inline method="post" action={ "/integrations/" (id) "/rules" } #add-rule {
                    (csrf_field(person))
                    label for="rule-field" { "Field " }
                    input #rule-field name="field" required maxlength="200" placeholder="e.g. phone";
                    label for="rule-use" { " always uses " }
                    select #rule-use name="use" {
                        option value="crm" { "the CRM" }
                        option value="app" { "the app" }
                    }
                    " " button type="submit" { "Add rule" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RuleForm {
    field: String,
    #[serde(rename = "use")]
    side: Option<Side>,
}

/// `POST /integrations/{id}/rules`: conflicts on the field always use a side (the API's
/// `PUT …/conflict-rules/{field}`; its open conflicts are settled now).
async fn add_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<RuleForm>,
) -> PageResult<Response> {
    let side = posted
        .form
        .side
        .ok_or_else(|| PageError::bad_request("use must be app or crm"))?;
    // The domain checks the field's name (validate_rule_field).
    let field = posted.form.field.trim();
    let meta = posted.person.caller.metadata();
    state
        .engine
        .conflicts()
        .set_rule(&meta, &id, field, side)
        .await?;
    Ok(Redirect::to(&format!("/integrations/{id}?done=rule-added#always-use")).into_response())
}

/// `POST /integrations/{id}/rules/remove`: the field's conflicts follow the strategy again.
async fn remove_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<RuleForm>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    state
        .engine
        .conflicts()
        .remove_rule(&meta, &id, posted.form.field.trim())
        .await?;
    Ok(Redirect::to(&format!("/integrations/{id}?done=rule-removed#always-use")).into_response())
}

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    done: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> PageResult<Response> {
    let ws = &person.caller.workspace_id;
    let v = view_of(&state, &person, &id).await?;
    let runs: Vec<RunView> = state
        .engine
        .sync_runs()
        .list(ws, &id, None, None, 10)
        .await?
        .iter()
        .map(view)
        .collect();
    let rules = state.engine.conflicts().rules(ws, &id).await?;
    let config = serde_json::to_value(&v.sync_config).unwrap_or_default();
    let live = v.status != "disconnected";
    let body = html! {
        (notice(q.done.as_deref()))
        div.heading {
            h1 { (v.name) " " small { (v.provider) } }
            (badge(&v.status))
        }
        @if let Some(reason) = &v.last_error { p.field-error role="alert" { (reason) } }
        @if person.can_write() && live {
            div.actions #integration-actions {
                form.inline method="post" action={ "/integrations/" (v.id) "/sync" } #sync-now {
                    (csrf_field(&person))
                    label for="kind" { "Sync now: " }
                    select #kind name="kind" {
                        option value="incremental" { "incremental" }
                        option value="full" { "full" }
                        option value="push" { "push" }
                    }
                    button type="submit" { "Sync now" }
                }
                @if v.status == "paused" {
                    (post_button(&person, &format!("/integrations/{}/resume", v.id), "Resume", ""))
                } @else {
                    (post_button(&person, &format!("/integrations/{}/pause", v.id), "Pause", ""))
                }
                a.button.danger href={ "/integrations/" (v.id) "/disconnect" } { "Disconnect…" }
            }
        }
        h2 { "Sync settings" }
        @if person.can_write() && live {
            p { a.button href={ "/integrations/" (v.id) "/settings" } #edit-settings-link { "Edit settings" } }
        }
        dl.facts #settings {
            @if let Some(map) = config.as_object() {
                @for (k, val) in map { dt { (k.replace('_', " ")) } dd { (value(val)) } }
            }
        }
        h2 { "Field mappings" }
        p #mapping-links {
            @for e in v.sync_config.entities.iter() {
                @let name = e.as_str();
                a.button href={ "/integrations/" (v.id) "/mappings/" (name) } { "Edit " (name) " mappings" } " "
            }
        }
        h2 #always-use { "Always-use rules" }
        (rules_markup(&person, &v.id, &rules))
        h2 #credentials { "Credentials" }
        dl.facts {
            dt { "Kind" } dd #credential-kind { (v.credential_kind.as_deref().unwrap_or("none yet")) }
            @if let Some(at) = &v.credentials_set_at { dt { "Set" } dd #credentials-set { (time_str(at)) } }
            @if v.credential_kind.is_some() {
                dt { "Rotated" } dd #credentials-rotated { @match &v.credentials_rotated_at { Some(at) => (time_str(at)), None => "not since they were set" } }
            }
            @if let Some(at) = &v.credentials_expire_at { dt { "Access expires" } dd { (time_str(at)) } }
            dt { "Last sync" } dd { @match &v.last_sync_at { Some(at) => (time_str(at)), None => "never" } }
            dt { "Next sync" } dd { @match &v.next_sync_at { Some(at) => (time_str(at)), None => "not scheduled" } }
        }
        h2 { "Latest runs" }
        div #latest-runs data-live {
            @if runs.is_empty() { p { "No runs yet." } } @else { (runs_table(&runs)) }
        }
        p { a href={ "/integrations/" (v.id) "/runs" } { "All runs" } }
    };
    Ok(page(&person, Section::Overview, &v.name, body))
}

async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    state.engine.integrations().pause(&meta, &id).await?;
    Ok(Redirect::to(&format!("/integrations/{id}?done=paused")).into_response())
}

async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    state.engine.integrations().resume(&meta, &id).await?;
    Ok(Redirect::to(&format!("/integrations/{id}?done=resumed")).into_response())
}

/// Disconnecting has a page of its own, so it is confirmed even without JavaScript.
async fn confirm_disconnect(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
) -> PageResult<Response> {
    person.require_write()?;
    let v = view_of(&state, &person, &id).await?;
    let body = html! {
        h1 { "Disconnect " (v.name) "?" }
        p { "Its runs stop and its credentials are discarded. Its records, history and audit trail are kept." }
        form method="post" action={ "/integrations/" (v.id) "/disconnect" } #confirm-disconnect {
            (csrf_field(&person))
            button.danger type="submit" { "Disconnect" }
            " " a href={ "/integrations/" (v.id) } { "Keep it" }
        }
    };
    Ok(page(&person, Section::Overview, "Disconnect", body))
}

async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    state.engine.integrations().disconnect(&meta, &id).await?;
    Ok(Redirect::to(&format!("/integrations/{id}?done=disconnected")).into_response())
}

#[derive(Deserialize)]
struct SyncForm {
    #[serde(default)]
    kind: Option<String>,
}

async fn sync_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<SyncForm>,
) -> PageResult<Response> {
    let kind = posted.form.kind.filter(|k| !k.is_empty());
    if kind
        .as_deref()
        .is_some_and(|k| !matches!(k, "full" | "incremental" | "push"))
    {
        return Err(PageError::bad_request(
            "kind must be full, incremental or push",
        ));
    }
    let request = StartRequest {
        kind,
        entities: None,
        direction: None,
        import_historical: None,
    };
    let run = state
        .engine
        .sync_runs()
        .start(&posted.person.caller.metadata(), &id, &request)
        .await?;
    Ok(Redirect::to(&format!("/runs/{}?done=started", view(&run).id)).into_response())
}
