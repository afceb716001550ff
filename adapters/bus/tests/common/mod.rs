//! Helpers shared by the bus integration tests.
#![allow(dead_code)]

use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use std::future::Future;
use std::time::Duration;
use syncledger_bus::{NatsBus, NatsConfig};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store, StoreConfig};
use tempfile::TempDir;

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
pub async fn temp_store() -> (TempDir, Store) {
    use std::os::unix::fs::PermissionsExt;
    // Private (0700): the store refuses a data directory others may read.
    let dir = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("temp dir");
    let store = Store::open(&StoreConfig::sqlite(dir.path()))
        .await
        .expect("open sqlite store");
    (dir, store)
}

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

/// Poll `check` every 20 ms until it returns true; panic after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// A migrated store on a PostgreSQL database created for one test.
pub struct PgDatabase {
    pub store: Store,
    admin_url: String,
    name: String,
}

/// `SYNCLEDGER_TEST_PG_URL` (default: the local server, trust auth), with the same
/// skip-or-fail rule as NATS when it is unreachable.
pub async fn postgres_database() -> Option<PgDatabase> {
    let admin_url = std::env::var("SYNCLEDGER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into());
    let shown = syncledger_store::config::redact_url(&admin_url);
    let mut admin =
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unreachable_postgres(&shown, &e.to_string()),
            Err(_) => return unreachable_postgres(&shown, "connection timed out"),
        };
    let name = format!("sltest_bus_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("CREATE DATABASE");
    let _ = admin.close().await;
    let (base, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let url = if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    };
    let store = Store::open(&StoreConfig::postgres(url))
        .await
        .expect("open the PostgreSQL store");
    Some(PgDatabase {
        store,
        admin_url,
        name,
    })
}

fn unreachable_postgres<T>(url: &str, error: &str) -> Option<T> {
    if in_ci() {
        panic!("PostgreSQL is not reachable at {url} (CI=true, so this is a failure): {error}");
    }
    eprintln!("note: skipping PostgreSQL test, server not reachable at {url}: {error}");
    None
}

impl PgDatabase {
    /// Close the store and drop the database.
    pub async fn cleanup(self) {
        self.store.close().await;
        let dropped = async {
            let mut admin = PgConnection::connect(&self.admin_url).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await?;
            admin.close().await
        };
        if let Err(e) = dropped.await {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
