//! The HTML document every dashboard answer is (head, assets, skip link, main) and the
//! pages that need no signed-in person: a bare page and a same-site redirect. Kept apart
//! from [`super::layout`] so that error pages (which need only this) do not depend on
//! sessions.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub(super) fn document(title: &str, header: Markup, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · syncledger" }
                link rel="stylesheet" href=(*super::assets::CSS_PATH);
                link rel="icon" href=(*super::assets::ICON_PATH) type="image/svg+xml";
                script src=(*super::assets::JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (header)
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page without navigation (signing in, errors before anyone is known).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let header = html! { header.top { a.brand href="/" { "syncledger" } } };
    html_response(status, document(title, header, body))
}

/// A page that sends the browser on to `path` (one of ours) by itself. Used after a
/// navigation that began on another site (an OAuth provider): the browser does not send
/// a SameSite=Strict cookie along a redirect that started elsewhere, but does on a
/// navigation this page starts.
pub fn same_site_redirect(path: &str) -> Response {
    let path = local_path(path).unwrap_or("/");
    let refresh = format!("0;url={path}");
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(refresh);
                title { "Continuing · syncledger" }
            }
            body { p { "Continuing… " a href=(path) { "continue" } } }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A path worth returning to after signing in: one of ours, never another site.
pub fn local_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(next)
}
