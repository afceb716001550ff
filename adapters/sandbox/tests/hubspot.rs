//! End-to-end tests of the HubSpot sandbox over real HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use syncledger_sandbox::{pkce_s256, sign_v3, RateLimit, Sandbox, SandboxConfig};

async fn start(records: usize) -> Sandbox {
    start_with(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await
}

async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start_hubspot(config).await.expect("sandbox binds")
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn get_json(c: &Client, url: &str, token: &str) -> (StatusCode, Value) {
    let resp = c.get(url).bearer_auth(token).send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post_json(c: &Client, url: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let resp = c
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn token_request(c: &Client, sb: &Sandbox, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = c
        .post(format!("{}/oauth/v1/token", sb.base_url()))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn oauth_pkce_code_flow_with_single_use_codes_and_refresh_tokens() {
    let sb = start(5).await;
    let c = client();
    let verifier = "a-very-long-and-random-code-verifier-0123456789abcdef";
    let redirect = "http://127.0.0.1:9/callback";
    let authorize = c
        .get(format!("{}/oauth/authorize", sb.base_url()))
        .query(&[
            ("client_id", "sandbox-client"),
            ("redirect_uri", redirect),
            ("scope", "oauth crm.objects.contacts.read"),
            ("state", "xyz 1"),
            ("code_challenge", &pkce_s256(verifier)),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(authorize.status(), StatusCode::FOUND);
    let location = authorize.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let query = location
        .strip_prefix(&format!("{redirect}?"))
        .expect("redirects back");
    let pairs: Vec<(String, String)> = url_pairs(query);
    let code = pairs
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .expect("code");
    assert!(pairs.contains(&("state".into(), "xyz 1".into())));

    let exchange = |v: &'static str| {
        let code = code.clone();
        let c = c.clone();
        let sb = &sb;
        async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("client_id", "sandbox-client"),
                ("client_secret", "sandbox-secret"),
                ("redirect_uri", redirect),
                ("code", code.as_str()),
                ("code_verifier", v),
            ];
            token_request(&c, sb, &form).await
        }
    };
    let (status, body) = exchange("wrong-verifier").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, tokens) = exchange("a-very-long-and-random-code-verifier-0123456789abcdef").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["token_use"], "access_token");
    assert_eq!(tokens["expires_in"], 1800);
    let (status, body) = exchange("a-very-long-and-random-code-verifier-0123456789abcdef").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "code is single-use");
    assert_eq!(body["error"], "invalid_grant");

    let access = tokens["access_token"].as_str().expect("access token");
    let contacts = format!("{}/crm/v3/objects/contacts", sb.base_url());
    assert_eq!(get_json(&c, &contacts, access).await.0, StatusCode::OK);
    let (status, info) = get_json(
        &c,
        &format!("{}/oauth/v1/access-tokens/{access}", sb.base_url()),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["hub_id"], 62515);
    assert!(info["scopes"]
        .as_array()
        .expect("scopes")
        .contains(&json!("crm.objects.contacts.read")));

    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let refresh_form = |t: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", "sandbox-client".into()),
            ("client_secret", "sandbox-secret".into()),
            ("refresh_token", t.to_string()),
        ]
    };
    let post_form = |form: Vec<(&'static str, String)>| {
        let c = c.clone();
        let url = format!("{}/oauth/v1/token", sb.base_url());
        async move {
            let resp = c.post(url).form(&form).send().await.expect("refresh");
            (resp.status(), resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, rotated) = post_form(refresh_form(&refresh)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["refresh_token"].as_str(), Some(refresh.as_str()));
    let (status, body) = post_form(refresh_form(&refresh)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "refresh tokens are single-use"
    );
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(body["message"], "missing or unknown refresh token");
    assert_eq!(body["error"], "invalid_grant");

    let new_access = rotated["access_token"].as_str().expect("access");
    let new_refresh = rotated["refresh_token"].as_str().expect("refresh");
    let revoke = c
        .delete(format!(
            "{}/oauth/v1/refresh-tokens/{new_refresh}",
            sb.base_url()
        ))
        .send()
        .await;
    assert_eq!(revoke.expect("revoke").status(), StatusCode::NO_CONTENT);
    let (status, body) = get_json(&c, &contacts, new_access).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revocation drops its access tokens"
    );
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert_eq!(
        post_form(refresh_form(new_refresh)).await.0,
        StatusCode::BAD_REQUEST
    );
    sb.shutdown().await;
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    // Just enough decoding for the sandbox's own redirect.
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ").replace("%20", " ")))
        .collect()
}

