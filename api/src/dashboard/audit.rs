//! The audit trail (admin, auditor): the entries with the API's filters, each one's field
//! changes before → after, a chain verification on demand, and CSV/JSONL export.

use super::error::PageResult;
use super::layout::{empty_state, page, pager, time_str, Section};
use super::session::Person;
use crate::auth::AUDIT_READERS;
use crate::error::ApiError;
use crate::routes::audit::{export_for, filter, ExportQuery};
use crate::state::AppState;
use crate::trail::AuditEntry;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/verify", get(verify))
        .route("/audit/export", get(export))
}

/// The filters, as the API names them. Empty form fields mean "no filter".
#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    integration: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: Option<String>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl AuditQuery {
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("integration", self.integration.clone()),
            ("actor", self.actor.clone()),
            ("action", self.action.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
        ]
    }

    fn export_href(&self, format: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("format", format);
        for (k, v) in self.params().iter().filter(|(_, v)| !v.trim().is_empty()) {
            query.append_pair(k, v.trim());
        }
        format!("/audit/export?{}", query.finish())
    }
}

fn filters(q: &AuditQuery, error: Option<&ApiError>) -> Markup {
    let field_error = |name: &str| error.filter(|e| e.field.as_deref() == Some(name));
    html! {
        form.filters method="get" action="/audit" #audit-filters {
            @for (name, label, value, hint) in [
                ("integration", "Integration id", &q.integration, ""),
                ("actor", "Actor", &q.actor, "e.g. token:… or system"),
                ("action", "Action", &q.action, "e.g. IntegrationPaused"),
                ("from", "From (RFC 3339)", &q.from, "2026-01-01T00:00:00Z"),
                ("to", "To (RFC 3339)", &q.to, ""),
            ] {
                div {
                    label for={ "f-" (name) } { (label) }
                    input id={ "f-" (name) } name=(name) value=(value) placeholder=(hint)
                        aria-invalid=[field_error(name).map(|_| "true")];
                    @if let Some(e) = field_error(name) {
                        p.field-error role="alert" { (e.message) }
                    }
                }
            }
            div { button type="submit" { "Filter" } }
        }
    }
}

fn entry_row(e: &AuditEntry) -> Markup {
    html! {
        tr {
            td { (e.chain_seq) }
            td { (time_str(&e.time)) }
            td { code { (e.action) } }
            td { (e.actor) }
            td {
                (e.summary)
                @if !e.changes.is_empty() {
                    ul.changes {
                        @for c in &e.changes {
                            li {
                                code { (c.field) } ": "
                                span.before { (c.before.as_deref().unwrap_or("—")) }
                                " → "
                                span.after { (c.after.as_deref().unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    person: Person,
    Query(q): Query<AuditQuery>,
) -> PageResult<Response> {
    person.caller.require(AUDIT_READERS)?;
    let times = (some(&q.from), some(&q.to));
    let parsed = filter(
        &person.caller,
        some(&q.integration),
        some(&q.actor),
        some(&q.action),
        (times.0.as_deref(), times.1.as_deref()),
    );
    let filter = match parsed {
        Ok(f) => f,
        Err(e) => {
            let body = html! { h1 { "Audit trail" } (filters(&q, Some(&e))) };
            return Ok(super::layout::page_status(
                e.status,
                &person,
                Section::Audit,
                "Audit trail",
                body,
            ));
        }
    };
    let after: i64 = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut rows = state
        .engine
        .audit()
        .page(&filter, after, PER_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let entries: Vec<AuditEntry> = rows.into_iter().map(AuditEntry::from).collect();
    let next = more
        .then(|| entries.last().map(|e| e.chain_seq.to_string()))
        .flatten();
    let body = html! {
        div.heading {
            h1 { "Audit trail" }
            div.actions {
                a.button href="/audit/verify" #verify-chain { "Verify chain" }
                a.button href=(q.export_href("csv")) #export-csv { "Export CSV" }
                a.button href=(q.export_href("jsonl")) #export-jsonl { "Export JSONL" }
            }
        }
        (filters(&q, None))
        @if entries.is_empty() {
            (empty_state("No entries match", html! { "Clear the filters to see the whole trail." }))
        } @else {
            div.table-wrap { table #audit {
                thead { tr { th { "#" } th { "When" } th { "Action" } th { "Actor" } th { "What changed" } } }
                tbody { @for e in &entries { (entry_row(e)) } }
            } }
        }
        (pager("/audit", &q.params(), next.as_deref()))
    };
    Ok(page(&person, Section::Audit, "Audit trail", body))
}

async fn verify(State(state): State<AppState>, person: Person) -> PageResult<Response> {
    person.caller.require(AUDIT_READERS)?;
    let report = state
        .engine
        .audit()
        .verify(&person.caller.workspace_id)
        .await?;
    let body = html! {
        h1 { "Chain verification" }
        section.panel #verify-result {
            @match &report.broken {
                None => {
                    p { (super::layout::badge("ok")) " The chain is intact: "
                        (report.checked) " entries recomputed from the event log match." }
                }
                Some(b) => {
                    p { (super::layout::badge("broken")) " The chain is broken at position "
                        strong { (b.position) } ": " (b.reason) }
                    p { (report.checked) " entries were checked before it." }
                }
            }
            p { a href="/audit" { "Back to the trail" } }
        }
    };
    Ok(page(&person, Section::Audit, "Chain verification", body))
}

#[derive(Deserialize)]
struct ExportForm {
    #[serde(default)]
    format: Option<String>,
    #[serde(flatten)]
    q: AuditQuery,
}

async fn export(
    State(state): State<AppState>,
    person: Person,
    Query(f): Query<ExportForm>,
) -> PageResult<Response> {
    let format = match f.format.as_deref().unwrap_or("jsonl") {
        "csv" => crate::trail::Format::Csv,
        "jsonl" => crate::trail::Format::Jsonl,
        _ => {
            return Err(super::error::PageError::bad_request(
                "format must be csv or jsonl",
            ))
        }
    };
    let q = ExportQuery {
        format: Some(format),
        integration_id: some(&f.q.integration),
        actor: some(&f.q.actor),
        action: some(&f.q.action),
        from: some(&f.q.from),
        to: some(&f.q.to),
    };
    Ok(export_for(&state, &person.caller, q).await?)
}
