//! Credentials and tokens appear in no answer, no log line and no stored byte.

use reqwest::StatusCode;
use serde_json::Value;
use syncledger_testkit::binary::{assert_absent, random_hex, strip_ansi, TestEnv};

/// The part of a bearer token that only the holder knows (`slk_<id>_<secret>`).
fn token_secret(token: &str) -> String {
    token.rsplit('_').next().unwrap_or(token).to_string()
}

/// Serve twice (text logs, then JSON logs, both at debug level), each time setting an
/// API key and basic credentials; the secrets must appear in no response and no log.
/// Returns every secret used.
async fn secrets_stay_out_of_logs(env: &TestEnv) -> Vec<String> {
    let ws = env.create_workspace("Acme").await;
    let mut secrets = vec![token_secret(&ws.token)];
    let mut integration: Option<String> = None;
    for json_logs in [false, true] {
        let global: &[&str] = if json_logs {
            &["--log-format", "json"]
        } else {
            &[]
        };
        let server = env.serve_with(global, &[("RUST_LOG", "debug")]).await;
        let api = server.api(&ws.token);
        assert_eq!(api.health().await, StatusCode::OK);
        // The second run replaces the first run's credentials (CredentialsRotated).
        let id = match integration.take() {
            Some(id) => id,
            None => api.create_integration("Main").await,
        };
        let api_key = format!("sk_live_{}", random_hex());
        let password = format!("pw_{}", random_hex());
        let mut answers = api.set_api_key(&id, &api_key).await;
        answers += &api.set_basic(&id, "ops", &password).await;
        answers += &api.get(&format!("/v1/integrations/{id}")).await;
        answers += &api.get("/v1/audit").await;
        secrets.extend([api_key, password]);
        assert_absent(answers.as_bytes(), &secrets, "the API's answers");
        assert_absent(&env.stored_bytes().await, &secrets, "storage while serving");

        let stopped = server.stop_ok().await;
        assert_eq!(stopped.stdout, "", "serve prints only its listening line");
        assert_absent(stopped.stderr.as_bytes(), &secrets, "the logs");
        assert_absent(strip_ansi(&stopped.stderr).as_bytes(), &secrets, "the logs");
        assert_debug_logs(&stopped.stderr, json_logs);
        integration = Some(id);
    }
    secrets
}

fn assert_debug_logs(logs: &str, json: bool) {
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no logs at all");
    if !json {
        assert!(
            strip_ansi(logs).contains(" DEBUG "),
            "not at debug level:\n{logs}"
        );
        return;
    }
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
    }
    assert!(lines.iter().any(|l| l.contains(r#""level":"DEBUG""#)));
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_the_sqlite_files() {
    let env = TestEnv::sqlite();
    let secrets = secrets_stay_out_of_logs(&env).await;
    let db = env.data_dir().join("syncledger.db");
    assert!(db.exists(), "no SQLite database at {}", db.display());
    assert_absent(&env.stored_bytes().await, &secrets, "the data directory");
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_the_postgres_tables() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    let secrets = secrets_stay_out_of_logs(&env).await;
    assert!(!env.data_dir().join("syncledger.db").exists());
    assert_absent(&env.stored_bytes().await, &secrets, "the database");
}
