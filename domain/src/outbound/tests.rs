use super::*;
use proptest::prelude::*;

fn strict() -> OutboundPolicy {
    OutboundPolicy::default()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[test]
fn internal_ranges_are_classified() {
    let cases = [
        ("127.0.0.1", AddressClass::Loopback),
        ("10.1.2.3", AddressClass::Private),
        ("172.16.0.1", AddressClass::Private),
        ("172.31.255.255", AddressClass::Private),
        ("192.168.1.1", AddressClass::Private),
        ("169.254.169.254", AddressClass::LinkLocal),
        ("100.64.0.1", AddressClass::SharedAddressSpace),
        ("0.0.0.0", AddressClass::Unspecified),
        ("224.0.0.1", AddressClass::Multicast),
        ("255.255.255.255", AddressClass::Reserved),
        ("192.0.2.7", AddressClass::Reserved),
        ("::1", AddressClass::Loopback),
        ("::", AddressClass::Unspecified),
        ("fd00::1", AddressClass::Private),
        ("fe80::1", AddressClass::LinkLocal),
        ("ff02::1", AddressClass::Multicast),
        ("::ffff:169.254.169.254", AddressClass::LinkLocal),
        ("::ffff:127.0.0.1", AddressClass::Loopback),
        ("64:ff9b::a00:1", AddressClass::Private),
        ("2002:a9fe:a9fe::1", AddressClass::LinkLocal),
        ("2001:db8::1", AddressClass::Reserved),
        ("8.8.8.8", AddressClass::Public),
        ("172.32.0.1", AddressClass::Public),
        ("2606:4700::1111", AddressClass::Public),
    ];
    for (ip, class) in cases {
        let parsed: IpAddr = ip.parse().expect("test address parses");
        assert_eq!(classify(parsed), class, "{ip}");
    }
}

#[test]
fn custom_urls_must_be_public_https() {
    let policy = strict();
    assert!(policy
        .check("https://api.example.com/v1", Target::Custom)
        .is_ok());
    for (url, expected) in [
        ("http://api.example.com", OutboundError::Scheme),
        ("ftp://api.example.com", OutboundError::Scheme),
        ("https://u:p@api.example.com", OutboundError::Credentials),
        (
            "https://169.254.169.254/latest/meta-data",
            OutboundError::Forbidden(AddressClass::LinkLocal),
        ),
        (
            "https://10.0.0.5",
            OutboundError::Forbidden(AddressClass::Private),
        ),
        (
            "https://127.0.0.1:8080",
            OutboundError::Forbidden(AddressClass::Loopback),
        ),
        (
            "https://localhost",
            OutboundError::Forbidden(AddressClass::Loopback),
        ),
        (
            "https://[::ffff:a9fe:a9fe]",
            OutboundError::Forbidden(AddressClass::LinkLocal),
        ),
        ("not a url", OutboundError::NotAUrl),
    ] {
        assert_eq!(
            policy.check(url, Target::Custom).err(),
            Some(expected),
            "{url}"
        );
    }
}

#[test]
fn loopback_needs_the_operators_consent() {
    let dev = OutboundPolicy::development();
    assert!(dev.check("http://127.0.0.1:9000", Target::Custom).is_ok());
    assert!(dev
        .check("http://localhost:9000", Target::Builtin("hubspot"))
        .is_ok());
    assert!(dev.check("http://10.0.0.1", Target::Custom).is_err());
    let private = OutboundPolicy {
        allow_private: true,
        ..strict()
    };
    assert!(private.check("http://10.0.0.1", Target::Custom).is_ok());
    assert!(private.check("http://127.0.0.1", Target::Custom).is_err());
    assert!(private
        .check("https://169.254.169.254", Target::Custom)
        .is_err());
}

#[test]
fn builtin_providers_stay_on_their_domains() {
    let policy = strict();
    for (url, provider) in [
        ("https://api.hubapi.com", "hubspot"),
        ("https://acme.my.salesforce.com", "salesforce"),
        ("https://login.salesforce.com", "salesforce"),
        ("https://acme.pipedrive.com", "pipedrive"),
        ("https://online.lightbluesoftware.com", "lightblue"),
        ("https://api.shootq.com", "shootq"),
    ] {
        assert!(
            policy.check(url, Target::Builtin(provider)).is_ok(),
            "{url}"
        );
    }
    for (url, provider) in [
        ("https://evil.example", "hubspot"),
        ("https://hubapi.com.evil.example", "hubspot"),
        ("https://evilhubapi.com", "hubspot"),
        ("https://8.8.8.8", "salesforce"),
        ("http://api.pipedrive.com", "pipedrive"),
        ("https://api.hubapi.com", "pipedrive"),
        ("http://online.lightbluesoftware.com", "lightblue"),
        ("https://lightbluesoftware.com.evil.example", "lightblue"),
        ("https://api.shootq.com.evil.example", "shootq"),
    ] {
        assert!(
            policy.check(url, Target::Builtin(provider)).is_err(),
            "{url}"
        );
    }
}

#[test]
fn returned_urls_carry_no_query_or_fragment() {
    let policy = strict();
    assert!(policy
        .check_returned("https://acme.my.salesforce.com", "salesforce")
        .is_ok());
    for url in [
        "https://acme.my.salesforce.com?x=1",
        "https://acme.my.salesforce.com#x",
        "http://acme.my.salesforce.com",
        "https://10.0.0.1",
        "https://evil.example",
    ] {
        assert!(policy.check_returned(url, "salesforce").is_err(), "{url}");
    }
}

#[test]
fn oauth_follows_a_base_url_only_to_official_or_development_loopback() {
    let dev = OutboundPolicy::development();
    let operator_loopback = OutboundPolicy {
        allow_loopback: true,
        ..strict()
    };
    assert!(dev.oauth_follows("http://127.0.0.1:4000", "hubspot"));
    assert!(!operator_loopback.oauth_follows("http://127.0.0.1:4000", "hubspot"));
    assert!(!dev.oauth_follows("https://evil.example", "hubspot"));
    assert!(strict().oauth_follows("https://test.salesforce.com", "salesforce"));
    assert!(!strict().oauth_follows("https://acme.salesforce.com", "salesforce"));
}

proptest! {
    #[test]
    fn private_v4_ranges_are_never_public(b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
        for ip in [v4(10, b, c, d), v4(127, b, c, d), v4(169, 254, c, d), v4(192, 168, c, d),
                   v4(172, 16 + (b % 16), c, d), v4(100, 64 + (b % 64), c, d)] {
            prop_assert_ne!(classify(ip), AddressClass::Public);
            prop_assert!(!strict().allows(ip));
        }
    }

    #[test]
    fn mapped_v6_is_classified_as_its_v4(raw in any::<u32>()) {
        let ip = Ipv4Addr::from(raw);
        let mapped = IpAddr::V6(ip.to_ipv6_mapped());
        prop_assert_eq!(classify(mapped), classify(IpAddr::V4(ip)));
    }

    #[test]
    fn link_local_is_refused_whatever_the_operator_allows(
        c in any::<u8>(), d in any::<u8>(), loopback in any::<bool>(), private in any::<bool>()
    ) {
        let policy = OutboundPolicy { allow_loopback: loopback, allow_private: private, development: loopback };
        prop_assert!(!policy.allows(v4(169, 254, c, d)));
        let url = format!("https://169.254.{c}.{d}/");
        prop_assert!(policy.check(&url, Target::Custom).is_err());
    }

    #[test]
    fn literal_urls_agree_with_address_checks(raw in any::<u32>()) {
        let ip = Ipv4Addr::from(raw);
        let url = format!("https://{ip}/x");
        let policy = strict();
        prop_assert_eq!(policy.check(&url, Target::Custom).is_ok(), policy.allows(IpAddr::V4(ip)));
    }
}
