//! Which hosts the server may reach on a tenant's behalf.
//!
//! A tenant names URLs (an integration's `base_url`, every URL of a custom spec) and
//! providers return some (Salesforce `instance_url`, Pipedrive `api_domain`). Where
//! those may lead is the operator's decision, made once in an [`OutboundPolicy`]:
//! built-in providers stay on their official domains, custom specs reach public
//! `https://` hosts only. Loopback hosts (the sandboxes) and private networks are
//! reachable only when the operator allows them. Names are checked again after DNS
//! resolution by the HTTP adapter, with [`OutboundPolicy::allows`] on every address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

pub mod zoho;

/// The server-wide rule for outbound requests made on a tenant's behalf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Loopback hosts (`127.0.0.0/8`, `::1`, `localhost`) may be reached, over
    /// `http://` too: the local sandboxes.
    pub allow_loopback: bool,
    /// Private networks (10/8, 172.16/12, 192.168/16, fc00::/7) may be reached.
    pub allow_private: bool,
    /// The embedded development default: a built-in provider whose `base_url` is a
    /// loopback host (a sandbox) gets its OAuth calls, client secret included, there
    /// too. Outside development the secret only ever goes to the official hosts.
    pub development: bool,
}

/// What kind of address an IP is, as far as outbound requests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    /// 169.254/16 (cloud metadata services live here) and fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT, 100.64/10.
    SharedAddressSpace,
    Unspecified,
    Multicast,
    /// Documentation, benchmarking, broadcast and other ranges no API lives in.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedAddressSpace => "carrier-grade NAT",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// The class of an address. IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are classified by the address they embed, so
/// `::ffff:169.254.169.254` is as link-local as `169.254.169.254`.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, 64..=127, _) => AddressClass::SharedAddressSpace,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Reserved,
        (198, 18..=19, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    match s[0] {
        0xfc00..=0xfdff => AddressClass::Private,
        // Site-local (deprecated): private in effect.
        0xfec0..=0xfeff => AddressClass::Private,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        0xff00..=0xffff => AddressClass::Multicast,
        // Documentation, Teredo and ORCHID-style ranges under 2001::/23.
        0x2001 if s[1] == 0x0db8 || s[1] < 0x0200 => AddressClass::Reserved,
        // Discard-only 100::/64 and the rest of the unassigned ::/8.
        0x0000..=0x0100 => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible
/// (`::/96`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// Whose rule a URL is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A built-in provider (`hubspot`, `salesforce`, `pipedrive`): its official domains.
    Builtin(&'a str),
    /// A custom spec: any public `https://` host.
    Custom,
}

/// Why a URL is refused. The text names no secret (URLs here carry none: userinfo
/// is refused before anything is echoed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("is not an absolute URL")]
    NotAUrl,
    #[error("must use https://")]
    Scheme,
    #[error("must not carry credentials")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("must not carry a query or fragment")]
    QueryOrFragment,
    #[error("must be on {0}'s official domains")]
    NotOfficial(String),
    #[error("must stay on the host of base_url")]
    OtherHost,
    #[error("reaches a {0} address, which the server's outbound policy refuses")]
    Forbidden(AddressClass),
}

/// The built-in providers' official domains: a host is official if it is one of
/// these or a subdomain of one.
fn official_domains(provider: &str) -> &'static [&'static str] {
    match provider {
        "hubspot" => &["hubapi.com", "hubspot.com"],
        "salesforce" => &["salesforce.com"],
        "pipedrive" => &["pipedrive.com"],
        "lightblue" => &["lightbluesoftware.com"],
        "shootq" => &["shootq.com"],
        "zoho" => &zoho::DOMAINS,
        _ => &[],
    }
}

fn on_domain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Whether `host` is on one of `provider`'s official domains.
pub fn is_official_host(provider: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    official_domains(provider)
        .iter()
        .any(|domain| on_domain(&host, domain))
}

