//! The Salesforce adapter against the Salesforce sandbox.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, Cursor, Entity, PushKind, PushOp, RemoteRecord,
    SalesforceAdapter, SalesforceConfig, Tokens,
};
use syncledger_sandbox::{SalesforceSandboxConfig, Sandbox};

const REDIRECT: &str = "http://localhost:7777/oauth/callback";
const DATA: &str = "/services/data/v60.0";

async fn sandbox(records: usize) -> Sandbox {
    let config = SalesforceSandboxConfig {
        records,
        ..SalesforceSandboxConfig::default()
    };
    Sandbox::start_salesforce(config)
        .await
        .expect("sandbox starts")
}

/// Fast retries, no pacing, short timeouts, the smallest page.
fn config(sandbox: &Sandbox) -> SalesforceConfig {
    let defaults = SalesforceSandboxConfig::default();
    let mut config = SalesforceConfig::new(
        defaults.client_id,
        SecretString::from(defaults.client_secret),
    );
    config.login_url = sandbox.base_url();
    config.page_size = 200;
    config.requests_per_interval = None;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(100);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    // The sandbox listens on loopback.
    config.outbound = syncledger_crm::outbound::outbound::OutboundPolicy::development();
    config
}

fn adapter(sandbox: &Sandbox) -> SalesforceAdapter {
    SalesforceAdapter::new(config(sandbox)).expect("adapter builds")
}

/// A session as the token endpoint would hand it out, pointing at the sandbox.
fn tokens(sandbox: &Sandbox) -> Tokens {
    let pair = sandbox.issue_tokens();
    Tokens {
        access_token: SecretString::from(pair.access_token),
        refresh_token: Some(SecretString::from(pair.refresh_token)),
        expires_at: None,
        instance_url: Some(sandbox.base_url()),
    }
}

fn creds(tokens: &Tokens) -> Credentials {
    Credentials::OAuth2(tokens.clone())
}

