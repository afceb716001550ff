//! The Pipedrive adapter against the Pipedrive sandbox.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, Cursor, Entity, PipedriveAdapter, PipedriveConfig, PushKind,
    PushOp, RemoteRecord, Tokens,
};
use syncledger_sandbox::{PipedriveSandboxConfig, RateLimit, Sandbox};

const REDIRECT: &str = "http://localhost:7777/oauth/callback";

async fn sandbox(records: usize, rate_limit: Option<RateLimit>) -> Sandbox {
    let config = PipedriveSandboxConfig {
        records,
        rate_limit,
        ..PipedriveSandboxConfig::default()
    };
    Sandbox::start_pipedrive(config)
        .await
        .expect("sandbox starts")
}

/// Fast retries, no pacing, short timeouts.
fn config(sandbox: &Sandbox) -> PipedriveConfig {
    let defaults = PipedriveSandboxConfig::default();
    let mut config = PipedriveConfig::new(
        defaults.client_id,
        SecretString::from(defaults.client_secret),
    );
    config.base_url = sandbox.base_url();
    config.oauth_base_url = sandbox.base_url();
    config.requests_per_2s = None;
    config.retry_base_delay = Duration::from_millis(10);
    config.retry_max_delay = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    // The sandbox listens on loopback.
    config.outbound = syncledger_crm::outbound::outbound::OutboundPolicy::development();
    config
}

fn adapter(config: PipedriveConfig) -> PipedriveAdapter {
    PipedriveAdapter::new(config).expect("adapter builds")
}

fn api_token() -> Credentials {
    Credentials::ApiKey(SecretString::from(
        PipedriveSandboxConfig::default().api_token,
    ))
}

/// OAuth tokens issued by the sandbox; the API host comes from `instance_url`.
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

async fn post(sandbox: &Sandbox, path: &str, body: Value) -> Value {
    control(sandbox, reqwest::Method::POST, path, body).await
}

async fn pull_all(
    adapter: &PipedriveAdapter,
    credentials: &Credentials,
    entity: Entity,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<RemoteRecord>, usize), CrmError> {
    let (mut records, mut cursor, mut pages) = (Vec::new(), None::<Cursor>, 0);
    loop {
        let page = adapter
            .pull_page(credentials, entity, cursor, since)
            .await?;
        pages += 1;
        records.extend(page.records);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok((records, pages)),
        }
    }
}

fn assert_each_once(records: &[RemoteRecord], expected: usize) {
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "a record came twice");
    assert_eq!(ids.len(), expected);
}

fn query_of(location: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(location)
        .expect("location url")
        .query_pairs()
        .into_owned()
        .collect()
}

async fn authorize(adapter: &PipedriveAdapter, state: &str) -> (String, String) {
    let (url, verifier) = adapter.authorization_url(REDIRECT, state).expect("url");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirects.get(&url).send().await.expect("authorize");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("ascii");
    let query = query_of(location);
    assert_eq!(query["state"], state);
    (query["code"].clone(), verifier)
}

#[tokio::test]
async fn oauth_code_flow_keeps_the_api_domain() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let (code, verifier) = authorize(&adapter, "ws-1.int-2").await;
    let tokens = adapter
        .exchange_code(&code, &verifier, REDIRECT)
        .await
        .expect("exchange");
    assert_eq!(
        tokens.instance_url.as_deref(),
        Some(sandbox.base_url().as_str())
    );
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_at.is_some_and(|at| at > Utc::now()));
    assert!(!format!("{tokens:?}").contains(tokens.access_token.expose_secret()));

    // API calls go to api_domain, not to base_url.
    let mut elsewhere = config(&sandbox);
    elsewhere.base_url = "http://127.0.0.1:9".into();
    let identity = crate::adapter(elsewhere)
        .test_connection(&Credentials::OAuth2(tokens))
        .await
        .expect("identity");
    let company = PipedriveSandboxConfig::default().company_id;
    assert_eq!(identity.account_id, company.to_string());
    assert!(identity.user.is_some());
}

