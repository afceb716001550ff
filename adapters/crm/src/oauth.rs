//! The OAuth 2.0 code flow with PKCE, shared by every provider, through the
//! `oauth2` crate over the adapter's own `reqwest` client (one HTTP stack, see
//! ARCHITECTURE.md).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client as OAuthClient, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::CrmError;
use crate::http::{retry_after, Executor, Lane};
use crate::outbound;
use crate::types::Tokens;

/// The largest token response read. A token endpoint answers a few hundred bytes;
/// a larger body is refused, instead of being read into memory without end.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The grant error recorded when the token endpoint refuses the client itself.
pub const INVALID_CLIENT: &str = "invalid_client: the client credentials were rejected";

/// Parameters of the authorization request that the flow itself sets (RFC 6749
/// §4.1.1, RFC 7636): extra parameters may not override them.
pub const PROTOCOL_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Where a provider's OAuth app lives and how it authenticates to the token endpoint.
#[derive(Clone, Debug)]
pub struct OAuthApp {
    /// Full URL of the authorize page.
    pub authorize_url: String,
    /// Full URL of the token endpoint.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// `true`: client credentials in an HTTP Basic header (Pipedrive); `false`: in
    /// the form body (HubSpot, Salesforce).
    pub basic_auth: bool,
    /// More parameters of the authorization request (`prompt=consent`, ...), none
    /// of them a [`PROTOCOL_PARAMS`] name.
    pub extra_params: Vec<(String, String)>,
}

/// Fields some providers add to the token response.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ProviderFields {
    /// Salesforce: the host to call the REST API on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_url: Option<String>,
    /// Pipedrive: the company's API host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
    /// Salesforce: the identity URL (`.../id/{orgId}/{userId}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ExtraTokenFields for ProviderFields {}

/// A token response with the provider's extra fields.
pub type ProviderTokenResponse = StandardTokenResponse<ProviderFields, BasicTokenType>;

type Client = OAuthClient<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn client(config: &OAuthApp) -> Result<Client, CrmError> {
    let auth_url = AuthUrl::new(config.authorize_url.clone())
        .map_err(|e| CrmError::Config(format!("authorize url: {e}")))?;
    let token_url = TokenUrl::new(config.token_url.clone())
        .map_err(|e| CrmError::Config(format!("token url: {e}")))?;
    let auth_type = if config.basic_auth {
        AuthType::BasicAuth
    } else {
        AuthType::RequestBody
    };
    Ok(OAuthClient::<
        BasicErrorResponse,
        ProviderTokenResponse,
        BasicTokenIntrospectionResponse,
        StandardRevocableToken,
        BasicRevocationErrorResponse,
    >::new(ClientId::new(config.client_id.clone()))
    .set_client_secret(ClientSecret::new(
        config.client_secret.expose_secret().to_owned(),
    ))
    .set_auth_uri(auth_url)
    .set_token_uri(token_url)
    .set_auth_type(auth_type))
}

fn redirect(redirect_uri: &str) -> Result<RedirectUrl, CrmError> {
    RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| CrmError::Config(format!("redirect uri: {e}")))
}

pub fn authorization_url(
    config: &OAuthApp,
    redirect_uri: &str,
    state: &str,
) -> Result<(String, String), CrmError> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state.to_owned();
    let client = client(config)?.set_redirect_uri(redirect(redirect_uri)?);
    let mut request = client
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(config.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge);
    for (name, value) in &config.extra_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let (url, _) = request.url();
    Ok((url.to_string(), verifier.secret().clone()))
}

