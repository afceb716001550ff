//! `workspace create`: its one line of output and the key file it leaves.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use syncledger_testkit::binary::{describe, stderr, stdout, TestEnv};

#[tokio::test]
async fn workspace_create_prints_one_json_line_and_writes_a_private_key_file() {
    let env = TestEnv::sqlite();
    let out = env.run_ok(&["workspace", "create", "Acme"]).await;

    assert_eq!(out.lines().count(), 1, "stdout: {out:?}");
    assert!(out.ends_with('\n'), "stdout: {out:?}");
    let line = out.trim_end();
    assert!(
        line.starts_with(r#"{"workspace_id":""#),
        "workspace_id first: {line}"
    );
    let v: Value = serde_json::from_str(line).expect("a JSON line");
    let fields = v.as_object().expect("a JSON object");
    assert_eq!(fields.len(), 3, "{line}");
    let url = v["sign_in_url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("http://127.0.0.1:8080/sign-in/link?code=sil_"),
        "{line}"
    );
    let (id, token) = (v["workspace_id"].as_str(), v["admin_token"].as_str());
    assert!(
        id.is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{line}"
    );
    assert!(token.is_some_and(|t| !t.is_empty()), "{line}");
    let id_at = line.find("\"workspace_id\"");
    let token_at = line.find("\"admin_token\"");
    assert!(id_at < token_at, "key order: {line}");

    let mode = std::fs::metadata(env.key_file())
        .expect("master.key exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "master.key mode {mode:o}");
}

#[tokio::test]
async fn workspace_create_rejects_an_unknown_plan() {
    let env = TestEnv::sqlite();
    let out = env
        .run(&["workspace", "create", "Acme", "--plan", "platinum"])
        .await;
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown plan \"platinum\""), "{err}");
    assert!(
        err.contains("free, starter, professional, scale, enterprise"),
        "{err}"
    );
}