#[tokio::test]
async fn a_wrong_verifier_fails_the_exchange() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let (code, _) = authorize(&adapter, "s").await;
    let error = adapter
        .exchange_code(
            &code,
            "not-the-verifier-not-the-verifier-not-the-verifier",
            REDIRECT,
        )
        .await
        .expect_err("bad verifier");
    assert!(matches!(error, CrmError::OAuth(_)), "{error:?}");
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_fails() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let old = sandbox.issue_tokens().refresh_token;
    let fresh = adapter.refresh(&old).await.expect("refresh");
    let new = fresh
        .refresh_token
        .as_ref()
        .expect("rotated")
        .expose_secret()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(
        fresh.instance_url.as_deref(),
        Some(sandbox.base_url().as_str())
    );
    let error = adapter.refresh(&old).await.expect_err("single use");
    assert!(matches!(error, CrmError::OAuth(_)), "{error:?}");
    adapter
        .test_connection(&Credentials::OAuth2(fresh))
        .await
        .expect("new access token works");
    adapter
        .refresh(&new)
        .await
        .expect("new refresh token works");
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_unauthorized() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let credentials = oauth(&sandbox);
    let tokens = credentials.tokens().expect("oauth").clone();
    adapter.test_connection(&credentials).await.expect("works");
    adapter.revoke(&tokens).await.expect("revoke");
    let error = adapter
        .test_connection(&credentials)
        .await
        .expect_err("revoked");
    assert!(matches!(error, CrmError::Unauthorized), "{error:?}");
    let refresh = tokens.refresh_token.as_ref().expect("rt").expose_secret();
    assert!(adapter.refresh(refresh).await.is_err());

    let credentials = oauth(&sandbox);
    post(&sandbox, "tokens/expire", json!({})).await;
    let error = adapter
        .test_connection(&credentials)
        .await
        .expect_err("expired");
    assert!(matches!(error, CrmError::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn api_token_works_and_a_wrong_one_is_unauthorized_without_retries() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let identity = adapter
        .test_connection(&api_token())
        .await
        .expect("identity");
    assert!(!identity.account_id.is_empty());
    post(&sandbox, "counters/reset", json!({})).await;
    let wrong = Credentials::ApiKey(SecretString::from("nope".to_owned()));
    let error = adapter
        .test_connection(&wrong)
        .await
        .expect_err("wrong token");
    assert!(matches!(error, CrmError::Unauthorized), "{error:?}");
    assert_eq!(sandbox.counters()["GET /v1/users/me"], 1);
    let basic = Credentials::Basic {
        username: "u".into(),
        password: SecretString::from("p".to_owned()),
    };
    assert!(matches!(
        adapter.test_connection(&basic).await,
        Err(CrmError::Config(_))
    ));
}

#[tokio::test]
async fn fields_expose_custom_fields_under_readable_names() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let fields = adapter
        .fields(&api_token(), Entity::Contacts)
        .await
        .expect("fields");
    let by_name: BTreeMap<&str, &syncledger_crm::FieldInfo> =
        fields.iter().map(|f| (f.name.as_str(), f)).collect();
    for name in [
        "name",
        "email",
        "phone",
        "org_id",
        "owner_id",
        "lead_source",
        "birthday",
        "tier",
    ] {
        assert!(
            by_name.contains_key(name),
            "missing {name}: {:?}",
            by_name.keys()
        );
    }
    assert_eq!(by_name["lead_source"].label, "Lead source");
    assert!(by_name["name"].required);
    // A custom field labelled "Email" must not shadow the standard email.
    let shadow: Vec<&str> = by_name
        .keys()
        .copied()
        .filter(|n| n.starts_with("email_") && n.len() == "email_".len() + 6)
        .collect();
    assert_eq!(shadow.len(), 1, "{:?}", by_name.keys());
    assert_eq!(by_name[shadow[0]].label, "Email");

    let orgs = adapter
        .fields(&api_token(), Entity::Companies)
        .await
        .expect("fields");
    let names: HashSet<&str> = orgs.iter().map(|f| f.name.as_str()).collect();
    for name in [
        "name",
        "address",
        "owner_id",
        "industry",
        "tier",
        "employee_count",
    ] {
        assert!(names.contains(name), "missing {name}: {names:?}");
    }
}

#[tokio::test]
async fn full_pull_pages_through_every_record_once() {
    let sandbox = sandbox(1200, None).await;
    let adapter = adapter(config(&sandbox));
    let (records, pages) = pull_all(&adapter, &api_token(), Entity::Contacts, None)
        .await
        .expect("pull");
    assert_eq!(pages, 3);
    assert_each_once(&records, 1200);
    assert_eq!(sandbox.counters()["GET /api/v2/persons"], 3);
    let first = &records[0];
    for name in ["name", "email", "lead_source", "birthday", "tier", "org_id"] {
        assert!(
            first.properties.get(name).is_some_and(Option::is_some),
            "{name} missing in {:?}",
            first.properties
        );
    }
    assert!(
        first.properties.keys().all(|k| k.len() < 40),
        "hash keys leaked"
    );
    assert!(records
        .windows(2)
        .all(|w| w[0].updated_at <= w[1].updated_at));

    let (orgs, _) = pull_all(&adapter, &oauth(&sandbox), Entity::Companies, None)
        .await
        .expect("orgs");
    assert_each_once(&orgs, 1200);
    assert!(orgs[0].properties["address"].is_some());
    assert!(orgs[0].properties["industry"].is_some());
}

