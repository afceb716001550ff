//! Failures of a provider call, classified so the engine can react:
//! refresh on `Unauthorized`, stop and report on `QuotaExhausted`, retry later
//! on the transient ones. Messages never contain tokens or request bodies.
//!
//! Text that comes from the provider (its message, category, grant error) is shown
//! only through [`clean`]: at most 200 visible characters, no control characters,
//! credentials redacted. Transport failures all read the same, so the text cannot
//! tell a closed port from a refusing or unroutable host.

use syncledger_domain::provider_text::clean;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CrmError {
    /// The access token is missing, expired or revoked: refresh and try again.
    #[error("the provider rejected the access token")]
    Unauthorized,
    /// A daily (or longer) quota is used up; retrying today will not help.
    #[error("the provider's API quota is exhausted: {}", clean(.0))]
    QuotaExhausted(String),
    /// Still rate limited after every retry.
    #[error("rate limited by the provider after {attempts} attempts")]
    RateLimited { attempts: u32 },
    /// A client error that retrying cannot fix (400, 403, 404, 409, ...).
    #[error(
        "the provider refused the request ({status} {}): {}",
        short(category),
        clean(message)
    )]
    Rejected {
        status: u16,
        category: String,
        message: String,
    },
    /// 5xx after every retry.
    #[error("the provider failed with {status} after {attempts} attempts")]
    Server { status: u16, attempts: u32 },
    /// Timeouts or connection failures after every retry. One text for every cause
    /// (refused, unroutable, timed out, reset): the difference is an oracle into
    /// networks a tenant should not map. The cause is logged at debug level.
    #[error("{TRANSPORT_TEXT}")]
    Transport { attempts: u32 },
    /// A 2xx whose body is not what the protocol promises.
    #[error("the provider sent a malformed response: {}", clean(.0))]
    Malformed(String),
    /// The OAuth server refused a grant for good (invalid_grant, invalid_client,
    /// unauthorized_client, ...): only a new authorization helps.
    #[error("the authorization server refused the grant: {}", clean(.0))]
    OAuth(String),
    /// The OAuth server answered `temporarily_unavailable` or `server_error` after
    /// every retry: a later attempt may succeed.
    #[error("the authorization server is temporarily unavailable (after {attempts} attempts)")]
    OAuthUnavailable { attempts: u32 },
    /// The token response names a `token_type` other than Bearer (`mac`, `DPoP`, ...),
    /// which syncledger cannot present: the token is not used.
    #[error(
        "the authorization server issued a token of type {:?}; only Bearer tokens are supported",
        short(.0)
    )]
    UnsupportedTokenType(String),
    /// The provider does not offer the entity to this account (an edition or a
    /// feature the account lacks): the text says which answer and why, in the adapter's
    /// own words. Only that entity's pass ends; it is not a failure of the connection.
    #[error("{}", clean(.0))]
    Unavailable(String),
    /// The adapter itself is misconfigured (bad URL, ...).
    #[error("invalid adapter configuration: {0}")]
    Config(String),
    /// The server's outbound policy refuses a URL (a tenant's `base_url`, a spec URL,
    /// a URL the provider returned): named by its field, never retried.
    #[error("{field}: {reason}")]
    Refused { field: String, reason: String },
}

/// What every transport failure reads as.
pub const TRANSPORT_TEXT: &str = "could not reach the provider";

/// The most characters of a provider's error category shown.
const CATEGORY_CHARS: usize = 60;

/// A provider's category code: cleaned and short.
fn short(category: &str) -> String {
    clean(category).chars().take(CATEGORY_CHARS).collect()
}

impl CrmError {
    /// The kind of failure in one word, for answers, events and logs.
    pub fn category(&self) -> &'static str {
        match self {
            CrmError::Unauthorized => "auth",
            CrmError::QuotaExhausted(_) => "quota_exhausted",
            CrmError::RateLimited { .. } => "rate_limited",
            CrmError::Rejected { status: 404, .. } => "not_found",
            CrmError::Rejected {
                status: 401 | 403, ..
            } => "auth",
            CrmError::Rejected { .. } => "invalid",
            CrmError::Server { .. } => "server",
            CrmError::Transport { .. } => "transport",
            CrmError::Malformed(_) => "malformed",
            CrmError::OAuth(_) | CrmError::UnsupportedTokenType(_) => "oauth",
            CrmError::OAuthUnavailable { .. } => "server",
            CrmError::Config(_) => "config",
            CrmError::Unavailable(_) => "unavailable",
            CrmError::Refused { .. } => "refused",
        }
    }

    /// Whether a later attempt of the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CrmError::RateLimited { .. }
                | CrmError::Server { .. }
                | CrmError::Transport { .. }
                | CrmError::Malformed(_)
                | CrmError::OAuthUnavailable { .. }
        )
    }

    /// Whether the authorization server's answer to a token request is definitive:
    /// the grant (or the client) was refused, or the tokens it issues cannot be used.
    /// Only then must a user authorize again; every other failure may pass.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, CrmError::OAuth(_) | CrmError::UnsupportedTokenType(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_is_shown_cleaned_and_transport_reads_one_way() {
        let hostile = format!("\u{1b}[31mno\u{202e} Bearer abc123 {}", "x".repeat(1000));
        let rejected = CrmError::Rejected {
            status: 400,
            category: format!("BAD\u{0}{}", "C".repeat(500)),
            message: hostile.clone(),
        };
        let text = rejected.to_string();
        assert!(
            text.starts_with("the provider refused the request (400 BAD"),
            "{text}"
        );
        assert!(text.contains("no Bearer [redacted]"), "{text}");
        assert!(!text.chars().any(char::is_control) && !text.contains('\u{202e}'));
        assert!(text.chars().count() <= 60 + 200 + 60, "{text}");
        for error in [
            CrmError::QuotaExhausted(hostile.clone()),
            CrmError::Malformed(hostile.clone()),
            CrmError::OAuth(hostile),
        ] {
            let text = error.to_string();
            assert!(!text.contains("abc123") && !text.chars().any(char::is_control));
        }
        assert_eq!(
            CrmError::Transport { attempts: 6 }.to_string(),
            CrmError::Transport { attempts: 1 }.to_string()
        );
        assert_eq!(rejected.category(), "invalid");
    }
}
