//! The OAuth 2.0 web-server flow as Salesforce serves it: auto-approved
//! authorize with S256 PKCE, token (authorization_code, refresh_token without
//! rotation, no `expires_in`), revoke, and userinfo.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::grants::{new_token, AuthState, Code};
use super::state::AppState;
use crate::pkce_s256;

const USER_ID: &str = "0055g00000SbxUsAAB";

/// An OAuth failure: `{"error", "error_description"}` with 400.
fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

#[derive(Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// Approves at once and redirects back with a single-use code.
pub async fn authorize(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Ok(p) = serde_urlencoded::from_str::<AuthorizeParams>(q.as_deref().unwrap_or("")) else {
        return oauth_error("invalid_request", "invalid authorize parameters");
    };
    if p.client_id.as_deref() != Some(s.config.client_id.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    let Some(redirect_uri) = p
        .redirect_uri
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
    else {
        return oauth_error(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        );
    };
    if p.response_type.as_deref() != Some("code") {
        return oauth_error("unsupported_response_type", "response type not supported");
    }
    let method_ok = p.code_challenge_method.as_deref().unwrap_or("S256") == "S256";
    let Some(challenge) = p.code_challenge.filter(|c| !c.is_empty() && method_ok) else {
        return oauth_error("invalid_request", "missing or unsupported code_challenge");
    };
    let code = new_token("aPrx");
    let offline = p.scope.split_whitespace().any(|sc| sc == "refresh_token");
    let entry = Code {
        redirect_uri: redirect_uri.clone(),
        challenge,
        offline,
    };
    s.lock().auth.codes.insert(code.clone(), entry);
    let mut query = vec![("code", code)];
    query.extend(p.state.map(|st| ("state", st)));
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let location = format!("{redirect_uri}{sep}{encoded}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

pub async fn token(State(s): State<AppState>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return oauth_error("invalid_request", "missing or invalid form parameters");
    };
    let cfg = &s.config;
    if form.client_id.as_deref() != Some(cfg.client_id.as_str()) {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    // The secret is optional for PKCE clients, but a wrong one is refused.
    if form
        .client_secret
        .as_deref()
        .is_some_and(|secret| secret != cfg.client_secret)
    {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    let mut inner = s.lock();
    let auth = &mut inner.auth;
    let (access_token, refresh_token) = match form.grant_type.as_str() {
        "authorization_code" => match redeem_code(auth, &form) {
            Ok(offline) => {
                let issued = auth.issue(offline);
                (issued.access_token, issued.refresh_token)
            }
            Err((error, description)) => return oauth_error(error, description),
        },
        "refresh_token" => {
            let token = form.refresh_token.unwrap_or_default();
            if !auth.refresh.contains_key(&token) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
            // Salesforce does not rotate refresh tokens: none comes back.
            (auth.session(Some(token)), None)
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    };
    drop(inner);
    Json(token_body(&s, access_token, refresh_token)).into_response()
}

/// The token response, signed as Salesforce signs it: base64(HMAC-SHA256(id + issued_at)).
pub fn token_body(s: &AppState, access_token: String, refresh_token: Option<String>) -> Value {
    let id = format!("{}/id/{}/{USER_ID}", s.base_url, s.config.org_id);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let signature = Hmac::<Sha256>::new_from_slice(s.config.client_secret.as_bytes())
        .map(|mut mac| {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    let mut body = json!({
        "access_token": access_token,
        "instance_url": s.base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api refresh_token",
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = Value::String(refresh);
    }
    body
}

/// A code is consumed only by a successful exchange.
/// A failed redemption as (`error`, `error_description`).
type GrantFailure = (&'static str, &'static str);

fn redeem_code(auth: &mut AuthState, form: &TokenForm) -> Result<bool, GrantFailure> {
    let key = form.code.as_deref().unwrap_or("");
    let Some(code) = auth.codes.get(key) else {
        return Err(("invalid_grant", "invalid authorization code"));
    };
    if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return Err((
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ));
    }
    let verifier = form.code_verifier.as_deref().unwrap_or("");
    if pkce_s256(verifier) != code.challenge {
        return Err(("invalid_grant", "invalid code verifier"));
    }
    Ok(auth.codes.remove(key).is_some_and(|c| c.offline))
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

/// `POST /services/oauth2/revoke`: a refresh token takes its sessions with it.
pub async fn revoke(State(s): State<AppState>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let form = serde_urlencoded::from_bytes::<RevokeForm>(&body)
        .or_else(|_| serde_urlencoded::from_str::<RevokeForm>(q.as_deref().unwrap_or("")));
    let Ok(form) = form else {
        return oauth_error("unsupported_token_type", "missing token");
    };
    if s.lock().auth.revoke(&form.token) {
        StatusCode::OK.into_response()
    } else {
        oauth_error("invalid_token", "invalid token")
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
        .then(|| token.trim().to_string())
}

/// `GET /services/oauth2/userinfo`: who the session belongs to. A bad token is
/// a 403 with the plain-text body `Bad_OAuth_Token`, as the identity service answers.
pub async fn userinfo(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let valid = bearer(&headers).is_some_and(|t| s.lock().auth.is_valid(&t));
    if !valid {
        return (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response();
    }
    Json(json!({
        "sub": format!("{}/id/{}/{USER_ID}", s.base_url, s.config.org_id),
        "user_id": USER_ID,
        "organization_id": s.config.org_id,
        "preferred_username": "sandbox.user@example.com",
        "email": "sandbox.user@example.com",
        "name": "Sandbox User",
        "urls": { "rest": format!("{}/services/data/{{version}}/", s.base_url) },
    }))
    .into_response()
}
