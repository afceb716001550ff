//! The HubSpot adapter against the HubSpot sandbox.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, Cursor, Entity, HubSpotAdapter, HubSpotConfig, PushKind,
    PushOp, RemoteRecord, Tokens,
};
use syncledger_sandbox::{RateLimit, Sandbox, SandboxConfig};

const REDIRECT: &str = "http://localhost:7777/oauth/callback";

async fn sandbox(records: usize, rate_limit: Option<RateLimit>) -> Sandbox {
    let config = SandboxConfig {
        records,
        rate_limit,
        ..SandboxConfig::default()
    };
    Sandbox::start_hubspot(config)
        .await
        .expect("sandbox starts")
}

/// Fast retries, no pacing, short timeouts: what a test wants by default.
fn config(sandbox: &Sandbox) -> HubSpotConfig {
    let defaults = SandboxConfig::default();
    let mut config = HubSpotConfig::new(
        defaults.client_id,
        SecretString::from(defaults.client_secret),
    );
    config.base_url = sandbox.base_url();
    config.auth_base_url = sandbox.base_url();
    config.oauth_base_url = sandbox.base_url();
    // The sandbox listens on loopback.
    config.outbound = syncledger_crm::outbound::outbound::OutboundPolicy::development();
    config.requests_per_10s = None;
    config.search_per_s = Some(4);
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    config
}

fn adapter(config: HubSpotConfig) -> HubSpotAdapter {
    HubSpotAdapter::new(config).expect("adapter builds")
}

fn creds(tokens: &Tokens) -> Credentials {
    Credentials::OAuth2(tokens.clone())
}

fn tokens(sandbox: &Sandbox) -> Tokens {
    let pair = sandbox.issue_tokens();
    Tokens {
        access_token: SecretString::from(pair.access_token),
        refresh_token: Some(SecretString::from(pair.refresh_token)),
        expires_at: None,
        instance_url: None,
    }
}

async fn control(sandbox: &Sandbox, path: &str, body: Value) {
    let url = format!("{}/_sandbox/{path}", sandbox.base_url());
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("control call");
    assert!(
        response.status().is_success(),
        "control {path}: {}",
        response.status()
    );
}

/// Pages until the end, returning every record in the order received.
async fn pull_all(
    adapter: &HubSpotAdapter,
    tokens: &Tokens,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<RemoteRecord>, CrmError> {
    let (mut records, mut cursor) = (Vec::new(), None::<Cursor>);
    loop {
        let page = adapter
            .pull_page(&creds(tokens), Entity::Contacts, cursor, since)
            .await?;
        records.extend(page.records);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(records),
        }
    }
}

fn assert_each_once(records: &[RemoteRecord], expected: usize) {
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "a record came twice");
    assert_eq!(ids.len(), expected);
}

#[tokio::test]
async fn oauth_code_flow_then_connection_test() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let (url, verifier) = adapter
        .authorization_url(REDIRECT, "ws-1.int-2")
        .expect("url");
    let (_, other_verifier) = adapter.authorization_url(REDIRECT, "x").expect("url");
    assert_ne!(verifier, other_verifier, "each call makes a fresh verifier");
    assert!(url.contains("code_challenge_method=S256"), "{url}");

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects.get(&url).send().await.expect("authorize");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("ascii");
    let query: BTreeMap<String, String> = reqwest::Url::parse(location)
        .expect("location url")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["state"], "ws-1.int-2");

    let tokens = adapter
        .exchange_code(&query["code"], &verifier, REDIRECT)
        .await
        .expect("exchange");
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_at.is_some_and(|at| at > Utc::now()));
    assert!(!format!("{tokens:?}").contains(tokens.access_token.expose_secret()));

    let identity = adapter
        .test_connection(&creds(&tokens))
        .await
        .expect("identity");
    assert_eq!(
        identity.account_id,
        SandboxConfig::default().hub_id.to_string()
    );
    assert!(identity.user.is_some());
}