#[tokio::test]
async fn crm_endpoints_need_a_valid_bearer_token() {
    let sb = start_with(SandboxConfig {
        records: 3,
        static_token: Some("pat-static".into()),
        ..Default::default()
    })
    .await;
    let c = client();
    let url = format!("{}/crm/v3/objects/companies", sb.base_url());
    let resp = c.get(&url).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert!(body["correlationId"].is_string());
    assert_eq!(
        get_json(&c, &url, "unknown").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get_json(&c, &url, "pat-static").await.0, StatusCode::OK);

    let token = sb.issue_tokens().access_token;
    assert_eq!(get_json(&c, &url, &token).await.0, StatusCode::OK);
    let expire = c
        .post(format!("{}/_sandbox/tokens/expire", sb.base_url()))
        .send()
        .await;
    assert_eq!(expire.expect("expire").status(), StatusCode::NO_CONTENT);
    assert_eq!(get_json(&c, &url, &token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_json(&c, &url, "pat-static").await.0,
        StatusCode::OK,
        "static tokens never expire"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn list_paging_returns_every_record_once() {
    let sb = start(237).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let mut url = format!(
        "{}/crm/v3/objects/contacts?limit=100&properties=email,favorite_color",
        sb.base_url()
    );
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    loop {
        let (status, page) = get_json(&c, &url, &token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for r in page["results"].as_array().expect("results") {
            assert!(
                seen.insert(r["id"].as_str().expect("id").to_string()),
                "duplicate {r}"
            );
            assert!(r["properties"]["email"]
                .as_str()
                .expect("email")
                .contains('@'));
            assert!(r["properties"]["lastmodifieddate"]
                .as_str()
                .expect("ts")
                .ends_with('Z'));
            assert!(r["properties"]["favorite_color"].is_string());
            assert_eq!(r["archived"], false);
        }
        match page["paging"]["next"]["link"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (237, 3));

    let first = seen.iter().next().expect("one id").clone();
    let del = c
        .delete(format!("{}/crm/v3/objects/contacts/{first}", sb.base_url()))
        .bearer_auth(&token)
        .send()
        .await;
    assert_eq!(del.expect("delete").status(), StatusCode::NO_CONTENT);
    let (_, archived) = get_json(
        &c,
        &format!("{}/crm/v3/objects/contacts?archived=true", sb.base_url()),
        &token,
    )
    .await;
    let results = archived["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0]["id"].as_str(), &results[0]["archived"]),
        (Some(first.as_str()), &json!(true))
    );
    let (status, _) = get_json(
        &c,
        &format!("{}/crm/v3/objects/contacts/{first}", sb.base_url()),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_json(
        &c,
        &format!("{}/crm/v3/objects/contacts?limit=101", sb.base_url()),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sb.shutdown().await;
}

#[tokio::test]
async fn seeding_is_deterministic_and_groups_share_timestamps() {
    let config = SandboxConfig {
        records: 60,
        same_timestamp_group: 25,
        seed: 7,
        ..Default::default()
    };
    let (a, b) = (start_with(config.clone()).await, start_with(config).await);
    let c = client();
    let page = |sb: &Sandbox| {
        let url = format!(
            "{}/crm/v3/objects/companies?limit=60&properties=name,domain,customer_tier",
            sb.base_url()
        );
        let token = sb.issue_tokens().access_token;
        let c = c.clone();
        async move { get_json(&c, &url, &token).await.1 }
    };
    let (pa, pb) = (page(&a).await, page(&b).await);
    assert_eq!(pa["results"], pb["results"]);
    let stamps: Vec<&str> = pa["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["properties"]["hs_lastmodifieddate"].as_str().expect("ts"))
        .collect();
    assert_eq!(stamps.iter().collect::<BTreeSet<_>>().len(), 3);
    assert!(stamps[..25].iter().all(|s| *s == stamps[0]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn search_gte_ascending_pages_and_caps_at_ten_thousand() {
    let sb = start(300).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/contacts/search", sb.base_url());
    // The third timestamp group starts at record 50.
    let since = "2024-01-01T00:02:00.000Z";
    let mut after: Option<String> = None;
    let mut stamps = Vec::new();
    loop {
        let body = json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email", "lastmodifieddate"],
            "limit": 100,
            "after": after,
        });
        let (status, page) = post_json(&c, &url, &token, body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 250);
        for r in page["results"].as_array().expect("results") {
            stamps.push(
                r["properties"]["lastmodifieddate"]
                    .as_str()
                    .expect("ts")
                    .to_string(),
            );
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(stamps.len(), 250);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "ascending");
    assert_eq!(stamps[0], since);

    let email_query = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}], "limit": 1});
    assert_eq!(
        post_json(&c, &url, &token, email_query).await.1["total"],
        300
    );
    let capped = json!({"limit": 100, "after": "9950"});
    let (status, body) = post_json(&c, &url, &token, capped).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_eq!(
        post_json(&c, &url, &token, json!({"limit": 201})).await.0,
        StatusCode::BAD_REQUEST
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn control_edits_move_records_forward_in_time() {
    let sb = start(10).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let (_, before) = get_json(
        &c,
        &format!("{}/_sandbox/records/contacts/3", sb.base_url()),
        "",
    )
    .await;
    let edit = json!({"id": 3, "properties": {"firstname": "Edited"}});
    let (status, after) = post_json(
        &c,
        &format!("{}/_sandbox/records/contacts", sb.base_url()),
        "",
        edit,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["properties"]["firstname"], "Edited");
    assert!(after["updatedAt"].as_str() > before["updatedAt"].as_str());
    let search = json!({
        "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": "1704067200000"}]}],
    });
    let url = format!("{}/crm/v3/objects/contacts/search", sb.base_url());
    let (_, found) = post_json(&c, &url, &token, search).await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["id"], "3");
    sb.shutdown().await;
}

#[tokio::test]
async fn batch_writes_report_partial_failures_with_207() {
    let sb = start(10).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let base = format!("{}/crm/v3/objects/contacts/batch", sb.base_url());
    let fault = json!({"kind": "partial_batch", "fail_every": 3, "count": 1});
    c.post(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&fault)
        .send()
        .await
        .expect("fault");
    let inputs: Vec<Value> = (1..=6)
        .map(|id| json!({"id": id.to_string(), "properties": {"jobtitle": "CFO"}}))
        .collect();
    let (status, body) = post_json(
        &c,
        &format!("{base}/update"),
        &token,
        json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(body["numErrors"], 2);
    assert_eq!(body["results"].as_array().expect("results").len(), 4);
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["3"]));
    assert_eq!(body["errors"][1]["context"]["ids"], json!(["6"]));
    let (status, _) = post_json(
        &c,
        &format!("{base}/update"),
        &token,
        json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the fault covered one call");

    let read = json!({"properties": ["email"], "inputs": [{"id": "1"}, {"id": "999"}]});
    let (status, body) = post_json(&c, &format!("{base}/read"), &token, read).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["999"]));

    let upsert = json!({"inputs": [
        {"id": "new.person@example.com", "idProperty": "email", "properties": {"firstname": "New"}},
    ]});
    let (status, body) = post_json(&c, &format!("{base}/upsert"), &token, upsert.clone()).await;
    assert_eq!(
        (status, &body["results"][0]["new"]),
        (StatusCode::OK, &json!(true))
    );
    let (_, body) = post_json(&c, &format!("{base}/upsert"), &token, upsert).await;
    assert_eq!(body["results"][0]["new"], false);

    let bad = json!({"inputs": [{"properties": {"no_such_property": "x"}}, {"properties": {"email": "ok@example.com"}}]});
    let (status, body) = post_json(&c, &format!("{base}/create"), &token, bad).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["0"]));
    let ok = json!({"inputs": [{"properties": {"email": "fresh@example.com"}}]});
    assert_eq!(
        post_json(&c, &format!("{base}/create"), &token, ok).await.0,
        StatusCode::CREATED
    );

    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    let (status, body) = post_json(
        &c,
        &format!("{base}/read"),
        &token,
        json!({"inputs": too_many}),
    )
    .await;
    assert_eq!(
        (status, &body["category"]),
        (StatusCode::BAD_REQUEST, &json!("VALIDATION_ERROR"))
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn rate_limit_sends_headers_and_429() {
    let limit = RateLimit {
        max: 3,
        interval_ms: 60_000,
    };
    let sb = start_with(SandboxConfig {
        records: 3,
        rate_limit: Some(limit),
        ..Default::default()
    })
    .await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/contacts", sb.base_url());
    for remaining in ["2", "1", "0"] {
        let resp = c
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-hubspot-ratelimit-max"], "3");
        assert_eq!(resp.headers()["x-hubspot-ratelimit-remaining"], remaining);
        assert_eq!(
            resp.headers()["x-hubspot-ratelimit-interval-milliseconds"],
            "60000"
        );
    }
    let resp = c
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["x-hubspot-ratelimit-remaining"], "0");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    let other = sb.issue_tokens().access_token;
    assert_eq!(
        get_json(&c, &url, &other).await.0,
        StatusCode::OK,
        "limits are per token"
    );

    let off = c
        .post(format!("{}/_sandbox/rate-limit", sb.base_url()))
        .json(&Value::Null)
        .send()
        .await;
    assert_eq!(off.expect("off").status(), StatusCode::NO_CONTENT);
    let resp = c
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("x-hubspot-ratelimit-max").is_none());
    sb.shutdown().await;
}

