//! Signing in and out: with an API token typed into a form, or with a one-time link from
//! `syncledger dashboard link`. Opening a link shows a button and only the button's post
//! uses the link up, so a mail scanner or chat preview that fetches the URL does not.

use super::error::{PageError, PageResult};
use super::layout::bare;
use super::session::{cleared_cookie, local_path, session_cookie, session_id, NoFields, Posted};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::Role;
use syncledger_engine::sign_in::Started;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(form).post(with_token))
        .route("/sign-in/link", get(link_page).post(with_link))
        .route("/sign-out", post(sign_out))
}

#[derive(Deserialize, Default)]
pub struct Next {
    #[serde(default)]
    next: Option<String>,
}

fn token_form(next: &str, error: Option<&str>) -> Markup {
    html! {
        section.panel.narrow {
            h1 { "Sign in" }
            p.hint {
                "Paste an API token of your workspace (it starts with " code { "slk_" } "). "
                "The dashboard keeps a session; the token is not stored in your browser. "
                "No token? Ask your administrator for a sign-in link."
            }
            form.stack method="post" action="/sign-in" #sign-in {
                input type="hidden" name="next" value=(next);
                div {
                    label for="token" { "API token" }
                    input #token type="password" name="token" autocomplete="off" required
                        aria-describedby=[error.map(|_| "token-error")];
                    @if let Some(error) = error {
                        p.field-error #token-error role="alert" { (error) }
                    }
                }
                div { button type="submit" { "Sign in" } }
            }
        }
    }
}

async fn form(Query(q): Query<Next>) -> Response {
    let next = q.next.as_deref().and_then(local_path).unwrap_or("/");
    bare(StatusCode::OK, "Sign in", token_form(next, None))
}

/// Refuse a sign-in posted from another site (login CSRF: signing a victim into the
/// attacker's workspace). Browsers send `Origin` on every form post, and current ones
/// `Sec-Fetch-Site`, which no page can set. `Sec-Fetch-Site` decides when present: under
/// the dashboard's `Referrer-Policy: no-referrer`, Chromium posts the dashboard's own
/// forms with `Origin: null`, which the `Origin` comparison alone would refuse (found by
/// the browser tests, `tests/tests/browser`).
fn same_origin(headers: &HeaderMap) -> PageResult<()> {
    let refused = || {
        PageError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "sign-in forms are accepted only from this dashboard",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(refused())
        };
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    if origin_host.is_some() && origin_host == host {
        Ok(())
    } else {
        Err(refused())
    }
}

fn signed_in(state: &AppState, started: Started, next: Option<&str>) -> Response {
    let to = match (started.session.role, next.and_then(local_path)) {
        (Role::Auditor, _) => "/audit".to_string(),
        (_, Some(next)) if next != "/" => next.to_string(),
        _ => "/?done=signed-in".to_string(),
    };
    (
        [(header::SET_COOKIE, session_cookie(state, &started.id))],
        Redirect::to(&to),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn with_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> PageResult {
    same_origin(&headers)?;
    let next = f.next.as_deref().and_then(local_path).unwrap_or("/");
    match state.engine.sign_in().with_token(&f.token).await? {
        Some(started) => Ok(signed_in(&state, started, Some(next))),
        None => Ok(bare(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            token_form(
                next,
                Some("That token is not valid: it is unknown, revoked or mistyped."),
            ),
        )),
    }
}

#[derive(Deserialize)]
struct Code {
    #[serde(default)]
    code: String,
}

async fn link_page(Query(q): Query<Code>) -> PageResult {
    if q.code.is_empty() {
        return Err(PageError::bad_request(
            "this sign-in link has no code; copy the whole link",
        ));
    }
    let body = html! {
        section.panel.narrow {
            h1 { "Sign in to syncledger" }
            p { "This one-time link signs you in to your workspace. It works once, for 15 minutes." }
            form method="post" action="/sign-in/link" #sign-in-link {
                input type="hidden" name="code" value=(q.code);
                button type="submit" { "Sign in" }
            }
        }
    };
    Ok(bare(StatusCode::OK, "Sign in", body))
}

async fn with_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Code>,
) -> PageResult {
    same_origin(&headers)?;
    match state.engine.sign_in().with_link(&f.code).await? {
        Some(started) => Ok(signed_in(&state, started, None)),
        None => Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_link",
            "this sign-in link cannot be used: it was used already, it expired (links last \
             15 minutes), or it is incomplete. Ask for a new one (`syncledger dashboard link`).",
        )),
    }
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    _posted: Posted<NoFields>,
) -> PageResult {
    if let Some(id) = session_id(&state, &headers) {
        state.engine.sign_in().end(&id).await?;
    }
    Ok((
        [(header::SET_COOKIE, cleared_cookie(&state))],
        Redirect::to("/sign-in"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::same_origin;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    /// Chromium's post of the dashboard's own form under `Referrer-Policy: no-referrer`.
    #[test]
    fn same_origin_fetch_with_a_null_origin_is_accepted() {
        let h = headers(&[("sec-fetch-site", "same-origin"), ("origin", "null")]);
        assert!(same_origin(&h).is_ok());
    }

    #[test]
    fn other_sites_are_refused_whatever_the_origin_says() {
        for site in ["cross-site", "same-site", "none"] {
            let h = headers(&[
                ("sec-fetch-site", site),
                ("origin", "http://127.0.0.1:8080"),
            ]);
            assert!(same_origin(&h).is_err(), "Sec-Fetch-Site: {site}");
        }
    }

    /// Without `Sec-Fetch-Site` (older browsers) the `Origin` comparison decides.
    #[test]
    fn without_fetch_metadata_the_origin_decides() {
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(same_origin(&headers(&[("origin", "https://evil.example")])).is_err());
        assert!(same_origin(&headers(&[("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[])).is_ok());
    }
}