#[tokio::test]
async fn code_exchange_with_a_wrong_verifier_fails() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let (url, _) = adapter.authorization_url(REDIRECT, "s").expect("url");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects.get(&url).send().await.expect("authorize");
    let location = response.headers()["location"].to_str().expect("ascii");
    let code = reqwest::Url::parse(location)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let result = adapter
        .exchange_code(
            &code,
            "not-the-verifier-not-the-verifier-not-the-verifier",
            REDIRECT,
        )
        .await;
    assert!(matches!(result, Err(CrmError::OAuth(_))), "{result:?}");
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let old = tokens(&sandbox);
    let old_refresh = old.refresh_token.as_ref().expect("refresh").expose_secret();

    let fresh = adapter.refresh(old_refresh).await.expect("refresh");
    adapter
        .test_connection(&creds(&fresh))
        .await
        .expect("new token works");
    let again = adapter.refresh(old_refresh).await;
    assert!(matches!(again, Err(CrmError::OAuth(_))), "{again:?}");
}

#[tokio::test]
async fn revoke_ends_the_grant() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    adapter.revoke(&tokens).await.expect("revoke");

    let refresh = tokens
        .refresh_token
        .as_ref()
        .expect("refresh")
        .expose_secret();
    assert!(adapter.refresh(refresh).await.is_err());
    let connection = adapter.test_connection(&creds(&tokens)).await;
    assert!(
        matches!(connection, Err(CrmError::Unauthorized)),
        "{connection:?}"
    );
    let fields = adapter.fields(&creds(&tokens), Entity::Contacts).await;
    assert!(matches!(fields, Err(CrmError::Unauthorized)), "{fields:?}");
}

#[tokio::test]
async fn fields_include_standard_and_custom_properties() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let fields = adapter
        .fields(&creds(&tokens(&sandbox)), Entity::Contacts)
        .await
        .expect("fields");
    let by_name: BTreeMap<&str, _> = fields.iter().map(|f| (f.name.as_str(), f)).collect();
    assert!(by_name["email"].writable);
    assert!(by_name.contains_key("favorite_color"));
    assert!(!by_name["lastmodifieddate"].writable);
}

#[tokio::test]
async fn full_pull_returns_every_record_once() {
    let sandbox = sandbox(1_050, None).await;
    let adapter = adapter(config(&sandbox));
    let records = pull_all(&adapter, &tokens(&sandbox), None)
        .await
        .expect("pull");
    assert_each_once(&records, 1_050);
    assert!(records.iter().all(|r| r.properties.contains_key("email")));
}