#[tokio::test]
async fn search_has_its_own_per_second_limit() {
    let limit = RateLimit {
        max: 1000,
        interval_ms: 10_000,
    };
    let sb = start_with(SandboxConfig {
        records: 3,
        rate_limit: Some(limit),
        ..Default::default()
    })
    .await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/contacts/search", sb.base_url());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (c, url, token) = (c.clone(), url.clone(), token.clone());
            tokio::spawn(async move { post_json(&c, &url, &token, json!({})).await })
        })
        .collect();
    let mut limited = 0;
    for call in calls {
        let (status, body) = call.await.expect("task");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["policyName"], "SECONDLY");
            limited += 1;
        }
    }
    assert!(
        limited >= 4,
        "at most 4 searches per second pass, {limited} limited"
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn faults_fire_exactly_count_times() {
    let sb = start(3).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/contacts", sb.base_url());
    let faults = json!([
        {"kind": "status", "status": 503, "count": 2, "path_prefix": "/crm/v3/objects/contacts"},
        {"kind": "malformed_json", "count": 1},
    ]);
    let added = c
        .post(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&faults)
        .send()
        .await;
    assert_eq!(added.expect("faults").status(), StatusCode::NO_CONTENT);
    let companies = format!("{}/crm/v3/objects/companies", sb.base_url());
    assert_eq!(
        get_json(&c, &companies, &token).await,
        (StatusCode::OK, Value::Null),
        "malformed body"
    );
    assert_eq!(
        get_json(&c, &url, &token).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get_json(&c, &url, &token).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_json(&c, &url, &token).await.0, StatusCode::OK);
    assert_eq!(get_json(&c, &companies, &token).await.0, StatusCode::OK);

    let timeout = json!({"kind": "timeout", "count": 1});
    c.post(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&timeout)
        .send()
        .await
        .expect("fault");
    let held = c
        .get(&url)
        .bearer_auth(&token)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(held.expect_err("held past the client timeout").is_timeout());
    assert_eq!(get_json(&c, &url, &token).await.0, StatusCode::OK);

    let slow = json!({"kind": "slow", "millis": 50, "count": 1});
    c.post(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&slow)
        .send()
        .await
        .expect("fault");
    assert_eq!(get_json(&c, &url, &token).await.0, StatusCode::OK);
    sb.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_held_requests() {
    let sb = start(1).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let timeout = json!({"kind": "timeout", "count": 1});
    c.post(format!("{}/_sandbox/faults", sb.base_url()))
        .json(&timeout)
        .send()
        .await
        .expect("fault");
    let url = format!("{}/crm/v3/objects/contacts", sb.base_url());
    let started = tokio::time::Instant::now();
    let held = tokio::spawn(async move {
        c.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status())
    });
    // Wait until the held request has reached the server before stopping it.
    while !sb.counters().contains_key("GET /crm/v3/objects/contacts") {
        tokio::task::yield_now().await;
    }
    sb.shutdown().await;
    let status = held.await.expect("task").expect("released with a response");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn counters_count_requests_per_endpoint() {
    let sb = start(5).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let base = sb.base_url();
    for _ in 0..3 {
        get_json(&c, &format!("{base}/crm/v3/objects/contacts"), &token).await;
    }
    get_json(&c, &format!("{base}/crm/v3/objects/contacts/2"), &token).await;
    post_json(
        &c,
        &format!("{base}/crm/v3/objects/companies/search"),
        &token,
        json!({}),
    )
    .await;
    get_json(&c, &format!("{base}/crm/v3/properties/contacts"), &token).await;
    let counters = sb.counters();
    assert_eq!(counters["GET /crm/v3/objects/contacts"], 3);
    assert_eq!(counters["GET /crm/v3/objects/contacts/{id}"], 1);
    assert_eq!(counters["POST /crm/v3/objects/companies/search"], 1);
    assert_eq!(counters.len(), 4, "{counters:?}");
    let (_, over_http) = get_json(&c, &format!("{base}/_sandbox/counters"), "").await;
    assert_eq!(over_http["GET /crm/v3/objects/contacts"], 3);
    c.post(format!("{base}/_sandbox/counters/reset"))
        .send()
        .await
        .expect("reset");
    assert!(sb.counters().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn properties_include_custom_ones_with_options() {
    let sb = start(1).await;
    let token = sb.issue_tokens().access_token;
    let (status, body) = get_json(
        &client(),
        &format!("{}/crm/v3/properties/contacts", sb.base_url()),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let props = body["results"].as_array().expect("results");
    let tier = props
        .iter()
        .find(|p| p["name"] == "customer_tier")
        .expect("custom property");
    assert_eq!(
        (&tier["type"], &tier["fieldType"]),
        (&json!("enumeration"), &json!("radio"))
    );
    assert_eq!(tier["options"].as_array().expect("options").len(), 4);
    assert!(props
        .iter()
        .all(|p| p["label"].is_string() && p["groupName"].is_string()));
    sb.shutdown().await;
}

#[test]
fn signature_v3_is_base64_hmac_of_method_uri_body_timestamp() {
    let sig = sign_v3(
        "secret",
        "POST",
        "https://example.com/hook",
        "[]",
        1_700_000_000_000,
    );
    // Computed independently with Python's hmac module.
    assert_eq!(sig, "0/4DF+YUcmbqY3ggukl+oIJILQ/DMu3iavl4482uHT4=");
}

/// Accepts one HTTP request and answers 204; returns its headers (lower-cased) and body.
async fn receive_one(listener: tokio::net::TcpListener) -> (Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                .collect();
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse::<usize>());
            if body.len() >= length.expect("content-length").expect("number") {
                socket
                    .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .expect("write");
                return (headers, body.to_string());
            }
        }
        assert!(n > 0, "connection closed early");
    }
}

#[tokio::test]
async fn webhooks_arrive_signed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = format!(
        "http://{}/webhooks/hubspot?portal=1",
        listener.local_addr().expect("addr")
    );
    let received = tokio::spawn(receive_one(listener));
    let sender = start(0).await;
    let events = vec![json!({"eventId": 1, "subscriptionType": "contact.creation", "objectId": 7})];
    assert_eq!(
        sender
            .send_webhook(&target, events)
            .await
            .expect("delivered"),
        204
    );
    let (headers, body) = received.await.expect("task");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    let timestamp: i64 = header("x-hubspot-request-timestamp").parse().expect("ms");
    let expected = sign_v3("sandbox-secret", "POST", &target, &body, timestamp);
    assert_eq!(header("x-hubspot-signature-v3"), expected);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")[0]["objectId"],
        7
    );
    sender.shutdown().await;
}