pub async fn exchange_code(
    config: &OAuthApp,
    http: &Executor,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Tokens, CrmError> {
    let redirect = redirect(redirect_uri)?;
    let response = client(config)?
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .set_redirect_uri(Cow::Owned(redirect))
        .request_async(&transport(http))
        .await
        .map_err(grant_error)?;
    tokens(&response, None)
}

/// Refreshes; a provider that answers without a new refresh token keeps the old one.
pub async fn refresh(
    config: &OAuthApp,
    http: &Executor,
    refresh_token: &str,
) -> Result<Tokens, CrmError> {
    let token = RefreshToken::new(refresh_token.to_owned());
    let response = client(config)?
        .exchange_refresh_token(&token)
        .request_async(&transport(http))
        .await
        .map_err(grant_error)?;
    tokens(&response, Some(refresh_token))
}

/// Revokes at an RFC 7009 endpoint: the refresh token when there is one (servers
/// then end its access tokens too), else the access token, authenticated like the
/// token requests. Through the executor: its outbound guard, timeouts and retries.
pub async fn revoke(
    config: &OAuthApp,
    http: &Executor,
    revocation_url: &str,
    tokens: &Tokens,
) -> Result<(), CrmError> {
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&tokens.access_token, "access_token"),
    };
    let secret = config.client_secret.expose_secret();
    http.send::<serde_json::Value>(Lane::General, |client| {
        let mut form = vec![("token", token.expose_secret()), ("token_type_hint", hint)];
        let request = client.post(revocation_url);
        if config.basic_auth {
            request
                .basic_auth(&config.client_id, Some(secret))
                .form(&form)
        } else {
            form.extend([
                ("client_id", config.client_id.as_str()),
                ("client_secret", secret),
            ]);
            request.form(&form)
        }
    })
    .await
    .map(drop)
}

/// What a provider tells of the authorization server that answers its callbacks
/// (RFC 9207): the issuer identifier, and whether every response carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerRule {
    pub issuer: String,
    /// `true`: a callback without `iss` is refused too.
    pub always_sent: bool,
}

/// Why a callback's `iss` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssuerMismatch {
    #[error("the authorization response names another issuer than the provider's")]
    Different,
    #[error(
        "the authorization response does not name its issuer, which this provider always does"
    )]
    Missing,
}

/// The RFC 9207 mix-up defence: a callback's `iss` must be the provider's issuer
/// (simple string comparison), and must be there when the provider always sends it.
/// Without a known issuer nothing is checked.
pub fn check_issuer(
    rule: Option<&IssuerRule>,
    received: Option<&str>,
) -> Result<(), IssuerMismatch> {
    match (rule, received) {
        (None, _) => Ok(()),
        (Some(rule), Some(iss)) if iss == rule.issuer => Ok(()),
        (Some(_), Some(_)) => Err(IssuerMismatch::Different),
        (Some(rule), None) if rule.always_sent => Err(IssuerMismatch::Missing),
        (Some(_), None) => Ok(()),
    }
}

/// Only Bearer tokens (RFC 6750) can be presented; the type is case-insensitive.
fn bearer_only(response: &ProviderTokenResponse) -> Result<(), CrmError> {
    let kind = response.token_type().as_ref();
    if kind.eq_ignore_ascii_case("bearer") {
        Ok(())
    } else {
        Err(CrmError::UnsupportedTokenType(kind.to_owned()))
    }
}

fn tokens(
    response: &ProviderTokenResponse,
    previous_refresh: Option<&str>,
) -> Result<Tokens, CrmError> {
    bearer_only(response)?;
    let extra = response.extra_fields();
    let expires_at = response
        .expires_in()
        .and_then(|d| ChronoDuration::from_std(d).ok())
        .map(|d| Utc::now() + d);
    Ok(Tokens {
        access_token: SecretString::from(response.access_token().secret().as_str()),
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().as_str())
            .or(previous_refresh)
            .map(SecretString::from),
        expires_at,
        instance_url: extra.instance_url.clone().or(extra.api_domain.clone()),
    })
}

/// Why a token request did not produce a response to parse.
#[derive(Debug, thiserror::Error)]
enum TokenTransport {
    #[error("token request failed")]
    Http(#[from] reqwest::Error),
    #[error("the token response is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("refused by the outbound policy")]
    Refused(CrmError),
    /// Still failing in a way a later attempt may not (5xx, 429,
    /// `temporarily_unavailable`, unreachable) after every retry.
    #[error("the token endpoint is unavailable")]
    Unavailable(CrmError),
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, TokenTransport>> + Send>>;

/// oauth2's async HTTP client over the adapter's own client: the same timeouts,
/// resolver and retry policy as every provider call, the URL checked by the
/// adapter's guard, and the body read up to [`MAX_TOKEN_RESPONSE_BYTES`].
///
/// Transient answers of the token endpoint (see [`transient`]) are retried with the
/// executor's backoff, honouring `Retry-After`; when retries run out the failure
/// stays transient ([`TokenTransport::Unavailable`]) instead of reading as a refused
/// grant, so nobody is asked to reconnect because a server was briefly down.
fn transport(http: &Executor) -> impl Fn(HttpRequest) -> HttpFuture + '_ {
    move |request: HttpRequest| {
        let client = http.client().clone();
        let guard = http.guard().clone();
        let policy = http.policy().clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            guard
                .check_url("token_url", request.url())
                .map_err(TokenTransport::Refused)?;
            let mut attempt = 0;
            loop {
                // A form body can always be copied; were it a stream, one try is all.
                let Some(copy) = request.try_clone() else {
                    return send_once(&client, request).await;
                };
                let outcome = send_once(&client, copy).await;
                let Some((error, after)) = transient(&outcome, attempt + 1) else {
                    return outcome;
                };
                let Some(delay) = policy.delay(attempt, after) else {
                    return Err(TokenTransport::Unavailable(error));
                };
                tracing::debug!(attempt, ?delay, %error, "retrying the token request");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        })
    }
}