#[tokio::test]
async fn incremental_pull_includes_the_boundary_timestamp() {
    let sandbox = sandbox(1_050, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    let mut all = pull_all(&adapter, &tokens, None).await.expect("full");
    all.sort_by_key(|r| r.updated_at);
    // Mid-group: records before it in the list share its timestamp.
    let since = all[510].updated_at;
    assert_eq!(all[509].updated_at, since, "the seed groups timestamps");
    let expected: HashSet<String> = all
        .iter()
        .filter(|r| r.updated_at >= since)
        .map(|r| r.id.clone())
        .collect();

    let changed = pull_all(&adapter, &tokens, Some(since))
        .await
        .expect("incremental");
    let got: HashSet<String> = changed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn pull_survives_rate_limits_errors_timeouts_and_bad_json() {
    let sandbox = sandbox(1_050, None).await;
    let mut config = config(&sandbox);
    config.max_retries = 10;
    let adapter = adapter(config);
    let list = "/crm/v3/objects/contacts";
    let faults = json!([
        {"kind": "status", "status": 429, "count": 4, "path_prefix": list},
        {"kind": "status", "status": 500, "count": 2, "path_prefix": list},
        {"kind": "timeout", "count": 1, "hold_ms": 5000, "path_prefix": list},
        {"kind": "malformed_json", "count": 1, "path_prefix": list},
    ]);
    control(&sandbox, "faults", faults).await;
    let records = pull_all(&adapter, &tokens(&sandbox), None)
        .await
        .expect("pull");
    assert_each_once(&records, 1_050);
    // 11 pages, plus one call per injected fault.
    assert_eq!(sandbox.counters()["GET /crm/v3/objects/contacts"], 11 + 8);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    control(&sandbox, "faults", json!({"kind": "status", "status": 400})).await;
    let result = adapter
        .fields(&creds(&tokens(&sandbox)), Entity::Contacts)
        .await;
    assert!(
        matches!(result, Err(CrmError::Rejected { status: 400, .. })),
        "{result:?}"
    );
    assert_eq!(sandbox.counters()["GET /crm/v3/properties/contacts"], 1);
}

#[tokio::test]
async fn a_bad_token_is_unauthorized_and_not_retried() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = Tokens {
        access_token: SecretString::from("nope"),
        refresh_token: None,
        expires_at: None,
        instance_url: None,
    };
    let result = adapter.fields(&creds(&tokens), Entity::Contacts).await;
    assert!(matches!(result, Err(CrmError::Unauthorized)), "{result:?}");
    assert_eq!(sandbox.counters()["GET /crm/v3/properties/contacts"], 1);
}

/// With no retries allowed, any 429 would fail the pull.
async fn pull_at_limit(pacing: Option<u32>) -> Result<Vec<RemoteRecord>, CrmError> {
    let limit = RateLimit {
        max: 20,
        interval_ms: 1_000,
    };
    let sandbox = sandbox(3_000, Some(limit)).await;
    let mut config = config(&sandbox);
    config.requests_per_10s = pacing;
    config.max_retries = 0;
    pull_all(&adapter(config), &tokens(&sandbox), None).await
}

#[tokio::test]
async fn pacing_at_the_limit_receives_no_429() {
    // 20 per second is 200 per 10 s.
    let records = pull_at_limit(Some(200)).await.expect("no 429 when paced");
    assert_each_once(&records, 3_000);
    let unpaced = pull_at_limit(None).await;
    assert!(
        matches!(unpaced, Err(CrmError::RateLimited { .. })),
        "{unpaced:?}"
    );
}

#[tokio::test]
async fn partial_batch_failures_map_to_their_inputs() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    control(
        &sandbox,
        "faults",
        json!({"kind": "partial_batch", "fail_every": 3, "count": 1}),
    )
    .await;
    let ops: Vec<PushOp> = (0..10)
        .map(|i| PushOp {
            kind: PushKind::Create,
            properties: BTreeMap::from([
                ("email".to_owned(), Some(format!("new{i}@example.com"))),
                ("firstname".to_owned(), Some(format!("New{i}"))),
            ]),
        })
        .collect();
    let results = adapter
        .push_batch(&creds(&tokens), Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(results.len(), 10);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.index, i);
        let fails = (i + 1) % 3 == 0;
        assert_eq!(result.error.is_some(), fails, "input {i}: {result:?}");
        assert_eq!(result.remote_id.is_some(), !fails, "input {i}: {result:?}");
    }
}

#[tokio::test]
async fn upserts_and_updates_report_remote_ids() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    let existing = pull_all(&adapter, &tokens, None).await.expect("pull");
    let target = &existing[0];
    let ops = vec![
        PushOp {
            kind: PushKind::Update {
                id: target.id.clone(),
            },
            properties: BTreeMap::from([("city".to_owned(), Some("Lisbon".to_owned()))]),
        },
        PushOp {
            kind: PushKind::Upsert {
                key_property: "email".into(),
            },
            properties: BTreeMap::from([
                ("email".to_owned(), Some("upsert@example.com".to_owned())),
                ("lastname".to_owned(), Some("Upserted".to_owned())),
            ]),
        },
        PushOp {
            kind: PushKind::Update {
                id: "999999999".into(),
            },
            properties: BTreeMap::from([("city".to_owned(), Some("Nowhere".to_owned()))]),
        },
    ];
    let results = adapter
        .push_batch(&creds(&tokens), Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(results[0].remote_id.as_deref(), Some(target.id.as_str()));
    assert!(results[1].remote_id.is_some(), "{:?}", results[1]);
    assert!(results[2].error.is_some(), "{:?}", results[2]);
}

#[tokio::test]
async fn deletions_list_archived_records() {
    let sandbox = sandbox(30, None).await;
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    let all = pull_all(&adapter, &tokens, None).await.expect("pull");
    let gone = &all[3].id;
    let url = format!("{}/_sandbox/records/contacts/{gone}", sandbox.base_url());
    let response = reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .expect("archive");
    assert!(response.status().is_success());

    let page = adapter
        .deletions(&creds(&tokens), Entity::Contacts, None, None)
        .await
        .expect("deletions");
    let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [gone.as_str()]);
    assert!(page.records[0].archived);
    assert!(page.next.is_none());
}

