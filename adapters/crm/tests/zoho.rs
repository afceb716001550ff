//! The Zoho CRM adapter against the Zoho sandbox.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use syncledger_crm::outbound::outbound::OutboundPolicy;
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, Cursor, Entity, PushKind, PushOp, RemoteRecord, Tokens,
    ZohoAdapter, ZohoConfig,
};
use syncledger_sandbox::{Sandbox, ZohoSandboxConfig};

const REDIRECT: &str = "http://localhost:7777/oauth/callback";

async fn sandbox_with(config: ZohoSandboxConfig) -> Sandbox {
    Sandbox::start_zoho(config).await.expect("sandbox starts")
}

async fn sandbox(records: usize) -> Sandbox {
    sandbox_with(ZohoSandboxConfig {
        records,
        ..ZohoSandboxConfig::default()
    })
    .await
}

/// Every host at the sandbox; fast retries, no pacing.
fn config(sandbox: &Sandbox) -> ZohoConfig {
    let defaults = ZohoSandboxConfig::default();
    let mut config = ZohoConfig::new(
        defaults.client_id,
        SecretString::from(defaults.client_secret),
    )
    .sandbox(&sandbox.base_url());
    config.requests_per_minute = None;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(100);
    config.request_timeout = Duration::from_secs(5);
    config.outbound = OutboundPolicy::development();
    config
}

fn adapter(config: ZohoConfig) -> ZohoAdapter {
    ZohoAdapter::new(config).expect("adapter builds")
}

