//! `tokens create`: a token issued locally (no API, no other token needed) through the
//! same use case as `POST /v1/tokens`, printed once; it works against the API and its
//! issue is in the audit trail. The way back into a workspace whose admin tokens are lost.

use serde_json::Value;
use syncledger_testkit::binary::{describe, poll_until, stderr, stdout, TestEnv};

async fn a_token_created_locally_works_and_is_audited(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let out = env
        .run_ok(&[
            "tokens",
            "create",
            "--workspace",
            &ws.id,
            "--role",
            "admin",
            "--name",
            "recovery",
        ])
        .await;
    assert_eq!(out.lines().count(), 1, "stdout: {out:?}");
    let issued: Value = serde_json::from_str(out.trim()).expect("a JSON line");
    assert_eq!(issued["workspace_id"], ws.id.as_str(), "{out}");
    assert_eq!(issued["role"], "admin", "{out}");
    assert_eq!(issued["label"], "recovery", "{out}");
    let token = issued["token"].as_str().expect("a token").to_string();
    let token_id = issued["token_id"].as_str().expect("a token id").to_string();
    assert_ne!(token, ws.token);

    let server = env.serve().await;
    let api = server.api(&token);
    // An admin route, with the new token.
    let listed = api.get_json("/v1/tokens").await;
    let rows = listed["data"].as_array().cloned().unwrap_or_default();
    let row = rows
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("the new token is listed: {listed}"));
    assert_eq!(row["role"], "admin");
    assert_eq!(row["label"], "recovery");
    assert!(
        !listed.to_string().contains(&token),
        "no secret in the list"
    );
    // The projection runner writes the trail beside the API: poll it.
    let audit = poll_until("the initial token and this one in the trail", || async {
        let audit = api.get_json("/v1/audit?limit=100").await;
        let issued_rows = audit["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["action"] == "TokenIssued")
            .count();
        if issued_rows == 2 {
            Ok(audit)
        } else {
            Err(audit.to_string())
        }
    })
    .await;
    assert!(
        !audit.to_string().contains(&token),
        "no secret in the audit trail"
    );
    server.stop_ok().await;
}

#[tokio::test]
async fn tokens_create_issues_a_working_audited_token_on_sqlite() {
    a_token_created_locally_works_and_is_audited(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn tokens_create_issues_a_working_audited_token_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        a_token_created_locally_works_and_is_audited(&env).await;
    }
}

#[tokio::test]
async fn tokens_create_refuses_an_unknown_workspace_or_role() {
    let env = TestEnv::sqlite();
    env.create_workspace("Acme").await;
    let out = env
        .run(&[
            "tokens",
            "create",
            "--workspace",
            "no-such-workspace",
            "--role",
            "admin",
        ])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
    assert!(stderr(&out).contains("workspace"), "{}", describe(&out));
    let out = env
        .run(&["tokens", "create", "--workspace", "w", "--role", "owner"])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("unknown role \"owner\""),
        "{}",
        describe(&out)
    );
}
