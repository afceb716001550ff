//! The Pipedrive sandbox's wire protocol, spoken directly over HTTP.

use serde_json::{json, Value};
use syncledger_sandbox::{PipedriveSandboxConfig, Sandbox};

async fn start(records: usize) -> Sandbox {
    let config = PipedriveSandboxConfig {
        records,
        ..PipedriveSandboxConfig::default()
    };
    Sandbox::start_pipedrive(config)
        .await
        .expect("sandbox starts")
}

async fn get(sandbox: &Sandbox, path_and_query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path_and_query}", sandbox.base_url()))
        .header("x-api-token", "sandbox-api-token")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

#[tokio::test]
async fn v2_lists_page_with_opaque_cursors_and_cap_the_limit() {
    let sandbox = start(12).await;
    let (status, body) = get(&sandbox, "/api/v2/persons?limit=501").await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], json!(false));
    assert!(body["error"].as_str().is_some_and(|e| e.contains("limit")));

    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v2/persons?limit=5&sort_by=update_time&cursor={c}"),
            None => "/api/v2/persons?limit=5&sort_by=update_time".to_owned(),
        };
        let (status, body) = get(&sandbox, &path).await;
        assert_eq!(status, 200, "{body}");
        for person in body["data"].as_array().expect("data") {
            ids.push(person["id"].as_u64().expect("id"));
            assert_eq!(
                person["custom_fields"].as_object().map(|c| c.len()),
                Some(4)
            );
        }
        match body["additional_data"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 12);
    let counters = sandbox.counters();
    assert_eq!(counters["GET /api/v2/persons"], 4);
}

#[tokio::test]
async fn unknown_ids_and_missing_credentials_answer_in_pipedrive_shape() {
    let sandbox = start(3).await;
    let (status, body) = get(&sandbox, "/api/v2/organizations/99999").await;
    assert_eq!(status, 404);
    assert_eq!(body["data"], Value::Null);
    let response = reqwest::Client::new()
        .get(format!("{}/v1/users/me", sandbox.base_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let url = format!(
        "{}/v1/users/me?api_token=sandbox-api-token",
        sandbox.base_url()
    );
    let response = reqwest::get(url).await.expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn field_catalogues_page_and_carry_hashed_custom_keys() {
    let sandbox = start(1).await;
    let (_, first) = get(&sandbox, "/v1/personFields?limit=10").await;
    let pagination = &first["additional_data"]["pagination"];
    assert_eq!(pagination["more_items_in_collection"], json!(true));
    assert_eq!(pagination["next_start"], json!(10));
    let (_, rest) = get(&sandbox, "/v1/personFields?start=10&limit=10").await;
    let custom = rest["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|f| f["key"].as_str().is_some_and(|k| k.len() == 40))
        .count();
    assert!(custom >= 3);
}

#[tokio::test]
async fn soft_deletes_leave_the_lists_and_show_in_recents() {
    let sandbox = start(3).await;
    let client = reqwest::Client::new();
    // Persons are numbered on their own (from 1), as Pipedrive does.
    let url = format!("{}/api/v2/persons/2", sandbox.base_url());
    let response = client
        .delete(&url)
        .header("x-api-token", "sandbox-api-token")
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 200);
    let (status, _) = get(&sandbox, "/api/v2/persons/2").await;
    assert_eq!(status, 404);
    let (_, recents) = get(
        &sandbox,
        "/v1/recents?since_timestamp=2000-01-01%2000:00:00&items=person",
    )
    .await;
    let deleted: Vec<&Value> = recents["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| r["data"]["active_flag"] == json!(false))
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["id"], json!(2));
}

#[tokio::test]
async fn control_bodies_with_unknown_fields_are_refused_and_change_nothing() {
    let sandbox = start(3).await;
    let client = reqwest::Client::new();
    let cases = [
        (
            reqwest::Method::POST,
            "rate-limit",
            json!({"max": 1, "interval": 10}),
            "interval",
        ),
        (
            reqwest::Method::POST,
            "faults",
            json!({"kind": "partial_batch", "fail_evry": 1}),
            "fail_evry",
        ),
        (
            reqwest::Method::POST,
            "tokens",
            json!({"scope": "x"}),
            "scope",
        ),
        (
            reqwest::Method::POST,
            "tokens/expire",
            json!({"which": "all"}),
            "which",
        ),
        (
            reqwest::Method::POST,
            "counters/reset",
            json!({"x": 1}),
            "x",
        ),
        (
            reqwest::Method::DELETE,
            "faults",
            json!({"all": true}),
            "all",
        ),
    ];
    for (method, path, body, unknown) in cases {
        let response = client
            .request(method, format!("{}/_sandbox/{path}", sandbox.base_url()))
            .json(&body)
            .send()
            .await
            .expect("control");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, 400, "{path}: {text}");
        assert!(
            text.contains(&format!("unknown field `{unknown}`")),
            "{path}: {text}"
        );
    }
    let response = client
        .delete(format!(
            "{}/_sandbox/records/persons/2?hrad=true",
            sandbox.base_url()
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("unknown parameter `hrad`"), "{text}");
    // Nothing refused took effect: no fault, no limit, the token and counters kept
    // (person 2 is still there).
    for _ in 0..2 {
        let (status, _) = get(&sandbox, "/api/v2/persons/2").await;
        assert_eq!(status, 200);
    }
    let counted: Value = client
        .get(format!("{}/_sandbox/counters", sandbox.base_url()))
        .send()
        .await
        .expect("counters")
        .json()
        .await
        .expect("json");
    assert!(counted.to_string().contains(":2"), "{counted}");
    // Record bodies stay open: their top-level keys are the person's fields.
    let response = client
        .post(format!("{}/_sandbox/records/persons", sandbox.base_url()))
        .json(&json!({"name": "Open", "job_title": "anything"}))
        .send()
        .await
        .expect("upsert");
    assert_eq!(response.status().as_u16(), 200);
}
