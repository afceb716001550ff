//! Conflicts: the review queue (filters and paging, as the JSON API's list) and a
//! conflict's page with the base, app and CRM values side by side and, for writers, the
//! decisions: use the app's value, use the CRM's, set an edited value, ignore, or always
//! use one side for the field (the integration's rule). Every decision is the same engine
//! use case the JSON routes call.

use super::error::PageResult;
use super::layout::{
    badge, csrf_field, empty_state, notice, page, pager, post_button, time_str, value, Section,
};
use super::session::{NoFields, Person, Writing};
use crate::extract::{List, Page};
use crate::routes::conflicts::{ConflictView, ResolutionKind, ResolveConflict};
use crate::routes::records::FieldView;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::merge::Side;
use syncledger_engine::conflicts::Filter;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conflicts", get(list))
        .route("/conflicts/{id}", get(show))
        .route("/conflicts/{id}/resolve", post(resolve))
        .route("/conflicts/{id}/ignore", post(ignore))
        .route("/conflicts/{id}/rule", post(add_rule))
        .route("/conflicts/{id}/rule/remove", post(remove_rule))
}

/// The queue's filters, as the GET form sends them (empty means "any").
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    integration_id: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    record_id: String,
    #[serde(default)]
    cursor: Option<String>,
}

/// `Some(trimmed)` unless blank.
fn given(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn filters(q: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/conflicts" #conflict-filters {
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    @for (v, label) in [("", "All"), ("open", "Open"), ("resolved", "Resolved"), ("ignored", "Ignored"), ("superseded", "Superseded")] {
                        option value=(v) selected[q.status == v] { (label) }
                    }
                }
            }
            div {
                label for="entity" { "Entity" }
                select #entity name="entity" {
                    @for (v, label) in [("", "All"), ("contacts", "Contacts"), ("companies", "Companies")] {
                        option value=(v) selected[q.entity == v] { (label) }
                    }
                }
            }
            div {
                label for="integration_id" { "Integration id" }
                input #integration_id name="integration_id" value=(q.integration_id);
            }
            div {
                label for="record_id" { "Record id" }
                input #record_id name="record_id" value=(q.record_id);
            }
            div { button type="submit" { "Filter" } }
        }
    }
}

/// `GET /conflicts`: the queue, oldest first, filtered as the API's list is.
async fn list(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    let paging = Page {
        limit: Some(PER_PAGE),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let (after_time, after_id) = paging.keyset()?;
    let entity = given(&q.entity)
        .map(|e| crate::extract::entity("entity", Some(&e)))
        .transpose()?;
    let filter = Filter {
        integration_id: given(&q.integration_id),
        status: given(&q.status),
        entity: entity.map(|e| e.as_str().to_owned()),
        record_id: given(&q.record_id),
    };
    let rows = state
        .engine
        .conflicts()
        .list(
            &person.caller.workspace_id,
            &filter,
            (&after_time, &after_id),
            PER_PAGE + 1,
        )
        .await?;
    let found = List::page(rows, PER_PAGE, |c| format!("{}|{}", c.detected_at, c.id))
        .map(ConflictView::from);
    let filtered = [&q.status, &q.integration_id, &q.entity, &q.record_id]
        .iter()
        .any(|v| !v.trim().is_empty());
    let params = [
        ("status", q.status.clone()),
        ("integration_id", q.integration_id.clone()),
        ("entity", q.entity.clone()),
        ("record_id", q.record_id.clone()),
    ];
    let body = html! {
        h1 { "Conflicts" }
        (filters(&q))
        @if found.data.is_empty() {
            @if filtered {
                (empty_state("No conflicts match these filters", html! {
                    a href="/conflicts" { "Clear the filters" } " to see the whole queue."
                }))
            } @else {
                (empty_state("No conflicts", html! {
                    "Nothing waits for a decision. Conflicts appear here when a sync finds a field changed on both sides; "
                    a href="/" { "run a sync" } " to check again."
                }))
            }
        } @else {
            div.table-wrap { table #conflicts {
                thead { tr { th { "Field" } th { "Record" } th { "Entity" } th { "App" } th { "CRM" } th { "Status" } th { "Detected" } } }
                tbody {
                    @for c in &found.data {
                        tr {
                            td { a href={ "/conflicts/" (c.id) } { code { (c.field) } } }
                            td { a href={ "/records/" (c.record_id) } { code { (c.record_id.get(..8).unwrap_or(&c.record_id)) } } }
                            td { (c.entity) }
                            td { (opt(&c.app_value)) }
                            td { (opt(&c.crm_value)) }
                            td { (badge(&c.status)) }
                            td { (time_str(&c.detected_at)) }
                        }
                    }
                }
            } }
        }
        (pager("/conflicts", &params, found.next_cursor.as_deref()))
    };
    Ok(page(&person, Section::Conflicts, "Conflicts", body))
}

