//! Sync runs: an integration's run history, a run's page (live counters, passes, failed
//! records, retry and cancel), and a rollback's preview with its confirm step (admin).

use super::error::PageResult;
use super::layout::{
    badge, csrf_field, empty_state, notice, page, pager, post_button, time_str, Section,
};
use super::session::{NoFields, Person, Posted, Writing};
use crate::routes::integration_view::IntegrationView;
use crate::routes::sync_runs::{view, RunView};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_engine::rollback::Preview;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs", get(index))
        .route("/integrations/{id}/runs", get(history))
        .route("/runs/{id}", get(show))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/retry", post(retry))
        .route("/runs/{id}/rollback", get(preview).post(rollback))
}

#[derive(Deserialize, Default)]
pub struct HistoryQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The table of runs, newest first; shared by the integration page.
pub fn runs_table(runs: &[RunView]) -> Markup {
    html! {
        div.table-wrap { table.runs {
            thead { tr { th { "Run" } th { "Kind" } th { "Status" } th { "Processed" } th { "Failed" } th { "API calls" } th { "429s waited" } th { "Queued" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { code { (r.id.get(..8).unwrap_or(&r.id)) } } }
                        td { (r.kind) " · " (r.trigger) }
                        td { (badge(&r.status)) }
                        td { (r.stats.processed) }
                        td { (r.stats.failed) }
                        td { (r.stats.api_calls) }
                        td { (r.stats.rate_limited) }
                        td { @if let Some(at) = &r.queued_at { (time_str(at)) } }
                    }
                }
            }
        } }
    }
}

async fn history(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> PageResult<Response> {
    let ws = &person.caller.workspace_id;
    let integration = state.engine.integrations().get(ws, &id).await?;
    let runs = state
        .engine
        .sync_runs()
        .list(ws, &id, None, q.cursor.as_deref(), PER_PAGE + 1)
        .await?;
    let mut views: Vec<RunView> = runs.iter().map(view).collect();
    let more = views.len() as i64 > PER_PAGE;
    views.truncate(PER_PAGE as usize);
    let next = more.then(|| views.last().map(|r| r.id.clone())).flatten();
    let name = IntegrationView::from(integration).name;
    let body = html! {
        (notice(q.done.as_deref()))
        p { a href={ "/integrations/" (id) } { "← " (name) } }
        h1 { "Runs of " (name) }
        div #runs data-live {
            @if views.is_empty() {
                (empty_state("No runs yet", html! { "Start one with " em { "Sync now" } " on the integration's page." }))
            } @else {
                (runs_table(&views))
            }
        }
        (pager(&format!("/integrations/{id}/runs"), &[], next.as_deref()))
    };
    Ok(page(&person, Section::Runs, "Runs", body))
}

/// `/runs`: each integration's latest run, with the way to its whole history.
async fn index(State(state): State<AppState>, person: Person) -> PageResult<Response> {
    let rows = state
        .engine
        .integrations()
        .list(&person.caller.workspace_id, "", PER_PAGE)
        .await?;
    let views: Vec<IntegrationView> = rows.into_iter().map(IntegrationView::from).collect();
    let body = html! {
        h1 { "Runs" }
        @if views.is_empty() {
            (empty_state("No integrations, so no runs", html! { a href="/connect" { "Connect a CRM" } " first." }))
        } @else {
            div.table-wrap { table #runs-index {
                thead { tr { th { "Integration" } th { "Latest run" } th { "Processed" } th { "Ended" } th { "History" } } }
                tbody {
                    @for v in &views {
                        tr {
                            td { a href={ "/integrations/" (v.id) } { (v.name) } }
                            @match &v.last_run {
                                Some(r) => {
                                    td { a href={ "/runs/" (r.id) } { (badge(&r.status)) } " " (r.kind) }
                                    td { (r.stats.processed) }
                                    td { @if let Some(at) = &r.ended_at { (time_str(at)) } }
                                }
                                None => { td { "none yet" } td {} td {} }
                            }
                            td { a href={ "/integrations/" (v.id) "/runs" } { "All runs" } }
                        }
                    }
                }
            } }
        }
    };
    Ok(page(&person, Section::Runs, "Runs", body))
}

