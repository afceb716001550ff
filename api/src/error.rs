//! API errors: `{"error":{"code":"…","message":"…"}}` with the right status.
//! Domain failures become 4xx with their own words; infrastructure failures become a
//! generic 500 whose cause is logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use syncledger_crm::CrmError;
use syncledger_domain::record::RecordError;
use syncledger_domain::{IntegrationError, WorkspaceError};
use syncledger_engine::creation::CreationError;
use syncledger_engine::{EngineError, RunError};
use syncledger_store::CommandError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field the error is about, when one is named on its own.
    pub field: Option<String>,
    /// A 429's wait: `Retry-After` and the `RateLimit-*` headers (RFC 9110 §10.2.3; the
    /// IETF httpapi rate-limit fields as `RateLimit-Limit/-Remaining/-Reset`).
    pub rate_limit: Option<RateLimited>,
}

/// What a refused caller is told about its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window, in seconds.
    pub window_secs: u32,
    /// Seconds until the next request is allowed (at least 1).
    pub retry_after_secs: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a 5xx: the request's id as its log lines carry it, for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            rate_limit: None,
        }
    }

    /// 412 `precondition_failed`: `If-Match` named a version the resource is not at.
    pub fn stale(current: i64) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!(
                "the resource is at version {current} (ETag \"{current}\"), not the one If-Match names; read it again and reapply the change"
            ),
        )
    }

    /// 429 `rate_limited`, with when to come back.
    pub fn rate_limited(limit: RateLimited) -> Self {
        ApiError {
            rate_limit: Some(limit),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many requests for this token ({} per {} s); retry in {} s",
                    limit.limit, limit.window_secs, limit.retry_after_secs
                ),
            )
        }
    }

    /// A URL the server's outbound policy refuses: 400 naming the field.
    pub fn refused_url(field: &str, reason: &str) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                format!("{field}: {reason}"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                format!("{field}: {message}"),
            )
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden(role: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("role {role} may not do this"),
        )
    }

    /// Log the cause; tell the client only that something went wrong.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
                // Added on the way out for a 5xx (`app::with_request_id`).
                request_id: None,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: which scheme the API takes, and that the token given (if any)
            // was not accepted.
            headers.insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(
                    "Bearer realm=\"syncledger\", error=\"invalid_token\"",
                ),
            );
        }
        if let Some(limit) = self.rate_limit {
            let number = |n: u64| axum::http::HeaderValue::from(n);
            headers.insert(
                axum::http::header::RETRY_AFTER,
                number(limit.retry_after_secs),
            );
            headers.insert("ratelimit-limit", number(u64::from(limit.limit)));
            headers.insert("ratelimit-remaining", number(0));
            headers.insert("ratelimit-reset", number(limit.retry_after_secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<syncledger_vault::VaultError> for ApiError {
    fn from(e: syncledger_vault::VaultError) -> Self {
        ApiError::internal(e)
    }
}

impl From<syncledger_projections::ProjectionError> for ApiError {
    fn from(e: syncledger_projections::ProjectionError) -> Self {
        ApiError::internal(e)
    }
}

impl From<WorkspaceError> for ApiError {
    fn from(e: WorkspaceError) -> Self {
        use WorkspaceError as W;
        let (status, code) = match &e {
            W::PlanLimit { .. } => (StatusCode::PAYMENT_REQUIRED, "plan_limit"),
            W::DuplicateIntegrationName(_) => (StatusCode::CONFLICT, "duplicate_name"),
            W::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            W::LastAdminToken => (StatusCode::CONFLICT, "last_admin_token"),
            W::IntegrationNotActive => (StatusCode::CONFLICT, "invalid_transition"),
            W::NotFound | W::TokenNotFound => (StatusCode::NOT_FOUND, "not_found"),
            W::InvalidName
            | W::InvalidIntegrationName
            | W::InvalidTokenLabel
            | W::InvalidTokenExpiry
            | W::InvalidSignInLink => (StatusCode::BAD_REQUEST, "validation_failed"),
        };
        let message = match &e {
            W::InvalidIntegrationName => format!("name: {e}"),
            W::InvalidTokenLabel => format!("label: {e}"),
            W::InvalidTokenExpiry => format!("expires_at: {e}"),
            _ => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<IntegrationError> for ApiError {
    fn from(e: IntegrationError) -> Self {
        let (status, code) = match &e {
            IntegrationError::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            IntegrationError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            IntegrationError::Invalid { .. } => (StatusCode::BAD_REQUEST, "validation_failed"),
            IntegrationError::InvalidTransition { .. } => {
                (StatusCode::CONFLICT, "invalid_transition")
            }
            IntegrationError::CredentialsChanged => (StatusCode::CONFLICT, "credentials_changed"),
            IntegrationError::RefreshInProgress { .. } => {
                (StatusCode::CONFLICT, "refresh_in_progress")
            }
            IntegrationError::RunActive { .. } => (StatusCode::CONFLICT, "run_active"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let (status, code) = match &e {
            RecordError::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            RecordError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            RecordError::WrongEntity(_) | RecordError::NotLinked(_) => {
                (StatusCode::CONFLICT, "invalid_transition")
            }
            RecordError::NoSuchConflict { .. } => (StatusCode::CONFLICT, "conflict_not_open"),
            RecordError::NotDiverged { .. } => (StatusCode::CONFLICT, "not_diverged"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<CreationError> for ApiError {
    fn from(e: CreationError) -> Self {
        match e {
            CreationError::Workspace(e) => e.into(),
            CreationError::Integration(e) => e.into(),
            CreationError::Contended => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the workspace is too busy to take another integration now; retry later",
            ),
            CreationError::Store(cause) => ApiError::internal(cause),
        }
    }
}

impl<E> From<CommandError<E>> for ApiError
where
    E: std::error::Error + Into<ApiError>,
{
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                "the resource was changed concurrently; retry the request",
            ),
            CommandError::Stale { current } => ApiError::stale(current),
            CommandError::Store(cause) => ApiError::internal(cause),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::IntegrationNotFound => ApiError::not_found("integration"),
            RunError::RunNotFound => ApiError::not_found("sync run"),
            RunError::Unusable(reason) => {
                ApiError::new(StatusCode::BAD_REQUEST, "integration_unusable", reason)
            }
            RunError::Active { run_id } => ApiError::new(
                StatusCode::CONFLICT,
                "run_active",
                format!("sync run {run_id} is already active on this integration"),
            ),
            RunError::State(e) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", e.to_string())
            }
            RunError::NothingToRetry(m) => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_retry", m)
            }
            RunError::Invalid(e) => ApiError::invalid_field(e.field, e.message),
            RunError::Engine(e) => ApiError::from(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// How a provider's failure reads over HTTP (logged here; never a secret in the answer).
pub fn provider_error(cause: &CrmError) -> ApiError {
    tracing::warn!(error = %cause, "provider call failed");
    match cause {
        CrmError::Refused { field, reason } => ApiError::refused_url(field, reason),
        CrmError::QuotaExhausted(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "provider_quota_exhausted",
            "the provider's API quota is used up; try again when it resets",
        ),
        // The text names only the token type (cleaned), never the token.
        CrmError::UnsupportedTokenType(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "unsupported_token_type",
            cause.to_string(),
        ),
        // The adapter's own words (which answer, and why), never the provider's text.
        CrmError::Unavailable(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_entity_unavailable",
            cause.to_string(),
        ),
        CrmError::Unauthorized => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_unauthorized",
            "the provider rejected the stored credentials; reconnect the integration",
        ),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            "the provider refused or failed the request; try again later",
        ),
    }
}

/// How a use-case failure reads over HTTP. Messages never carry secrets.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound => ApiError::not_found("integration"),
            EngineError::RunNotFound => ApiError::not_found("sync run"),
            EngineError::Missing(what) => ApiError::not_found(what),
            EngineError::Invalid { field, message } => ApiError::invalid_field(&field, message),
            EngineError::Mapping(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_mapping", message)
            }
            EngineError::NotConnected => ApiError::new(
                StatusCode::CONFLICT,
                "not_connected",
                "the integration has no credentials; connect it first",
            ),
            EngineError::Unusable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "integration_unusable", e.to_string())
            }
            EngineError::Unsupported(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unsupported", message)
            }
            EngineError::Refused { code, message } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
            EngineError::NotNow { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            EngineError::Unauthenticated { code, message } => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            }
            EngineError::Unavailable { code, message } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            }
            EngineError::RefreshRejected => ApiError::new(
                StatusCode::CONFLICT,
                "reauthorization_required",
                e.to_string(),
            ),
            EngineError::Provider(cause) => provider_error(&cause),
            EngineError::Domain(d) => d.into(),
            EngineError::Workspace(d) => d.into(),
            EngineError::Record(d) => d.into(),
            EngineError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                "the integration was changed concurrently; retry the request",
            ),
            EngineError::Stale { current } => ApiError::stale(current),
            EngineError::Concurrent => ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                "the resource was changed concurrently; retry the request",
            ),
            EngineError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the workspace is too busy to take another integration now; retry later",
            ),
            EngineError::RefreshTimeout => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "refresh_pending",
                "another worker is refreshing the credentials; retry shortly",
            ),
            EngineError::Vault(_)
            | EngineError::Store(_)
            | EngineError::Corrupt(_)
            | EngineError::Internal(_) => ApiError::internal(e),
        }
    }
}
