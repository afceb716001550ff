//! Bearer tokens: `slk_<token id>_<secret>`. Only SHA-256 of the secret is stored.

use crate::error::{ApiError, RateLimited};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use syncledger_domain::Role;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub workspace_id: String,
    /// The API token (or, for a dashboard session started by a sign-in link, the link)
    /// whose rate limit and stream caps the request counts against.
    pub token_id: String,
    /// Who acts, as the events this request causes name it: `token:<id>` or `link:<id>`.
    pub actor: String,
    pub role: Role,
    /// One per request, minted by the server: every event the request causes carries it.
    pub correlation_id: String,
    /// The client's own `x-request-id`, if it sent a sane one: recorded beside the
    /// correlation id, never in its place.
    pub request_id: Option<String>,
    /// The end user an app's token acts for (`X-Acting-For`): recorded in every event the
    /// request causes, so the audit trail shows it next to the token.
    pub acting_for: Option<String>,
}

impl Caller {
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(self.role.as_str()))
        }
    }

    pub fn metadata(&self) -> syncledger_store::Metadata {
        // Events a request causes directly name the request as their cause; follow-up
        // events (e.g. a slot released by a disconnection) name the event instead.
        syncledger_store::Metadata::new(
            self.actor.clone(),
            &self.workspace_id,
            &self.correlation_id,
        )
        .with_request_id(self.request_id.clone())
        .acting_for(self.acting_for.clone())
        .caused_by(format!("request:{}", self.correlation_id))
    }
}

pub const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Viewer];
pub const WRITERS: &[Role] = &[Role::Admin, Role::Operator];
pub const ADMINS: &[Role] = &[Role::Admin];
pub const AUDIT_READERS: &[Role] = &[Role::Admin, Role::Auditor];

/// A caller with a write role (admin or operator). As an extractor it runs before the
/// body is read, so a caller without the role gets 403 whatever body it sends, not a 400
/// about the body.
pub struct Writer(pub Caller);

/// A caller with the admin role, checked before the body like [`Writer`].
pub struct Admin(pub Caller);

/// The caller, refused with 403 unless its role is in `allowed`.
async fn caller_in(
    parts: &mut Parts,
    state: &AppState,
    allowed: &[Role],
) -> Result<Caller, ApiError> {
    let caller = Caller::from_request_parts(parts, state).await?;
    caller.require(allowed)?;
    Ok(caller)
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller_in(parts, state, WRITERS).await.map(Writer)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller_in(parts, state, ADMINS).await.map(Admin)
    }
}

fn parse_bearer(header: &str) -> Option<(&str, &str)> {
    syncledger_engine::workspaces::parse_token(header.strip_prefix("Bearer ")?)
}

/// Names the workspace and the token id (never the token) in the request's span, so the
/// access line and every line after authentication carry them.
pub fn record_caller(workspace_id: &str, token_id: &str) {
    let span = tracing::Span::current();
    span.record("workspace", tracing::field::display(workspace_id));
    span.record("token_id", tracing::field::display(token_id));
}

/// A request's bearer token, checked against the store: its id and what it speaks for.
/// Kept in the request's extensions by a middleware that had to check it first (the
/// `Idempotency-Key` guard), so [`Caller`] does not look it up a second time.
#[derive(Clone, Debug)]
pub struct Verified {
    pub token_id: String,
    pub found: syncledger_engine::workspaces::Authenticated,
}

