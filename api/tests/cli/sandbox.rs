//! `syncledger sandbox <provider>`: prints where it listens first, serves the provider's
//! protocol and the control API, and stops cleanly on SIGTERM.

use reqwest::StatusCode;
use syncledger_testkit::binary::{Server, TestEnv};

/// A path each simulator answers without credentials, and what it answers.
const PROBES: [(&str, &str, StatusCode); 5] = [
    (
        "hubspot",
        "/crm/v3/objects/contacts",
        StatusCode::UNAUTHORIZED,
    ),
    (
        "salesforce",
        "/services/data/v60.0/query?q=SELECT+Id+FROM+Contact",
        StatusCode::UNAUTHORIZED,
    ),
    ("pipedrive", "/api/v2/persons", StatusCode::UNAUTHORIZED),
    (
        "zoho",
        "/crm/v8/Contacts?fields=Email",
        StatusCode::UNAUTHORIZED,
    ),
    ("generic", "/cursor/contacts", StatusCode::UNAUTHORIZED),
];

#[tokio::test]
async fn each_provider_sandbox_serves_and_stops_on_sigterm() {
    let env = TestEnv::sqlite();
    for (provider, path, unauthenticated) in PROBES {
        let cmd = env.command(&["sandbox", provider, "--records", "7", "--seed", "3"]);
        let server = Server::start(cmd).await;
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), unauthenticated, "{provider}");
        let counters = client
            .get(format!("{}/_sandbox/counters", server.url))
            .send()
            .await
            .expect("the control API answers");
        assert_eq!(counters.status(), StatusCode::OK, "{provider}");
        let counted: serde_json::Value = counters.json().await.expect("counters are JSON");
        assert!(
            counted.to_string().contains('1'),
            "{provider}: the probe was counted: {counted}"
        );
        let stopped = server.stop().await;
        assert!(stopped.status.success(), "{provider}: {}", stopped.stderr);
    }
}