/// A field value as text, `empty` when the field is empty.
fn opt(v: &Option<String>) -> Markup {
    value(
        &v.clone()
            .map_or(serde_json::Value::Null, serde_json::Value::String),
    )
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    #[serde(default)]
    done: Option<String>,
}

/// Who last set the record's value, when it is `side`'s value of the conflict.
fn setter(current: Option<&FieldView>, source: &str, v: &Option<String>) -> Option<Markup> {
    let f = current.filter(|f| f.source == source && &f.value == v)?;
    let who = f
        .actor
        .clone()
        .or_else(|| f.decided_by.clone())
        .or_else(|| {
            f.integration_id
                .as_ref()
                .map(|i| format!("integration {i}"))
        })
        .unwrap_or_else(|| source.to_owned());
    Some(html! { (who) ", " (time_str(&f.at)) })
}

/// The three values side by side, with who changed each and when.
fn sides(c: &ConflictView) -> Markup {
    let current = c.current.as_ref();
    let app_by = setter(current, "app", &c.app_value)
        .unwrap_or_else(|| html! { "the app, before " (time_str(&c.detected_at)) });
    let crm_by = setter(current, "crm", &c.crm_value).unwrap_or_else(|| {
        html! { "the CRM (integration " code { (c.integration_id) } "), seen " (time_str(&c.detected_at)) }
    });
    html! {
        div.table-wrap { table #sides {
            thead { tr { th { } th scope="col" { "Base" } th scope="col" { "App" } th scope="col" { "CRM" } } }
            tbody {
                tr #values {
                    th scope="row" { "Value" }
                    td.base { (opt(&c.base_value)) }
                    td.app { (opt(&c.app_value)) }
                    td.crm { (opt(&c.crm_value)) }
                }
                tr #changed-by {
                    th scope="row" { "Changed by, when" }
                    td { "both sides agreed on it last" }
                    td { (app_by) }
                    td { (crm_by) }
                }
            }
        } }
    }
}

/// The decisions a writer can take on an open conflict.
fn decisions(person: &Person, c: &ConflictView, rule: Option<Side>) -> Markup {
    let action = format!("/conflicts/{}/resolve", c.id);
    let rule_action = format!("/conflicts/{}/rule", c.id);
    html! {
        section #decide aria-labelledby="decide-title" {
            h2 #decide-title { "Decide" }
            div.actions {
                form.inline method="post" action=(action) #use-app {
                    (csrf_field(person))
                    input type="hidden" name="resolution" value="use_app";
                    button type="submit" { "Use the app's value" }
                }
                form.inline method="post" action=(action) #use-crm {
                    (csrf_field(person))
                    input type="hidden" name="resolution" value="use_crm";
                    button type="submit" { "Use the CRM's value" }
                }
                (post_button(person, &format!("/conflicts/{}/ignore", c.id), "Ignore", ""))
            }
            form method="post" action=(action) #use-edited {
                (csrf_field(person))
                input type="hidden" name="resolution" value="merged";
                label for="edited-value" { "Edited value" }
                input #edited-value type="text" name="value" value=(c.app_value.clone().unwrap_or_default());
                button type="submit" { "Use this value" }
            }
            form method="post" action=(rule_action) #always-use {
                (csrf_field(person))
                fieldset {
                    legend { "Always use this side for " code { (c.field) } " with this integration" }
                    label { input type="radio" name="use" value="app" checked[rule != Some(Side::Crm)]; " App" }
                    label { input type="radio" name="use" value="crm" checked[rule == Some(Side::Crm)]; " CRM" }
                }
                button type="submit" { "Save rule" }
            }
        }
    }
}