#[tokio::test]
async fn incremental_pull_gets_past_the_search_cap() {
    let sandbox = sandbox(10_100, None).await;
    let mut config = config(&sandbox);
    config.search_per_s = None;
    let adapter = adapter(config);
    let tokens = tokens(&sandbox);
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let changed = pull_all(&adapter, &tokens, Some(epoch))
        .await
        .expect("pull");
    let ids: HashSet<&str> = changed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 10_100);
}

#[tokio::test]
async fn creates_are_not_repeated_after_a_server_error() {
    let sandbox = sandbox(10, None).await;
    let adapter = adapter(config(&sandbox));
    let create = "/crm/v3/objects/contacts/batch/create";
    let fault = json!({"kind": "status", "status": 500, "path_prefix": create});
    control(&sandbox, "faults", fault).await;
    let op = PushOp {
        kind: PushKind::Create,
        properties: BTreeMap::from([("email".to_owned(), Some("once@example.com".to_owned()))]),
    };
    let result = adapter
        .push_batch(&creds(&tokens(&sandbox)), Entity::Contacts, vec![op])
        .await;
    assert!(
        matches!(result, Err(CrmError::Server { status: 500, .. })),
        "{result:?}"
    );
    assert_eq!(sandbox.counters()[&format!("POST {create}")], 1);
}

/// Records at the boundary instant that the caller already holds are left out of
/// the search; one at that instant it does not hold, and later ones, still come.
#[tokio::test]
async fn search_leaves_out_what_the_caller_holds_at_the_boundary() {
    let sandbox = Sandbox::start_hubspot(SandboxConfig {
        records: 12,
        same_timestamp_group: 6,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let adapter = adapter(config(&sandbox));
    let tokens = tokens(&sandbox);
    let all = pull_all(&adapter, &tokens, None).await.expect("full pull");
    let first = all.iter().map(|r| r.updated_at).min().expect("records");
    let at_first: Vec<String> = all
        .iter()
        .filter(|r| r.updated_at == first)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(at_first.len(), 6);
    let (held, not_held) = at_first.split_at(4);

    let mut cursor = None;
    let mut got = Vec::new();
    loop {
        let page = adapter
            .pull_page_since(&creds(&tokens), Entity::Contacts, cursor, Some(first), held)
            .await
            .expect("search");
        got.extend(page.records);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let ids: HashSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_each_once(&got, 8);
    assert!(held.iter().all(|id| !ids.contains(id.as_str())));
    assert!(not_held.iter().all(|id| ids.contains(id.as_str())));

    // Without `seen` the boundary is inclusive: all 12.
    let inclusive = pull_all(&adapter, &tokens, Some(first))
        .await
        .expect("search");
    assert_each_once(&inclusive, 12);
}

/// Another client spending the same budget: the pacer follows the provider's
/// `Remaining` header and waits instead of running into a 429 (no retries allowed).
#[tokio::test]
async fn pacing_counts_what_others_spent_of_the_budget() {
    let limit = RateLimit {
        max: 10,
        interval_ms: 1_000,
    };
    let sandbox = sandbox(900, Some(limit)).await;
    let tokens = tokens(&sandbox);
    let mut config = config(&sandbox);
    config.requests_per_10s = Some(100);
    config.max_retries = 0;
    let adapter = adapter(config);
    // The other client: 8 of the window's 10 spent just now.
    let other = reqwest::Client::new();
    for _ in 0..8 {
        let response = other
            .get(format!(
                "{}/crm/v3/objects/contacts?limit=1",
                sandbox.base_url()
            ))
            .bearer_auth(tokens.access_token.expose_secret())
            .send()
            .await
            .expect("other client");
        assert_eq!(response.status(), 200);
    }
    // 9 list pages and the property catalogue: 10 requests, 2 of them in the spent window.
    let records = pull_all(&adapter, &tokens, None)
        .await
        .expect("no 429 when the pacer follows the headers");
    assert_each_once(&records, 900);
    assert_eq!(
        sandbox.counters().get(syncledger_sandbox::RATE_LIMITED),
        None
    );
}
