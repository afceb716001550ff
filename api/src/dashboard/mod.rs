//! The dashboard: pages rendered on the server (maud, checked at compile time) and served
//! by `serve` at `/`, beside the JSON API under `/v1`. Pages call the same engine use
//! cases as the JSON routes; core actions are plain HTML forms, and the embedded
//! `app.js` adds live updates and small conveniences.
//!
//! - [`session`]: who is signed in (a server-side session behind an HttpOnly cookie), and
//!   the form-token check every state-changing form passes ([`session::Posted`]);
//! - [`layout`]: the shared frame and pieces (forms, times, badges, paging, notices);
//! - [`error`]: the API's errors as HTML pages;
//! - [`assets`]: CSS, JavaScript and icons compiled into the binary;
//! - one module per page group.

pub mod assets;
pub mod error;
pub mod frame;
pub mod layout;
pub mod session;

mod audit;
mod conflicts;
mod connect;
mod destinations;
mod integration;
mod live;
mod mappings;
mod overview;
mod records;
mod runs;
mod settings;
mod sign_in;
mod tokens;
mod webhooks;

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

/// The URL a sign-in link's code opens.
pub fn link_url(public_url: &str, code: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .finish();
    format!("{}/sign-in/link?{query}", public_url.trim_end_matches('/'))
}

/// Every dashboard route, with the headers every page gets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/{name}", get(assets::serve))
        .route("/", get(overview::show))
        .route("/events", get(live::stream))
        .merge(sign_in::routes())
        .merge(tokens::routes())
        .merge(webhooks::routes())
        .merge(destinations::routes())
        .merge(audit::routes())
        .merge(conflicts::routes())
        .merge(records::routes())
        .merge(runs::routes())
        .merge(integration::routes())
        .merge(settings::routes())
        .merge(connect::routes())
        .merge(mappings::routes())
        .layer(axum::middleware::map_response(page_headers))
}

/// What every dashboard answer carries: no framing by other sites, scripts and styles
/// only from here, no referrer (a sign-in link's code is in its URL), nothing cached
/// that a person signed in to see.
async fn page_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
