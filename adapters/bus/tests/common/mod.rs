//! Helpers of the bus integration tests that only they need: events to publish and a
//! NATS server per test. Databases and waiting are `syncledger-testkit`'s.
#![allow(dead_code)]

use serde_json::json;
use std::future::Future;
use std::time::Duration;
use syncledger_bus::{NatsBus, NatsConfig};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store};

/// Append `n` events to one new aggregate of `aggregate_type` in `workspace`, in one
/// transaction. Payloads carry a secret-bearing key the bus must redact.
pub async fn append_events(store: &Store, workspace: &str, aggregate_type: &str, n: usize) {
    let aggregate_id = uuid::Uuid::new_v4().to_string();
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.clone(),
            sequence: i as i64 + 1,
            event_type: "TestHappened".into(),
            event_version: "1".into(),
            payload: json!({"n": i, "access_token": "s3cret-token", "name": "visible"}).to_string(),
            metadata: Metadata::new("tester", workspace, "corr-1"),
        })
        .collect();
    append(&store.events, &events).await.expect("append events");
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// A configuration with a stream and subject prefix of its own, so tests never share state.
pub fn unique_config() -> NatsConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    NatsConfig {
        url: nats_url(),
        stream: format!("SLTEST_{id}"),
        subject_prefix: format!("sltest.{id}"),
    }
}

/// Connect to the test NATS server. If it is unreachable: panic when `CI=true`, otherwise
/// print a note and return `None` so the test can skip.
pub async fn connect_or_skip(config: NatsConfig) -> Option<NatsBus> {
    let url = config.url.clone();
    let result = tokio::time::timeout(Duration::from_secs(10), NatsBus::connect_with(config)).await;
    let error = match result {
        Ok(Ok(bus)) => return Some(bus),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connection timed out".to_string(),
    };
    if in_ci() {
        panic!("NATS is not reachable at {url} (CI=true, so this is a failure): {error}");
    }
    eprintln!("note: skipping NATS test, server not reachable at {url}: {error} (set NATS_URL)");
    None
}

/// Run `test` with a bus on a unique stream, then delete the stream whether the test
/// passed or panicked.
pub async fn with_nats<F, Fut>(test: F)
where
    F: FnOnce(NatsBus) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(nats) = connect_or_skip(unique_config()).await else {
        return;
    };
    let outcome = tokio::spawn(test(nats.clone())).await;
    if let Err(e) = nats.delete_stream().await {
        eprintln!("could not delete test stream {}: {e}", nats.config().stream);
    }
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}
