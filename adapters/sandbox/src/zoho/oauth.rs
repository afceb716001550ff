//! Zoho's accounts server: an authorize page that approves at once and names the
//! user's data centre in the redirect (`location`, `accounts-server`); the token
//! endpoint (client credentials and parameters in the form or the query; refresh
//! without rotation; `api_domain` in every answer) which, like Zoho, answers some
//! failures with HTTP 200 and an `error` member; and revocation.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::new_token;
use super::App;
use crate::error::{query_pairs, query_value};
use crate::pkce_s256;

/// What Zoho answers, with HTTP 200, when a client asks for tokens too often.
fn access_denied() -> Response {
    Json(json!({
        "error": "Access Denied",
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "status": "failure",
    }))
    .into_response()
}

/// A refused grant. Zoho answers these with 200 and `{"error": code}` as well
/// (an assumption of this sandbox: the facts file states it for throttling only).
fn grant_error(code: &str) -> Response {
    Json(json!({ "error": code })).into_response()
}

/// Approves at once: redirects to `redirect_uri` with the code, the state, the
/// location and the accounts server of the user's data centre.
pub async fn authorize(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let value = |k: &str| query_value(&pairs, k).map(str::to_owned);
    if value("client_id").as_deref() != Some(s.config.client_id.as_str()) {
        return (StatusCode::BAD_REQUEST, "Invalid Client").into_response();
    }
    let Some(redirect_uri) =
        value("redirect_uri").filter(|r| r.starts_with("http://") || r.starts_with("https://"))
    else {
        return (StatusCode::BAD_REQUEST, "Invalid Redirect Uri").into_response();
    };
    if value("response_type").as_deref() != Some("code") {
        return (StatusCode::BAD_REQUEST, "Invalid response_type").into_response();
    }
    let challenge = value("code_challenge");
    if challenge.is_some() && value("code_challenge_method").as_deref() != Some("S256") {
        return (StatusCode::BAD_REQUEST, "Invalid code_challenge_method").into_response();
    }
    let code = new_token("code");
    let accounts_server = {
        let mut data = s.lock();
        data.auth
            .codes
            .insert(code.clone(), (redirect_uri.clone(), challenge));
        data.accounts_server.clone()
    };
    let mut query = vec![("code", code)];
    query.extend(value("state").map(|st| ("state", st)));
    query.push(("location", "us".into()));
    query.push(("accounts-server", accounts_server));
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let location = format!("{redirect_uri}{sep}{encoded}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `POST /oauth/v2/token`: parameters in the form body or the query.
pub async fn token(State(s): State<App>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let mut pairs = query_pairs(q.as_deref());
    pairs.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default());
    let value = |k: &str| query_value(&pairs, k).map(str::to_owned);
    if value("client_id").as_deref() != Some(s.config.client_id.as_str())
        || value("client_secret").as_deref() != Some(s.config.client_secret.as_str())
    {
        return grant_error("invalid_client");
    }
    let ttl = s.config.access_token_ttl_secs;
    let mut data = s.lock();
    let api_domain = data.api_domain.clone();
    match value("grant_type").as_deref() {
        Some("authorization_code") => {
            let code = value("code").unwrap_or_default();
            let Some((redirect, challenge)) = data.auth.codes.remove(&code) else {
                return grant_error("invalid_code");
            };
            if value("redirect_uri").as_deref() != Some(redirect.as_str()) {
                return grant_error("invalid_redirect_uri");
            }
            if let Some(challenge) = challenge {
                if pkce_s256(&value("code_verifier").unwrap_or_default()) != challenge {
                    return grant_error("invalid_code");
                }
            }
            let (access, refresh) = data.auth.grant(ttl);
            Json(json!({
                "access_token": access, "refresh_token": refresh,
                "scope": "ZohoCRM.modules.contacts.ALL ZohoCRM.modules.accounts.ALL",
                "api_domain": api_domain, "token_type": "Bearer", "expires_in": ttl,
            }))
            .into_response()
        }
        Some("refresh_token") => {
            let refresh = value("refresh_token").unwrap_or_default();
            if data.auth.throttled(&refresh) {
                return access_denied();
            }
            // Not rotated: the answer carries no refresh token.
            match data.auth.access_for(&refresh, ttl) {
                Some(access) => Json(json!({
                    "access_token": access, "scope": "ZohoCRM.modules.contacts.ALL",
                    "api_domain": api_domain, "token_type": "Bearer", "expires_in": ttl,
                }))
                .into_response(),
                None => grant_error("invalid_code"),
            }
        }
        _ => grant_error("unsupported_grant_type"),
    }
}

/// `POST /oauth/v2/token/revoke?token=…`: ends a refresh token and its access tokens.
pub async fn revoke(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let Some(token) = query_value(&pairs, "token") else {
        return grant_error("invalid_request");
    };
    s.lock().auth.revoke(token);
    Json(json!({"status": "success"})).into_response()
}
