//! `syncledger webhooks add|list|replay`: the same use cases as `/v1/webhook-endpoints`,
//! from the command line.

use serde_json::Value;
use syncledger_testkit::binary::TestEnv;

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn webhooks_are_added_listed_and_replayed_from_the_command_line() {
    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let added = env
        .run_ok(&[
            "webhooks",
            "add",
            "--workspace",
            &ws.id,
            "--url",
            "http://127.0.0.1:9/hook",
            "--event",
            "record.created",
            "--event",
            "sync_run.failed",
        ])
        .await;
    let added = lines(&added).pop().expect("the endpoint as JSON");
    let secret = added["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("whsec_"), "{added}");
    let id = added["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        added["event_types"],
        serde_json::json!(["record.created", "sync_run.failed"])
    );

    let listed = lines(
        &env.run_ok(&["webhooks", "list", "--workspace", &ws.id])
            .await,
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once"
    );

    // Refusals say why and add nothing.
    for (args, needle) in [
        (
            vec!["--event", "record.deleted", "--url", "http://127.0.0.1:9/x"],
            "record.deleted",
        ),
        (
            vec![
                "--event",
                "record.created",
                "--url",
                "http://169.254.169.254/",
            ],
            "url",
        ),
    ] {
        let mut all = vec!["webhooks", "add", "--workspace", ws.id.as_str()];
        all.extend(args);
        let out = env.run(&all).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    let listed = lines(
        &env.run_ok(&["webhooks", "list", "--workspace", &ws.id])
            .await,
    );
    assert_eq!(listed.len(), 1);

    let replayed = env
        .run_ok(&[
            "webhooks",
            "replay",
            "--workspace",
            &ws.id,
            "--endpoint",
            &id,
            "--since",
            "2026-01-01T00:00:00Z",
        ])
        .await;
    assert_eq!(lines(&replayed)[0]["endpoint"], id.as_str());
    let other = env.create_workspace("Other").await;
    let out = env
        .run(&[
            "webhooks",
            "replay",
            "--workspace",
            &other.id,
            "--endpoint",
            &id,
            "--since",
            "2026-01-01T00:00:00Z",
        ])
        .await;
    assert!(!out.status.success(), "another workspace's endpoint");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    env.assert_verifies().await;
}

/// `serve` killed (`kill -9`) while a receiver holds a delivery: started again under the
/// same instance name, it delivers every message, none lost, a message sent twice only
/// under its one `webhook-id`.
#[tokio::test]
async fn a_killed_serve_delivers_every_message_when_started_again() {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use reqwest::{Method, StatusCode};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use syncledger_testkit::binary::{call, poll_until};

    type Got = Arc<Mutex<Vec<(String, String)>>>;
    async fn receive(State(got): State<Got>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let email = body["data"]["fields"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let n = {
            let mut got = got.lock().expect("the log");
            got.push((id, email));
            got.len()
        };
        if n == 5 {
            // Held until the server that sent it is gone.
            std::future::pending::<()>().await;
        }
        StatusCode::OK
    }
    let got: Got = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/hook",
        listener.local_addr().expect("its address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env = TestEnv::sqlite();
    let ws = env.create_workspace("Acme").await;
    let vars = [("SYNCLEDGER_INSTANCE_NAME", "web-1")];
    let server = env.serve_with(&[], &vars).await;
    let api = server.api(&ws.token);
    let body = serde_json::json!({"url": url, "event_types": ["record.created"]});
    call(
        &api,
        Method::POST,
        "/v1/webhook-endpoints",
        body,
        StatusCode::CREATED,
    )
    .await;
    let emails: Vec<String> = (0..10).map(|i| format!("r{i}@example.com")).collect();
    for email in &emails {
        let body = serde_json::json!({"entity": "contacts", "fields": {"email": email}});
        call(&api, Method::POST, "/v1/records", body, StatusCode::CREATED).await;
    }
    let count = || got.lock().map(|g| g.len()).unwrap_or_default();
    poll_until("the fifth delivery held", || async {
        if count() >= 5 {
            Ok(())
        } else {
            Err(count().to_string())
        }
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    server.exited().await;

    let server = env.serve_with(&[], &vars).await;
    poll_until("every message delivered", || async {
        let seen: BTreeSet<String> = got
            .lock()
            .map(|g| g.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default();
        if seen.len() == emails.len() {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let log = got.lock().map(|g| g.clone()).unwrap_or_default();
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, email) in &log {
        ids.entry(email.clone()).or_default().insert(id.clone());
    }
    assert!(
        ids.values().all(|one| one.len() == 1),
        "a message sent again under another id: {ids:?}"
    );
    assert!(
        log.len() > emails.len(),
        "the held message was sent again: {log:?}"
    );
    server.stop_ok().await;
}
