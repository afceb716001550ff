//! The OAuth 2.0 code flow with PKCE, shared by every provider, through the
//! `oauth2` crate over the adapter's own `reqwest` client (one HTTP stack, see
//! ARCHITECTURE.md).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

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
use crate::http::Executor;
use crate::outbound;
use crate::types::Tokens;

/// The largest token response read. A token endpoint answers a few hundred bytes;
/// a larger body is refused, instead of being read into memory without end.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

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
    let (url, _) = client(config)?
        .set_redirect_uri(redirect(redirect_uri)?)
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(config.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
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
    Ok(tokens(&response, None))
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
    Ok(tokens(&response, Some(refresh_token)))
}

fn tokens(response: &ProviderTokenResponse, previous_refresh: Option<&str>) -> Tokens {
    let extra = response.extra_fields();
    let expires_at = response
        .expires_in()
        .and_then(|d| ChronoDuration::from_std(d).ok())
        .map(|d| Utc::now() + d);
    Tokens {
        access_token: SecretString::from(response.access_token().secret().as_str()),
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().as_str())
            .or(previous_refresh)
            .map(SecretString::from),
        expires_at,
        instance_url: extra.instance_url.clone().or(extra.api_domain.clone()),
    }
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
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, TokenTransport>> + Send>>;

/// oauth2's async HTTP client over the adapter's own client: the same timeouts and
/// resolver as every provider call, the URL checked by the adapter's guard, and the
/// body read up to [`MAX_TOKEN_RESPONSE_BYTES`].
fn transport(http: &Executor) -> impl Fn(HttpRequest) -> HttpFuture + '_ {
    move |request: HttpRequest| {
        let client = http.client().clone();
        let guard = http.guard().clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            guard
                .check_url("token_url", request.url())
                .map_err(TokenTransport::Refused)?;
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
        })
    }
}

/// Maps token-endpoint failures without echoing the response body, which may
/// hold tokens.
fn grant_error(
    error: RequestTokenError<TokenTransport, oauth2::basic::BasicErrorResponse>,
) -> CrmError {
    match error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidClient => {
                CrmError::Config("the authorization server rejected the client credentials".into())
            }
            other => CrmError::OAuth(other.to_string()),
        },
        RequestTokenError::Request(TokenTransport::Refused(refused)) => refused,
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
