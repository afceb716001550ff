//! Who is looking at a page: the session behind the cookie, and the checks every
//! state-changing form passes (a signed-in person, the session's form token).
//!
//! The cookie holds only a random session id (HttpOnly, SameSite=Strict, `Secure` and
//! `__Host-` when the public URL is https); the session itself is the engine's
//! ([`syncledger_engine::sign_in`]). A person acts with the role of the token or link they
//! signed in with, exactly as that token would in the JSON API.

use super::error::{PageError, PageResult};
pub use super::frame::local_path;
use crate::auth::{Caller, ClientRequestId, RequestId};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use syncledger_domain::Role;
use syncledger_engine::sign_in::{same_secret, Session};

const COOKIE: &str = "syncledger_session";
const SECURE_COOKIE: &str = "__Host-syncledger_session";

/// A signed-in person.
#[derive(Clone, Debug)]
pub struct Person {
    /// The same caller the JSON API would see for this person's token.
    pub caller: Caller,
    /// The session's form token, for the hidden `_csrf` field of every form.
    pub csrf: String,
}

impl Person {
    pub fn role(&self) -> Role {
        self.caller.role
    }

    /// Admin or operator: may change integrations, records, runs and conflicts.
    pub fn can_write(&self) -> bool {
        matches!(self.caller.role, Role::Admin | Role::Operator)
    }

    pub fn is_admin(&self) -> bool {
        self.caller.role == Role::Admin
    }

    pub fn require_write(&self) -> PageResult<()> {
        if self.can_write() {
            Ok(())
        } else {
            Err(PageError::forbidden(self.caller.role.as_str()))
        }
    }

    pub fn require_admin(&self) -> PageResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(PageError::forbidden(self.caller.role.as_str()))
        }
    }
}

/// Whether cookies must be `Secure` (the public URL is https).
pub fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn cookie_name(state: &AppState) -> &'static str {
    if secure(state) {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value that hands the browser a new session id.
pub fn session_cookie(state: &AppState, id: &str) -> String {
    let secure = if secure(state) { "; Secure" } else { "" };
    format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(state)
    )
}

/// The `Set-Cookie` value that makes the browser forget its session id.
pub fn cleared_cookie(state: &AppState) -> String {
    let secure = if secure(state) { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(state)
    )
}

/// The session id the browser sent, if any.
pub fn session_id(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(state);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Why there is no person: not signed in (or expired), or not allowed on this page.
pub enum Refused {
    /// GET without a session: go and sign in, then come back.
    SignIn(String),
    /// An auditor on a page outside the audit trail's: to the audit pages.
    ToAudit,
    Page(PageError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn(next) => {
                let query =
                    serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                Redirect::to(&format!("/sign-in?{query}")).into_response()
            }
            Refused::ToAudit => Redirect::to("/audit").into_response(),
            Refused::Page(e) => e.into_response(),
        }
    }
}

impl From<PageError> for Refused {
    fn from(e: PageError) -> Self {
        Refused::Page(e)
    }
}

/// Pages an auditor may see: the audit trail's, and the live stream and sign-out.
fn auditor_may(path: &str) -> bool {
    path == "/audit" || path.starts_with("/audit/") || path == "/sign-out" || path == "/events"
}

impl FromRequestParts<AppState> for Person {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refused> {
        let path = parts.uri.path().to_string();
        let session = match session_id(state, &parts.headers) {
            Some(id) => state
                .engine
                .sign_in()
                .resume(&id, state.dashboard_idle)
                .await
                .map_err(PageError::from)?,
            None => None,
        };
        let Some(session) = session else {
            if parts.method == Method::GET {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                return Err(Refused::SignIn(next));
            }
            return Err(Refused::Page(PageError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "your session has ended; sign in again",
            )));
        };
        if state
            .limiter
            .check_key(&session.principal_id().to_string())
            .is_err()
        {
            return Err(Refused::Page(PageError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; wait a moment and try again",
            )));
        }
        if session.role == Role::Auditor && !auditor_may(&path) {
            if path == "/" && parts.method == Method::GET {
                return Err(Refused::ToAudit);
            }
            return Err(Refused::Page(PageError::forbidden(session.role.as_str())));
        }
        Ok(person(parts, session))
    }
}

fn person(parts: &Parts, session: Session) -> Person {
    let correlation_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let request_id = parts
        .extensions
        .get::<ClientRequestId>()
        .map(|r| r.0.clone());
    crate::auth::record_caller(&session.workspace_id, session.principal_id());
    Person {
        caller: Caller {
            workspace_id: session.workspace_id.clone(),
            token_id: session.principal_id().to_string(),
            actor: session.actor.clone(),
            role: session.role,
            correlation_id,
            request_id,
            // A person signed in to the dashboard acts for themselves.
            acting_for: None,
        },
        csrf: session.csrf,
    }
}

/// A state-changing form (`application/x-www-form-urlencoded`) from a signed-in person,
/// its form token checked before anything else. `form` is the body without `_csrf`
/// (repeated fields, e.g. checkboxes, deserialise into `Vec`s); `pairs` is the same body
/// as name/value pairs in order.
pub struct Posted<T> {
    pub person: Person,
    pub form: T,
    pub pairs: Vec<(String, String)>,
}

/// For forms with nothing but their form token.
#[derive(serde::Deserialize, Default)]
pub struct NoFields {}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Refused> {
        let (mut parts, body) = req.into_parts();
        let person = Person::from_request_parts(&mut parts, state).await?;
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| PageError::bad_request("the form could not be read"))?;
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let presented = pairs
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        if !form_type || !same_secret(&person.csrf, presented) {
            return Err(Refused::Page(PageError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this form has expired or did not come from this dashboard; reload the page and try again",
            )));
        }
        let pairs: Vec<(String, String)> =
            pairs.into_iter().filter(|(k, _)| k != "_csrf").collect();
        let rest = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish();
        let form = serde_html_form::from_str::<T>(&rest).map_err(|e| {
            PageError::bad_request(format!("the form is incomplete or malformed: {e}"))
        })?;
        Ok(Posted {
            person,
            form,
            pairs,
        })
    }
}

/// A [`Posted`] form that changes something: its sender must be able to write (admin or
/// operator), checked right after the form token, so no handler can forget it. Posts
/// anyone signed in may send (signing out, checking an expression) take [`Posted`].
pub struct Writing<T>(pub Posted<T>);

impl<T> std::ops::Deref for Writing<T> {
    type Target = Posted<T>;
    fn deref(&self) -> &Posted<T> {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for Writing<T> {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Refused> {
        let posted = Posted::<T>::from_request(req, state).await?;
        posted.person.require_write().map_err(Refused::Page)?;
        Ok(Writing(posted))
    }
}