/// Whether `host` is one of `provider`'s OAuth hosts, the only ones the server's
/// client secret is sent to outside development.
pub fn is_official_oauth_host(provider: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match provider {
        "hubspot" => matches!(host.as_str(), "api.hubapi.com" | "app.hubspot.com"),
        "salesforce" => {
            matches!(
                host.as_str(),
                "login.salesforce.com" | "test.salesforce.com"
            ) || on_domain(&host, "my.salesforce.com")
        }
        "pipedrive" => host == "oauth.pipedrive.com",
        "zoho" => zoho::is_accounts_host(&host),
        _ => false,
    }
}

fn is_loopback_url(url: &str) -> bool {
    match Url::parse(url).ok().as_ref().and_then(Url::host) {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => is_localhost(name),
        None => false,
    }
}

fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

impl OutboundPolicy {
    /// The embedded development default: sandboxes on loopback, sandbox OAuth apps.
    pub fn development() -> Self {
        Self {
            allow_loopback: true,
            allow_private: false,
            development: true,
        }
    }

    /// Whether an address (a literal host, or what a name resolved to) may be reached.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allows_class(classify(ip))
    }

    fn allows_class(&self, class: AddressClass) -> bool {
        match class {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            _ => false,
        }
    }

    /// Checks what can be checked without DNS: scheme, credentials, a literal
    /// address, and for built-in providers the official domains. Names of custom
    /// hosts are checked after resolution (see the HTTP adapter's resolver).
    pub fn check(&self, url: &str, target: Target<'_>) -> Result<Url, OutboundError> {
        let parsed = Url::parse(url).map_err(|_| OutboundError::NotAUrl)?;
        self.check_parsed(&parsed, target)?;
        Ok(parsed)
    }

    /// [`OutboundPolicy::check`] on a parsed URL.
    pub fn check_parsed(&self, url: &Url, target: Target<'_>) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::Credentials);
        }
        // `Some(class)` for a host that is an address, or names the local machine.
        let local = match url.host().ok_or(OutboundError::NoHost)? {
            Host::Ipv4(ip) => Some(classify(IpAddr::V4(ip))),
            Host::Ipv6(ip) => Some(classify(IpAddr::V6(ip))),
            Host::Domain("") => return Err(OutboundError::NoHost),
            Host::Domain(name) if is_localhost(name) => Some(AddressClass::Loopback),
            Host::Domain(_) => None,
        };
        if let Some(class) = local {
            if !self.allows_class(class) {
                return Err(OutboundError::Forbidden(class));
            }
        }
        let internal = matches!(local, Some(AddressClass::Loopback | AddressClass::Private));
        // Plain http only on the loopback or private hosts the operator allowed.
        if url.scheme() != "https" && !internal {
            return Err(OutboundError::Scheme);
        }
        match (target, url.host()) {
            (Target::Builtin(provider), Some(Host::Domain(name)))
                if !internal && !is_official_host(provider, name) =>
            {
                Err(OutboundError::NotOfficial(provider.to_owned()))
            }
            (Target::Builtin(provider), Some(Host::Ipv4(_) | Host::Ipv6(_))) if !internal => {
                Err(OutboundError::NotOfficial(provider.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// A URL a built-in provider returned (Salesforce `instance_url`, Pipedrive
    /// `api_domain`): on its official domains (or an allowed loopback sandbox), with
    /// no query or fragment.
    pub fn check_returned(&self, url: &str, provider: &str) -> Result<Url, OutboundError> {
        let parsed = self.check(url, Target::Builtin(provider))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(OutboundError::QueryOrFragment);
        }
        Ok(parsed)
    }

    /// Whether `base_url` is a loopback sandbox the development default lets a
    /// built-in provider's OAuth calls follow.
    pub fn is_development_sandbox(&self, base_url: &str) -> bool {
        self.development && self.allow_loopback && is_loopback_url(base_url)
    }

    /// Whether OAuth calls of a built-in provider (client secret included) may follow
    /// its `base_url` override: only to an official OAuth host, or to a loopback
    /// sandbox in the development default.
    pub fn oauth_follows(&self, base_url: &str, provider: &str) -> bool {
        if is_loopback_url(base_url) {
            return self.is_development_sandbox(base_url);
        }
        let Ok(url) = Url::parse(base_url) else {
            return false;
        };
        url.scheme() == "https"
            && url
                .host_str()
                .is_some_and(|h| is_official_oauth_host(provider, h))
    }
}

#[cfg(test)]
mod tests;