/// One token request, its body read up to [`MAX_TOKEN_RESPONSE_BYTES`].
async fn send_once(
    client: &reqwest::Client,
    request: reqwest::Request,
) -> Result<HttpResponse, TokenTransport> {
    let mut response = client.execute(request).await?;
    let mut builder = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(TokenTransport::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    // Status and headers were copied from a valid response.
    Ok(builder.body(body).unwrap_or_default())
}

/// The `error` member of an OAuth error response (RFC 6749 §5.2).
#[derive(Deserialize)]
struct ErrorCode {
    error: String,
}

/// OAuth error codes that say "not now" rather than "no" (RFC 6749 §4.1.2.1;
/// servers send them from the token endpoint too).
const UNAVAILABLE_CODES: [&str; 2] = ["temporarily_unavailable", "server_error"];

/// Whether a token request's outcome is worth another try, and with which error
/// it ends if every try fails: 429 and 5xx (with their `Retry-After`), the
/// `temporarily_unavailable` and `server_error` codes, and failures to reach the
/// server. Definitive answers (`invalid_grant`, `invalid_client`, ...) are not.
fn transient(
    outcome: &Result<HttpResponse, TokenTransport>,
    attempts: u32,
) -> Option<(CrmError, Option<Duration>)> {
    let response = match outcome {
        Ok(response) => response,
        Err(TokenTransport::Http(e)) if outbound::refusal_of(e).is_none() => {
            tracing::debug!(
                connect = e.is_connect(),
                timeout = e.is_timeout(),
                "token endpoint transport failure"
            );
            return Some((CrmError::Transport { attempts }, None));
        }
        Err(_) => return None,
    };
    let status = response.status();
    let after = retry_after(response.headers());
    match status.as_u16() {
        429 => Some((CrmError::RateLimited { attempts }, after)),
        code @ 500..=599 => Some((
            CrmError::Server {
                status: code,
                attempts,
            },
            after,
        )),
        _ if status.is_success() => None,
        _ => serde_json::from_slice::<ErrorCode>(response.body())
            .ok()
            .filter(|body| UNAVAILABLE_CODES.contains(&body.error.as_str()))
            .map(|_| (CrmError::OAuthUnavailable { attempts }, after)),
    }
}

/// Maps token-endpoint failures without echoing the response body, which may
/// hold tokens.
fn grant_error(
    error: RequestTokenError<TokenTransport, oauth2::basic::BasicErrorResponse>,
) -> CrmError {
    match error {
        // Definitive answers: the grant or the client is refused (transient codes were
        // retried and end as `Unavailable`).
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidClient => CrmError::OAuth(INVALID_CLIENT.into()),
            other => CrmError::OAuth(other.to_string()),
        },
        RequestTokenError::Request(
            TokenTransport::Refused(error) | TokenTransport::Unavailable(error),
        ) => error,
        RequestTokenError::Request(TokenTransport::TooLarge) => CrmError::Malformed(format!(
            "token response larger than {MAX_TOKEN_RESPONSE_BYTES} bytes"
        )),
        // One text whatever failed (see `CrmError::Transport`).
        RequestTokenError::Request(TokenTransport::Http(e)) => {
            if let Some(refused) = outbound::refusal_of(&e) {
                return refused;
            }
            tracing::debug!(
                connect = e.is_connect(),
                timeout = e.is_timeout(),
                "token endpoint transport failure"
            );
            CrmError::Transport { attempts: 1 }
        }
        RequestTokenError::Parse(_, _) => {
            CrmError::Malformed("token response did not parse".into())
        }
        RequestTokenError::Other(_) => CrmError::Malformed("unexpected token response".into()),
    }
}
