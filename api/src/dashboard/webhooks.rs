//! Outgoing webhooks (admin): the workspace's endpoints, and each one's delivery
//! attempts. Endpoints are made and changed through the API (`/v1/webhook-endpoints`),
//! whose answer is the only place a signing secret is shown.

use super::error::PageResult;
use super::layout::{badge, empty_state, page, pager, time, Section};
use super::session::Person;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::webhook::WebhookEndpoint;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list))
        .route("/webhooks/{id}", get(show))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
}

fn state_badge(e: &WebhookEndpoint) -> Markup {
    if e.enabled {
        badge("active")
    } else {
        badge("paused")
    }
}

async fn list(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    person.require_admin()?;
    let after = q.cursor.clone().unwrap_or_default();
    let mut rows = state
        .engine
        .webhook_endpoints()
        .list(&person.caller.workspace_id, &after, PER_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let next = rows.last().filter(|_| more).and_then(|r| r.id.clone());
    let body = html! {
        h1 { "Webhooks" }
        p { "Signed messages (Standard Webhooks) sent to your app's endpoints. Create and change endpoints with "
            code { "POST /v1/webhook-endpoints" } "; the signing secret is shown once, in that answer." }
        @if rows.is_empty() {
            (empty_state("No webhook endpoints", html! { "Create one through the API." }))
        } @else {
            div.table-wrap { table #endpoints {
                thead { tr { th { "URL" } th { "Event types" } th { "State" } th { "Created" } } }
                tbody {
                    @for e in &rows {
                        @let id = e.id.clone().unwrap_or_default();
                        tr {
                            td { a href={ "/webhooks/" (id) } { (e.url) } }
                            td { (e.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")) }
                            td { (state_badge(e)) @if let Some(r) = &e.disabled_reason { " " (r) } }
                            td { @if let Some(at) = &e.created_at { (time(at)) } }
                        }
                    }
                }
            } }
        }
        (pager("/webhooks", &[], next.as_deref()))
    };
    Ok(page(&person, Section::Webhooks, "Webhooks", body))
}

async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
) -> PageResult<Response> {
    person.require_admin()?;
    let endpoints = state.engine.webhook_endpoints();
    let e = endpoints.get(&person.caller.workspace_id, &id).await?;
    let attempts = endpoints
        .deliveries(&person.caller.workspace_id, &id, None, PER_PAGE)
        .await?;
    let body = html! {
        p { a href="/webhooks" { "← Webhooks" } }
        h1 { "Webhook endpoint" }
        dl.facts {
            dt { "URL" } dd { code { (e.url) } }
            dt { "Event types" } dd { (e.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")) }
            dt { "State" } dd { (state_badge(&e)) @if let Some(r) = &e.disabled_reason { " " (r) } }
            @if !e.description.is_empty() { dt { "Description" } dd { (e.description) } }
        }
        h2 { "Latest delivery attempts" }
        @if attempts.is_empty() {
            (empty_state("No deliveries yet", html! { "Messages appear here as events of its types happen." }))
        } @else {
            div.table-wrap { table #deliveries {
                thead { tr { th { "Message" } th { "Type" } th { "Attempt" } th { "Status" } th { "Answer" } th { "At" } th { "Next try" } } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { code { (a.message_id) } }
                            td { (a.event_type) }
                            td { (a.attempt) }
                            td { (badge(match a.status.as_str() { "delivered" => "succeeded", "retrying" => "pending", s => s })) }
                            td {
                                @if let Some(code) = a.response_code { (code) " " }
                                @if let Some(err) = &a.error { span.muted { (err) } }
                            }
                            td { (time(&a.attempted_at)) }
                            td { @if let Some(next) = &a.next_attempt_at { (time(next)) } }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&person, Section::Webhooks, "Webhook endpoint", body))
}
