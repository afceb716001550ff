//! Zoho's data centres: the accounts server that issues a user's tokens and the API
//! domain those tokens are used on.
//!
//! Both come from outside: `accounts-server` from the query of the OAuth callback (a
//! browser redirect anybody can forge) and `api_domain` from the token response. Each
//! is accepted only when it is exactly one of these origins: `https://`, the host as
//! listed, no port, userinfo, path, query or fragment. A subdomain of a Zoho domain is
//! not enough: the client secret goes to the accounts server, the access token to the
//! API domain.
//!
//! Source: PROTOCOLS-NICHE.md §1 (Zoho's multi-DC page for the accounts servers, the
//! Bigin multi-DC page for the API domains). The UK API domain is not confirmed there:
//! `www.zohoapis.uk` is assumed from the pattern every other data centre but Canada
//! follows. A UK token response naming another host is refused, not followed.

use url::{Position, Url};

/// One data centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataCentre {
    /// The `location` Zoho names it by (`us`, `eu`, ...).
    pub location: &'static str,
    /// The accounts server's host: authorize, token, refresh, revoke.
    pub accounts_host: &'static str,
    /// The API domain's host: every CRM call.
    pub api_host: &'static str,
    /// Whether the API domain is confirmed by a source (false: assumed).
    pub api_confirmed: bool,
}

const fn dc(location: &'static str, accounts: &'static str, api: &'static str) -> DataCentre {
    DataCentre {
        location,
        accounts_host: accounts,
        api_host: api,
        api_confirmed: true,
    }
}

/// Every data centre Zoho documents.
pub const DATA_CENTRES: [DataCentre; 9] = [
    dc("us", "accounts.zoho.com", "www.zohoapis.com"),
    dc("eu", "accounts.zoho.eu", "www.zohoapis.eu"),
    dc("in", "accounts.zoho.in", "www.zohoapis.in"),
    dc("au", "accounts.zoho.com.au", "www.zohoapis.com.au"),
    dc("cn", "accounts.zoho.com.cn", "www.zohoapis.com.cn"),
    dc("jp", "accounts.zoho.jp", "www.zohoapis.jp"),
    dc("ca", "accounts.zohocloud.ca", "www.zohoapis.ca"),
    dc("sa", "accounts.zoho.sa", "www.zohoapis.sa"),
    DataCentre {
        location: "uk",
        accounts_host: "accounts.zoho.uk",
        api_host: "www.zohoapis.uk",
        api_confirmed: false,
    },
];

/// The US data centre: where the authorization request starts (Zoho sends the user
/// on to their own data centre and names it in the callback).
pub const US: DataCentre = DATA_CENTRES[0];

/// Why a Zoho URL was refused. Names no part of the URL: it is hostile input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZohoUrlError {
    #[error("is not an https:// origin of Zoho's (no port, credentials, path, query or fragment)")]
    NotAnOrigin,
    #[error("is not one of Zoho's data centres")]
    UnknownHost,
}

impl DataCentre {
    /// `https://` + the accounts host.
    pub fn accounts_url(&self) -> String {
        format!("https://{}", self.accounts_host)
    }

    /// `https://` + the API host.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api_host)
    }
}

/// The host of `url` when it is a bare `https://host` origin (a trailing `/` allowed).
fn bare_https_host(url: &str) -> Result<String, ZohoUrlError> {
    let parsed = Url::parse(url).map_err(|_| ZohoUrlError::NotAnOrigin)?;
    let bare = parsed.scheme() == "https"
        && parsed.username().is_empty()
        && parsed.password().is_none()
        // An explicit port, even :443, is not how Zoho names its servers.
        && parsed.port().is_none()
        && !url.trim_end_matches('/').ends_with(":443")
        && matches!(&parsed[Position::BeforePath..], "" | "/");
    match parsed.host_str() {
        Some(host) if bare => Ok(host.to_owned()),
        _ => Err(ZohoUrlError::NotAnOrigin),
    }
}

