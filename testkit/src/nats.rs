//! The NATS JetStream server the tests publish to, when there is one.

use std::time::Duration;

/// The NATS URL (`NATS_URL`, default the local server), or `None` with a note when it is
/// unreachable outside CI; with `CI=true` an unreachable server fails the test.
pub async fn require_nats() -> Option<String> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str());
    match connect.await {
        Ok(client) => {
            drop(client);
            Some(url)
        }
        Err(e) if crate::db::require_ci_services() => {
            panic!("NATS is required when CI=true: cannot connect to {url}: {e}")
        }
        Err(e) => {
            eprintln!("skipping: NATS is not reachable at {url} ({e})");
            None
        }
    }
}
