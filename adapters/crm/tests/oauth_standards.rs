//! The OAuth client against an independent authorization server (the generic JSON
//! sandbox), to the letter of the standards: transient token-endpoint failures are
//! retried and stay transient (RFC 6749 §5.2 codes, 429/5xx with `Retry-After`),
//! non-Bearer tokens are refused (RFC 6750), revocation (RFC 7009), extra
//! authorization parameters, issuer checks (RFC 9207) and unknown `auth` keys.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{json, Value};
use syncledger_crm::oauth::{check_issuer, IssuerMismatch, IssuerRule};
use syncledger_crm::{CrmAdapter, CrmError, CustomAdapter, CustomOptions, CustomSpec, Tokens};
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};

const TOKEN_ENDPOINT: &str = "POST /oauth/token";
const MAX_RETRIES: u32 = 3;

async fn sandbox(config: GenericSandboxConfig) -> Sandbox {
    Sandbox::start_generic(config)
        .await
        .expect("sandbox starts")
}

fn oauth2(base: &str) -> Value {
    json!({
        "type": "oauth2",
        "authorize_url": format!("{base}/oauth/authorize"),
        "token_url": format!("{base}/oauth/token"),
        "scopes": ["contacts"]
    })
}

fn spec(base: &str, auth: Value) -> Value {
    json!({"base_url": base, "auth": auth, "contacts": {"list": {
        "path": "/cursor/contacts", "records_path": "data.items",
        "id_path": "id", "updated_at_path": "updated"}}})
}

fn options(client_secret: &str) -> CustomOptions {
    CustomOptions {
        client_id: GenericSandboxConfig::default().client_id,
        client_secret: SecretString::from(client_secret),
        requests_per_minute: None,
        max_retries: MAX_RETRIES,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        // The sandbox listens on loopback.
        outbound: syncledger_crm::outbound::outbound::OutboundPolicy::development(),
    }
}

fn adapter_with(spec: &Value, secret: &str) -> CustomAdapter {
    let spec = CustomSpec::from_json(&spec.to_string()).expect("spec is valid");
    CustomAdapter::new(spec, options(secret)).expect("adapter builds")
}

fn adapter(spec: &Value) -> CustomAdapter {
    adapter_with(spec, &GenericSandboxConfig::default().client_secret)
}

async fn post(sandbox: &Sandbox, path: &str, body: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/_sandbox/{path}", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control call");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
}

fn token_requests(sandbox: &Sandbox) -> u64 {
    sandbox.counters().get(TOKEN_ENDPOINT).copied().unwrap_or(0)
}

