//! The frame every page shares (document, navigation, sign-out) and the small pieces pages
//! are built from: form tokens, one-button forms, times, badges, empty states, paging and
//! the banner shown after an action.

use super::session::Person;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped};

pub use super::frame::{bare, same_site_redirect};
use super::frame::{document, html_response};

/// Where a page sits in the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Overview,
    Connect,
    Conflicts,
    Records,
    Runs,
    Audit,
    Tokens,
    Webhooks,
    Destinations,
    None,
}

struct NavItem {
    section: Section,
    href: &'static str,
    label: &'static str,
}

const NAV: &[NavItem] = &[
    NavItem {
        section: Section::Overview,
        href: "/",
        label: "Integrations",
    },
    NavItem {
        section: Section::Connect,
        href: "/connect",
        label: "Connect",
    },
    NavItem {
        section: Section::Runs,
        href: "/runs",
        label: "Runs",
    },
    NavItem {
        section: Section::Conflicts,
        href: "/conflicts",
        label: "Conflicts",
    },
    NavItem {
        section: Section::Records,
        href: "/records",
        label: "Records",
    },
    NavItem {
        section: Section::Audit,
        href: "/audit",
        label: "Audit",
    },
    NavItem {
        section: Section::Tokens,
        href: "/tokens",
        label: "Tokens",
    },
    NavItem {
        section: Section::Webhooks,
        href: "/webhooks",
        label: "Webhooks",
    },
    NavItem {
        section: Section::Destinations,
        href: "/destinations",
        label: "Destinations",
    },
];

/// Whether `person` may see `section` at all (the same rules as the JSON API's roles).
pub fn may_see(person: &Person, section: Section) -> bool {
    use syncledger_domain::Role;
    match (person.role(), section) {
        (Role::Auditor, s) => s == Section::Audit,
        (_, Section::Connect) => person.can_write(),
        (_, Section::Audit | Section::Tokens | Section::Webhooks | Section::Destinations) => {
            person.is_admin()
        }
        _ => true,
    }
}

/// A page with the navigation of `person`'s role, answered 200.
pub fn page(person: &Person, section: Section, title: &str, body: Markup) -> Response {
    page_status(StatusCode::OK, person, section, title, body)
}

/// A page with the navigation, answered with `status` (e.g. a form shown again with its
/// errors: 400).
pub fn page_status(
    status: StatusCode,
    person: &Person,
    section: Section,
    title: &str,
    body: Markup,
) -> Response {
    let header = html! {
        header.top {
            a.brand href="/" { "syncledger" }
            nav aria-label="Main" {
                ul {
                    @for item in NAV.iter().filter(|i| may_see(person, i.section)) {
                        li {
                            a href=(item.href)
                              aria-current=[(item.section == section).then_some("page")] {
                                (item.label)
                            }
                        }
                    }
                }
            }
            div.who {
                span.role title="Your role in this workspace" { (person.role().as_str()) }
                form method="post" action="/sign-out" #sign-out {
                    (csrf_field(person))
                    button type="submit" { "Sign out" }
                }
            }
        }
    };
    html_response(status, document(title, header, body))
}

/// The hidden form-token field every state-changing form carries.
pub fn csrf_field(person: &Person) -> Markup {
    html! { input type="hidden" name="_csrf" value=(person.csrf); }
}

/// A form with one button that posts to `action`. A `class` containing `danger` asks for
/// confirmation first (in the browser; without JavaScript it posts straight away, so
/// destructive actions that matter have a confirmation page of their own).
pub fn post_button(person: &Person, action: &str, label: &str, class: &str) -> Markup {
    let confirm = class
        .split_whitespace()
        .any(|c| c == "danger")
        .then(|| format!("{label}: are you sure?"));
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(person))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// An instant, in UTC in the page; the browser shows it in its own time zone.
pub fn time(at: &DateTime<Utc>) -> Markup {
    let iso = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = at.format("%Y-%m-%d %H:%M UTC").to_string();
    html! { time datetime=(iso) data-local { (text) } }
}

/// [`time`] for an RFC 3339 text as the read models keep it; shown as is if it does not
/// parse.
pub fn time_str(at: &str) -> Markup {
    match DateTime::parse_from_rfc3339(at) {
        Ok(t) => time(&t.with_timezone(&Utc)),
        Err(_) => html! { (at) },
    }
}