/// The data centre whose accounts server `url` is.
pub fn by_accounts_server(url: &str) -> Result<DataCentre, ZohoUrlError> {
    let host = bare_https_host(url)?;
    DATA_CENTRES
        .into_iter()
        .find(|dc| dc.accounts_host == host)
        .ok_or(ZohoUrlError::UnknownHost)
}

/// The data centre whose API domain `url` is.
pub fn by_api_domain(url: &str) -> Result<DataCentre, ZohoUrlError> {
    let host = bare_https_host(url)?;
    DATA_CENTRES
        .into_iter()
        .find(|dc| dc.api_host == host)
        .ok_or(ZohoUrlError::UnknownHost)
}

/// Whether `host` is a Zoho accounts server (where the client secret may go).
pub fn is_accounts_host(host: &str) -> bool {
    DATA_CENTRES.iter().any(|dc| dc.accounts_host == host)
}

/// The registrable domains of Zoho's hosts, for the outbound policy's official list.
pub const DOMAINS: [&str; 18] = [
    "zoho.com",
    "zoho.eu",
    "zoho.in",
    "zoho.com.au",
    "zoho.com.cn",
    "zoho.jp",
    "zohocloud.ca",
    "zoho.sa",
    "zoho.uk",
    "zohoapis.com",
    "zohoapis.eu",
    "zohoapis.in",
    "zohoapis.com.au",
    "zohoapis.com.cn",
    "zohoapis.jp",
    "zohoapis.ca",
    "zohoapis.sa",
    "zohoapis.uk",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_documented_server_is_accepted_with_its_data_centre() {
        for dc in DATA_CENTRES {
            assert_eq!(by_accounts_server(&dc.accounts_url()), Ok(dc));
            assert_eq!(
                by_accounts_server(&format!("{}/", dc.accounts_url())),
                Ok(dc)
            );
            assert_eq!(by_api_domain(&dc.api_url()), Ok(dc));
            assert_eq!(
                by_api_domain(&dc.accounts_url()),
                Err(ZohoUrlError::UnknownHost)
            );
        }
        assert_eq!(US.location, "us");
    }

    #[test]
    fn look_alikes_and_url_tricks_are_refused() {
        for url in [
            "http://accounts.zoho.com",
            "https://accounts.zoho.com:443",
            "https://accounts.zoho.com:8443",
            "https://user@accounts.zoho.com",
            "https://accounts.zoho.com@evil.example",
            "https://accounts.zoho.com/oauth",
            "https://accounts.zoho.com?x=1",
            "https://accounts.zoho.com#x",
            "https://accounts.zoho.com.evil.example",
            "https://evil-accounts.zoho.com",
            "https://eu.accounts.zoho.com",
            "https://accounts.zoho.co",
            "accounts.zoho.com",
            "//accounts.zoho.com",
            "",
        ] {
            assert!(by_accounts_server(url).is_err(), "{url}");
        }
        for url in [
            "https://www.zohoapis.com.evil.example",
            "https://zohoapis.com",
            "https://www.zohoapis.com/crm",
            "http://www.zohoapis.eu",
            "https://127.0.0.1",
            "https://[::1]",
        ] {
            assert!(by_api_domain(url).is_err(), "{url}");
        }
    }

    proptest! {
        /// Whatever is put before, after or into a real host, a URL is accepted only when
        /// it parses to exactly that host's origin, and the untouched origin always is.
        #[test]
        fn only_the_bare_origin_passes(
            index in 0usize..DATA_CENTRES.len(),
            prefix in "[a-z0-9.@:/-]{0,6}",
            suffix in "[a-z0-9.@:/?#-]{0,6}",
        ) {
            let dc = DATA_CENTRES[index];
            let url = format!("https://{prefix}{}{suffix}", dc.accounts_host);
            if let Ok(found) = by_accounts_server(&url) {
                let parsed = Url::parse(&url).map(|u| u.to_string());
                prop_assert_eq!(parsed, Ok(format!("{}/", found.accounts_url())), "{}", url);
            }
            if prefix.is_empty() && suffix.is_empty() {
                prop_assert_eq!(by_accounts_server(&url), Ok(dc));
            }
        }
    }
}
