//! Records: the list with filters, a search by match key and paging, and a record's page with each field's
//! source and time, its CRM links, its history as a timeline, and time travel (the record
//! as it was at an instant, the fields that differ from now highlighted).

use super::error::{PageError, PageResult};
use super::layout::{badge, empty_state, page, pager, time_str, Section};
use super::session::Person;
use crate::routes::records::{view, RecordView};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::Entity;
use syncledger_engine::records::{match_prefix, Filter, MAX_SEARCH_CHARS};

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/records", get(list))
        .route("/records/{id}", get(show))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    entity: String,
    #[serde(default)]
    integration: String,
    /// A match-key prefix (email or domain), searched on the server.
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: Option<String>,
}

/// A record's name for lists: its name or email field, else its id.
fn title(r: &RecordView) -> String {
    ["name", "full_name", "email", "first_name", "domain"]
        .iter()
        .find_map(|k| r.fields.get(*k).and_then(|f| f.value.clone()))
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| r.id.clone())
}

fn filters(q: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/records" #record-filters {
            div {
                label for="q" { "Email or domain starts with" }
                input #q type="search" name="q" value=(q.q) maxlength=(MAX_SEARCH_CHARS)
                    placeholder="ada@ or example.com" autocomplete="off";
            }
            div {
                label for="entity" { "Entity" }
                select #entity name="entity" {
                    @for (value, label) in [("", "All"), ("contacts", "Contacts"), ("companies", "Companies")] {
                        option value=(value) selected[q.entity == value] { (label) }
                    }
                }
            }
            div {
                label for="integration" { "Integration id" }
                input #integration name="integration" value=(q.integration);
            }
            div { button type="submit" { "Search" } }
            div {
                label for="find" { "Find on this page" }
                input #find type="search" data-filter="#records tbody tr" placeholder="name or email";
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    let entity = match q.entity.as_str() {
        "" => None,
        name => Some(
            Entity::parse(name)
                .ok_or_else(|| PageError::bad_request("entity must be contacts or companies"))?,
        ),
    };
    let (after_time, after_id) = match q.cursor.as_deref() {
        // `key|id`: ids hold no `|`, a match key may.
        Some(c) => c
            .rsplit_once('|')
            .map(|(t, i)| (t.to_owned(), i.to_owned()))
            .ok_or_else(|| {
                PageError::bad_request("that page link is not one this dashboard made")
            })?,
        None => Default::default(),
    };
    let filter = Filter {
        entity,
        integration: (!q.integration.trim().is_empty()).then(|| q.integration.trim().to_owned()),
        updated_since: None,
        include_archived: false,
        match_prefix: match_prefix("q", Some(&q.q))?,
    };
    let mut rows = state
        .engine
        .records()
        .list(
            &person.caller.workspace_id,
            &filter,
            (&after_time, &after_id),
            PER_PAGE + 1,
        )
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let next = more
        .then(|| rows.last().map(|r| r.cursor.clone()))
        .flatten();
    let views: Vec<RecordView> = rows.iter().map(|r| view(&r.id, &r.state)).collect();
    let body = html! {
        h1 { "Records" }
        (filters(&q))
        @if views.is_empty() && !q.q.trim().is_empty() {
            (empty_state("No matching records", html! {
                "No record's email or domain starts with " strong { (q.q.trim()) } ". "
                a href="/records" { "Show all records" } "."
            }))
        } @else if views.is_empty() {
            (empty_state("No records", html! {
                "Records appear here after a sync. " a href="/" { "Run one from an integration" } "."
            }))
        } @else {
            div.table-wrap { table #records {
                thead { tr { th { "Record" } th { "Entity" } th { "Linked CRMs" } th { "Version" } } }
                tbody {
                    @for r in &views {
                        tr {
                            td { a href={ "/records/" (r.id) } { (title(r)) } }
                            td { (r.entity) }
                            td { (r.links.len()) }
                            td { (r.version) }
                        }
                    }
                }
            } }
        }
        (pager("/records", &[("entity", q.entity.clone()), ("integration", q.integration.clone()), ("q", q.q.clone())], next.as_deref()))
    };
    Ok(page(&person, Section::Records, "Records", body))
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    #[serde(default)]
    as_of: String,
}