fn oauth(sandbox: &Sandbox) -> Credentials {
    let pair = sandbox.issue_tokens();
    Credentials::OAuth2(Tokens {
        access_token: SecretString::from(pair.access_token),
        refresh_token: Some(SecretString::from(pair.refresh_token)),
        expires_at: None,
        instance_url: Some(sandbox.base_url()),
    })
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

fn count(sandbox: &Sandbox, key: &str) -> u64 {
    sandbox.counters().get(key).copied().unwrap_or(0)
}

/// Every record of a pull, and the cursors it went through.
async fn pull_all(
    adapter: &ZohoAdapter,
    credentials: &Credentials,
    entity: Entity,
    since: Option<DateTime<Utc>>,
    seen: &[String],
) -> Result<(Vec<RemoteRecord>, Vec<Cursor>), CrmError> {
    let (mut records, mut cursors, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        let page = adapter
            .pull_page_since(credentials, entity, cursor.clone(), since, seen)
            .await?;
        records.extend(page.records);
        match page.next {
            Some(next) => {
                cursors.push(next.clone());
                cursor = Some(next);
            }
            None => return Ok((records, cursors)),
        }
    }
}

/// The sandbox's redirect after approving: the callback's query parameters.
async fn approve(url: &str) -> Vec<(String, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client.get(url).send().await.expect("authorize");
    assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("a location")
        .to_owned();
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    serde_urlencoded::from_str(query).expect("a query")
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn connects_at_the_named_accounts_server_and_refreshes_without_rotation() {
    let sandbox = sandbox(5).await;
    let zoho = adapter(config(&sandbox));
    let (url, verifier) = zoho
        .authorization_url(REDIRECT, "state-1")
        .expect("an authorization URL");
    assert!(
        url.starts_with(&format!("{}/oauth/v2/auth?", sandbox.base_url())),
        "{url}"
    );
    assert!(
        url.contains("access_type=offline") && url.contains("prompt=consent"),
        "{url}"
    );
    let callback = approve(&url).await;
    assert_eq!(param(&callback, "state"), "state-1");
    assert_eq!(param(&callback, "accounts-server"), sandbox.base_url());
    let tokens = zoho
        .exchange_code_at(
            param(&callback, "code"),
            &verifier,
            REDIRECT,
            Some(param(&callback, "accounts-server")),
        )
        .await
        .expect("tokens");
    assert_eq!(
        tokens.instance_url.as_deref(),
        Some(sandbox.base_url().as_str())
    );
    let refresh = tokens
        .refresh_token
        .clone()
        .expect("offline access: a refresh token");
    let identity = zoho
        .test_connection(&Credentials::OAuth2(tokens.clone()))
        .await
        .expect("the org");
    assert_eq!(identity.account_id, "700100200");

    let fresh = zoho
        .refresh_at(refresh.expose_secret(), tokens.instance_url.as_deref())
        .await
        .expect("refreshed");
    assert_eq!(
        fresh
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some(refresh.expose_secret().to_owned()),
        "Zoho does not rotate refresh tokens"
    );
    assert_ne!(
        fresh.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    zoho.test_connection(&Credentials::OAuth2(fresh.clone()))
        .await
        .expect("the new access token works");
    zoho.revoke(&fresh).await.expect("revoked");
    let after = zoho
        .refresh_at(refresh.expose_secret(), fresh.instance_url.as_deref())
        .await;
    assert!(matches!(after, Err(CrmError::OAuth(_))), "{after:?}");
}

#[tokio::test]
async fn hostile_accounts_servers_and_api_domains_are_refused() {
    let sandbox = sandbox(1).await;
    let zoho = adapter(config(&sandbox));
    let port = sandbox
        .base_url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let hostile_servers = [
        "https://accounts.zoho.com.evil.example".to_owned(),
        "https://evil.example".to_owned(),
        "http://accounts.zoho.com".to_owned(),
        "https://accounts.zoho.com@evil.example".to_owned(),
        "https://accounts.zoho.com:8443".to_owned(),
        "https://accounts.zoho.com/steal".to_owned(),
        format!("http://127.0.0.2:{port}"),
        "file:///etc/passwd".to_owned(),
    ];
    for server in &hostile_servers {
        let (url, verifier) = zoho.authorization_url(REDIRECT, "s").expect("url");
        let code = param(&approve(&url).await, "code").to_owned();
        let before = count(&sandbox, "POST /oauth/v2/token");
        let refused = zoho
            .exchange_code_at(&code, &verifier, REDIRECT, Some(server))
            .await;
        assert!(
            matches!(&refused, Err(CrmError::Refused { field, .. }) if field == "accounts-server"),
            "{server}: {refused:?}"
        );
        assert_eq!(
            count(&sandbox, "POST /oauth/v2/token"),
            before,
            "nothing sent for {server}"
        );
    }
    // A genuine Zoho accounts server is accepted, but its api_domain must be of the same
    // data centre: here the sandbox names hostile ones in its token responses.
    for api_domain in [
        "https://www.zohoapis.com.evil.example",
        "https://evil.example",
        "http://www.zohoapis.com",
        "https://www.zohoapis.eu",
        "http://127.0.0.2:1",
    ] {
        control(
            &sandbox,
            reqwest::Method::POST,
            "oauth/hosts",
            json!({"api_domain": api_domain}),
        )
        .await;
        let (url, verifier) = zoho.authorization_url(REDIRECT, "s").expect("url");
        let callback = approve(&url).await;
        let refused = zoho
            .exchange_code_at(
                param(&callback, "code"),
                &verifier,
                REDIRECT,
                Some(param(&callback, "accounts-server")),
            )
            .await;
        assert!(
            matches!(&refused, Err(CrmError::Refused { field, .. }) if field == "api_domain"),
            "{api_domain}: {refused:?}"
        );
        let text = refused.map(drop).expect_err("refused").to_string();
        assert!(!text.contains("evil") && !text.contains("1000."), "{text}");
    }
    // Stored tokens naming a foreign API domain are not used either.
    let foreign = Credentials::OAuth2(Tokens {
        access_token: SecretString::from("1000.at"),
        refresh_token: None,
        expires_at: None,
        instance_url: Some("https://www.zohoapis.com.evil.example".into()),
    });
    let refused = zoho.test_connection(&foreign).await;
    assert!(
        matches!(refused, Err(CrmError::Refused { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_throttled_token_request_is_an_error_never_a_token() {
    let sandbox = sandbox(1).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let tokens = credentials.tokens().expect("oauth").clone();
    let refresh = tokens
        .refresh_token
        .expect("refresh")
        .expose_secret()
        .to_owned();
    // The grant issued one access token; nine more fit in Zoho's ten per ten minutes.
    for _ in 0..9 {
        zoho.refresh_at(&refresh, Some(&sandbox.base_url()))
            .await
            .expect("within the throttle");
    }
    let throttled = zoho.refresh_at(&refresh, Some(&sandbox.base_url())).await;
    match throttled {
        Err(error) => {
            assert!(matches!(error, CrmError::RateLimited { .. }), "{error:?}");
            assert!(!error.needs_reauthorization() && error.is_transient());
        }
        Ok(_) => panic!("an HTTP 200 'Access Denied' was taken for a token"),
    }
}

#[tokio::test]
async fn pages_past_2000_rows_continue_with_page_tokens() {
    let sandbox = sandbox(2_300).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let (records, cursors) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("a full pull");
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((records.len(), ids.len()), (2_300, 2_300));
    assert!(records
        .windows(2)
        .all(|w| w[0].updated_at <= w[1].updated_at));
    let tokens = cursors
        .iter()
        .filter(|c| {
            matches!(
                c,
                Cursor::Zoho {
                    page_token: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!((cursors.len(), tokens), (11, 2), "{cursors:?}");
    assert_eq!(count(&sandbox, "GET /crm/v8/Contacts"), 12);
    assert_eq!(count(&sandbox, "GET /crm/v8/settings/fields"), 1);
    assert!(records[0].properties.contains_key("Email"));
}

#[tokio::test]
async fn no_records_is_204_and_nothing_modified_is_304() {
    let sandbox = sandbox(0).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let page = zoho
        .pull_page(&credentials, Entity::Companies, None, None)
        .await
        .expect("an empty module");
    assert!(page.records.is_empty() && page.next.is_none());
    let created = control(
        &sandbox,
        reqwest::Method::POST,
        "records/Accounts",
        json!({"Account_Name": "Acme"}),
    )
    .await;
    let modified: DateTime<Utc> = created["Modified_Time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .expect("a Modified_Time");
    let later = modified + chrono::Duration::seconds(5);
    let page = zoho
        .pull_page(&credentials, Entity::Companies, None, Some(later))
        .await
        .expect("nothing modified since");
    assert!(page.records.is_empty() && page.next.is_none());
    let page = zoho
        .pull_page(&credentials, Entity::Companies, None, Some(modified))
        .await
        .expect("modified at since");
    assert_eq!(
        page.records.len(),
        1,
        "a record modified at `since` itself is not lost"
    );
}

#[tokio::test]
async fn records_sharing_a_modified_time_across_pages_and_runs_are_neither_lost_nor_repeated() {
    let sandbox = sandbox_with(ZohoSandboxConfig {
        records: 60,
        same_timestamp_group: 25,
        ..ZohoSandboxConfig::default()
    })
    .await;
    let mut settings = config(&sandbox);
    // Pages of 20 cut each group of 25 records sharing one Modified_Time.
    settings.per_page = 20;
    let zoho = adapter(settings);
    let credentials = oauth(&sandbox);
    let (records, _) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("a full pull");
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((records.len(), ids.len()), (60, 60));
    // The next run starts at the last modification time and holds those records.
    let mark = records.iter().map(|r| r.updated_at).max().expect("records");
    let held: Vec<String> = records
        .iter()
        .filter(|r| r.updated_at == mark)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(held.len(), 10);
    // Meanwhile a record is created in the same second, and another one later.
    let at = mark.to_rfc3339_opts(SecondsFormat::Secs, true);
    let same = control(
        &sandbox,
        reqwest::Method::POST,
        "records/Contacts",
        json!({"Last_Name": "Same-second", "modified_at": at}),
    )
    .await;
    let newer = control(
        &sandbox,
        reqwest::Method::POST,
        "records/Contacts",
        json!({"Last_Name": "Newer"}),
    )
    .await;
    let (incremental, _) = pull_all(&zoho, &credentials, Entity::Contacts, Some(mark), &held)
        .await
        .expect("an incremental pull");
    let got: Vec<&str> = incremental.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        got,
        [
            same["id"].as_str().unwrap_or("?"),
            newer["id"].as_str().unwrap_or("?")
        ],
        "exactly the two new records"
    );
}

#[tokio::test]
async fn deletions_come_from_the_deleted_endpoint() {
    let sandbox = sandbox(5).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let page = zoho
        .deletions(&credentials, Entity::Contacts, None, None)
        .await
        .expect("no deletions yet");
    assert!(page.records.is_empty());
    let (records, _) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("pull");
    let (a, b) = (&records[0].id, &records[1].id);
    control(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("records/Contacts/{a}"),
        Value::Null,
    )
    .await;
    control(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("records/Contacts/{b}?permanent=true"),
        Value::Null,
    )
    .await;
    let page = zoho
        .deletions(&credentials, Entity::Contacts, None, None)
        .await
        .expect("deletions");
    let deleted: HashSet<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(deleted, HashSet::from([a.as_str(), b.as_str()]));
    assert!(page.records.iter().all(|r| r.archived));
    let future = Utc::now() + chrono::Duration::seconds(30);
    let none = zoho
        .deletions(&credentials, Entity::Contacts, None, Some(future))
        .await
        .expect("304");
    assert!(none.records.is_empty());
    let (left, _) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("pull");
    assert_eq!(left.len(), 3);
}

fn op(kind: PushKind, fields: &[(&str, &str)]) -> PushOp {
    PushOp {
        kind,
        properties: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
    }
}

#[tokio::test]
async fn writes_are_mapped_per_record_from_a_207() {
    let sandbox = sandbox(3).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let (records, _) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("pull");
    let existing = &records[0];
    let email = existing.properties["Email"].clone().expect("an email");
    let key = PushKind::Upsert {
        key_property: "Email".into(),
    };
    let ops = vec![
        op(
            key.clone(),
            &[("Email", "new@example.com"), ("Last_Name", "New")],
        ),
        op(PushKind::Create, &[("First_Name", "No last name")]),
        op(key, &[("Email", &email), ("Title", "Upserted")]),
        op(
            PushKind::Update {
                id: existing.id.clone(),
            },
            &[("Phone", "+1 555 0199")],
        ),
        op(
            PushKind::Update {
                id: "4150868999999999999".into(),
            },
            &[("Phone", "x")],
        ),
    ];
    let results = zoho
        .push_batch(&credentials, Entity::Contacts, ops)
        .await
        .expect("a 207 is a result, not a failure");
    assert_eq!(
        results.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(results[0].remote_id.is_some() && results[0].error.is_none());
    assert!(
        results[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("MANDATORY_NOT_FOUND") && e.contains("Last_Name")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].remote_id.as_deref(), Some(existing.id.as_str()));
    assert_eq!(results[3].remote_id.as_deref(), Some(existing.id.as_str()));
    assert!(
        results[4]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("INVALID_DATA")),
        "{:?}",
        results[4]
    );
    let stored = control(
        &sandbox,
        reqwest::Method::GET,
        &format!("records/Contacts/{}", existing.id),
        Value::Null,
    )
    .await;
    assert_eq!(
        (stored["Title"].as_str(), stored["Phone"].as_str()),
        (Some("Upserted"), Some("+1 555 0199"))
    );
    assert_eq!(
        count(&sandbox, "POST /crm/v8/Contacts/upsert"),
        1,
        "one request for the batch"
    );
    assert_eq!(count(&sandbox, "PUT /crm/v8/Contacts"), 1);

    // Every record refused: a 400 still carries one result per record.
    let ops = vec![
        op(PushKind::Create, &[("First_Name", "a")]),
        op(PushKind::Create, &[("Nickname", "b"), ("Last_Name", "b")]),
    ];
    let results = zoho
        .push_batch(&credentials, Entity::Contacts, ops)
        .await
        .expect("per-record refusals");
    assert!(
        results
            .iter()
            .all(|r| r.error.is_some() && r.remote_id.is_none()),
        "{results:?}"
    );
    assert!(results[1]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("Nickname")));
}

#[tokio::test]
async fn a_429_storm_is_waited_out_and_exhausted_credits_are_quota_exhausted() {
    let sandbox = sandbox(10).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    control(
        &sandbox,
        reqwest::Method::POST,
        "faults",
        json!({"kind": "status", "status": 429, "count": 4, "path_prefix": "/crm/v8/Contacts"}),
    )
    .await;
    let (records, _) = pull_all(&zoho, &credentials, Entity::Contacts, None, &[])
        .await
        .expect("the storm passes");
    assert_eq!(records.len(), 10);
    assert_eq!(zoho.usage().rate_limited, 4);

    control(
        &sandbox,
        reqwest::Method::POST,
        "credits",
        json!({"limit": 100, "used": 100}),
    )
    .await;
    let before = count(&sandbox, "GET /crm/v8/Contacts");
    let exhausted = zoho
        .pull_page(&credentials, Entity::Contacts, None, None)
        .await;
    assert!(
        matches!(exhausted, Err(CrmError::QuotaExhausted(_))),
        "{exhausted:?}"
    );
    assert_eq!(
        count(&sandbox, "GET /crm/v8/Contacts"),
        before + 1,
        "not retried"
    );
    let pushed = zoho
        .push_batch(
            &credentials,
            Entity::Contacts,
            vec![op(PushKind::Create, &[("Last_Name", "x")])],
        )
        .await;
    assert!(
        matches!(pushed, Err(CrmError::QuotaExhausted(_))),
        "never a success: {pushed:?}"
    );
}

#[tokio::test]
async fn the_field_catalogue_and_token_errors_map_to_the_adapter_kinds() {
    let sandbox = sandbox(2).await;
    let zoho = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let fields = zoho
        .fields(&credentials, Entity::Contacts)
        .await
        .expect("fields");
    let last = fields
        .iter()
        .find(|f| f.name == "Last_Name")
        .expect("Last_Name");
    assert!(last.required && last.writable && last.label == "Last Name");
    let modified = fields
        .iter()
        .find(|f| f.name == "Modified_Time")
        .expect("Modified_Time");
    assert!(!modified.writable);
    let accounts = zoho
        .fields(&credentials, Entity::Companies)
        .await
        .expect("fields");
    assert!(accounts
        .iter()
        .any(|f| f.name == "Account_Name" && f.required));

    control(&sandbox, reqwest::Method::POST, "tokens/expire", json!({})).await;
    let expired = zoho
        .pull_page(&credentials, Entity::Contacts, None, None)
        .await;
    assert!(
        matches!(expired, Err(CrmError::Unauthorized)),
        "{expired:?}"
    );
    let apikey = Credentials::ApiKey(SecretString::from("k"));
    assert!(matches!(
        zoho.test_connection(&apikey).await,
        Err(CrmError::Config(_))
    ));
}