async fn control(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Value) -> Value {
    let url = format!("{}/_sandbox/{path}", sandbox.base_url());
    let response = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("control call");
    assert!(
        response.status().is_success(),
        "control {path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

async fn post(sandbox: &Sandbox, path: &str, body: Value) -> Value {
    control(sandbox, reqwest::Method::POST, path, body).await
}

async fn pull_all(
    adapter: &SalesforceAdapter,
    tokens: &Tokens,
    entity: Entity,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<RemoteRecord>, CrmError> {
    let (mut records, mut cursor) = (Vec::new(), None::<Cursor>);
    loop {
        let page = adapter
            .pull_page(&creds(tokens), entity, cursor, since)
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

fn counter(counters: &BTreeMap<String, u64>, key: &str) -> u64 {
    counters.get(key).copied().unwrap_or(0)
}

/// Follows the authorize redirect and returns the code and state.
async fn authorize(url: &str) -> BTreeMap<String, String> {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects.get(url).send().await.expect("authorize");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("ascii");
    assert!(location.starts_with(REDIRECT), "{location}");
    reqwest::Url::parse(location)
        .expect("location url")
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn code_flow_with_pkce_keeps_the_instance_url() {
    let sandbox = sandbox(5).await;
    let adapter = adapter(&sandbox);
    let (url, verifier) = adapter.authorization_url(REDIRECT, "ws-1").expect("url");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.starts_with(&format!("{}/services/oauth2/authorize", sandbox.base_url())));
    let query = authorize(&url).await;
    assert_eq!(query["state"], "ws-1");

    let tokens = adapter
        .exchange_code(&query["code"], &verifier, REDIRECT)
        .await
        .expect("exchange");
    assert_eq!(
        tokens.instance_url.as_deref(),
        Some(sandbox.base_url().as_str())
    );
    assert!(
        tokens.refresh_token.is_some(),
        "refresh_token scope asked for"
    );
    assert!(
        tokens.expires_at.is_none(),
        "Salesforce sends no expires_in"
    );
    assert!(!format!("{tokens:?}").contains(tokens.access_token.expose_secret()));

    let identity = adapter
        .test_connection(&creds(&tokens))
        .await
        .expect("identity");
    assert_eq!(
        identity.account_id,
        SalesforceSandboxConfig::default().org_id
    );
    assert!(identity.user.is_some());
}

#[tokio::test]
async fn code_exchange_with_a_wrong_verifier_fails() {
    let sandbox = sandbox(5).await;
    let adapter = adapter(&sandbox);
    let (url, _) = adapter.authorization_url(REDIRECT, "s").expect("url");
    let code = authorize(&url).await["code"].clone();
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
async fn refresh_keeps_the_refresh_token() {
    let sandbox = sandbox(5).await;
    let adapter = adapter(&sandbox);
    let old = tokens(&sandbox);
    let refresh = old.refresh_token.as_ref().expect("refresh").expose_secret();

    let fresh = adapter.refresh(refresh).await.expect("refresh");
    let kept = fresh.refresh_token.as_ref().expect("kept");
    assert_eq!(kept.expose_secret(), refresh);
    assert_ne!(
        fresh.access_token.expose_secret(),
        old.access_token.expose_secret()
    );
    assert_eq!(
        fresh.instance_url.as_deref(),
        Some(sandbox.base_url().as_str())
    );
    adapter
        .test_connection(&creds(&fresh))
        .await
        .expect("new session works");
    // Not rotated: the same refresh token keeps working.
    adapter.refresh(refresh).await.expect("refresh again");
}

#[tokio::test]
async fn revoke_ends_the_grant_and_its_sessions() {
    let sandbox = sandbox(5).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    adapter.revoke(&tokens).await.expect("revoke");

    let refresh = tokens
        .refresh_token
        .as_ref()
        .expect("refresh")
        .expose_secret();
    let again = adapter.refresh(refresh).await;
    assert!(matches!(again, Err(CrmError::OAuth(_))), "{again:?}");
    let pull = adapter
        .pull_page(&creds(&tokens), Entity::Contacts, None, None)
        .await;
    assert!(matches!(pull, Err(CrmError::Unauthorized)), "{pull:?}");
    let who = adapter.test_connection(&creds(&tokens)).await;
    assert!(matches!(who, Err(CrmError::Unauthorized)), "{who:?}");
}

#[tokio::test]
async fn an_expired_session_is_unauthorized_until_refreshed() {
    let sandbox = sandbox(5).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    post(&sandbox, "tokens/expire", json!({})).await;

    let pull = adapter
        .pull_page(&creds(&tokens), Entity::Contacts, None, None)
        .await;
    assert!(matches!(pull, Err(CrmError::Unauthorized)), "{pull:?}");
    let refresh = tokens
        .refresh_token
        .as_ref()
        .expect("refresh")
        .expose_secret();
    let fresh = adapter.refresh(refresh).await.expect("refresh");
    let records = pull_all(&adapter, &fresh, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&records, 5);
}

#[tokio::test]
async fn full_pull_follows_next_records_url_and_returns_each_record_once() {
    let sandbox = sandbox(2500).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let records = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&records, 2500);
    let stamps: Vec<_> = records.iter().map(|r| r.updated_at).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "ordered by SystemModstamp"
    );
    let first = &records[0];
    assert!(first.properties.contains_key("Tier__c"));
    assert!(first.properties["Email"]
        .as_deref()
        .is_some_and(|e| e.contains('@')));
    assert!(!first.properties.contains_key("attributes"));

    let counters = sandbox.counters();
    assert_eq!(counter(&counters, &format!("GET {DATA}/query")), 1);
    // 2,500 records in pages of 200: 13 pages, 12 of them by nextRecordsUrl.
    assert_eq!(
        counter(&counters, &format!("GET {DATA}/query/{{locator}}")),
        12
    );
    // Every page says how many the query matches (the run's progress).
    let first_page = adapter
        .pull_page(&creds(&tokens), Entity::Contacts, None, None)
        .await
        .expect("a page");
    assert_eq!(first_page.total, Some(2500));
    assert_eq!(
        counter(&counters, &format!("GET {DATA}/sobjects/Contact/describe")),
        1
    );

    // The describe is cached: a second pull queries only.
    pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("again");
    let counters = sandbox.counters();
    assert_eq!(
        counter(&counters, &format!("GET {DATA}/sobjects/Contact/describe")),
        1
    );
}

#[tokio::test]
async fn incremental_pull_loses_no_record_sharing_the_boundary_timestamp() {
    // 25 seeded records share each SystemModstamp.
    let sandbox = sandbox(500).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let all = pull_all(&adapter, &tokens, Entity::Companies, None)
        .await
        .expect("full");
    // A boundary in the middle of a group of equal timestamps.
    let since = all[260].updated_at;
    let expected = all.iter().filter(|r| r.updated_at >= since).count();
    assert_eq!(expected, 250, "the whole group at the boundary counts");

    let changed = pull_all(&adapter, &tokens, Entity::Companies, Some(since))
        .await
        .expect("incremental");
    assert_each_once(&changed, expected);
    assert!(changed.iter().all(|r| r.updated_at >= since));

    // An edit moves a record past every seeded one.
    let old = &all[0];
    post(
        &sandbox,
        "records/Account",
        json!({ "Id": old.id, "Industry": "Banking" }),
    )
    .await;
    let last = all.iter().map(|r| r.updated_at).max().expect("records");
    let after = pull_all(&adapter, &tokens, Entity::Companies, Some(last))
        .await
        .expect("after edit");
    assert!(after
        .iter()
        .any(|r| r.id == old.id && r.properties["Industry"].as_deref() == Some("Banking")));
}

#[tokio::test]
async fn a_storm_of_rate_limits_server_errors_and_timeouts_still_yields_each_record_once() {
    let sandbox = sandbox(1000).await;
    // Nine failures in a row: enough retries to outlast them.
    let adapter = SalesforceAdapter::new(SalesforceConfig {
        max_retries: 12,
        ..config(&sandbox)
    })
    .expect("adapter builds");
    let tokens = tokens(&sandbox);
    let faults = json!([
        { "kind": "status", "status": 429, "count": 3, "path_prefix": "/services/data" },
        { "kind": "status", "status": 503, "count": 2, "path_prefix": "/services/data" },
        { "kind": "timeout", "count": 1, "hold_ms": 4000, "path_prefix": "/services/data" },
        { "kind": "status", "status": 500, "count": 2, "path_prefix": "/services/data" },
        { "kind": "malformed_json", "count": 1, "path_prefix": "/services/data/v60.0/query/" }
    ]);
    post(&sandbox, "faults", faults).await;
    let records = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull survives");
    assert_each_once(&records, 1000);
}

#[tokio::test]
async fn daily_quota_exhausted_mid_pull_is_reported_not_success() {
    let sandbox = sandbox(1000).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    // describe, the query and one more page fit; the next page does not.
    post(
        &sandbox,
        "daily-limit",
        json!({ "limit": 103, "used": 100 }),
    )
    .await;
    let result = pull_all(&adapter, &tokens, Entity::Contacts, None).await;
    assert!(
        matches!(result, Err(CrmError::QuotaExhausted(_))),
        "{result:?}"
    );
    // Not retried: one refused call for the fourth request.
    let counters = sandbox.counters();
    assert_eq!(
        counter(&counters, &format!("GET {DATA}/query/{{locator}}")),
        2
    );
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

fn contact(last: &str, email: &str) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        ("FirstName".to_owned(), Some("Ada".to_owned())),
        ("LastName".to_owned(), Some(last.to_owned())),
        ("Email".to_owned(), Some(email.to_owned())),
    ])
}

#[tokio::test]
async fn push_of_450_creates_uses_three_collection_calls_and_maps_failures_to_their_inputs() {
    let sandbox = sandbox(0).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let ops: Vec<PushOp> = (0..450)
        .map(|i| {
            let email = match i {
                7 | 301 => format!("broken-{i}-at-example.com"),
                _ => format!("new{i}@example.com"),
            };
            let mut properties = contact(&format!("Person{i}"), &email);
            if i == 420 {
                properties.insert("LastName".into(), None);
            }
            PushOp {
                kind: PushKind::Create,
                properties,
            }
        })
        .collect();
    let results = adapter
        .push_batch(&creds(&tokens), Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(results.len(), 450);
    for result in &results {
        match result.index {
            7 | 301 => {
                let error = result.error.as_deref().unwrap_or_default();
                assert!(error.contains("INVALID_EMAIL_ADDRESS"), "{error}");
                assert!(result.remote_id.is_none());
            }
            420 => {
                let error = result.error.as_deref().unwrap_or_default();
                assert!(error.contains("REQUIRED_FIELD_MISSING"), "{error}");
            }
            _ => assert!(
                result.error.is_none() && result.remote_id.is_some(),
                "{result:?}"
            ),
        }
    }
    let counters = sandbox.counters();
    assert_eq!(
        counter(&counters, &format!("POST {DATA}/composite/sobjects")),
        3
    );
    let pulled = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&pulled, 447);
}

#[tokio::test]
async fn upsert_by_email_creates_or_updates_and_update_by_id_writes() {
    let sandbox = sandbox(10).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let existing = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    let known = &existing[3];
    let known_email = known.properties["Email"].clone().expect("email");
    let upsert = |properties| PushOp {
        kind: PushKind::Upsert {
            key_property: "Email".into(),
        },
        properties,
    };
    let mut changed = contact("Lovelace", &known_email);
    changed.insert("Title".into(), Some("Countess".into()));
    let ops = vec![
        upsert(changed),
        upsert(contact("Hopper", "grace@example.com")),
        PushOp {
            kind: PushKind::Update {
                id: existing[5].id.clone(),
            },
            properties: BTreeMap::from([("Title".to_owned(), Some("CFO".to_owned()))]),
        },
        upsert(BTreeMap::from([(
            "LastName".to_owned(),
            Some("NoKey".to_owned()),
        )])),
    ];
    let results = adapter
        .push_batch(&creds(&tokens), Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(
        results[0].remote_id.as_deref(),
        Some(known.id.as_str()),
        "{:?}",
        results[0]
    );
    let created = results[1].remote_id.clone().expect("created");
    assert!(!existing.iter().any(|r| r.id == created));
    assert_eq!(
        results[2].remote_id.as_deref(),
        Some(existing[5].id.as_str())
    );
    assert!(
        results[3].error.is_some(),
        "an upsert without its key value fails alone"
    );

    let record = control(
        &sandbox,
        reqwest::Method::GET,
        &format!("records/Contact/{}", known.id),
        Value::Null,
    )
    .await;
    assert_eq!(record["Title"], "Countess");
    assert_eq!(record["LastName"], "Lovelace");
    let record = control(
        &sandbox,
        reqwest::Method::GET,
        &format!("records/Contact/{}", existing[5].id),
        Value::Null,
    )
    .await;
    assert_eq!(record["Title"], "CFO");
    let after = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&after, 11);
    let counters = sandbox.counters();
    assert_eq!(
        counter(
            &counters,
            &format!("PATCH {DATA}/composite/sobjects/Contact/Email")
        ),
        1
    );
    assert_eq!(
        counter(&counters, &format!("PATCH {DATA}/composite/sobjects")),
        1
    );
}

#[tokio::test]
async fn deletions_come_from_get_deleted_and_leave_the_query() {
    let sandbox = sandbox(20).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let before = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    let gone = before[4].id.clone();
    let earlier = before[6].id.clone();
    let two_days_ago = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let backdated = format!(
        "records/Contact/{earlier}?deleted_at={}",
        urlencode(&two_days_ago)
    );
    control(&sandbox, reqwest::Method::DELETE, &backdated, Value::Null).await;
    let path = format!("records/Contact/{gone}");
    control(&sandbox, reqwest::Method::DELETE, &path, Value::Null).await;

    let page = adapter
        .deletions(&creds(&tokens), Entity::Contacts, None, None)
        .await
        .expect("deletions");
    let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [earlier.as_str(), gone.as_str()],
        "oldest deletion first"
    );
    assert!(page.records.iter().all(|r| r.archived));
    assert!(page.next.is_none());
    // Only deletions at or after `since`.
    let yesterday = Utc::now() - chrono::Duration::days(1);
    let page = adapter
        .deletions(&creds(&tokens), Entity::Contacts, None, Some(yesterday))
        .await
        .expect("since yesterday");
    let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [gone.as_str()]);
    // A `since` older than 15 days is clamped rather than refused.
    let old = Utc::now() - chrono::Duration::days(40);
    let page = adapter
        .deletions(&creds(&tokens), Entity::Contacts, None, Some(old))
        .await
        .expect("clamped");
    assert_eq!(page.records.len(), 2);

    let after = pull_all(&adapter, &tokens, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&after, 18);
    assert!(!after.iter().any(|r| r.id == gone || r.id == earlier));
    let counters = sandbox.counters();
    assert_eq!(
        counter(&counters, &format!("GET {DATA}/sobjects/Contact/deleted")),
        3
    );
}

