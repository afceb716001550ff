//! The Salesforce sandbox's wire protocol, driven with a plain HTTP client.

use serde_json::{json, Value};
use syncledger_sandbox::{RateLimit, RollingLimitStatus, SalesforceSandboxConfig, Sandbox};

const DATA: &str = "/services/data/v60.0";

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

async fn start(config: SalesforceSandboxConfig) -> (Sandbox, Client) {
    let sandbox = Sandbox::start_salesforce(config)
        .await
        .expect("sandbox starts");
    let client = Client {
        base: sandbox.base_url(),
        token: sandbox.issue_tokens().access_token,
        http: reqwest::Client::new(),
    };
    (sandbox, client)
}

async fn small() -> (Sandbox, Client) {
    start(SalesforceSandboxConfig {
        records: 30,
        ..SalesforceSandboxConfig::default()
    })
    .await
}

impl Client {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{DATA}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }

    async fn query(&self, soql: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{DATA}/query", self.base))
            .bearer_auth(&self.token)
            .query(&[("q", soql)])
            .send()
            .await
            .expect("query")
    }

    async fn write(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{DATA}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("write");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    async fn control(&self, path: &str, body: Value) {
        let response = self
            .http
            .post(format!("{}/_sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body");
    (
        status,
        body[0]["errorCode"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn query_pages_with_batch_size_and_reports_usage() {
    let (_sandbox, client) = start(SalesforceSandboxConfig {
        records: 450,
        ..SalesforceSandboxConfig::default()
    })
    .await;
    let response = client
        .http
        .get(format!("{}{DATA}/query", client.base))
        .bearer_auth(&client.token)
        .header("Sforce-Query-Options", "batchSize=200")
        .query(&[(
            "q",
            "SELECT Id, Name, Tier__c FROM Account ORDER BY SystemModstamp, Id",
        )])
        .send()
        .await
        .expect("query");
    assert_eq!(response.headers()["Sforce-Limit-Info"], "api-usage=1/15000");
    let page: Value = response.json().await.expect("json");
    assert_eq!(page["totalSize"], 450);
    assert_eq!(page["done"], false);
    assert_eq!(page["records"].as_array().map(Vec::len), Some(200));
    assert_eq!(page["records"][0]["attributes"]["type"], "Account");
    assert!(page["records"][0]["Tier__c"].is_string());
    let next = page["nextRecordsUrl"].as_str().expect("next");
    assert!(next.starts_with("/services/data/v60.0/query/01g"), "{next}");

    let again = client.get(next.trim_start_matches(DATA)).await;
    let second: Value = again.json().await.expect("json");
    assert_eq!(second["records"].as_array().map(Vec::len), Some(200));
    // The same locator can be read again, as after a lost response.
    let repeat: Value = client
        .get(next.trim_start_matches(DATA))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(repeat["records"][0]["Id"], second["records"][0]["Id"]);
    let last = second["nextRecordsUrl"].as_str().expect("last");
    let third: Value = client
        .get(last.trim_start_matches(DATA))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(third["done"], true);
    assert_eq!(third["records"].as_array().map(Vec::len), Some(50));
    assert!(third.get("nextRecordsUrl").is_none());
}

#[tokio::test]
async fn bad_soql_and_unknown_fields_are_refused() {
    let (_sandbox, client) = small().await;
    let cases = [
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        ("SELECT Id Account", "MALFORMED_QUERY"),
        ("SELECT Id, Nope__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE Bogus = 1", "INVALID_FIELD"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
    ];
    for (soql, code) in cases {
        assert_eq!(
            error_code(client.query(soql).await).await,
            (400, code.to_owned()),
            "{soql}"
        );
    }
    let filtered: Value = client
        .query("SELECT Id FROM Contact WHERE SystemModstamp > 2023-12-31T00:00:00Z LIMIT 2")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(filtered["totalSize"], 2);
    // 30 records in groups of 25 sharing a timestamp: the second group has 5.
    let group: Value = client
        .query("SELECT Id FROM Contact WHERE SystemModstamp >= 2024-01-01T00:01:00.000+0000")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(group["totalSize"], 5);
}

#[tokio::test]
async fn sessions_are_checked_and_expire_on_demand() {
    let (_sandbox, client) = small().await;
    let unknown = client
        .http
        .get(format!("{}{DATA}/sobjects/Contact/describe", client.base))
        .bearer_auth("nope")
        .send()
        .await
        .expect("request");
    assert_eq!(
        error_code(unknown).await,
        (401, "INVALID_SESSION_ID".to_owned())
    );
    assert_eq!(client.get("/sobjects/Contact/describe").await.status(), 200);
    client.control("tokens/expire", json!({})).await;
    let expired = client.get("/sobjects/Contact/describe").await;
    assert_eq!(
        error_code(expired).await,
        (401, "INVALID_SESSION_ID".to_owned())
    );
}

#[tokio::test]
async fn the_daily_limit_answers_403_request_limit_exceeded() {
    let (_sandbox, client) = small().await;
    client
        .control("daily-limit", json!({ "limit": 10, "used": 9 }))
        .await;
    let last = client.get("/sobjects/Account/describe").await;
    assert_eq!(last.headers()["Sforce-Limit-Info"], "api-usage=10/10");
    assert_eq!(last.status(), 200);
    let over = client.get("/sobjects/Account/describe").await;
    assert_eq!(
        error_code(over).await,
        (403, "REQUEST_LIMIT_EXCEEDED".to_owned())
    );
}

#[tokio::test]
async fn the_rolling_budget_answers_with_a_retryable_status() {
    let (_sandbox, client) = start(SalesforceSandboxConfig {
        records: 1,
        rate_limit: Some(RateLimit {
            max: 2,
            interval_ms: 60_000,
        }),
        ..SalesforceSandboxConfig::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(client.get("/sobjects/Account/describe").await.status(), 200);
    }
    let denied = client.get("/sobjects/Account/describe").await;
    assert_eq!(
        error_code(denied).await,
        (503, "SERVER_UNAVAILABLE".to_owned())
    );

    let (_sandbox, client) = start(SalesforceSandboxConfig {
        records: 1,
        rate_limit: Some(RateLimit {
            max: 1,
            interval_ms: 60_000,
        }),
        rate_limit_status: RollingLimitStatus::TooManyRequests,
        ..SalesforceSandboxConfig::default()
    })
    .await;
    client.get("/sobjects/Account/describe").await;
    let denied = client.get("/sobjects/Account/describe").await;
    assert_eq!(
        error_code(denied).await,
        (429, "REQUEST_LIMIT_EXCEEDED".to_owned())
    );

    let (_sandbox, client) = start(SalesforceSandboxConfig {
        records: 1,
        rate_limit: Some(RateLimit {
            max: 1,
            interval_ms: 60_000,
        }),
        rate_limit_status: RollingLimitStatus::ConcurrentForbidden,
        ..SalesforceSandboxConfig::default()
    })
    .await;
    client.get("/sobjects/Account/describe").await;
    let denied = client.get("/sobjects/Account/describe").await;
    let body: Value = denied.json().await.expect("json");
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert!(body[0]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("ConcurrentRequests")));
}

#[tokio::test]
async fn collections_validate_roll_back_and_cap_at_200() {
    let (_sandbox, client) = small().await;
    let record = |last: &str, email: &str| json!({ "attributes": { "type": "Contact" }, "LastName": last, "Email": email });
    let body = json!({
        "allOrNone": true,
        "records": [record("Ok", "ok@example.com"), record("Bad", "not-an-email")]
    });
    let (status, results) = client
        .write(reqwest::Method::POST, "/composite/sobjects", body)
        .await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["success"], false);
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_EMAIL_ADDRESS"
    );
    assert_eq!(results[1]["errors"][0]["fields"][0], "Email");

    let body = json!({
        "allOrNone": false,
        "records": [
            record("Ok", "ok@example.com"),
            { "attributes": { "type": "Contact" }, "FirstName": "No last name" },
            { "attributes": { "type": "Contact" }, "LastName": "X", "SystemModstamp": "2024-01-01T00:00:00Z" }
        ]
    });
    let (_, results) = client
        .write(reqwest::Method::POST, "/composite/sobjects", body)
        .await;
    assert_eq!(results[0]["success"], true);
    let id = results[0]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("003") && id.len() == 18, "{id}");
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "REQUIRED_FIELD_MISSING"
    );
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );

    let upsert = json!({ "allOrNone": false, "records": [
        { "attributes": { "type": "Contact" }, "Email": "ok@example.com", "Title": "CEO" },
        { "attributes": { "type": "Contact" }, "Email": "fresh@example.com", "LastName": "Fresh" }
    ]});
    let path = "/composite/sobjects/Contact/Email";
    let (_, results) = client.write(reqwest::Method::PATCH, path, upsert).await;
    assert_eq!(
        (results[0]["created"].clone(), results[0]["id"].clone()),
        (json!(false), json!(id))
    );
    assert_eq!(results[1]["created"], true);

    let too_many: Vec<Value> = (0..201)
        .map(|i| record("Many", &format!("m{i}@example.com")))
        .collect();
    let (status, body) = client
        .write(
            reqwest::Method::POST,
            "/composite/sobjects",
            json!({ "records": too_many }),
        )
        .await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (400, json!("EXCEEDED_ID_LIMIT"))
    );

    let response = client
        .http
        .delete(format!("{}{DATA}/composite/sobjects", client.base))
        .bearer_auth(&client.token)
        .query(&[("ids", id.as_str()), ("allOrNone", "false")])
        .send()
        .await
        .expect("delete");
    let deleted: Value = response.json().await.expect("json");
    assert_eq!(deleted[0]["success"], true);
    let gone: Value = client
        .query(&format!("SELECT Id FROM Contact WHERE Id = '{id}'"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(gone["totalSize"], 0, "deleted records leave /query");
}

#[tokio::test]
async fn get_deleted_remembers_15_days() {
    let (_sandbox, client) = small().await;
    let now = chrono::Utc::now();
    let window = |days: i64| {
        let start = (now - chrono::Duration::days(days)).to_rfc3339();
        let end = (now + chrono::Duration::seconds(1)).to_rfc3339();
        format!(
            "?start={}&end={}",
            start.replace('+', "%2B"),
            end.replace('+', "%2B")
        )
    };
    let too_old = client
        .get(&format!("/sobjects/Contact/deleted/{}", window(16)))
        .await;
    assert_eq!(
        error_code(too_old).await,
        (400, "INVALID_REPLICATION_DATE".to_owned())
    );
    let fine: Value = client
        .get(&format!("/sobjects/Contact/deleted/{}", window(14)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fine["deletedRecords"], json!([]));
    assert!(fine["latestDateCovered"].is_string());
    let updated: Value = client
        .get(&format!("/sobjects/Contact/updated/{}", window(29)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        updated["ids"],
        json!([]),
        "seeded history is older than 30 days"
    );
}

#[tokio::test]
async fn authorize_requires_pkce_and_a_known_client() {
    let (sandbox, _) = small().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = format!("{}/services/oauth2/authorize", sandbox.base_url());
    let base = [
        ("response_type", "code"),
        ("client_id", "sandbox-client"),
        ("redirect_uri", "http://localhost/cb"),
    ];
    let no_pkce = http.get(&url).query(&base).send().await.expect("authorize");
    assert_eq!(no_pkce.status(), 400);
    let challenge = syncledger_sandbox::pkce_s256("verifier-verifier-verifier-verifier-verifier");
    let mut params = base.to_vec();
    params.extend([
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let ok = http
        .get(&url)
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(ok.status(), 302);
    params[1] = ("client_id", "someone-else");
    let unknown = http
        .get(&url)
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(unknown.status(), 400);
    let counters = sandbox.counters();
    assert_eq!(counters.get("GET /services/oauth2/authorize"), Some(&3));
}

#[tokio::test]
async fn control_bodies_with_unknown_fields_are_refused_and_change_nothing() {
    let (sandbox, client) = small().await;
    let post = |path: &str, body: Value| {
        client
            .http
            .post(format!("{}/_sandbox/{path}", client.base))
            .json(&body)
            .send()
    };
    let cases = [
        ("daily-limit", json!({"limit": 1, "usde": 1}), "usde"),
        (
            "rate-limit",
            json!({"max": 1, "interval_ms": 60000, "per": "s"}),
            "per",
        ),
        (
            "faults",
            json!({"kind": "status", "status": 500, "cnt": 9}),
            "cnt",
        ),
        (
            "faults",
            json!([{"kind": "timeout", "holdms": 1}]),
            "holdms",
        ),
        ("tokens", json!({"refresh": false}), "refresh"),
        ("tokens/expire", json!({"now": true}), "now"),
        ("counters/reset", json!({"key": "x"}), "key"),
    ];
    for (path, body, unknown) in cases {
        let response = post(path, body).await.expect("control");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 400, "{path}: {text}");
        assert!(
            text.contains(&format!("unknown field `{unknown}`")),
            "{path}: {text}"
        );
    }
    // Record bodies stay open: their keys are the record's fields.
    let response = post("records/Contact", json!({"LastName": "Open", "Phone": "1"}))
        .await
        .expect("upsert");
    assert_eq!(response.status().as_u16(), 200);
    // Nothing refused took effect: no daily limit, rate limit, fault or expiry.
    for _ in 0..3 {
        let response = client.query("SELECT Id FROM Contact LIMIT 1").await;
        assert_eq!(response.status().as_u16(), 200);
    }
    let deleted = client
        .http
        .delete(format!(
            "{}/_sandbox/records/Contact/none?deleted_at_=x",
            client.base
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status().as_u16(), 400, "an unknown query key");
    sandbox.shutdown().await;
}
