//! The dashboard's own CSS, JavaScript and icons, compiled into the binary
//! (`include_str!`): nothing to build with Node, nothing to install beside the binary.
//! Each path carries a digest of its content, so browsers may cache it for good and
//! still get a new file after an upgrade.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICONS: &str = include_str!("assets/icons.svg");

fn short_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

pub static CSS_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/assets/app-{}.css", short_digest(CSS)));
pub static JS_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/assets/app-{}.js", short_digest(JS)));
pub static ICON_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/assets/icons-{}.svg", short_digest(ICONS)));

/// The asset at `/assets/{name}`; 404 for anything else (including an old digest).
pub async fn serve(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let path = format!("/assets/{name}");
    let (body, kind) = if path == *CSS_PATH {
        (CSS, "text/css; charset=utf-8")
    } else if path == *JS_PATH {
        (JS, "text/javascript; charset=utf-8")
    } else if path == *ICON_PATH {
        (ICONS, "image/svg+xml")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
