//! Authentication of API calls (every style at once) and the OAuth 2.0 server.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::Utc;
use serde_json::json;

use super::state::{error, query, GenericState, PendingCode};
use crate::pkce_s256;

/// Whether the request carries any credential the sandbox accepts.
fn authorized(s: &GenericState, req: &Request) -> bool {
    let config = &s.config;
    let headers = req.headers();
    if headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == config.api_key)
    {
        return true;
    }
    if query(req.uri().query())
        .get("api_key")
        .is_some_and(|v| *v == config.api_key)
    {
        return true;
    }
    let Some((scheme, value)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        return basic_pair(value).is_some_and(|(user, password)| {
            user == config.username && password == config.password
        });
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if value == config.bearer_token {
            return true;
        }
        let now = Utc::now();
        return s
            .lock()
            .access
            .get(value)
            .is_some_and(|expiry| *expiry > now);
    }
    false
}

fn basic_pair(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

pub async fn guard(State(s): State<Arc<GenericState>>, req: Request, next: Next) -> Response {
    if authorized(&s, &req) {
        next.run(req).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid credentials",
        )
    }
}

/// Auto-approves: redirects back with a code bound to the PKCE challenge.
pub async fn authorize(State(s): State<Arc<GenericState>>, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let get = |name: &str| params.get(name).cloned().unwrap_or_default();
    if get("client_id") != s.config.client_id {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    let redirect_uri = get("redirect_uri");
    if redirect_uri.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is required",
        );
    }
    let challenge = get("code_challenge");
    if challenge.is_empty() || get("code_challenge_method") != "S256" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    }
    let code = format!("gac-{}", uuid::Uuid::new_v4().simple());
    s.lock().codes.insert(
        code.clone(),
        PendingCode {
            challenge,
            redirect_uri: redirect_uri.clone(),
        },
    );
    let mut pairs = vec![("code", code), ("state", get("state"))];
    pairs.extend(s.config.issuer.clone().map(|issuer| ("iss", issuer)));
    let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{encoded}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

/// The client credentials, from the Basic header or the form body.
fn client_credentials(
    headers: &HeaderMap,
    form: &std::collections::BTreeMap<String, String>,
) -> (String, String) {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, value)| basic_pair(value.trim()));
    basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    })
}

/// Code exchange (PKCE-checked) and refresh (rotating: the old refresh token dies).
pub async fn token(
    State(s): State<Arc<GenericState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = query(std::str::from_utf8(&body).ok());
    let (id, secret) = client_credentials(&headers, &form);
    if id != s.config.client_id || secret != s.config.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let ttl = s.config.access_token_ttl_secs;
    let mut inner = s.lock();
    if let Some(queued) = inner.take_token_error() {
        return queued_error(&queued);
    }
    match field("grant_type").as_str() {
        "authorization_code" => {
            let Some(pending) = inner.codes.remove(&field("code")) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if pending.redirect_uri != field("redirect_uri")
                || pkce_s256(&field("code_verifier")) != pending.challenge
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        "refresh_token" => {
            if inner.refresh.remove(&field("refresh_token")).is_none() {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
    let pair = inner.issue_tokens(ttl);
    let mut body = json!({
        "access_token": pair.access_token,
        "token_type": inner.token_type,
        "expires_in": pair.expires_in,
    });
    if s.config.refresh_tokens {
        body["refresh_token"] = json!(pair.refresh_token);
    } else {
        inner.refresh.remove(&pair.refresh_token);
    }
    Json(body).into_response()
}

/// A queued token-endpoint error: its status, `Retry-After` and OAuth error body.
fn queued_error(queued: &super::state::TokenError) -> Response {
    let status = StatusCode::from_u16(queued.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = queued
        .error
        .as_ref()
        .map(|code| json!({ "error": code }).to_string())
        .unwrap_or_default();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(seconds) = queued.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

/// RFC 7009 revocation: the client authenticates as at the token endpoint; the
/// answer is 200 whether or not the token was known.
pub async fn revoke(
    State(s): State<Arc<GenericState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = query(std::str::from_utf8(&body).ok());
    let (id, secret) = client_credentials(&headers, &form);
    if id != s.config.client_id || secret != s.config.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    s.lock().revoke(token, form.get("token_type_hint").cloned());
    StatusCode::OK.into_response()
}
