//! Failures of a provider call, classified so the engine can react:
//! refresh on `Unauthorized`, stop and report on `QuotaExhausted`, retry later
//! on the transient ones. Messages never contain tokens or request bodies.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CrmError {
    /// The access token is missing, expired or revoked: refresh and try again.
    #[error("the provider rejected the access token")]
    Unauthorized,
    /// A daily (or longer) quota is used up; retrying today will not help.
    #[error("the provider's API quota is exhausted: {0}")]
    QuotaExhausted(String),
    /// Still rate limited after every retry.
    #[error("rate limited by the provider after {attempts} attempts")]
    RateLimited { attempts: u32 },
    /// A client error that retrying cannot fix (400, 403, 404, 409, ...).
    #[error("the provider refused the request ({status} {category}): {message}")]
    Rejected {
        status: u16,
        category: String,
        message: String,
    },
    /// 5xx after every retry.
    #[error("the provider failed with {status} after {attempts} attempts")]
    Server { status: u16, attempts: u32 },
    /// Timeouts or connection failures after every retry.
    #[error("could not reach the provider after {attempts} attempts: {reason}")]
    Transport { attempts: u32, reason: String },
    /// A 2xx whose body is not what the protocol promises.
    #[error("the provider sent a malformed response: {0}")]
    Malformed(String),
    /// The OAuth server refused a grant (invalid_grant, invalid_client, ...).
    #[error("the authorization server refused the grant: {0}")]
    OAuth(String),
    /// The adapter itself is misconfigured (bad URL, ...).
    #[error("invalid adapter configuration: {0}")]
    Config(String),
    /// The server's outbound policy refuses a URL (a tenant's `base_url`, a spec URL,
    /// a URL the provider returned): named by its field, never retried.
    #[error("{field}: {reason}")]
    Refused { field: String, reason: String },
}

impl CrmError {
    /// Whether a later attempt of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CrmError::RateLimited { .. }
                | CrmError::Server { .. }
                | CrmError::Transport { .. }
                | CrmError::Malformed(_)
        )
    }
}
