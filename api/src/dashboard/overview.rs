//! The integrations overview at `/`: one card per integration (status, last run, next
//! run), refreshed live from the workspace's events.

use super::error::PageResult;
use super::layout::{badge, empty_state, notice, page, pager, time_str, Section};
use super::session::Person;
use crate::routes::integration_view::IntegrationView;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::Role;
use syncledger_engine::integrations::CardCounts;

/// Cards per page: a workspace with more integrations pages through them.
const PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

fn card(v: &IntegrationView, counts: CardCounts) -> Markup {
    html! {
        li.card id={ "integration-" (v.id) } {
            h2 { a href={ "/integrations/" (v.id) } { (v.name) } }
            p.meta { span.provider { (v.provider) } " " (badge(&v.status)) }
            @if let Some(reason) = &v.last_error {
                p.field-error { (reason) }
                @if v.status == "error" || v.status == "pending_auth" {
                    p { a.button href={ "/integrations/" (v.id) "#credentials" } { "Reconnect" } }
                }
            }
            dl.facts {
                dt { "Last run" }
                dd.last-run {
                    @match &v.last_run {
                        Some(run) => {
                            a href={ "/runs/" (run.id) } { (badge(&run.status)) }
                            " " (run.stats.processed) " processed, "
                            (run.stats.failed) " failed"
                            @if let Some(at) = &run.ended_at { ", " (time_str(at)) }
                        }
                        None => { "none yet" }
                    }
                }
                dt { "Open conflicts" }
                dd {
                    @if counts.open_conflicts > 0 {
                        a href={ "/conflicts?integration=" (v.id) } { (counts.open_conflicts) }
                    } @else { "0" }
                }
                dt { "Records linked" }
                dd { a href={ "/records?integration=" (v.id) } { (counts.records_linked) } }
                dt { "Next run" }
                dd {
                    @match &v.next_sync_at {
                        Some(at) => (time_str(at)),
                        None => "not scheduled",
                    }
                }
            }
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<OverviewQuery>,
) -> PageResult<Response> {
    if person.role() == Role::Auditor {
        return Ok(Redirect::to("/audit").into_response());
    }
    let after = q.cursor.clone().unwrap_or_default();
    let mut rows = state
        .engine
        .integrations()
        .list(&person.caller.workspace_id, &after, PER_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let views: Vec<IntegrationView> = rows.into_iter().map(IntegrationView::from).collect();
    let next = more.then(|| views.last().map(|v| v.id.clone())).flatten();
    let integrations = state.engine.integrations();
    let ws = &person.caller.workspace_id;
    let mut cards = Vec::with_capacity(views.len());
    for v in &views {
        cards.push((v, integrations.card_counts(ws, &v.id).await?));
    }
    let usage = integrations.plan_usage(ws).await?;
    let full = usage.limit.is_some_and(|limit| usage.used >= limit);
    let body = html! {
        (notice(q.done.as_deref()))
        div.heading {
            h1 { "Integrations" }
            @if person.can_write() && !full { a.button href="/connect" { "Connect a CRM" } }
        }
        p.usage #plan-usage {
            "Workspace " strong { (usage.workspace_name) } ": "
            @match usage.limit {
                Some(limit) => { (usage.used) " of " (limit) " integrations on the " (usage.plan.as_str()) " plan" }
                None => { (usage.used) " integrations (the " (usage.plan.as_str()) " plan has no limit)" }
            }
            @if full { " — the plan's limit is reached: disconnect one or move to a larger plan to connect another." }
        }
        div #cards data-live {
            @if views.is_empty() {
                (empty_state("No integrations yet", html! {
                    @if person.can_write() {
                        a href="/connect" { "Connect your first CRM" } " to start syncing contacts and companies."
                    } @else {
                        "An admin or operator of this workspace can connect a CRM."
                    }
                }))
            } @else {
                ul.cards { @for (v, counts) in &cards { (card(v, *counts)) } }
            }
        }
        (pager("/", &[], next.as_deref()))
    };
    Ok(page(&person, Section::Overview, "Integrations", body))
}
