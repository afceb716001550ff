//! OAuth 2.0 with PKCE: authorize (auto-approved), token, refresh rotation, revoke, token info.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::grants::{default_scopes, new_token, pkce_s256, AuthState, Code};
use crate::state::AppState;

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// Approves at once and redirects back with a single-use code.
pub async fn authorize(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p: AuthorizeParams = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::validation(format!("invalid authorize request: {e}")))?;
    if p.client_id != s.config.client_id {
        return Err(ApiError::validation("unknown client_id"));
    }
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref().unwrap_or("plain") != "S256"
    {
        return Err(ApiError::validation(
            "only code_challenge_method=S256 is supported",
        ));
    }
    let code = new_token("sbx-code");
    let scopes = p.scope.split_whitespace().map(String::from).collect();
    let entry = Code {
        redirect_uri: p.redirect_uri.clone(),
        challenge: p.code_challenge,
        scopes,
    };
    s.lock().auth.codes.insert(code.clone(), entry);
    let mut query = vec![("code", code)];
    query.extend(p.state.map(|st| ("state", st)));
    let sep = if p.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    let location = format!("{}{sep}{encoded}", p.redirect_uri);
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
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

/// A token-endpoint failure: HubSpot's `status` code plus the OAuth `error`.
struct GrantError(&'static str, &'static str, &'static str);

impl IntoResponse for GrantError {
    fn into_response(self) -> Response {
        let GrantError(status, error, message) = self;
        let body = json!({
            "status": status,
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
            "error": error,
            "error_description": message,
        });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

fn grant_error(status: &'static str, error: &'static str, message: &'static str) -> Response {
    GrantError(status, error, message).into_response()
}

pub async fn token(State(s): State<AppState>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return grant_error(
            "BAD_REQUEST",
            "invalid_request",
            "missing or invalid form parameters",
        );
    };
    let cfg = &s.config;
    if form.client_id.as_deref() != Some(cfg.client_id.as_str()) {
        return grant_error(
            "BAD_CLIENT_ID",
            "invalid_client",
            "missing or invalid client_id",
        );
    }
    if form.client_secret.as_deref() != Some(cfg.client_secret.as_str()) {
        return grant_error(
            "BAD_CLIENT_SECRET",
            "invalid_client",
            "missing or invalid client_secret",
        );
    }
    let mut inner = s.lock();
    let auth = &mut inner.auth;
    let scopes = match form.grant_type.as_str() {
        "authorization_code" => match redeem_code(auth, &form) {
            Ok(scopes) => scopes,
            Err(e) => return e.into_response(),
        },
        "refresh_token" => {
            let token = form.refresh_token.as_deref().unwrap_or("");
            match auth.refresh.remove(token) {
                Some(scopes) => scopes,
                None => {
                    return grant_error(
                        "BAD_REFRESH_TOKEN",
                        "invalid_grant",
                        "missing or unknown refresh token",
                    )
                }
            }
        }
        _ => {
            return grant_error(
                "BAD_GRANT_TYPE",
                "unsupported_grant_type",
                "unsupported grant_type",
            )
        }
    };
    Json(auth.issue(scopes, cfg.access_token_ttl_secs, cfg.hub_id)).into_response()
}

/// A code is consumed only by a successful exchange.
fn redeem_code(auth: &mut AuthState, form: &TokenForm) -> Result<Vec<String>, GrantError> {
    let key = form.code.as_deref().unwrap_or("");
    let Some(code) = auth.codes.get(key) else {
        return Err(GrantError(
            "BAD_AUTH_CODE",
            "invalid_grant",
            "missing or unknown auth code",
        ));
    };
    if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return Err(GrantError(
            "BAD_REDIRECT_URI",
            "invalid_grant",
            "redirect_uri does not match",
        ));
    }
    if let Some(challenge) = &code.challenge {
        let verifier = form.code_verifier.as_deref().unwrap_or("");
        if pkce_s256(verifier) != *challenge {
            return Err(GrantError(
                "BAD_AUTH_CODE",
                "invalid_grant",
                "code_verifier does not match code_challenge",
            ));
        }
    }
    Ok(auth.codes.remove(key).map(|c| c.scopes).unwrap_or_default())
}

pub async fn revoke_refresh(State(s): State<AppState>, Path(token): Path<String>) -> StatusCode {
    s.lock().auth.revoke(&token);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct RevokeForm {
    token: String,
}

/// `POST /oauth/v3/token/revoke`: accepts a refresh or an access token.
pub async fn revoke_v3(State(s): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let form: RevokeForm =
        serde_urlencoded::from_bytes(&body).map_err(|_| ApiError::validation("missing token"))?;
    let mut inner = s.lock();
    let refresh = inner
        .auth
        .access
        .get(&form.token)
        .map(|a| a.refresh.clone());
    inner.auth.revoke(refresh.as_deref().unwrap_or(&form.token));
    Ok(StatusCode::OK)
}

/// Token metadata, used by clients as a connection test.
pub async fn access_token_info(
    State(s): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cfg = &s.config;
    let (scopes, expires_in) = if cfg.static_token.as_deref() == Some(token.as_str()) {
        (default_scopes(), u64::from(u32::MAX))
    } else {
        let inner = s.lock();
        let access = inner
            .auth
            .access
            .get(&token)
            .ok_or_else(|| ApiError::not_found("access token not found"))?;
        let left = access
            .expires
            .saturating_duration_since(Instant::now())
            .as_secs();
        if left == 0 {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired",
            ));
        }
        (access.scopes.clone(), left)
    };
    Ok(Json(json!({
        "token": token,
        "user": "sandbox-user@example.com",
        "hub_domain": "sandbox.hubspot.local",
        "scopes": scopes,
        "hub_id": cfg.hub_id,
        "app_id": 1,
        "expires_in": expires_in,
        "user_id": 1,
        "token_type": "access",
    })))
}