#[tokio::test]
async fn incremental_pull_loses_none_of_a_shared_timestamp() {
    let sandbox = sandbox(200, None).await;
    let mut config = config(&sandbox);
    config.page_limit = 10;
    let adapter = adapter(config);
    let credentials = api_token();
    let (all, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("full");
    // Groups of 25 share one update_time; start from the middle of a group.
    let since = all[110].updated_at;
    let expected = all.iter().filter(|r| r.updated_at >= since).count();
    assert_eq!(expected, 100, "groups of 25 from the 5th group on");
    let (changed, _) = pull_all(&adapter, &credentials, Entity::Contacts, Some(since))
        .await
        .expect("incremental");
    assert_each_once(&changed, expected);

    // A live edit shows up in the next incremental pull, custom field included.
    let latest = all.iter().map(|r| r.updated_at).max().expect("records");
    let id: u64 = all[3].id.parse().expect("numeric id");
    post(
        &sandbox,
        "records/persons",
        json!({"id": id, "custom_fields": {"Lead source": "Partner"}}),
    )
    .await;
    let (changed, _) = pull_all(&adapter, &credentials, Entity::Contacts, Some(latest))
        .await
        .expect("incremental");
    let edited = changed
        .iter()
        .find(|r| r.id == all[3].id)
        .expect("edited record");
    assert_eq!(edited.properties["lead_source"].as_deref(), Some("Partner"));
}

#[tokio::test]
async fn pull_survives_429_storms_server_errors_timeouts_and_bad_json() {
    let sandbox = sandbox(1200, None).await;
    let mut config = config(&sandbox);
    config.request_timeout = Duration::from_millis(700);
    // The faults come back to back on one request.
    config.max_retries = 12;
    let adapter = adapter(config);
    let faults = json!([
        {"kind": "status", "status": 429, "count": 5, "path_prefix": "/api/v2"},
        {"kind": "status", "status": 502, "count": 2, "path_prefix": "/api/v2"},
        {"kind": "timeout", "count": 1, "path_prefix": "/api/v2", "hold_ms": 3000},
        {"kind": "malformed_json", "count": 1, "path_prefix": "/api/v2"},
        {"kind": "status", "status": 503, "count": 1, "path_prefix": "/v1/personFields"}
    ]);
    post(&sandbox, "faults", faults).await;
    let (records, _) = pull_all(&adapter, &api_token(), Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&records, 1200);
    // 3 pages + 9 injected failures on the list endpoint.
    assert_eq!(sandbox.counters()["GET /api/v2/persons"], 12);
}

#[tokio::test]
async fn pacing_at_the_real_limit_receives_no_429() {
    let limit = RateLimit {
        max: 20,
        interval_ms: 2000,
    };
    let sandbox = sandbox(600, Some(limit)).await;
    let mut config = config(&sandbox);
    config.requests_per_2s = Some(20);
    config.page_limit = 25;
    let adapter = adapter(config);
    let credentials = oauth(&sandbox);
    let (records, pages) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_each_once(&records, 600);
    assert_eq!(pages, 24);
    // Every request was served once: a 429 would have been retried and counted.
    let counters = sandbox.counters();
    assert_eq!(counters["GET /api/v2/persons"], 24);
    assert_eq!(counters["GET /v1/personFields"], 1);

    // The headers tell the budget of the window.
    let token = match &credentials {
        Credentials::OAuth2(t) => t.access_token.expose_secret().to_owned(),
        _ => unreachable!("oauth credentials"),
    };
    let response = reqwest::Client::new()
        .get(format!("{}/v1/users/me", sandbox.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("call");
    let headers = response.headers();
    assert_eq!(headers["x-ratelimit-limit"], "20");
    assert_eq!(headers["x-ratelimit-reset"], "2");
    assert!(headers.contains_key("x-ratelimit-remaining"));
}

#[tokio::test]
async fn without_pacing_the_limit_answers_429_with_pipedrive_headers() {
    let limit = RateLimit {
        max: 3,
        interval_ms: 2000,
    };
    let sandbox = sandbox(5, Some(limit)).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v1/users/me?api_token=sandbox-api-token",
        sandbox.base_url()
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = client.get(&url).send().await.expect("call");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["success"], json!(false));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
        .collect()
}

#[tokio::test]
async fn push_creates_updates_and_upserts_with_per_record_errors() {
    let sandbox = sandbox(20, None).await;
    let adapter = adapter(config(&sandbox));
    let credentials = api_token();
    let (existing, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    let target = &existing[0];
    let known_email = existing[1].properties["email"].clone().expect("email");
    let ops = vec![
        PushOp {
            kind: PushKind::Create,
            properties: props(&[
                ("name", "Ada Lovelace"),
                ("email", "ada@example.com"),
                ("tier", "Gold"),
            ]),
        },
        PushOp {
            kind: PushKind::Create,
            properties: props(&[("name", "Bad Mail"), ("email", "not-an-address")]),
        },
        PushOp {
            kind: PushKind::Update {
                id: target.id.clone(),
            },
            properties: props(&[("lead_source", "Partner")]),
        },
        PushOp {
            kind: PushKind::Upsert {
                key_property: "email".into(),
            },
            properties: props(&[("email", &known_email), ("last_name", "Upserted")]),
        },
        PushOp {
            kind: PushKind::Upsert {
                key_property: "email".into(),
            },
            properties: props(&[("name", "New Person"), ("email", "new.person@example.com")]),
        },
        PushOp {
            kind: PushKind::Create,
            properties: props(&[("name", "X"), ("no_such_field", "1")]),
        },
        PushOp {
            kind: PushKind::Update {
                id: "999999".into(),
            },
            properties: props(&[("name", "Ghost")]),
        },
    ];
    let results = adapter
        .push_batch(&credentials, Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(results.len(), 7);
    assert!(results.iter().enumerate().all(|(i, r)| r.index == i));
    let created = results[0].remote_id.clone().expect("created");
    assert!(results[0].error.is_none());
    let error = results[1].error.as_deref().expect("invalid email refused");
    assert!(error.contains("400") && error.contains("email"), "{error}");
    assert_eq!(results[2].remote_id.as_deref(), Some(target.id.as_str()));
    assert_eq!(
        results[3].remote_id.as_deref(),
        Some(existing[1].id.as_str())
    );
    let fresh = results[4].remote_id.clone().expect("upsert created");
    assert!(existing.iter().all(|r| r.id != fresh));
    assert!(results[5]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("no_such_field")));
    assert!(results[6]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("404")));

    let (after, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    let find = |id: &str| after.iter().find(|r| r.id == id).expect("record");
    assert_eq!(find(&created).properties["tier"].as_deref(), Some("Gold"));
    assert_eq!(
        find(&created).properties["email"].as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        find(&target.id).properties["lead_source"].as_deref(),
        Some("Partner")
    );
    assert_eq!(
        find(&existing[1].id).properties["last_name"].as_deref(),
        Some("Upserted")
    );
    assert_eq!(after.len(), 22);
}

#[tokio::test]
async fn partial_write_failures_map_to_their_index() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    post(
        &sandbox,
        "faults",
        json!({"kind": "partial_batch", "fail_every": 2}),
    )
    .await;
    let ops: Vec<PushOp> = (0..4)
        .map(|i| PushOp {
            kind: PushKind::Create,
            properties: props(&[("name", &format!("Person {i}"))]),
        })
        .collect();
    let results = adapter
        .push_batch(&api_token(), Entity::Contacts, ops)
        .await
        .expect("push");
    let failed: Vec<usize> = results
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.index)
        .collect();
    assert_eq!(failed, [1, 3]);
    assert!(results[0].remote_id.is_some() && results[2].remote_id.is_some());
}

#[tokio::test]
async fn creates_are_not_repeated_after_a_server_error_and_bad_tokens_end_the_push() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    adapter
        .fields(&api_token(), Entity::Contacts)
        .await
        .expect("fields");
    post(
        &sandbox,
        "faults",
        json!({"kind": "status", "status": 500, "path_prefix": "/api/v2/persons"}),
    )
    .await;
    let op = PushOp {
        kind: PushKind::Create,
        properties: props(&[("name", "Once Only")]),
    };
    let results = adapter
        .push_batch(&api_token(), Entity::Contacts, vec![op.clone()])
        .await
        .expect("push");
    assert!(results[0].error.is_some());
    assert_eq!(sandbox.counters()["POST /api/v2/persons"], 1);

    let wrong = Credentials::ApiKey(SecretString::from("nope".to_owned()));
    let error = adapter
        .push_batch(&wrong, Entity::Contacts, vec![op])
        .await
        .expect_err("unauthorized");
    assert!(matches!(error, CrmError::Unauthorized), "{error:?}");
}

