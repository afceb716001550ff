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