/// `GET /conflicts/{id}`: the conflict, its values and, for writers, the decisions.
async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> PageResult<Response> {
    let ws = &person.caller.workspace_id;
    let c: ConflictView = state.engine.conflicts().get(ws, &id).await?.into();
    let rule = state
        .engine
        .conflicts()
        .rules(ws, &c.integration_id)
        .await?
        .get(&c.field)
        .copied();
    let body = html! {
        (notice(q.done.as_deref()))
        p { a href="/conflicts" { "← Conflicts" } }
        h1 { "Conflict on " code { (c.field) } " " (badge(&c.status)) }
        dl.facts #conflict {
            dt { "Record" } dd { a href={ "/records/" (c.record_id) } { code { (c.record_id) } } " (" (c.entity) ")" }
            dt { "Integration" } dd { a href={ "/integrations/" (c.integration_id) } { code { (c.integration_id) } } }
            dt { "Detected" } dd { (time_str(&c.detected_at)) }
            @if let Some(at) = &c.resolved_at {
                dt { "Decided" } dd {
                    (time_str(at))
                    @if let Some(by) = &c.resolved_by { " by " (by) }
                    @if let Some(how) = &c.resolution { " (" (how.replace('_', " ")) ")" }
                }
                dt { "Value taken" } dd #resolved-value { (opt(&c.resolved_value)) }
            }
            @if let Some(side) = rule {
                dt { "Rule" } dd #rule {
                    "Conflicts on this field always use the "
                    @if side == Side::App { "app" } @else { "CRM" } "."
                }
            }
        }
        (sides(&c))
        @if person.can_write() {
            @if c.status == "open" {
                (decisions(&person, &c, rule))
            }
            @if rule.is_some() {
                (post_button(&person, &format!("/conflicts/{}/rule/remove", c.id), "Remove the rule", "danger"))
            }
        }
    };
    Ok(page(&person, Section::Conflicts, "Conflict", body))
}

/// The resolve forms' fields: the API's resolution, and the value for `merged`.
#[derive(Deserialize)]
pub struct ResolveForm {
    resolution: ResolutionKind,
    #[serde(default)]
    value: Option<String>,
}

/// `POST /conflicts/{id}/resolve`: the API's resolve, then back to the conflict.
async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<ResolveForm>,
) -> PageResult<Response> {
    let req = ResolveConflict {
        resolution: posted.form.resolution,
        value: posted.form.value.map(Some),
    };
    let resolution = req.into_domain()?;
    state
        .engine
        .conflicts()
        .resolve(&posted.person.caller.metadata(), &id, resolution)
        .await?;
    Ok(Redirect::to(&format!("/conflicts/{}?done=resolved", enc(&id))).into_response())
}

/// `POST /conflicts/{id}/ignore`.
async fn ignore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    state
        .engine
        .conflicts()
        .ignore(&posted.person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to(&format!("/conflicts/{}?done=ignored", enc(&id))).into_response())
}

#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(rename = "use")]
    side: Side,
}

/// `POST /conflicts/{id}/rule`: always use a side for the conflict's field with its
/// integration (which settles this conflict, and the field's others, now).
async fn add_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<RuleForm>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    let c = state
        .engine
        .conflicts()
        .get(&meta.workspace_id, &id)
        .await?;
    state
        .engine
        .conflicts()
        .set_rule(&meta, &c.row.integration_id, &c.row.field, posted.form.side)
        .await?;
    Ok(Redirect::to(&format!("/conflicts/{}?done=rule-added", enc(&id))).into_response())
}

/// `POST /conflicts/{id}/rule/remove`: the field's conflicts follow the strategy again.
async fn remove_rule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let meta = posted.person.caller.metadata();
    let c = state
        .engine
        .conflicts()
        .get(&meta.workspace_id, &id)
        .await?;
    state
        .engine
        .conflicts()
        .remove_rule(&meta, &c.row.integration_id, &c.row.field)
        .await?;
    Ok(Redirect::to(&format!("/conflicts/{}?done=rule-removed", enc(&id))).into_response())
}

/// An id as one path segment of a redirect.
fn enc(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
