//! ShootQ's contact-form API: the form viewed by its link code, then leads submitted to
//! its id as JSON, refused with Django REST-style error dicts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::LeadsState;

/// The submit body's fields (strings; `address`, an object, is not simulated).
const FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "email",
    "phone",
    "additional_comments",
    "company_name",
    "event_date",
    "event_location",
    "url",
    "job_role",
    "job_type",
    "referral_type",
];

const PREFIX: &str = "/api/v1/contactform/contactformtemplate";

pub fn router() -> Router<Arc<LeadsState>> {
    Router::new()
        .route(&format!("{PREFIX}/{{code}}/view/"), get(view))
        .route(&format!("{PREFIX}/{{id}}/submit/"), post(submit))
}

fn errors(status: StatusCode, dict: Value) -> Response {
    (status, Json(dict)).into_response()
}

fn not_found() -> Response {
    errors(StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
}

async fn view(State(state): State<Arc<LeadsState>>, Path(code): Path<String>) -> Response {
    state.count("GET view");
    if code != state.config.form_link_code {
        return not_found();
    }
    Json(json!({
        "id": state.config.form_id,
        "job_types_details": [{"label": "Wedding", "value": "wedding"}],
        "job_roles_details": [{"label": "Bride", "value": "bride"}],
        "referral_types_details": [{"label": "Website", "value": "website"}],
        "timezone": "America/New_York",
    }))
    .into_response()
}

async fn submit(
    State(state): State<Arc<LeadsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.count("POST submit");
    if id != state.config.form_id.to_string() {
        return not_found();
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/json"));
    if !json {
        return errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"detail": "Unsupported media type in request."}),
        );
    }
    let lead = match check(&body) {
        Ok(lead) => lead,
        Err(dict) => return errors(StatusCode::BAD_REQUEST, dict),
    };
    state.receive(lead);
    Json(json!({})).into_response()
}

/// The lead, or the error dict refusing it: an object of known fields holding strings,
/// with an email.
fn check(body: &Bytes) -> Result<Map<String, Value>, Value> {
    let Ok(Value::Object(lead)) = serde_json::from_slice::<Value>(body) else {
        return Err(json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}));
    };
    let mut dict = Map::new();
    for (name, value) in &lead {
        if !FIELDS.contains(&name.as_str()) {
            dict.insert(name.clone(), json!(["Unknown field."]));
        } else if !value.is_string() {
            dict.insert(name.clone(), json!(["Not a valid string."]));
        }
    }
    let email = lead.get("email").and_then(Value::as_str).map(str::trim);
    match email {
        None | Some("") => {
            dict.insert("email".into(), json!(["This field is required."]));
        }
        Some(e) if !e.contains('@') => {
            dict.insert("email".into(), json!(["Enter a valid email address."]));
        }
        Some(_) => {}
    }
    if dict.is_empty() {
        Ok(lead)
    } else {
        Err(Value::Object(dict))
    }
}
