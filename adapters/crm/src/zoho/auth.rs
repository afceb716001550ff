//! Zoho's OAuth 2.0: the accounts server of the user's data centre, checked before
//! anything is sent to it, and the token responses it gives, checked before they are
//! used.
//!
//! The authorization request starts at the configured accounts server (US by default);
//! Zoho names the user's own in the callback (`accounts-server`). Codes are exchanged,
//! tokens refreshed and revoked there. The token response names the `api_domain` the
//! tokens are for. Both are checked against Zoho's data centres
//! ([`syncledger_domain::outbound::zoho`]), and must be the same data centre; a
//! development sandbox (the integration's loopback `base_url`) stands in for both.
//!
//! The refresh token is not rotated: a refresh answers a new access token only, and the
//! one refresh token is kept. The data centre to refresh at is the one of the stored
//! `api_domain` (kept as the tokens' `instance_url`), so nothing else needs storing.

use chrono::{Duration as ChronoDuration, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use syncledger_domain::outbound::zoho::{self as dc, DataCentre, ZohoUrlError};
use syncledger_domain::provider_text::clean;

use super::wire::TokenBody;
use super::ZohoAdapter;
use crate::error::CrmError;
use crate::http::Lane;
use crate::types::Tokens;

/// The error `Access Denied` a throttled token request answers with (HTTP 200).
const THROTTLED: &str = "access denied";

/// Where a set of tokens was issued: a data centre, or the development sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issuer {
    Zoho(DataCentre),
    Sandbox(String),
}

impl Issuer {
    pub fn accounts_url(&self) -> String {
        match self {
            Issuer::Zoho(dc) => dc.accounts_url(),
            Issuer::Sandbox(url) => url.clone(),
        }
    }
}

fn refused(field: &str, error: ZohoUrlError) -> CrmError {
    CrmError::Refused {
        field: field.to_owned(),
        reason: error.to_string(),
    }
}