fn spec_error(spec: &Value) -> String {
    match CustomSpec::from_json(&spec.to_string()) {
        Err(CrmError::Config(message)) => message,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_briefly_unavailable_token_endpoint_is_retried_honouring_retry_after() {
    let sandbox = sandbox(GenericSandboxConfig::default()).await;
    let adapter = adapter(&spec(&sandbox.base_url(), oauth2(&sandbox.base_url())));
    let refresh = sandbox.issue_tokens().refresh_token;
    post(
        &sandbox,
        "oauth/errors",
        json!({"status": 503, "retry_after": 1}),
    )
    .await;
    post(
        &sandbox,
        "oauth/errors",
        json!({"status": 400, "error": "temporarily_unavailable"}),
    )
    .await;
    post(&sandbox, "oauth/errors", json!({"status": 429})).await;
    let started = Instant::now();
    let fresh = adapter
        .refresh(&refresh)
        .await
        .expect("the refresh succeeds");
    assert!(fresh.refresh_token.is_some());
    assert_eq!(
        token_requests(&sandbox),
        4,
        "three transient answers, then tokens"
    );
    // The backoff is at most 20 ms here: only Retry-After explains a second's wait.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_token_endpoint_that_stays_down_fails_transiently_not_as_a_refused_grant() {
    let sandbox = sandbox(GenericSandboxConfig::default()).await;
    let adapter = adapter(&spec(&sandbox.base_url(), oauth2(&sandbox.base_url())));
    let refresh = sandbox.issue_tokens().refresh_token;
    let attempts = u64::from(MAX_RETRIES) + 1;
    let cases = [
        json!({"status": 500}),
        json!({"status": 503, "error": "server_error"}),
        json!({"status": 429}),
        json!({"status": 400, "error": "temporarily_unavailable"}),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut queued = case.clone();
        queued["count"] = json!(attempts);
        post(&sandbox, "oauth/errors", queued).await;
        let error = adapter.refresh(&refresh).await.expect_err("still failing");
        assert!(error.is_transient(), "{case}: {error:?}");
        assert!(!error.needs_reauthorization(), "{case}: {error:?}");
        let sent = u64::try_from(i + 1).unwrap_or(0) * attempts;
        assert_eq!(token_requests(&sandbox), sent, "{case}: every retry used");
    }
    // The refresh token was never spent: it still works.
    adapter.refresh(&refresh).await.expect("the server is back");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_transient() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let adapter = adapter(&spec(&base, oauth2(&base)));
    let error = adapter.refresh("rt").await.expect_err("nobody listens");
    assert!(
        matches!(error, CrmError::Transport { attempts } if attempts == MAX_RETRIES + 1),
        "{error:?}"
    );
    assert!(!error.needs_reauthorization());
}

#[tokio::test]
async fn a_refused_grant_or_client_is_definitive_and_not_retried() {
    let sandbox = sandbox(GenericSandboxConfig::default()).await;
    let spec = spec(&sandbox.base_url(), oauth2(&sandbox.base_url()));
    let error = adapter(&spec)
        .refresh("unknown")
        .await
        .expect_err("invalid_grant");
    assert!(
        matches!(&error, CrmError::OAuth(code) if code == "invalid_grant"),
        "{error:?}"
    );
    assert!(error.needs_reauthorization() && !error.is_transient());
    assert_eq!(token_requests(&sandbox), 1);
    let refresh = sandbox.issue_tokens().refresh_token;
    let error = adapter_with(&spec, "wrong-secret")
        .refresh(&refresh)
        .await
        .expect_err("invalid_client");
    assert!(
        matches!(&error, CrmError::OAuth(code) if code.starts_with("invalid_client")),
        "{error:?}"
    );
    assert!(error.needs_reauthorization());
    assert_eq!(token_requests(&sandbox), 2);
}

#[tokio::test]
async fn only_bearer_tokens_are_accepted_whatever_their_case() {
    let sandbox = sandbox(GenericSandboxConfig {
        token_type: "mac".into(),
        ..GenericSandboxConfig::default()
    })
    .await;
    let adapter = adapter(&spec(&sandbox.base_url(), oauth2(&sandbox.base_url())));
    for (token_type, accepted) in [
        ("mac", false),
        ("DPoP", false),
        ("Bearer", true),
        ("BEARER", true),
    ] {
        post(
            &sandbox,
            "oauth/token_type",
            json!({"token_type": token_type}),
        )
        .await;
        let refresh = sandbox.issue_tokens().refresh_token;
        match adapter.refresh(&refresh).await {
            Ok(_) => assert!(accepted, "{token_type} was accepted"),
            Err(CrmError::UnsupportedTokenType(named)) => {
                assert!(!accepted, "{token_type} was refused");
                // The type is compared (and named) case-insensitively.
                assert!(named.eq_ignore_ascii_case(token_type), "{named}");
                let text = CrmError::UnsupportedTokenType(named).to_string();
                assert!(text.contains("only Bearer"), "{text}");
            }
            Err(other) => panic!("{token_type}: {other:?}"),
        }
    }
}

fn tokens(access: &str, refresh: Option<&str>) -> Tokens {
    Tokens {
        access_token: SecretString::from(access),
        refresh_token: refresh.map(SecretString::from),
        expires_at: None,
        instance_url: None,
    }
}

#[tokio::test]
async fn disconnecting_revokes_at_the_spec_revocation_endpoint() {
    let sandbox = sandbox(GenericSandboxConfig::default()).await;
    let base = sandbox.base_url();
    let mut auth = oauth2(&base);
    auth["client_auth"] = json!("basic");
    auth["revocation_url"] = json!(format!("{base}/oauth/revoke"));
    let adapter = adapter(&spec(&base, auth));
    let pair = sandbox.issue_tokens();
    adapter
        .revoke(&tokens(&pair.access_token, Some(&pair.refresh_token)))
        .await
        .expect("revoked");
    adapter
        .revoke(&tokens(&pair.access_token, None))
        .await
        .expect("revoked");
    let revoked: Value = reqwest::get(format!("{base}/_sandbox/oauth/revocations"))
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        revoked,
        json!([
            {"token_type_hint": "refresh_token", "refresh_token": true, "access_token": false},
            {"token_type_hint": "access_token", "refresh_token": false, "access_token": true}
        ])
    );
    // Without a revocation endpoint nothing is sent.
    let plain = self::adapter(&spec(&base, oauth2(&base)));
    plain
        .revoke(&tokens("a", Some("r")))
        .await
        .expect("nothing to do");
    assert_eq!(sandbox.counters().get("POST /oauth/revoke"), Some(&2));
}

#[test]
fn a_revocation_url_goes_through_the_outbound_policy() {
    let mut auth = oauth2("https://crm.example.com");
    auth["revocation_url"] = json!("http://169.254.169.254/revoke");
    let spec =
        CustomSpec::from_json(&spec("https://crm.example.com", auth).to_string()).expect("parses");
    let guard = syncledger_crm::outbound::Guard::custom(
        syncledger_crm::outbound::outbound::OutboundPolicy::default(),
    );
    match spec.check_outbound(&guard) {
        Err(CrmError::Refused { field, .. }) => assert_eq!(field, "spec.auth.revocation_url"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn extra_authorization_parameters_are_sent_but_never_override_the_protocol() {
    let mut auth = oauth2("http://127.0.0.1:9");
    auth["authorization_params"] = json!({"prompt": "consent", "access_type": "offline"});
    let adapter = adapter(&spec("http://127.0.0.1:9", auth.clone()));
    let (url, _) = adapter
        .authorization_url("http://localhost/cb", "the-state")
        .expect("url");
    let pairs: Vec<(String, String)> = url::Url::parse(&url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    let params: BTreeMap<_, _> = pairs.iter().cloned().collect();
    assert_eq!(params.get("prompt").map(String::as_str), Some("consent"));
    assert_eq!(
        params.get("access_type").map(String::as_str),
        Some("offline")
    );
    assert_eq!(pairs.iter().filter(|(k, _)| k == "state").count(), 1);
    for reserved in [
        "state",
        "redirect_uri",
        "client_id",
        "response_type",
        "code_challenge",
        "scope",
        "Code_Challenge_Method",
    ] {
        let mut bad = auth.clone();
        bad["authorization_params"] = json!({ reserved: "x" });
        let message = spec_error(&spec("http://127.0.0.1:9", bad));
        assert!(
            message.contains(&format!(
                "auth.authorization_params.{reserved}: is set by the OAuth flow"
            )),
            "{reserved}: {message}"
        );
    }
}

#[test]
fn unknown_auth_keys_are_refused_with_their_path() {
    let mut typo = oauth2("http://127.0.0.1:9");
    typo["scope"] = json!("contacts");
    let message = spec_error(&spec("http://127.0.0.1:9", typo));
    assert!(message.contains("auth: unknown field `scope`"), "{message}");
    for auth in [
        json!({"type": "basic", "username": "x"}),
        json!({"type": "bearer", "token": "x"}),
        json!({"type": "api_key", "header": "X-Key", "heder": "x"}),
    ] {
        let message = spec_error(&spec("http://127.0.0.1:9", auth.clone()));
        assert!(message.contains("auth: unknown field"), "{auth}: {message}");
    }
    let toml = r#"
base_url = "http://127.0.0.1:9"
[auth]
type = "oauth2"
authorize_url = "http://127.0.0.1:9/a"
token_url = "http://127.0.0.1:9/t"
scope = "contacts"
[contacts.list]
path = "/cursor/contacts"
id_path = "id"
updated_at_path = "updated"
"#;
    match CustomSpec::from_toml(toml) {
        Err(CrmError::Config(message)) => {
            assert!(message.contains("auth: unknown field `scope`"), "{message}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    // Known keys still parse, in both formats.
    let good = spec("http://127.0.0.1:9", json!({"type": "basic"}));
    CustomSpec::from_json(&good.to_string()).expect("basic parses");
}

#[test]
fn an_issuer_is_a_url_without_query_and_its_flag_needs_it() {
    let mut auth = oauth2("http://127.0.0.1:9");
    auth["issuer"] = json!("https://auth.example/?tenant=1");
    let message = spec_error(&spec("http://127.0.0.1:9", auth.clone()));
    assert!(message.contains("auth.issuer"), "{message}");
    auth.as_object_mut().map(|a| a.remove("issuer"));
    auth["authorization_response_iss_parameter_supported"] = json!(false);
    let message = spec_error(&spec("http://127.0.0.1:9", auth));
    assert!(message.contains("only with auth.issuer"), "{message}");
}

#[test]
fn the_issuer_rule_of_a_spec_follows_rfc_9207() {
    let mut auth = oauth2("http://127.0.0.1:9");
    assert_eq!(
        adapter(&spec("http://127.0.0.1:9", auth.clone())).issuer(),
        None
    );
    auth["issuer"] = json!("https://auth.example");
    let rule = adapter(&spec("http://127.0.0.1:9", auth.clone())).issuer();
    assert_eq!(
        rule,
        Some(IssuerRule {
            issuer: "https://auth.example".into(),
            always_sent: true
        })
    );
    let rule = rule.as_ref();
    assert_eq!(check_issuer(rule, Some("https://auth.example")), Ok(()));
    assert_eq!(
        check_issuer(rule, Some("https://auth.example/")),
        Err(IssuerMismatch::Different)
    );
    assert_eq!(
        check_issuer(rule, Some("https://evil.example")),
        Err(IssuerMismatch::Different)
    );
    assert_eq!(check_issuer(rule, None), Err(IssuerMismatch::Missing));
    auth["authorization_response_iss_parameter_supported"] = json!(false);
    let lenient = adapter(&spec("http://127.0.0.1:9", auth)).issuer();
    assert_eq!(check_issuer(lenient.as_ref(), None), Ok(()));
    assert_eq!(
        check_issuer(lenient.as_ref(), Some("https://evil.example")),
        Err(IssuerMismatch::Different)
    );
    assert_eq!(check_issuer(None, Some("https://anything.example")), Ok(()));
}
