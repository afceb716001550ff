//! Pipedrive OAuth 2.0: auto-approved authorize with optional PKCE, the token
//! endpoint with HTTP Basic client authentication, refresh (optionally
//! single-use refresh tokens) and revoke.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::state::new_token;
use super::App;
use crate::grants::pkce_s256;

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn grant_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

/// Approves at once and redirects back with a single-use code.
pub async fn authorize(State(s): State<App>, RawQuery(q): RawQuery) -> Response {
    let Ok(p) = serde_urlencoded::from_str::<AuthorizeParams>(q.as_deref().unwrap_or("")) else {
        return grant_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing parameters",
        );
    };
    if p.client_id != s.config.client_id {
        return grant_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref() != Some("S256") {
        return grant_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "only code_challenge_method=S256 is supported",
        );
    }
    let code = new_token("pd-code");
    s.lock()
        .auth
        .codes
        .insert(code.clone(), (p.redirect_uri.clone(), p.code_challenge));
    let mut query = vec![("code", code)];
    query.extend(p.state.map(|st| ("state", st)));
    let sep = if p.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let location = format!("{}{sep}{encoded}", p.redirect_uri);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Whether the request carries `Authorization: Basic base64(client_id:secret)`.
fn client_authenticated(s: &App, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", s.config.client_id, s.config.client_secret);
    decoded == expected.as_bytes()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    redirect_uri: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

pub async fn token(State(s): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if !client_authenticated(&s, &headers) {
        return grant_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client authentication",
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return grant_error(StatusCode::BAD_REQUEST, "invalid_request", "invalid form");
    };
    let ttl = s.config.access_token_ttl_secs;
    let mut inner = s.lock();
    let auth = &mut inner.auth;
    let (access, refresh) = match form.grant_type.as_str() {
        "authorization_code" => {
            let key = form.code.as_deref().unwrap_or("");
            let Some((redirect, challenge)) = auth.codes.get(key) else {
                return grant_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid grant: authorization code is invalid",
                );
            };
            if form.redirect_uri.as_deref() != Some(redirect.as_str()) {
                return grant_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid grant: redirect_uri does not match",
                );
            }
            if let Some(challenge) = challenge {
                let verifier = form.code_verifier.as_deref().unwrap_or("");
                if pkce_s256(verifier) != *challenge {
                    return grant_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid grant: code_verifier does not match",
                    );
                }
            }
            auth.codes.remove(key);
            auth.issue(None, ttl)
        }
        "refresh_token" => {
            let token = form.refresh_token.unwrap_or_default();
            if !auth.refresh.contains_key(&token) {
                return grant_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid grant: refresh token is invalid",
                );
            }
            if s.config.rotate_refresh_tokens {
                auth.refresh.remove(&token);
                auth.issue(None, ttl)
            } else {
                auth.issue(Some(token), ttl)
            }
        }
        _ => {
            return grant_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "unsupported grant_type",
            )
        }
    };
    Json(token_body(&s, access, refresh)).into_response()
}

pub fn token_body(s: &App, access: String, refresh: String) -> serde_json::Value {
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "refresh_token": refresh,
        "scope": "base,contacts:full",
        "expires_in": s.config.access_token_ttl_secs,
        "api_domain": s.base_url,
    })
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

/// Revokes a refresh token (and its access tokens) or one access token's grant.
pub async fn revoke(State(s): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if !client_authenticated(&s, &headers) {
        return grant_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client authentication",
        );
    }
    let Ok(form) = serde_urlencoded::from_bytes::<RevokeForm>(&body) else {
        return grant_error(StatusCode::BAD_REQUEST, "invalid_request", "missing token");
    };
    s.lock().auth.revoke(&form.token);
    StatusCode::OK.into_response()
}
