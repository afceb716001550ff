//! Light Blue's `POST /api.php`: a form-encoded body (UTF-8) with `key`, `type` and the
//! lead's parameters, answered with a numeric status as text.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{Map, Value};

use super::LeadsState;

/// Contact and message parameters (the vendor's "Supported API parameters", contact
/// part): at least one must be given.
const CONTACT: &[&str] = &[
    "Message",
    "ContactNameFull",
    "ContactNameFirst",
    "ContactNameLast",
    "ContactNameMaiden",
    "ContactRole",
    "ContactTitle",
    "ContactDateOfBirth",
    "ContactSource",
    "ContactTag",
    "ContactMailingList",
    "ContactEmail",
    "ContactPhoneHome",
    "ContactPhoneWork",
    "ContactPhoneMobile",
    "ContactPhone",
    "ContactPhoneType",
    "ContactWebsite",
];

/// The "advanced parameters": who sent the lead and its reference.
const ADVANCED: &[&str] = &["Source", "SourceAPIVersion", "ID", "Reference"];

pub fn router() -> Router<Arc<LeadsState>> {
    Router::new().route("/api.php", post(submit))
}

fn status(text: &str) -> Response {
    (StatusCode::OK, text.to_owned()).into_response()
}

fn fault(status: StatusCode, text: String) -> Response {
    (status, text).into_response()
}

async fn submit(State(state): State<Arc<LeadsState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.count("POST /api.php");
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .map(str::trim)
                .map(str::to_ascii_lowercase)
                == Some("application/x-www-form-urlencoded".into())
        });
    if !form {
        return fault(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sandbox: the body must be application/x-www-form-urlencoded".into(),
        );
    }
    let pairs = match parse(&body) {
        Ok(pairs) => pairs,
        Err(fault) => return *fault,
    };
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if value("key") != Some(state.config.api_key.as_str()) {
        return status("-1 Invalid API key");
    }
    if value("type") != Some("contact form") {
        return status("-3 Invalid API request type");
    }
    let unknown = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| *k != "key" && *k != "type" && !CONTACT.contains(k) && !ADVANCED.contains(k));
    if let Some(name) = unknown {
        return fault(
            StatusCode::BAD_REQUEST,
            format!("sandbox: unknown parameter {name:?}"),
        );
    }
    if !pairs.iter().any(|(k, _)| CONTACT.contains(&k.as_str())) {
        return status("-3 No valid parameters were supplied");
    }
    let lead: Map<String, Value> = pairs
        .into_iter()
        .filter(|(k, _)| k != "key")
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if state.receive(lead) {
        status("0")
    } else {
        status("-4 Duplicate API request")
    }
}

/// The form's pairs: UTF-8, each name once.
fn parse(body: &Bytes) -> Result<Vec<(String, String)>, Box<Response>> {
    if std::str::from_utf8(body).is_err() {
        return Err(Box::new(fault(
            StatusCode::BAD_REQUEST,
            "sandbox: the body is not UTF-8".into(),
        )));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        Box::new(fault(
            StatusCode::BAD_REQUEST,
            "sandbox: the body is not form-encoded".into(),
        ))
    })?;
    let mut names = BTreeSet::new();
    if let Some((name, _)) = pairs.iter().find(|(k, _)| !names.insert(k.clone())) {
        return Err(Box::new(fault(
            StatusCode::BAD_REQUEST,
            format!("sandbox: parameter {name:?} given twice"),
        )));
    }
    Ok(pairs)
}
