//! The declarative custom provider against the generic JSON sandbox.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{json, Value};
use syncledger_crm::{
    Credentials, CrmAdapter, CrmError, CustomAdapter, CustomOptions, CustomSpec, Entity, PushKind,
    PushOp, RemoteRecord, Tokens,
};
use syncledger_sandbox::{GenericSandboxConfig, Sandbox};

const REDIRECT: &str = "http://localhost:7777/oauth/callback";
const STYLES: [&str; 4] = ["cursor", "offset", "page", "link"];

async fn sandbox(records: usize) -> Sandbox {
    Sandbox::start_generic(GenericSandboxConfig {
        records,
        ..GenericSandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

fn api_key_header() -> Value {
    json!({"type": "api_key", "header": "X-Api-Key"})
}

/// The contacts spec for one sandbox pagination style.
fn entity(style: &str, with_since: bool) -> Value {
    let (records_path, format, pagination) = match style {
        "cursor" => (
            "data.items",
            "rfc3339",
            json!({"type": "cursor", "param": "cursor", "cursor_path": "meta.next",
                   "limit_param": "limit", "limit": 7}),
        ),
        "offset" => (
            "results",
            "unix_seconds",
            json!({"type": "offset", "offset_param": "offset", "limit_param": "limit", "limit": 7}),
        ),
        "page" => (
            "$",
            "unix_millis",
            json!({"type": "page", "page_param": "page", "size_param": "per_page", "size": 7,
                   "first_page": 1}),
        ),
        _ => (
            "items",
            "rfc3339",
            json!({"type": "link_header", "limit_param": "per_page", "limit": 7}),
        ),
    };
    let mut entity = json!({
        "list": {
            "path": format!("/{style}/contacts"),
            "records_path": records_path,
            "id_path": "id",
            "updated_at_path": "updated",
            "updated_at_format": format,
            "fields": {
                "first_name": "attributes.first_name",
                "last_name": "attributes.last_name",
                "email": "attributes.email",
                "phone": "attributes.phone"
            }
        },
        "pagination": pagination,
        "delete_flag_path": "deleted",
        "write": {
            "create": {"method": "POST", "path": format!("/{style}/contacts")},
            "update": {"method": "PUT", "path": format!("/{style}/contacts/{{id}}")}
        }
    });
    if with_since {
        entity["updated_since"] = json!({"param": "updated_since", "format": format});
    }
    entity
}

fn spec_value(base: &str, style: &str, auth: Value) -> Value {
    json!({"name": "generic", "base_url": base, "auth": auth, "contacts": entity(style, true)})
}

fn options() -> CustomOptions {
    let defaults = GenericSandboxConfig::default();
    CustomOptions {
        client_id: defaults.client_id,
        client_secret: SecretString::from(defaults.client_secret),
        requests_per_minute: None,
        max_retries: 10,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        // The sandbox listens on loopback.
        outbound: syncledger_crm::outbound::outbound::OutboundPolicy::development(),
    }
}

fn adapter(spec: &Value) -> CustomAdapter {
    let spec = CustomSpec::from_json(&spec.to_string()).expect("spec is valid");
    CustomAdapter::new(spec, options()).expect("adapter builds")
}

fn key(text: &str) -> Credentials {
    Credentials::ApiKey(SecretString::from(text))
}

/// Pages through a whole pull; panics if it does not end within 200 pages.
async fn pull_all(
    adapter: &CustomAdapter,
    creds: &Credentials,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<RemoteRecord>, CrmError> {
    let mut records = Vec::new();
    let mut cursor = None;
    for _ in 0..200 {
        let page = adapter
            .pull_page(creds, Entity::Contacts, cursor, since)
            .await?;
        records.extend(page.records);
        match page.next {
            None => return Ok(records),
            next => cursor = next,
        }
    }
    panic!("the pull did not end");
}

fn ids(records: &[RemoteRecord]) -> Vec<u64> {
    let mut ids: Vec<u64> = records
        .iter()
        .map(|r| r.id.parse().expect("numeric id"))
        .collect();
    ids.sort_unstable();
    ids
}

async fn control(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}/_sandbox/{path}", sandbox.base_url()))
        .json(&body)
        .send()
        .await
        .expect("control call");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

const TOML_SPEC: &str = r#"
name = "generic"
base_url = "http://127.0.0.1:9"

[auth]
type = "api_key"
header = "X-Api-Key"

[contacts.list]
path = "/cursor/contacts"
records_path = "data.items"
id_path = "id"
updated_at_path = "updated"
updated_at_format = "rfc3339"

[contacts.list.fields]
first_name = "attributes.first_name"
last_name = "attributes.last_name"
email = "attributes.email"
phone = "attributes.phone"

[contacts.updated_since]
param = "updated_since"
format = "rfc3339"

[contacts.pagination]
type = "cursor"
param = "cursor"
cursor_path = "meta.next"
limit_param = "limit"
limit = 7

[contacts]
delete_flag_path = "deleted"

[contacts.write.create]
method = "POST"
path = "/cursor/contacts"

[contacts.write.update]
method = "PUT"
path = "/cursor/contacts/{id}"
"#;

#[test]
fn json_and_toml_describe_the_same_spec() {
    let from_toml = CustomSpec::from_toml(TOML_SPEC).expect("TOML parses");
    let json = spec_value("http://127.0.0.1:9", "cursor", api_key_header());
    let from_json = CustomSpec::from_json(&json.to_string()).expect("JSON parses");
    assert_eq!(from_toml, from_json);
}

#[test]
fn invalid_specs_name_the_offending_field() {
    let error_of = |spec: Value| match CustomSpec::from_json(&spec.to_string()) {
        Err(CrmError::Config(message)) => message,
        other => panic!("expected a config error, got {other:?}"),
    };
    let mut spec = spec_value("http://127.0.0.1:9", "cursor", api_key_header());
    spec["contacts"]["pagination"] = json!({"type": "cursor", "param": "cursor"});
    assert!(
        error_of(spec).contains("contacts.pagination.cursor_path: required for cursor pagination")
    );

    let spec = spec_value("http://127.0.0.1:9", "cursor", json!({"type": "api_key"}));
    assert!(error_of(spec).contains("auth: api_key needs header or query"));

    let spec = spec_value("not a url", "offset", api_key_header());
    assert!(error_of(spec).contains("base_url: not a valid URL"));

    let mut spec = spec_value("http://127.0.0.1:9", "page", api_key_header());
    spec["contacts"]["write"]["update"]["path"] = json!("/page/contacts");
    spec["contacts"]["pagination"]["first_page"] = json!(2);
    let message = error_of(spec);
    assert!(message.contains("contacts.write.update.path: must contain `{id}`"));
    assert!(message.contains("contacts.pagination.first_page: must be 0 or 1"));

    let mut spec = spec_value("http://127.0.0.1:9", "link", api_key_header());
    spec["contacts"]["list"]["fields"]["email"] = json!("emails[0");
    assert!(error_of(spec).contains("contacts.list.fields.email: malformed index"));

    let spec = json!({"base_url": "http://127.0.0.1:9", "auth": {"type": "basic"}});
    assert!(error_of(spec).contains("at least one of contacts and companies"));

    // Parse errors (unknown keys) are refused too.
    let mut spec = spec_value("http://127.0.0.1:9", "cursor", api_key_header());
    spec["contacts"]["list"]["recordz_path"] = json!("x");
    assert!(error_of(spec).contains("recordz_path"));
}

#[tokio::test]
async fn every_pagination_style_reads_every_record_exactly_once() {
    let sandbox = sandbox(53).await;
    for style in STYLES {
        let adapter = adapter(&spec_value(&sandbox.base_url(), style, api_key_header()));
        let records = pull_all(&adapter, &key("sandbox-key"), None)
            .await
            .unwrap_or_else(|e| panic!("{style}: {e}"));
        assert_eq!(ids(&records), (1..=53).collect::<Vec<_>>(), "{style}");
        let first = records.iter().find(|r| r.id == "1").expect("record 1");
        let email = first.properties.get("email").cloned().flatten();
        assert!(
            email.is_some_and(|e| e.ends_with("1@example.com")),
            "{style}"
        );
        // Seeded on 2024-01-01 in groups of five per minute, in every format.
        assert_eq!(
            first.updated_at.to_rfc3339(),
            "2024-01-01T00:00:00+00:00",
            "{style}"
        );
    }
}

#[tokio::test]
async fn incremental_pulls_keep_records_sharing_the_boundary_timestamp() {
    let sandbox = sandbox(53).await;
    // Records 21..=25 share one timestamp; starting at it must return all five.
    let since = DateTime::parse_from_rfc3339("2024-01-01T00:04:00Z")
        .expect("timestamp")
        .with_timezone(&Utc);
    for style in STYLES {
        for server_side in [true, false] {
            let mut spec = spec_value(&sandbox.base_url(), style, api_key_header());
            if !server_side {
                spec["contacts"] = entity(style, false);
            }
            let adapter = adapter(&spec);
            let records = pull_all(&adapter, &key("sandbox-key"), Some(since))
                .await
                .unwrap_or_else(|e| panic!("{style}: {e}"));
            assert_eq!(
                ids(&records),
                (21..=53).collect::<Vec<_>>(),
                "{style}, server-side filter: {server_side}"
            );
        }
    }
}

#[tokio::test]
async fn every_static_auth_style_works_and_wrong_credentials_are_unauthorized() {
    let sandbox = sandbox(5).await;
    let basic = |user: &str, password: &str| Credentials::Basic {
        username: user.into(),
        password: SecretString::from(password),
    };
    let cases = [
        (api_key_header(), key("sandbox-key"), key("wrong-key")),
        (
            json!({"type": "api_key", "query": "api_key"}),
            key("sandbox-key"),
            key("wrong-key"),
        ),
        (
            json!({"type": "basic"}),
            basic("sandbox-user", "sandbox-password"),
            basic("sandbox-user", "wrong"),
        ),
        (
            json!({"type": "bearer"}),
            key("sandbox-bearer"),
            key("sandbox-key"),
        ),
    ];
    for (auth, good, bad) in cases {
        let adapter = adapter(&spec_value(&sandbox.base_url(), "cursor", auth.clone()));
        assert!(!adapter.supports_oauth());
        let identity = adapter.test_connection(&good).await;
        assert_eq!(identity.expect("connects").account_id, "generic", "{auth}");
        let records = pull_all(&adapter, &good, None).await.expect("pulls");
        assert_eq!(records.len(), 5, "{auth}");
        assert!(
            matches!(
                adapter.test_connection(&bad).await,
                Err(CrmError::Unauthorized)
            ),
            "{auth}"
        );
    }
    // Credentials of the wrong kind are a configuration error, never sent.
    let adapter = adapter(&spec_value(
        &sandbox.base_url(),
        "cursor",
        json!({"type": "basic"}),
    ));
    assert!(matches!(
        adapter.test_connection(&key("sandbox-key")).await,
        Err(CrmError::Config(_))
    ));
}

#[tokio::test]
async fn test_connection_reads_a_single_record() {
    let sandbox = sandbox(20).await;
    let adapter = adapter(&spec_value(&sandbox.base_url(), "offset", api_key_header()));
    adapter
        .test_connection(&key("sandbox-key"))
        .await
        .expect("connects");
    assert_eq!(sandbox.counters().get("GET /offset/contacts"), Some(&1));
    // The full pull uses the spec's limit (7): 3 pages plus the empty one.
    pull_all(&adapter, &key("sandbox-key"), None)
        .await
        .expect("pulls");
    assert_eq!(sandbox.counters().get("GET /offset/contacts"), Some(&5));
}

#[tokio::test]
async fn oauth2_with_pkce_code_flow_refresh_and_rotation() {
    let sandbox = sandbox(9).await;
    let base = sandbox.base_url();
    let auth = json!({
        "type": "oauth2",
        "authorize_url": format!("{base}/oauth/authorize"),
        "token_url": format!("{base}/oauth/token"),
        "scopes": ["contacts"],
        "client_auth": "basic",
        "pkce": true
    });
    let adapter = adapter(&spec_value(&base, "link", auth));
    assert!(adapter.supports_oauth());
    let (url, verifier) = adapter
        .authorization_url(REDIRECT, "state-1")
        .expect("authorize url");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = browser.get(&url).send().await.expect("authorize");
    assert_eq!(response.status(), 302);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_owned();
    let query: BTreeMap<String, String> = url::Url::parse(&location)
        .expect("location url")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query.get("state").map(String::as_str), Some("state-1"));
    let code = query.get("code").expect("code");

    // A wrong verifier fails the PKCE check.
    assert!(matches!(
        adapter
            .exchange_code(code, "not-the-verifier", REDIRECT)
            .await,
        Err(CrmError::OAuth(_))
    ));
    // The code was used up by that attempt: start again.
    let (url, verifier2) = adapter.authorization_url(REDIRECT, "s").expect("url");
    let location = browser.get(&url).send().await.expect("authorize");
    let location = location
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("redirect")
        .to_owned();
    let code: String = url::Url::parse(&location)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    assert_ne!(verifier, verifier2);
    let tokens = adapter
        .exchange_code(&code, &verifier2, REDIRECT)
        .await
        .expect("exchange");
    let creds = Credentials::OAuth2(tokens.clone());
    assert_eq!(
        pull_all(&adapter, &creds, None).await.expect("pull").len(),
        9
    );

    control(&sandbox, reqwest::Method::POST, "tokens/expire", json!({})).await;
    assert!(matches!(
        adapter.test_connection(&creds).await,
        Err(CrmError::Unauthorized)
    ));
    let old_refresh = refresh_of(&tokens);
    let refreshed = adapter.refresh(&old_refresh).await.expect("refresh");
    assert_ne!(refresh_of(&refreshed), old_refresh, "refresh tokens rotate");
    adapter
        .test_connection(&Credentials::OAuth2(refreshed))
        .await
        .expect("new token works");
    assert!(matches!(
        adapter.refresh(&old_refresh).await,
        Err(CrmError::OAuth(_))
    ));
    // Static-credential adapters refuse the OAuth flow.
    let plain = adapter_for(&base, api_key_header());
    assert!(matches!(
        plain.authorization_url(REDIRECT, "s"),
        Err(CrmError::Config(_))
    ));
}

fn refresh_of(tokens: &Tokens) -> String {
    use secrecy::ExposeSecret;
    tokens
        .refresh_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .expect("refresh token")
}

fn adapter_for(base: &str, auth: Value) -> CustomAdapter {
    adapter(&spec_value(base, "cursor", auth))
}

#[tokio::test]
async fn a_link_header_to_another_host_is_refused() {
    let sandbox = sandbox(20).await;
    let mut spec = spec_value(&sandbox.base_url(), "link", api_key_header());
    spec["contacts"]["list"]["query"] = json!({"next_host": "http://127.0.0.2:9"});
    let adapter = adapter(&spec);
    match adapter
        .pull_page(&key("sandbox-key"), Entity::Contacts, None, None)
        .await
    {
        Err(CrmError::Config(message)) => assert!(message.contains("http://127.0.0.2:9")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A forged cursor pointing elsewhere is refused before anything is sent.
    let forged = syncledger_crm::Cursor::Custom {
        next: json!({"t": "http://127.0.0.2:9/link/contacts?page=2"}).to_string(),
    };
    assert!(matches!(
        adapter
            .pull_page(&key("sandbox-key"), Entity::Contacts, Some(forged), None)
            .await,
        Err(CrmError::Config(_))
    ));
}

#[tokio::test]
async fn a_query_api_key_echoed_in_link_headers_stays_out_of_cursors() {
    let sandbox = sandbox(20).await;
    let auth = json!({"type": "api_key", "query": "api_key"});
    let adapter = adapter(&spec_value(&sandbox.base_url(), "link", auth));
    let creds = key("sandbox-key");
    let page = adapter
        .pull_page(&creds, Entity::Contacts, None, None)
        .await
        .expect("first page");
    let Some(syncledger_crm::Cursor::Custom { next }) = page.next else {
        panic!("expected a custom cursor");
    };
    assert!(
        next.contains("page=2") && !next.contains("sandbox-key"),
        "{next}"
    );
    assert_eq!(
        pull_all(&adapter, &creds, None).await.expect("pull").len(),
        20
    );
}

#[tokio::test]
async fn a_looping_cursor_is_detected() {
    let sandbox = sandbox(20).await;
    let mut spec = spec_value(&sandbox.base_url(), "cursor", api_key_header());
    spec["contacts"]["list"]["query"] = json!({"stuck": "1"});
    let adapter = adapter(&spec);
    let outcome = pull_all(&adapter, &key("sandbox-key"), None).await;
    assert!(
        matches!(outcome, Err(CrmError::Malformed(_))),
        "{outcome:?}"
    );
    assert!(sandbox.counters().get("GET /cursor/contacts") <= Some(&3));
}

#[tokio::test]
async fn a_rate_limit_and_server_error_storm_still_reads_every_record_once() {
    let sandbox = sandbox(30).await;
    for fault in [
        json!({"kind": "status", "status": 429, "count": 4}),
        json!({"kind": "status", "status": 503, "count": 3}),
        json!({"kind": "malformed_json", "count": 1}),
    ] {
        control(&sandbox, reqwest::Method::POST, "faults", fault).await;
    }
    let adapter = adapter(&spec_value(&sandbox.base_url(), "cursor", api_key_header()));
    let records = pull_all(&adapter, &key("sandbox-key"), None)
        .await
        .expect("pull survives the storm");
    assert_eq!(ids(&records), (1..=30).collect::<Vec<_>>());
    let calls = sandbox.counters().get("GET /cursor/contacts").copied();
    // 5 pages of 7 (the last short one ends the pull) plus the 8 failed attempts.
    assert_eq!(calls, Some(5 + 8));
}

#[tokio::test]
async fn writes_report_per_record_results_by_index() {
    let sandbox = sandbox(3).await;
    let adapter = adapter(&spec_value(&sandbox.base_url(), "cursor", api_key_header()));
    let props = |pairs: &[(&str, &str)]| -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    };
    let ops = vec![
        PushOp {
            kind: PushKind::Create,
            properties: props(&[("email", "new@example.com"), ("first_name", "New")]),
        },
        PushOp {
            kind: PushKind::Create,
            properties: props(&[("email", "not-an-email")]),
        },
        PushOp {
            kind: PushKind::Update { id: "2".into() },
            properties: props(&[("phone", "+15550000000")]),
        },
        PushOp {
            kind: PushKind::Update { id: "999".into() },
            properties: props(&[("phone", "+1")]),
        },
        PushOp {
            kind: PushKind::Upsert {
                key_property: "email".into(),
            },
            properties: props(&[("email", "x@example.com")]),
        },
    ];
    let results = adapter
        .push_batch(&key("sandbox-key"), Entity::Contacts, ops)
        .await
        .expect("push");
    assert_eq!(
        results.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(results[0].remote_id.as_deref(), Some("4"));
    assert!(results[0].error.is_none());
    let refused = results[1].error.as_deref().unwrap_or_default();
    assert!(
        refused.contains("422") && refused.contains("email is invalid"),
        "{refused}"
    );
    assert_eq!(results[2].remote_id.as_deref(), Some("2"));
    assert!(results[3]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("404"));
    assert!(results[4].error.is_some());

    let records = pull_all(&adapter, &key("sandbox-key"), None)
        .await
        .expect("pull");
    let by_id: BTreeMap<&str, &RemoteRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let phone = by_id["2"].properties.get("phone").cloned().flatten();
    assert_eq!(phone.as_deref(), Some("+15550000000"));
    let first = by_id["4"].properties.get("first_name").cloned().flatten();
    assert_eq!(first.as_deref(), Some("New"));
    assert_eq!(records.len(), 4);
}

#[tokio::test]
async fn deleted_records_leave_pulls_and_appear_as_deletions() {
    let sandbox = sandbox(12).await;
    control(
        &sandbox,
        reqwest::Method::DELETE,
        "records/contacts/5",
        json!({}),
    )
    .await;
    let adapter = adapter(&spec_value(&sandbox.base_url(), "page", api_key_header()));
    let creds = key("sandbox-key");
    let records = pull_all(&adapter, &creds, None).await.expect("pull");
    assert!(!ids(&records).contains(&5));
    assert_eq!(records.len(), 11);
    let mut deleted = Vec::new();
    let mut cursor = None;
    loop {
        let page = adapter
            .deletions(&creds, Entity::Contacts, cursor, None)
            .await
            .expect("deletions");
        deleted.extend(page.records);
        match page.next {
            None => break,
            next => cursor = next,
        }
    }
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, "5");
    assert!(deleted[0].archived);
}

#[tokio::test]
async fn fields_come_from_the_catalogue_or_the_field_map() {
    let sandbox = sandbox(3).await;
    let mut spec = spec_value(&sandbox.base_url(), "cursor", api_key_header());
    let creds = key("sandbox-key");
    let names = |fields: Vec<syncledger_crm::FieldInfo>| -> HashSet<String> {
        fields.into_iter().map(|f| f.name).collect()
    };
    let from_map = adapter(&spec)
        .fields(&creds, Entity::Contacts)
        .await
        .expect("fields");
    assert!(from_map.iter().all(|f| f.writable));
    assert_eq!(
        names(from_map),
        ["email", "first_name", "last_name", "phone"]
            .map(String::from)
            .into()
    );
    spec["contacts"]["fields_catalogue"] = json!([
        {"name": "email", "label": "Email", "type": "email", "required": true, "writable": true}
    ]);
    let catalogue = adapter(&spec)
        .fields(&creds, Entity::Contacts)
        .await
        .expect("fields");
    assert_eq!(catalogue.len(), 1);
    assert_eq!(catalogue[0].field_type, "email");
    assert!(catalogue[0].required);
    // No field map: every top-level scalar of a sample record.
    spec["contacts"]["fields_catalogue"] = Value::Null;
    spec["contacts"]["list"]["fields"] = json!({});
    spec["contacts"]["write"] = Value::Null;
    let sampled = adapter(&spec)
        .fields(&creds, Entity::Contacts)
        .await
        .expect("fields");
    assert_eq!(
        names(sampled),
        ["id", "updated", "deleted"].map(String::from).into()
    );
    // Companies are not in this spec: the entity is missing, not the configuration bad.
    assert!(matches!(
        adapter(&spec).fields(&creds, Entity::Companies).await,
        Err(CrmError::Unavailable(_))
    ));
}

#[test]
fn the_documented_example_spec_is_valid() {
    let doc = include_str!("../../../docs/custom-provider.md");
    let example = doc
        .split("## Example: a complete spec (TOML)")
        .nth(1)
        .and_then(|rest| rest.split("```toml").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the example block");
    let spec = CustomSpec::from_toml(example).expect("the example parses");
    assert!(spec.contacts.is_some() && spec.companies.is_some());
}

#[tokio::test]
async fn creates_are_retried_only_when_the_provider_surely_did_nothing() {
    let sandbox = sandbox(2).await;
    let adapter = adapter(&spec_value(&sandbox.base_url(), "cursor", api_key_header()));
    let creds = key("sandbox-key");
    let create = |email: &str| PushOp {
        kind: PushKind::Create,
        properties: [("email".to_owned(), Some(email.to_owned()))].into(),
    };
    // 429: nothing was written, so the create is retried and lands once.
    control(
        &sandbox,
        reqwest::Method::POST,
        "faults",
        json!({"kind": "status", "status": 429, "count": 2}),
    )
    .await;
    let results = adapter
        .push_batch(&creds, Entity::Contacts, vec![create("a@example.com")])
        .await
        .expect("push");
    assert_eq!(results[0].remote_id.as_deref(), Some("3"));
    // 503: the create may have been applied; it is not repeated and the call fails.
    control(
        &sandbox,
        reqwest::Method::POST,
        "faults",
        json!({"kind": "status", "status": 503, "count": 1}),
    )
    .await;
    let outcome = adapter
        .push_batch(&creds, Entity::Contacts, vec![create("b@example.com")])
        .await;
    assert!(
        matches!(outcome, Err(CrmError::Server { status: 503, .. })),
        "{outcome:?}"
    );
    assert_eq!(
        sandbox.counters().get("POST /cursor/contacts"),
        Some(&(3 + 1))
    );
    assert_eq!(
        pull_all(&adapter, &creds, None).await.expect("pull").len(),
        3
    );
}

#[tokio::test]
async fn companies_use_their_own_entity_spec() {
    let sandbox = sandbox(8).await;
    let spec = json!({
        "base_url": sandbox.base_url(),
        "auth": {"type": "bearer"},
        "companies": {
            "list": {
                "path": "/offset/companies",
                "records_path": "results",
                "id_path": "id",
                "updated_at_path": "updated",
                "updated_at_format": "unix_seconds",
                "fields": {"name": "attributes.name", "domain": "attributes.domain"}
            },
            "pagination": {"type": "offset", "offset_param": "offset", "limit_param": "limit",
                           "limit": 3}
        }
    });
    let adapter = adapter(&spec);
    let creds = key("sandbox-bearer");
    let mut records = Vec::new();
    let mut cursor = None;
    loop {
        let page = adapter
            .pull_page(&creds, Entity::Companies, cursor, None)
            .await
            .expect("page");
        records.extend(page.records);
        match page.next {
            None => break,
            next => cursor = next,
        }
    }
    assert_eq!(ids(&records), (1..=8).collect::<Vec<_>>());
    assert!(records
        .iter()
        .all(|r| r.properties.get("name").is_some_and(Option::is_some)));
    // No contacts in this spec; test_connection uses the companies endpoint.
    assert!(matches!(
        adapter
            .pull_page(&creds, Entity::Contacts, None, None)
            .await,
        Err(CrmError::Unavailable(_))
    ));
    adapter.test_connection(&creds).await.expect("connects");
    // Without a delete flag there are no deletions to report.
    let deletions = adapter
        .deletions(&creds, Entity::Companies, None, None)
        .await
        .expect("deletions");
    assert!(deletions.records.is_empty() && deletions.next.is_none());
}
