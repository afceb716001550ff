//! Postgres destinations (admin): each destination with how far its sink has come, and a
//! destination's page with its tables, the records held back and why, and a rebuild.
//! Destinations are made through the API (`/v1/destinations`) or the CLI: a database URL
//! with its password never passes through a page.

use super::error::PageResult;
use super::layout::{badge, empty_state, notice, page, pager, post_button, time, Section};
use super::session::{NoFields, Person, Posted};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::destination::Destination;
use syncledger_engine::destinations::DestinationView;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/destinations", get(list))
        .route("/destinations/{id}", get(show))
        .route("/destinations/{id}/rebuild", post(rebuild))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn tables(d: &Destination) -> String {
    d.mappings
        .iter()
        .map(|m| format!("{} → {}.{}", m.entity.as_str(), d.schema, m.table))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the sink stands, in a badge and a few words.
fn standing(v: &DestinationView) -> Markup {
    match &v.standing {
        Err(e) => html! { (badge("error")) " " span.muted { (e) } },
        Ok(s) => {
            let caught_up = s
                .live
                .is_some_and(|c| c.position >= v.head && c.generation >= v.destination.generation);
            html! {
                @if let Some(e) = &s.last_error {
                    (badge("error")) " " span.muted { (e) }
                } @else if s.rebuilding.is_some() || s.live.is_some_and(|c| c.generation < v.destination.generation) {
                    (badge("running")) " rebuilding"
                } @else if caught_up {
                    (badge("active")) " up to date"
                } @else {
                    (badge("pending")) " catching up"
                }
                @if s.held > 0 { " · " (s.held) " held" }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    person.require_admin()?;
    let after = q.cursor.clone().unwrap_or_default();
    let destinations = state.engine.destinations();
    let mut rows = destinations
        .list(&person.caller.workspace_id, &after, PER_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let next = rows.last().filter(|_| more).and_then(|r| r.id.clone());
    let body = html! {
        h1 { "Destinations" }
        (notice(q.done.as_deref()))
        p { "Your app's own PostgreSQL database (Supabase or any other): records are written into its tables in log order, exactly once. Create one with "
            code { "POST /v1/destinations" } " or " code { "syncledger destinations add" } "." }
        @if rows.is_empty() {
            (empty_state("No destinations", html! { "Create one through the API or the command line." }))
        } @else {
            div.table-wrap { table #destinations {
                thead { tr { th { "Name" } th { "Database" } th { "Tables" } th { "Created" } } }
                tbody {
                    @for d in &rows {
                        @let id = d.id.clone().unwrap_or_default();
                        tr {
                            td { a href={ "/destinations/" (id) } { (d.name) } }
                            td { code { (d.target) } }
                            td { (tables(d)) }
                            td { @if let Some(at) = &d.created_at { (time(at)) } }
                        }
                    }
                }
            } }
        }
        (pager("/destinations", &[], next.as_deref()))
    };
    Ok(page(&person, Section::Destinations, "Destinations", body))
}

async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    person.require_admin()?;
    let destinations = state.engine.destinations();
    let v = destinations.view(&person.caller.workspace_id, &id).await?;
    let held = match &v.standing {
        Ok(s) if s.held > 0 => destinations
            .held(&person.caller.workspace_id, &id, "", PER_PAGE)
            .await
            .unwrap_or_default(),
        _ => vec![],
    };
    let d = &v.destination;
    let body = html! {
        p { a href="/destinations" { "← Destinations" } }
        h1 { (d.name) }
        (notice(q.done.as_deref()))
        dl.facts {
            dt { "Database" } dd { code { (d.target) } }
            dt { "Tables" } dd { (tables(d)) }
            dt { "State" } dd { (standing(&v)) }
            @if let Ok(s) = &v.standing {
                dt { "Written up to" } dd { "position " (s.live.map(|c| c.position.pos).unwrap_or(0)) " of " (v.head.pos) }
            }
            dt { "Rebuilds" } dd { (d.generation) }
        }
        (post_button(&person, &format!("/destinations/{id}/rebuild"), "Rebuild from the log", "danger"))
        h2 { "Held records" }
        @if held.is_empty() {
            (empty_state("Nothing held", html! { "Every record could be written." }))
        } @else {
            div.table-wrap { table #held {
                thead { tr { th { "Record" } th { "Entity" } th { "Why" } th { "Since" } } }
                tbody {
                    @for h in &held {
                        tr {
                            td { a href={ "/records/" (h.record_id) } { code { (h.record_id) } } }
                            td { (h.entity) }
                            td { (h.reason) }
                            td { (time(&h.held_at)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&person, Section::Destinations, "Destination", body))
}

async fn rebuild(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult<Response> {
    let person = posted.person;
    person.require_admin()?;
    state
        .engine
        .destinations()
        .rebuild(&person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to(&format!("/destinations/{id}?done=rebuilding")).into_response())
}
