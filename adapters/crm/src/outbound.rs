//! Enforcing the server's [`OutboundPolicy`] on the wire.
//!
//! Two halves: [`Guard`] checks a URL before a request leaves (scheme, credentials,
//! literal addresses, official domains: reqwest connects to a literal address without
//! asking a resolver), and [`CheckedResolver`] resolves names for reqwest, refuses a
//! name if ANY of its addresses is forbidden, and hands reqwest only the addresses it
//! checked, so the connection goes to a checked address (no DNS rebinding between a
//! check and the connect).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use syncledger_domain::outbound::{classify, OutboundError, OutboundPolicy, Target};
use url::Url;

use crate::error::CrmError;

pub use syncledger_domain::outbound;

/// A name whose resolved addresses the policy refuses. Travels through reqwest's
/// connect error so the executor can tell a refusal from an unreachable host.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a {class} address, which the server's outbound policy refuses")]
pub struct ResolvedForbidden {
    host: String,
    class: syncledger_domain::outbound::AddressClass,
}

/// The resolver every provider client uses.
#[derive(Clone, Copy, Debug)]
pub struct CheckedResolver {
    policy: OutboundPolicy,
}

impl CheckedResolver {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookup(&host).await?;
            if let Some(class) = first_forbidden(policy, &addrs) {
                let refused = ResolvedForbidden { class, host };
                return Err(Box::new(refused) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` (brackets of an IPv6 literal allowed), as the resolver and the
/// check at creation both see them.
pub async fn lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    let host = host.trim_matches(['[', ']']);
    #[cfg(feature = "test-dns")]
    if let Some(ips) = test_dns::get(host) {
        return Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect());
    }
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

/// The class of the first address of `addrs` the policy refuses, if any.
pub fn first_forbidden(
    policy: OutboundPolicy,
    addrs: &[SocketAddr],
) -> Option<syncledger_domain::outbound::AddressClass> {
    addrs
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| !policy.allows(*ip))
        .map(classify)
}

/// A hosts table the end-to-end tests control, so they can make a name resolve to a
/// public address at creation and to an internal one at use (DNS rebinding) without
/// touching the machine's resolver. Compiled only with the `test-dns` feature, which
/// only the test crate enables; names not in the table go to the system resolver.
#[cfg(feature = "test-dns")]
pub mod test_dns {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::{Mutex, PoisonError};

    static TABLE: Mutex<Option<HashMap<String, Vec<IpAddr>>>> = Mutex::new(None);

    /// From now on `host` resolves to `ips`.
    pub fn set(host: &str, ips: &[IpAddr]) {
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .get_or_insert_with(HashMap::new)
            .insert(host.to_ascii_lowercase(), ips.to_vec());
    }

    pub(super) fn get(host: &str) -> Option<Vec<IpAddr>> {
        let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        table.as_ref()?.get(&host.to_ascii_lowercase()).cloned()
    }
}

/// The refusal inside a request error, if the resolver refused the host.
pub fn refusal_of(error: &(dyn StdError + 'static)) -> Option<CrmError> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<ResolvedForbidden>() {
            return Some(CrmError::Refused {
                field: "url".into(),
                reason: refused.to_string(),
            });
        }
        cause = e.source();
    }
    None
}

/// The pre-flight check of every URL an adapter requests.
#[derive(Clone, Debug)]
pub struct Guard {
    policy: OutboundPolicy,
    /// `Some(provider)`: a built-in provider's official domains; `None`: a custom spec.
    provider: Option<String>,
}

impl Guard {
    /// The rule of a built-in provider.
    pub fn builtin(policy: OutboundPolicy, provider: &str) -> Self {
        Self {
            policy,
            provider: Some(provider.to_owned()),
        }
    }

    /// The rule of a custom spec.
    pub fn custom(policy: OutboundPolicy) -> Self {
        Self {
            policy,
            provider: None,
        }
    }

    pub fn policy(&self) -> OutboundPolicy {
        self.policy
    }

    fn target(&self) -> Target<'_> {
        match &self.provider {
            Some(p) => Target::Builtin(p),
            None => Target::Custom,
        }
    }

    /// Refuses `url` (named `field` in the error) unless the policy allows it.
    pub fn check(&self, field: &str, url: &str) -> Result<(), CrmError> {
        self.policy
            .check(url, self.target())
            .map(drop)
            .map_err(|e| refused(field, &e))
    }

    /// [`Guard::check`] on a parsed URL.
    pub fn check_url(&self, field: &str, url: &Url) -> Result<(), CrmError> {
        self.policy
            .check_parsed(url, self.target())
            .map_err(|e| refused(field, &e))
    }

    /// A URL the provider returned (`instance_url`, `api_domain`).
    pub fn check_returned(&self, field: &str, url: &str) -> Result<(), CrmError> {
        let provider = self.provider.as_deref().unwrap_or_default();
        self.policy
            .check_returned(url, provider)
            .map(drop)
            .map_err(|e| refused(field, &e))
    }
}

/// The error a refused URL becomes.
pub fn refused(field: &str, error: &OutboundError) -> CrmError {
    CrmError::Refused {
        field: field.to_owned(),
        reason: error.to_string(),
    }
}

/// A resolver shared by one client.
pub fn resolver(policy: OutboundPolicy) -> Arc<CheckedResolver> {
    Arc::new(CheckedResolver::new(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let strict = CheckedResolver::new(OutboundPolicy::default());
        let name: Name = "localhost".parse().expect("a valid name");
        let Err(error) = strict.resolve(name).await else {
            panic!("localhost resolved under a strict policy");
        };
        assert!(refusal_of(error.as_ref()).is_some(), "{error}");
        let dev = CheckedResolver::new(OutboundPolicy::development());
        let name: Name = "localhost".parse().expect("a valid name");
        let addrs: Vec<SocketAddr> = dev.resolve(name).await.expect("resolves").collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