#[tokio::test]
async fn search_paging_hits_the_cap_and_restarts_from_the_last_timestamp() {
    let sb = start(10_050).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/contacts/search", sb.base_url());
    let query = |since: &str, after: Option<&str>| {
        json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 200,
            "after": after,
        })
    };
    let (mut after, mut seen, mut last_stamp) = (None::<String>, 0, String::new());
    let status = loop {
        let (status, page) = post_json(&c, &url, &token, query("0", after.as_deref())).await;
        if status != StatusCode::OK {
            break status;
        }
        let results = page["results"].as_array().expect("results");
        seen += results.len();
        last_stamp = results.last().expect("non-empty")["properties"]["lastmodifieddate"]
            .as_str()
            .expect("ts")
            .to_string();
        after = page["paging"]["next"]["after"].as_str().map(String::from);
    };
    assert_eq!(
        (status, seen, after.as_deref()),
        (StatusCode::BAD_REQUEST, 10_000, Some("10000"))
    );
    let (status, page) = post_json(&c, &url, &token, query(&last_stamp, None)).await;
    assert_eq!(status, StatusCode::OK);
    // 10,000 is a multiple of the 25-record group, so the restart re-reads that whole group.
    assert_eq!(page["total"], 75);
    sb.shutdown().await;
}

