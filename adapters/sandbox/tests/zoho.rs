//! The Zoho sandbox answers as Zoho documents: its limits with Zoho's error bodies.

use reqwest::StatusCode;
use serde_json::Value;
use syncledger_sandbox::{Sandbox, ZohoSandboxConfig};

async fn get(sandbox: &Sandbox, token: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", sandbox.base_url()))
        .header("Authorization", format!("Zoho-oauthtoken {token}"))
        .send()
        .await
        .expect("the sandbox answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn list_limits_answer_with_zohos_error_bodies() {
    let sandbox = Sandbox::start_zoho(ZohoSandboxConfig {
        records: 5,
        ..ZohoSandboxConfig::default()
    })
    .await
    .expect("starts");
    let token = sandbox.issue_tokens().access_token;
    let cases = [
        ("/crm/v8/Contacts", "REQUIRED_PARAM_MISSING"),
        ("/crm/v8/Contacts?fields=Email&per_page=201", "INVALID_DATA"),
        (
            "/crm/v8/Contacts?fields=Email&page=11",
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        ),
        (
            "/crm/v8/Contacts?fields=Email&page=1&page_token=x",
            "INVALID_DATA",
        ),
        (
            "/crm/v8/Contacts?fields=Email&page_token=unknown",
            "INVALID_DATA",
        ),
        ("/crm/v8/Deals?fields=Email", "INVALID_MODULE"),
    ];
    for (path, code) in cases {
        let (status, body) = get(&sandbox, &token, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            (body["code"].as_str(), body["status"].as_str()),
            (Some(code), Some("error")),
            "{path}"
        );
    }
    let (status, body) = get(&sandbox, "1000.wrong", "/crm/v8/Contacts?fields=Email").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_TOKEN"))
    );
    let (status, body) = get(
        &sandbox,
        &token,
        "/crm/v8/Contacts?fields=Email,Last_Name&per_page=2",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["info"]["more_records"], true);
    assert!(body["info"]["next_page_token"].is_string());
    let first = &body["data"][0];
    assert!(
        first["Email"].is_string() && first["Phone"].is_null(),
        "only the asked fields: {first}"
    );
    assert!(
        first["id"].is_string() && first["Modified_Time"].is_null(),
        "{first}"
    );
}