/// A status badge: the status's own word, coloured by kind.
pub fn badge(status: &str) -> Markup {
    let kind = match status {
        "connected" | "completed" | "succeeded" | "resolved" | "ok" | "active" => "good",
        "paused" | "pending" | "queued" | "running" | "partial" | "open" | "pending_auth" => "wait",
        "error" | "failed" | "quota_exhausted" | "reconnect_needed" | "revoked" | "broken" => "bad",
        _ => "plain",
    };
    let text = status.replace('_', " ");
    html! { span class={ "badge " (kind) } { (text) } }
}

/// What an empty list shows: what it is and what to do next.
pub fn empty_state(title: &str, next_step: Markup) -> Markup {
    html! {
        div.empty role="status" {
            p.empty-title { (title) }
            p { (next_step) }
        }
    }
}

/// The link to the next page of a list, keeping its filters. Nothing when there is none.
pub fn pager(path: &str, params: &[(&str, String)], next_cursor: Option<&str>) -> Markup {
    let Some(cursor) = next_cursor else {
        return html! {};
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    query.append_pair("cursor", cursor);
    let href = format!("{path}?{}", query.finish());
    html! { nav.pager aria-label="Pages" { a rel="next" href=(href) { "Next page →" } } }
}

/// Messages shown after an action (`?done=<code>` on the page it redirects to). A closed
/// set: the query can only pick one of these, never put its own words on the page.
pub const NOTICES: &[(&str, &str)] = &[
    ("signed-in", "You are signed in."),
    ("created", "Created."),
    (
        "rebuilding",
        "Rebuild asked for: fresh copies of the tables fill from the log, then replace the live rows in one transaction.",
    ),
    ("saved", "Saved."),
    (
        "paused",
        "The integration is paused: no runs start until you resume it.",
    ),
    (
        "resumed",
        "The integration is running on its schedule again.",
    ),
    (
        "connected",
        "Connected. Test the connection, then run a first sync.",
    ),
    (
        "disconnected",
        "Disconnected. Its records and history are kept.",
    ),
    (
        "started",
        "The run has started; it updates here as it goes.",
    ),
    (
        "cancelled",
        "The run was asked to stop; it stops after its current page.",
    ),
    ("retried", "A new run retries the failed records."),
    (
        "rolled-back",
        "The rollback run has started; it updates here as it goes.",
    ),
    ("resolved", "The conflict is resolved."),
    ("ignored", "The conflict is ignored."),
    ("revoked", "The token is revoked: it stops working at once."),
    ("rule-added", "The rule is saved."),
    (
        "settings-saved",
        "The sync settings are saved; the next run uses them.",
    ),
    ("rule-removed", "The rule is removed."),
    (
        "reapplied",
        "The mapping was applied again to the records already fetched.",
    ),
];

/// The banner for `?done=<code>`, when the code is a known one.
pub fn notice(code: Option<&str>) -> Markup {
    match code.and_then(|c| NOTICES.iter().find(|(k, _)| *k == c)) {
        Some((_, text)) => html! { p.notice role="status" { (text) } },
        None => html! {},
    }
}

/// Text that may be long (ids, values) cut to `max` characters with an ellipsis; the
/// whole text stays in the title.
pub fn clipped(text: &str, max: usize) -> Markup {
    if text.chars().count() <= max {
        return html! { (text) };
    }
    let short: String = text.chars().take(max).collect();
    html! { span title=(text) { (short) "…" } }
}

/// JSON text shown as it is (escaped), for field values of any type.
pub fn value(v: &serde_json::Value) -> Markup {
    match v {
        serde_json::Value::Null => html! { span.null { "empty" } },
        serde_json::Value::String(s) => html! { (s) },
        other => html! { code { (other.to_string()) } },
    }
}

/// An icon from the embedded sprite, hidden from screen readers (the text beside it says
/// what it is). `name` is one of the sprite's ids (lower-case letters and dashes).
pub fn icon(name: &str) -> Markup {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_lowercase() || *c == '-')
        .collect();
    PreEscaped(format!(
        r#"<svg class="icon" aria-hidden="true" focusable="false" width="16" height="16"><use href="{}#{name}"></use></svg>"#,
        *super::assets::ICON_PATH
    ))
}