#[tokio::test]
async fn search_operators_query_and_descending_sort() {
    let sb = start(60).await;
    let c = client();
    let token = sb.issue_tokens().access_token;
    let url = format!("{}/crm/v3/objects/companies/search", sb.base_url());
    let between = json!({
        "filterGroups": [{"filters": [{
            "propertyName": "hs_lastmodifieddate", "operator": "BETWEEN",
            "value": "2024-01-01T00:01:00.000Z", "highValue": "1704067320000",
        }]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        "limit": 100,
    });
    let (status, body) = post_json(&c, &url, &token, between).await;
    assert_eq!((status, &body["total"]), (StatusCode::OK, &json!(35)));
    let ids: Vec<u64> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").parse().expect("numeric"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "descending");

    let (_, first) = get_json(
        &c,
        &format!("{}/_sandbox/records/companies/61", sb.base_url()),
        "",
    )
    .await;
    let domain = first["properties"]["domain"]
        .as_str()
        .expect("domain")
        .to_string();
    let by_domain = json!({
        "filterGroups": [
            {"filters": [{"propertyName": "domain", "operator": "IN", "values": [domain, "none.example"]}]},
            {"filters": [{"propertyName": "domain", "operator": "EQ", "value": "also-none.example"}]},
        ],
    });
    assert_eq!(post_json(&c, &url, &token, by_domain).await.1["total"], 1);
    let text = json!({"query": domain});
    assert_eq!(post_json(&c, &url, &token, text).await.1["total"], 1);
    let bad = json!({"filterGroups": [{"filters": [{"propertyName": "domain", "operator": "LIKE", "value": "x"}]}]});
    assert_eq!(
        post_json(&c, &url, &token, bad).await.0,
        StatusCode::BAD_REQUEST
    );

    let archive = c
        .delete(format!("{}/_sandbox/records/companies/61", sb.base_url()))
        .send()
        .await;
    assert_eq!(archive.expect("archive").status(), StatusCode::NO_CONTENT);
    let by_id = json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "61"}]}]});
    assert_eq!(
        post_json(&c, &url, &token, by_id.clone()).await.1["total"],
        0,
        "archived records are not searchable"
    );
    let restore = json!({"id": 61, "archived": false});
    let (_, restored) = post_json(
        &c,
        &format!("{}/_sandbox/records/companies", sb.base_url()),
        "",
        restore,
    )
    .await;
    assert_eq!(restored["archived"], false);
    assert_eq!(post_json(&c, &url, &token, by_id).await.1["total"], 1);
    sb.shutdown().await;
}