fn fields_table(r: &RecordView, now: Option<&RecordView>) -> Markup {
    let differs = |k: &str| -> bool {
        now.is_some_and(|now| {
            now.fields.get(k).map(|f| &f.value) != r.fields.get(k).map(|f| &f.value)
        })
    };
    html! {
        div.table-wrap { table #fields {
            thead { tr { th { "Field" } th { "Value" } th { "Source" } th { "Set" }
                @if now.is_some() { th { "Now" } } } }
            tbody {
                @for (k, f) in &r.fields {
                    tr class=[differs(k).then_some("changed")] {
                        td { code { (k) } }
                        td { (f.value.as_deref().unwrap_or("—")) }
                        td {
                            (f.source)
                            @if let Some(i) = &f.integration_id { " (" a href={ "/integrations/" (i) } { "integration" } ")" }
                            @if let Some(a) = &f.actor { " · " (a) }
                        }
                        td { (time_str(&f.at)) }
                        @if let Some(now) = now {
                            td { @if differs(k) {
                                span.after { (now.fields.get(k.as_str()).and_then(|f| f.value.as_deref()).unwrap_or("—")) }
                            } @else { "same" } }
                        }
                    }
                }
                @if let Some(now) = now {
                    @for (k, f) in now.fields.iter().filter(|(k, _)| !r.fields.contains_key(*k)) {
                        tr.changed {
                            td { code { (k) } }
                            td { "—" } td { "not set then" } td {}
                            td { span.after { (f.value.as_deref().unwrap_or("—")) } }
                        }
                    }
                }
            }
        } }
    }
}

/// The link to the record as it was at `at` (the instant as recorded, to the
/// microsecond, so the event at that instant is included).
fn as_of_href(id: &str, at: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("as_of", at)
        .finish();
    format!("/records/{id}?{query}")
}

async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> PageResult<Response> {
    let ws = &person.caller.workspace_id;
    let records = state.engine.records();
    let current = view(&id, &records.get(ws, &id).await?);
    let as_of: Option<DateTime<Utc>> = match q.as_of.trim() {
        "" => None,
        text => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    PageError(crate::error::ApiError::invalid_field(
                        "as_of",
                        "must be an RFC 3339 instant, e.g. 2026-05-01T12:00:00Z",
                    ))
                })?,
        ),
    };
    let then = match as_of {
        Some(t) => Some(view(&id, &records.as_of(ws, &id, t).await?)),
        None => None,
    };
    let history = records.history(ws, &id).await?;
    let shown = then.as_ref().unwrap_or(&current);
    let name = title(&current);
    let body = html! {
        p { a href="/records" { "← Records" } }
        h1 { (name) " " small { (current.entity) } }
        @if current.archived { p { (badge("archived")) " A rollback archived this record." } }
        form.filters method="get" action={ "/records/" (id) } #time-travel {
            div {
                label for="as_of" { "See it as it was at (RFC 3339)" }
                input #as_of name="as_of" value=(q.as_of) placeholder="2026-05-01T12:00:00Z";
            }
            div { button type="submit" { "Time travel" } }
            @if then.is_some() { div { a href={ "/records/" (id) } { "Back to now" } } }
        }
        @if let Some(t) = as_of {
            p.notice role="status" #as-of-banner {
                "As it was at " (super::layout::time(&t)) "; highlighted fields differ from now."
            }
        }
        (fields_table(shown, then.as_ref().map(|_| &current)))
        h2 { "CRM links" }
        @if current.links.is_empty() {
            p { "Not linked to any CRM yet." }
        } @else {
            ul #links {
                @for l in &current.links {
                    li {
                        a href={ "/integrations/" (l.integration_id) } { (l.integration_id) }
                        " → " code { (l.remote_id) } " " (badge(&l.state))
                        @if !l.pending_push.is_empty() { " · waiting to push: " (l.pending_push.join(", ")) }
                        @if let Some(e) = &l.push_error { p.field-error { (e) } }
                    }
                }
            }
        }
        h2 { "History" }
        ol.timeline #history {
            @for e in &history {
                li {
                    @if let Some(at) = &e.at {
                        (time_str(at)) " "
                    }
                    strong { (e.event_type) } " " (e.summary)
                    @if let Some(a) = &e.actor { " · " (a) }
                    @if let Some(fields) = &e.fields {
                        ul.changes { @for (k, v) in fields { li { code { (k) } " = " (v.as_deref().unwrap_or("—")) } } }
                    }
                    @if let Some(at) = &e.at {
                        " " a.as-of href=(as_of_href(&id, at)) { "as it was then" }
                    }
                }
            }
        }
    };
    Ok(page(&person, Section::Records, &name, body))
}
