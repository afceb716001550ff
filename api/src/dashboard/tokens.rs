//! API tokens (admin): issue one with a role (its secret shown once, on the page that
//! issues it), list them, revoke one.

use super::error::{PageError, PageResult};
use super::layout::{
    badge, csrf_field, empty_state, notice, page, pager, post_button, time_str, Section,
};
use super::session::{NoFields, Person, Posted};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::Role;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(issue))
        .route("/tokens/{id}/revoke", post(revoke))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

fn issue_form(person: &Person) -> Markup {
    html! {
        form.stack.panel method="post" action="/tokens" #new-token {
            (csrf_field(person))
            h2 { "New token" }
            div {
                label for="role" { "Role" }
                select #role name="role" {
                    @for role in ["viewer", "operator", "auditor", "admin"] {
                        option value=(role) { (role) }
                    }
                }
            }
            div {
                label for="label" { "Label" }
                input #label name="label" maxlength="200" placeholder="e.g. reporting script";
            }
            div { button type="submit" { "Issue token" } }
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
    let mut rows = state
        .engine
        .tokens()
        .list(&person.caller.workspace_id, &after, PER_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let next = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    let body = html! {
        (notice(q.done.as_deref()))
        h1 { "API tokens" }
        (issue_form(&person))
        @if rows.is_empty() {
            (empty_state("No tokens", html! { "Issue one above." }))
        } @else {
            div.table-wrap { table #tokens {
                thead { tr { th { "Id" } th { "Role" } th { "Label" } th { "Created" } th { "State" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for t in &rows {
                        tr {
                            td { code { (t.id) } }
                            td { (t.role) }
                            td { (t.label) }
                            td { @if let Some(at) = &t.created_at { (time_str(at)) } }
                            td { @match &t.revoked_at {
                                Some(at) => { (badge("revoked")) " " (time_str(at)) }
                                None => (badge("active")),
                            } }
                            td { @if t.revoked_at.is_none() {
                                (post_button(&person, &format!("/tokens/{}/revoke", t.id), "Revoke", "danger"))
                            } }
                        }
                    }
                }
            } }
        }
        (pager("/tokens", &[], next.as_deref()))
    };
    Ok(page(&person, Section::Tokens, "API tokens", body))
}

#[derive(Deserialize)]
struct NewToken {
    role: String,
    #[serde(default)]
    label: String,
}

async fn issue(State(state): State<AppState>, posted: Posted<NewToken>) -> PageResult<Response> {
    let person = posted.person;
    person.require_admin()?;
    let role = Role::parse(&posted.form.role)
        .ok_or_else(|| PageError::bad_request("role must be admin, operator, viewer or auditor"))?;
    let t = state
        .engine
        .tokens()
        .issue(&person.caller.metadata(), role, &posted.form.label, None)
        .await?;
    // The secret is on this one page, answered to this post, never stored for a later GET.
    let body = html! {
        h1 { "Token issued" }
        section.panel {
            p { "Copy this token now: it is not shown again." }
            p { label for="secret" { "Token (" (t.role.as_str()) ")" } }
            input #secret readonly value=(t.bearer) autocomplete="off";
            p { a href="/tokens?done=created" { "Done" } }
        }
    };
    Ok((
        StatusCode::CREATED,
        page(&person, Section::Tokens, "Token issued", body),
    )
        .into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult<Response> {
    let person = posted.person;
    person.require_admin()?;
    state
        .engine
        .tokens()
        .revoke(&person.caller.metadata(), &id)
        .await?;
    Ok(Redirect::to("/tokens?done=revoked").into_response())
}