/// Posts a control body that should be refused; the answer's text.
async fn refused(c: &Client, method: reqwest::Method, url: &str, body: Value) -> String {
    let resp = c
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{url} {body}: {text}");
    text
}

#[tokio::test]
async fn control_bodies_with_unknown_fields_are_refused_and_change_nothing() {
    let sb = start(5).await;
    let c = client();
    let base = sb.base_url();
    let token = sb.issue_tokens().access_token;
    let record_url = format!("{base}/_sandbox/records/contacts/3");
    let (_, before) = get_json(&c, &record_url, "").await;
    let post = reqwest::Method::POST;
    let cases = [
        (
            post.clone(),
            "records/contacts",
            json!({"id": 3, "propertys": {"firstname": "Typo"}}),
            "propertys",
        ),
        (
            post.clone(),
            "faults",
            json!({"kind": "status", "status": 500, "path_prefx": "/crm"}),
            "path_prefx",
        ),
        (
            post.clone(),
            "faults",
            json!([{"kind": "status", "status": 500}, {"kind": "slow", "milis": 5}]),
            "milis",
        ),
        (
            post.clone(),
            "rate-limit",
            json!({"max": 1, "interval_ms": 60000, "burst": 1}),
            "burst",
        ),
        (
            post.clone(),
            "tokens",
            json!({"scopes": ["crm.objects.contacts.read"]}),
            "scopes",
        ),
        (post.clone(), "tokens/expire", json!({"all": true}), "all"),
        (
            post.clone(),
            "counters/reset",
            json!({"only": "GET"}),
            "only",
        ),
        (
            reqwest::Method::DELETE,
            "faults",
            json!({"kind": "status"}),
            "kind",
        ),
    ];
    for (method, path, body, unknown) in cases {
        let text = refused(&c, method, &format!("{base}/_sandbox/{path}"), body).await;
        assert!(
            text.contains(&format!("unknown field `{unknown}`")),
            "{path}: {text}"
        );
    }
    let text = refused(
        &c,
        reqwest::Method::DELETE,
        &format!("{record_url}?hrad=true"),
        json!(null),
    )
    .await;
    assert!(text.contains("unknown parameter `hrad`"), "{text}");
    let (_, after) = get_json(&c, &record_url, "").await;
    assert_eq!(
        after, before,
        "the refused edit and deletion left the record alone"
    );
    // No fault queued, no rate limit set, the token still valid: both calls answer.
    for _ in 0..2 {
        let (status, _) = get_json(&c, &format!("{base}/crm/v3/objects/contacts/3"), &token).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, counted) = get_json(&c, &format!("{base}/_sandbox/counters"), "").await;
    assert_eq!(counted["GET /crm/v3/objects/contacts/{id}"], 2, "{counted}");
    // The known shapes still pass, `{}` included where nothing is taken.
    let (status, _) = post_json(
        &c,
        &format!("{base}/_sandbox/counters/reset"),
        "",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    sb.shutdown().await;
}
