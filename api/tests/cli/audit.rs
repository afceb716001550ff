//! `audit verify` passes on an intact log and names the position of an altered event.

use syncledger_store::Store;
use syncledger_testkit::binary::{describe, random_hex, stderr, stdout, TestEnv};

async fn payload_text(store: &Store, position: i64) -> String {
    sqlx::query_scalar("SELECT CAST(payload AS TEXT) FROM events WHERE global_position = $1")
        .bind(position)
        .fetch_one(&store.any)
        .await
        .expect("read the event's payload")
}

/// Change one byte of the IntegrationCreated event; its position.
async fn tamper(env: &TestEnv, integration_id: &str) -> i64 {
    let store = env.store().await;
    let position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE event_type = 'IntegrationCreated' AND aggregate_id = $1",
    )
    .bind(integration_id)
    .fetch_one(&store.any)
    .await
    .expect("find the IntegrationCreated event");
    let before = payload_text(&store, position).await;
    let sql = if env.is_postgres() {
        "UPDATE events SET payload = replace(payload::text, 'Main', 'Maim')::json WHERE global_position = $1"
    } else {
        "UPDATE events SET payload = replace(payload, 'Main', 'Maim') WHERE global_position = $1"
    };
    let done = sqlx::query(sql).bind(position).execute(&store.any).await;
    assert_eq!(done.expect("tamper").rows_affected(), 1);
    let after = payload_text(&store, position).await;
    store.close().await;
    let differing = before.bytes().zip(after.bytes()).filter(|(a, b)| a != b);
    assert_eq!(before.len(), after.len());
    assert_eq!(differing.count(), 1, "{before} / {after}");
    position
}

async fn audit_verify_names_the_tampered_event(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = api.create_integration("Main").await;
    api.set_api_key(&id, &format!("sk_live_{}", random_hex()))
        .await;
    // While the server runs: the CLI catches the projections up beside it.
    env.settle().await;
    server.stop_ok().await;

    let position = tamper(env, &id).await;
    let broken = format!("audit chain BROKEN at position {position} ");
    for args in [&[][..], &["--workspace", ws.id.as_str()][..]] {
        let out = env.verify(args).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(stdout(&out).contains(&broken), "{}", describe(&out));
    }
}

#[tokio::test]
async fn audit_verify_names_a_tampered_event_on_sqlite() {
    audit_verify_names_the_tampered_event(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn audit_verify_names_a_tampered_event_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        audit_verify_names_the_tampered_event(&env).await;
    }
}

/// `audit export` writes what `GET /v1/audit/export` sends, byte for byte, in both formats
/// and with a filter; a format it does not know is refused.
async fn audit_export_writes_what_the_api_sends(env: &TestEnv) {
    let ws = env.create_workspace("Acme").await;
    let server = env.serve().await;
    let api = server.api(&ws.token);
    let id = api.create_integration("Exported").await;
    api.set_api_key(&id, &format!("sk_live_{}", random_hex()))
        .await;
    api.expect(
        reqwest::Method::POST,
        &format!("/v1/integrations/{id}/pause"),
        None,
        reqwest::StatusCode::OK,
    )
    .await;
    env.settle().await;
    let file = env.data_dir().join("trail.out");
    let file_arg = file.to_string_lossy().to_string();
    // (format, (query parameter, CLI flag, value))
    for (format, filter) in [
        ("jsonl", None),
        ("csv", None),
        (
            "csv",
            Some(("integration_id", "--integration", id.as_str())),
        ),
        ("jsonl", Some(("action", "--action", "IntegrationPaused"))),
    ] {
        let mut query = format!("/v1/audit/export?format={format}");
        let mut args = vec!["audit", "export", "--workspace", &ws.id, "--format", format];
        if let Some((name, flag, value)) = filter {
            query.push_str(&format!("&{name}={value}"));
            args.extend([flag, value]);
        }
        let sent = api.get(&query).await;
        let printed = env.run_ok(&args).await;
        assert_eq!(printed, sent, "{args:?} on standard output");
        args.extend(["--out", &file_arg]);
        let out = env.run(&args).await;
        assert!(out.status.success(), "{}", describe(&out));
        let written = std::fs::read_to_string(&file).expect("read the export");
        assert_eq!(written, sent, "{args:?} into a file");
        let rows = if format == "csv" {
            sent.lines().count() - 1
        } else {
            sent.lines().count()
        };
        assert!(rows >= 1, "{sent}");
        assert!(
            stderr(&out).contains(&format!("exported {rows} audit entries")),
            "{}",
            describe(&out)
        );
    }
    server.stop_ok().await;
    let out = env
        .run(&["audit", "export", "--workspace", &ws.id, "--format", "xml"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = env
        .run(&[
            "audit",
            "export",
            "--workspace",
            &ws.id,
            "--from",
            "yesterday",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("--from must be an RFC 3339 time"),
        "{}",
        describe(&out)
    );
}

#[tokio::test]
async fn audit_export_writes_what_the_api_sends_on_sqlite() {
    audit_export_writes_what_the_api_sends(&TestEnv::sqlite()).await;
}

#[tokio::test]
async fn audit_export_writes_what_the_api_sends_on_postgres() {
    if let Some(env) = TestEnv::postgres().await {
        audit_export_writes_what_the_api_sends(&env).await;
    }
}