fn counters(r: &RunView) -> Markup {
    html! {
        dl.facts #counters {
            // `data-active` while the run may still change: the page looks again every few
            // seconds until it ends, whatever the event stream says (see app.js).
            dt { "Status" } dd data-active[is_active(r)] { (badge(&r.status)) @if let Some(why) = &r.reason { " " (why) } }
            dt { "Processed" } dd #processed {
                (r.stats.processed)
                @if let Some(total) = r.records_total { " of " (total) }
                @if let Some(p) = r.progress_percent { " (" (p) "%)" }
            }
            dt { "Created / updated / unchanged" } dd { (r.stats.created) " / " (r.stats.updated) " / " (r.stats.unchanged) }
            dt { "Skipped / failed" } dd { (r.stats.skipped) " / " (r.stats.failed) }
            dt { "Conflicts detected / resolved" } dd { (r.stats.conflicts_detected) " / " (r.stats.conflicts_resolved) }
            dt { "Pages" } dd #pages { (r.passes.iter().map(|p| p.pages).sum::<u64>()) }
            dt { "API calls" } dd #api-calls { (r.stats.api_calls) }
            dt { "429s waited" } dd #rate-limited { (r.stats.rate_limited) }
            dt { "Queued" } dd { @if let Some(at) = &r.queued_at { (time_str(at)) } }
            dt { "Started" } dd { @if let Some(at) = &r.started_at { (time_str(at)) } @else { "not yet" } }
            dt { "Ended" } dd { @if let Some(at) = &r.ended_at { (time_str(at)) } @else { "not yet" } }
        }
    }
}

fn is_active(r: &RunView) -> bool {
    matches!(r.status.as_str(), "queued" | "running")
}

async fn show(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> PageResult<Response> {
    let run = state
        .engine
        .sync_runs()
        .get(&person.caller.workspace_id, &id)
        .await?;
    let r = view(&run);
    let body = html! {
        (notice(q.done.as_deref()))
        p { a href={ "/integrations/" (r.integration_id) "/runs" } { "← Runs of this integration" } }
        h1 { "Run " code { (r.id.get(..8).unwrap_or(&r.id)) } " " small { (r.kind) } }
        @if let Some(of) = &r.rollback_of { p { "Rolls back " a href={ "/runs/" (of) } { "run " (of.get(..8).unwrap_or(of)) } "." } }
        @if let Some(of) = &r.retry_of { p { "Retries the failed records of " a href={ "/runs/" (of) } { "run " (of.get(..8).unwrap_or(of)) } "." } }
        div #run data-live {
            (counters(&r))
            h2 { "Passes" }
            @if r.passes.is_empty() { p { "No pass has started." } } @else {
                div.table-wrap { table #passes {
                    thead { tr {
                        th { "Pass" } th { "Pages" } th { "Processed" } th { "Created" } th { "Updated" }
                        th { "Unchanged" } th { "Failed" } th { "Conflicts" } th { "API calls" } th { "429s waited" } th { "Done" }
                    } }
                    tbody { @for p in &r.passes { tr {
                        td { (p.pass) } td { (p.pages) }
                        td { (p.stats.processed) @if let Some(total) = p.total { " of " (total) } }
                        td { (p.stats.created) } td { (p.stats.updated) } td { (p.stats.unchanged) }
                        td { (p.stats.failed) } td { (p.stats.conflicts_detected) }
                        td { (p.stats.api_calls) } td { (p.stats.rate_limited) }
                        td { @if p.done { "yes" } @else { "in progress" } }
                    } } }
                } }
            }
            h2 { "Failed records (" (r.failures_total) ")" }
            @if r.failures.is_empty() { p { "None." } } @else {
                div.table-wrap { table #failures {
                    thead { tr { th { "Entity" } th { "Phase" } th { "Record" } th { "Reason" } } }
                    tbody {
                        @for f in &r.failures {
                            tr {
                                td { (f.entity) } td { (f.phase) }
                                td {
                                    @if let Some(rid) = &f.record_id { a href={ "/records/" (rid) } { (rid) } }
                                    @else if let Some(remote) = &f.remote_id { "CRM " code { (remote) } }
                                }
                                td { (f.error) }
                            }
                        }
                    }
                } }
            }
            @if person.can_write() {
                div.actions #run-actions {
                    @if is_active(&r) {
                        (post_button(&person, &format!("/runs/{}/cancel", r.id), "Cancel run", "danger"))
                    } @else {
                        @if r.stats.failed > 0 || r.failures_total > 0 {
                            (post_button(&person, &format!("/runs/{}/retry", r.id), "Retry failed records", ""))
                        }
                        @if r.kind != "rollback" {
                            a.button href={ "/runs/" (r.id) "/rollback" } { "Preview rollback" }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&person, Section::Runs, "Run", body))
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    state
        .engine
        .sync_runs()
        .cancel(&posted.person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to(&format!("/runs/{id}?done=cancelled")).into_response())
}

async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Writing(posted): Writing<NoFields>,
) -> PageResult<Response> {
    let run = state
        .engine
        .sync_runs()
        .retry(&posted.person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to(&format!("/runs/{}?done=retried", view(&run).id)).into_response())
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("—")
}