/// The origin of `url` (scheme, host, port), for comparing with an override.
fn origin(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

fn same_origin(a: &str, b: &str) -> bool {
    origin(a).is_some_and(|o| Some(o) == origin(b))
}

/// Token-endpoint failures: an OAuth error body is the grant's refusal.
pub fn classify_token_failure(status: StatusCode, body: &[u8]) -> Option<CrmError> {
    if !status.is_client_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let parsed: TokenBody = serde_json::from_slice(body).ok()?;
    parsed.error.map(|e| grant_error(&e))
}

/// An `error` of the accounts server: throttling passes, anything else needs the user.
fn grant_error(code: &str) -> CrmError {
    if code.trim().eq_ignore_ascii_case(THROTTLED) {
        // Zoho's token throttle (10 access tokens per refresh token per 10 minutes):
        // a later attempt succeeds; an immediate retry only extends it.
        return CrmError::RateLimited { attempts: 1 };
    }
    CrmError::OAuth(clean(code))
}

impl ZohoAdapter {
    /// The accounts server the callback named, checked: one of Zoho's, or the
    /// development sandbox this adapter was configured with. Absent: the configured one.
    pub(super) fn issuer_named(&self, named: Option<&str>) -> Result<Issuer, CrmError> {
        let named = named.unwrap_or(self.config.accounts_url.as_str());
        let issuer = match &self.config.accounts_override {
            Some(sandbox) if same_origin(named, sandbox) => Issuer::Sandbox(sandbox.clone()),
            _ => Issuer::Zoho(
                dc::by_accounts_server(named).map_err(|e| refused("accounts-server", e))?,
            ),
        };
        self.http
            .guard()
            .check("accounts-server", &issuer.accounts_url())?;
        Ok(issuer)
    }

    /// The issuer of stored tokens, from their `api_domain`.
    pub(super) fn issuer_of(&self, api_domain: Option<&str>) -> Result<Issuer, CrmError> {
        match (api_domain, &self.config.accounts_override) {
            (None, _) => self.issuer_named(None),
            (Some(url), Some(sandbox)) if self.is_api_override(url) => {
                Ok(Issuer::Sandbox(sandbox.clone()))
            }
            (Some(url), _) => dc::by_api_domain(url)
                .map(Issuer::Zoho)
                .map_err(|e| refused("api_domain", e)),
        }
    }

    fn is_api_override(&self, url: &str) -> bool {
        self.config
            .api_override
            .as_deref()
            .is_some_and(|o| same_origin(url, o))
    }

    /// The `api_domain` a token response named, checked against its issuer: Zoho's
    /// API domain of the same data centre, or the sandbox for a sandbox issuer.
    fn api_domain(&self, issuer: &Issuer, returned: Option<&str>) -> Result<String, CrmError> {
        let domain = match (issuer, returned) {
            (Issuer::Zoho(dc), None) => dc.api_url(),
            (Issuer::Sandbox(_), None) => self.config.api_domain.clone(),
            (Issuer::Sandbox(_), Some(url)) if self.is_api_override(url) => {
                self.config.api_domain.clone()
            }
            (Issuer::Sandbox(_), Some(_)) => {
                return Err(refused("api_domain", ZohoUrlError::UnknownHost))
            }
            (Issuer::Zoho(dc), Some(url)) => {
                let named = dc::by_api_domain(url).map_err(|e| refused("api_domain", e))?;
                if named != *dc {
                    return Err(CrmError::Refused {
                        field: "api_domain".into(),
                        reason: "belongs to another data centre than the accounts server".into(),
                    });
                }
                named.api_url()
            }
        };
        self.http.guard().check_returned("api_domain", &domain)?;
        Ok(domain)
    }

    /// One request to `{accounts}/oauth/v2/token`, its answer checked.
    pub(super) async fn token_request(
        &self,
        issuer: &Issuer,
        form: &[(&str, &str)],
        previous_refresh: Option<&str>,
    ) -> Result<Tokens, CrmError> {
        let url = format!("{}/oauth/v2/token", issuer.accounts_url());
        let secret = self.config.client_secret.expose_secret();
        let reply = self
            .accounts
            .send::<TokenBody>(Lane::General, |c| {
                let mut body = form.to_vec();
                body.extend([
                    ("client_id", self.config.client_id.as_str()),
                    ("client_secret", secret),
                ]);
                c.post(&url).form(&body)
            })
            .await?;
        let body = reply
            .body
            .ok_or_else(|| CrmError::Malformed("an empty token response".into()))?;
        if let Some(error) = &body.error {
            return Err(grant_error(error));
        }
        if let Some(kind) = body
            .token_type
            .as_deref()
            .filter(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(CrmError::UnsupportedTokenType(kind.to_owned()));
        }
        let access = body
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CrmError::Malformed("a token response without access_token".into()))?;
        let instance_url = self.api_domain(issuer, body.api_domain.as_deref())?;
        let expires_in = body.expires_in.as_ref().and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        Ok(Tokens {
            access_token: SecretString::from(access),
            refresh_token: body
                .refresh_token
                .as_deref()
                .or(previous_refresh)
                .map(SecretString::from),
            expires_at: expires_in
                .filter(|s| *s > 0)
                .map(|s| Utc::now() + ChronoDuration::seconds(s.min(86_400 * 365))),
            instance_url: Some(instance_url),
        })
    }

    /// Revokes the refresh token (ending the grant) at the tokens' accounts server.
    pub(super) async fn revoke_at(&self, tokens: &Tokens) -> Result<(), CrmError> {
        let issuer = self.issuer_of(tokens.instance_url.as_deref())?;
        let token = tokens
            .refresh_token
            .as_ref()
            .unwrap_or(&tokens.access_token)
            .expose_secret()
            .to_owned();
        let url = format!("{}/oauth/v2/token/revoke", issuer.accounts_url());
        self.accounts
            .send::<Value>(Lane::General, |c| {
                c.post(&url).query(&[("token", token.as_str())])
            })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_token_request_is_an_error_that_passes() {
        let error = grant_error("Access Denied");
        assert!(matches!(error, CrmError::RateLimited { .. }));
        assert!(error.is_transient() && !error.needs_reauthorization());
        assert!(grant_error("invalid_code").needs_reauthorization());
        let body = br#"{"error":"invalid_client"}"#;
        assert!(matches!(
            classify_token_failure(StatusCode::BAD_REQUEST, body),
            Some(CrmError::OAuth(_))
        ));
        assert!(classify_token_failure(StatusCode::BAD_GATEWAY, body).is_none());
    }
}