/// The request's bearer token, if it is a valid one (`None`: missing, malformed, unknown,
/// revoked, expired or a wrong secret; the caller cannot tell which).
pub async fn verify_bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Verified>, ApiError> {
    let Some((id, secret)) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_bearer)
    else {
        return Ok(None);
    };
    let found = syncledger_engine::workspaces::authenticate(&state.store.any, id, secret).await?;
    Ok(found.map(|found| Verified {
        token_id: id.to_string(),
        found,
    }))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verified = match parts.extensions.get::<Verified>() {
            Some(v) => v.clone(),
            None => verify_bearer(state, &parts.headers)
                .await?
                .ok_or_else(ApiError::unauthorized)?,
        };
        let Verified { token_id, found } = verified;
        let id = token_id.as_str();
        if let Err(not_until) = state.limiter.check_key(&id.to_string()) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Err(ApiError::rate_limited(RateLimited {
                limit: state.rate_limit_per_minute,
                window_secs: 60,
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }));
        }
        record_caller(&found.workspace_id, id);
        let role = found.role;
        // An auditor reads the audit trail and nothing else, whatever a route allows.
        if role == Role::Auditor && !is_audit_route(parts) {
            return Err(ApiError::forbidden(role.as_str()));
        }
        let correlation_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let request_id = parts
            .extensions
            .get::<ClientRequestId>()
            .map(|r| r.0.clone());
        let acting_for = acting_for(&parts.headers)?;
        Ok(Caller {
            workspace_id: found.workspace_id,
            token_id: id.to_string(),
            actor: format!("token:{id}"),
            role,
            correlation_id,
            request_id,
            acting_for,
        })
    }
}

/// Longest `X-Acting-For` kept (an email address's limit).
pub const MAX_ACTING_FOR: usize = 254;

/// The `X-Acting-For` header: who an app's request acts for, 1 to [`MAX_ACTING_FOR`]
/// visible ASCII characters (an email address or the app's own user id; no spaces or
/// control characters, so it is safe in logs and exports). Anything else is 400 naming the
/// header: an identity an auditor will read is never silently dropped or altered.
pub fn acting_for(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("x-acting-for") else {
        return Ok(None);
    };
    let text = value.to_str().ok().map(str::trim).unwrap_or_default();
    if visible_ascii(text, MAX_ACTING_FOR) {
        Ok(Some(text.to_string()))
    } else {
        Err(ApiError::invalid_field(
            "X-Acting-For",
            format!(
                "must be 1 to {MAX_ACTING_FOR} visible ASCII characters, e.g. an email address"
            ),
        ))
    }
}

/// `/v1/audit` and the routes under it.
fn is_audit_route(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|p| p.as_str() == "/v1/audit" || p.as_str().starts_with("/v1/audit/"))
}

/// The request's correlation id, minted by middleware for every request.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The `x-request-id` the client sent, when it is sane (see [`client_request_id`]).
#[derive(Clone, Debug)]
pub struct ClientRequestId(pub String);

/// Longest client request id kept.
pub const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id` worth keeping: 1 to [`MAX_REQUEST_ID`] visible ASCII
/// characters (no spaces or control characters, so it is safe in logs and CSV-free of
/// line breaks).
pub fn client_request_id(value: &str) -> Option<String> {
    visible_ascii(value, MAX_REQUEST_ID).then(|| value.to_string())
}

/// 1 to `max` visible ASCII characters (no spaces or control characters): what a value a
/// client names itself with (request id, `X-Acting-For`, `Idempotency-Key`) must be to be
/// kept, logged and exported as it is.
pub fn visible_ascii(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_back_and_hash_matches() {
        use syncledger_engine::workspaces::{hash_secret, mint};
        let t = mint();
        let header = format!("Bearer {}", t.bearer);
        let (id, secret) = parse_bearer(&header).unwrap_or_default();
        assert_eq!(id, t.id);
        assert_eq!(hash_secret(secret), t.secret_hash);
        assert!(!t.secret_hash.contains(secret));
    }

    proptest::proptest! {
        /// A client's request id is kept exactly when it is 1 to 128 visible ASCII
        /// characters, and then unchanged.
        #[test]
        fn client_request_ids_are_bounded_and_printable(value in "\\PC{0,140}|[!-~]{0,140}") {
            let kept = client_request_id(&value);
            let sane = !value.is_empty()
                && value.len() <= MAX_REQUEST_ID
                && value.chars().all(|c| c.is_ascii_graphic());
            proptest::prop_assert_eq!(kept.is_some(), sane);
            if let Some(kept) = kept {
                proptest::prop_assert_eq!(kept, value);
            }
        }
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for h in [
            "",
            "Bearer",
            "Bearer slk_",
            "Bearer slk_abc",
            "Basic slk_a_b",
            "Bearer xyz_a_b",
        ] {
            assert!(parse_bearer(h).is_none(), "{h}");
        }
    }
}