#[tokio::test]
async fn deletions_report_soft_deleted_records() {
    let sandbox = sandbox(30, None).await;
    let mut config = config(&sandbox);
    config.page_limit = 7;
    let adapter = adapter(config);
    let credentials = api_token();
    let (people, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    let before = Utc::now();
    let gone: Vec<&str> = vec![people[2].id.as_str(), people[9].id.as_str()];
    for id in &gone {
        control(
            &sandbox,
            reqwest::Method::DELETE,
            &format!("records/persons/{id}"),
            Value::Null,
        )
        .await;
    }
    // Deleted and restored: not a deletion.
    post(
        &sandbox,
        "records/persons",
        json!({"id": people[4].id, "deleted": true}),
    )
    .await;
    post(
        &sandbox,
        "records/persons",
        json!({"id": people[4].id, "deleted": false}),
    )
    .await;

    for since in [None, Some(before)] {
        let (mut deleted, mut cursor) = (Vec::new(), None);
        loop {
            let page = adapter
                .deletions(&credentials, Entity::Contacts, cursor, since)
                .await
                .expect("deletions");
            deleted.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut ids: Vec<&str> = deleted.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        let mut expected = gone.clone();
        expected.sort_unstable();
        assert_eq!(ids, expected, "since {since:?}");
        assert!(deleted
            .iter()
            .all(|r| r.archived && r.updated_at >= before - chrono::TimeDelta::seconds(1)));
    }
    let (remaining, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    assert_eq!(remaining.len(), 28);

    let orgs = adapter
        .deletions(&credentials, Entity::Companies, None, None)
        .await
        .expect("org deletions");
    assert!(orgs.records.is_empty());
}

#[tokio::test]
async fn deletions_can_be_turned_off_when_recents_does_not_report_them() {
    let config = PipedriveSandboxConfig {
        records: 5,
        recents_include_deleted: false,
        ..PipedriveSandboxConfig::default()
    };
    let sandbox = Sandbox::start_pipedrive(config).await.expect("sandbox");
    control(
        &sandbox,
        reqwest::Method::DELETE,
        "records/persons/3",
        Value::Null,
    )
    .await;
    let on = adapter(crate::config(&sandbox));
    let page = on
        .deletions(&api_token(), Entity::Contacts, None, None)
        .await
        .expect("deletions");
    assert!(page.records.is_empty(), "this sandbox hides deletions");
    let mut off = crate::config(&sandbox);
    off.deletions_from_recents = false;
    post(&sandbox, "counters/reset", json!({})).await;
    let page = adapter(off)
        .deletions(&api_token(), Entity::Contacts, None, None)
        .await
        .expect("deletions");
    assert!(page.records.is_empty() && page.next.is_none());
    assert!(sandbox.counters().is_empty(), "no call when turned off");
}

#[tokio::test]
async fn read_records_reads_each_by_id_and_leaves_deleted_ones_out() {
    let sandbox = sandbox(5, None).await;
    let adapter = adapter(config(&sandbox));
    let credentials = api_token();
    let (people, _) = pull_all(&adapter, &credentials, Entity::Contacts, None)
        .await
        .expect("pull");
    let (kept, gone) = (people[0].id.clone(), people[1].id.clone());
    control(
        &sandbox,
        reqwest::Method::DELETE,
        &format!("records/persons/{gone}"),
        Value::Null,
    )
    .await;
    post(
        &sandbox,
        "records/persons",
        json!({"id": kept, "name": "Renamed Person"}),
    )
    .await;
    let ids = vec![kept.clone(), gone, "not-an-id".to_owned()];
    let read = adapter
        .read_records(&credentials, Entity::Contacts, &ids)
        .await
        .expect("read")
        .expect("Pipedrive reads by id");
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].id, kept);
    assert!(read[0].updated_at >= people[0].updated_at);
    assert_eq!(
        read[0].properties.get("name").cloned().flatten().as_deref(),
        Some("Renamed Person")
    );
}