fn preview_table(p: &Preview) -> Markup {
    let s = &p.summary;
    html! {
        p #rollback-summary {
            (s.records) @if s.records == 1 { " record: " } @else { " records: " }
            (s.fields_restored) " fields restored, "
            (s.conflicts) " changed since (left as they are), " (s.archived) " archived, "
            (s.crm_properties) " CRM properties written back"
            @if s.diverged > 0 { ", " (s.diverged) " left diverged for an admin to settle" }
            "."
        }
        @if p.records.is_empty() {
            p { "This run changed nothing a rollback would undo." }
        } @else {
            div.table-wrap { table #rollback-preview {
                thead { tr { th { "Record" } th { "Action" } th { "Field" } th { "Now" } th { "Restored to" } } }
                tbody {
                    @for r in &p.records {
                        @let link = html! { a href={ "/records/" (r.record_id) } { code { (r.record_id.get(..8).unwrap_or(&r.record_id)) } } " " (r.entity) };
                        @if r.restore.is_empty() && r.conflicts.is_empty() {
                            tr { td { (link) } td { (r.action) } td {} td {} td {} }
                        }
                        @for f in &r.restore {
                            tr { td { (link) } td { "restore" } td { code { (f.field) } } td.before { (opt(&f.now)) } td.after { (opt(&f.before)) } }
                        }
                        @for c in &r.conflicts {
                            tr.conflict { td { (link) } td { "changed since: kept" } td { code { (c.field) } } td { (opt(&c.now)) } td { "not overwritten (was " (opt(&c.before)) ")" } }
                        }
                        @for crm in &r.crm {
                            @for (prop, value) in &crm.properties {
                                tr.crm { td { (link) } td { "CRM write-back" } td { code { (prop) } } td { (crm.now.get(prop).and_then(|v| v.as_deref()).unwrap_or("—")) } td { (value.as_deref().unwrap_or("—")) } }
                            }
                        }
                    }
                }
            } }
        }
    }
}

async fn preview(
    State(state): State<AppState>,
    person: Person,
    Path(id): Path<String>,
) -> PageResult<Response> {
    person.require_write()?;
    let p = state
        .engine
        .sync_runs()
        .preview_rollback(&person.caller.metadata(), &id)
        .await?;
    let body = html! {
        p { a href={ "/runs/" (id) } { "← The run" } }
        h1 { "Roll back run " code { (id.get(..8).unwrap_or(&id)) } }
        p { "What a rollback would do. Nothing changes until an admin confirms." }
        (preview_table(&p))
        @if person.is_admin() {
            form method="post" action={ "/runs/" (id) "/rollback" } #confirm-rollback {
                (csrf_field(&person))
                button.danger type="submit" { "Confirm rollback" }
            }
        } @else {
            p.hint { "Only an admin can confirm a rollback." }
        }
    };
    Ok(page(&person, Section::Runs, "Rollback preview", body))
}

async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult<Response> {
    posted.person.require_admin()?;
    let run = state
        .engine
        .sync_runs()
        .rollback(&posted.person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to(&format!("/runs/{}?done=rolled-back", view(&run).id)).into_response())
}