#[tokio::test]
async fn describe_maps_salesforce_fields() {
    let sandbox = sandbox(1).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    let fields = adapter
        .fields(&creds(&tokens), Entity::Contacts)
        .await
        .expect("describe");
    let field = |name: &str| fields.iter().find(|f| f.name == name).expect(name);
    assert!(field("LastName").required && field("LastName").writable);
    assert!(!field("Email").required && field("Email").writable);
    assert_eq!(field("Email").field_type, "email");
    assert!(!field("Id").writable && !field("Id").required);
    assert!(!field("SystemModstamp").writable);
    assert!(field("Tier__c").writable);
    let accounts = adapter
        .fields(&creds(&tokens), Entity::Companies)
        .await
        .expect("describe");
    assert!(accounts.iter().any(|f| f.name == "Name" && f.required));
    assert!(accounts.iter().any(|f| f.name == "BillingCity"));
}

#[tokio::test]
async fn injected_record_failures_land_on_their_own_inputs() {
    let sandbox = sandbox(0).await;
    let adapter = adapter(&sandbox);
    let tokens = tokens(&sandbox);
    post(
        &sandbox,
        "faults",
        json!({ "kind": "partial_batch", "fail_every": 50, "count": 1 }),
    )
    .await;
    let ops: Vec<PushOp> = (0..120)
        .map(|i| PushOp {
            kind: PushKind::Upsert {
                key_property: "Email".into(),
            },
            properties: contact(&format!("P{i}"), &format!("p{i}@example.com")),
        })
        .collect();
    let results = adapter
        .push_batch(&creds(&tokens), Entity::Contacts, ops)
        .await
        .expect("push");
    let failed: Vec<usize> = results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.index)
        .collect();
    assert_eq!(failed, [49, 99]);
    assert!(results[49]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("UNKNOWN_EXCEPTION")));
    assert_eq!(
        results.iter().filter(|r| r.remote_id.is_some()).count(),
        118
    );
}
