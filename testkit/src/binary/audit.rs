//! `audit verify` as the tests use it, and waiting for the projections to cover the log.

use super::{describe, stdout, TestEnv};
use crate::wait::poll_every;
use std::process::Output;
use std::time::Duration;

/// How long the projections may take to cover every event.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const SETTLE_POLL: Duration = Duration::from_millis(200);
const OK: &str = "audit chain ok: ";

impl TestEnv {
    /// `audit verify` with extra arguments.
    pub async fn verify(&self, args: &[&str]) -> Output {
        let mut all = vec!["audit", "verify"];
        all.extend(args);
        self.run(&all).await
    }

    /// `audit verify` must pass; its stdout.
    pub async fn assert_verifies(&self) -> String {
        let out = self.verify(&[]).await;
        assert!(out.status.success(), "{}", describe(&out));
        let text = stdout(&out);
        assert!(text.starts_with(OK), "{text}");
        text
    }

    /// Run `audit verify` (which first catches the projections up) until it has covered
    /// every event written before this call (a server still running may add more
    /// meanwhile: they count too); its stdout. On PostgreSQL the feed waits for every transaction in
    /// flight on the server, in any database, so a busy server may hold it back a while.
    pub async fn settle(&self) -> String {
        let total = self.event_count().await;
        let what = format!("audit verify covers all {total} events");
        poll_every(SETTLE_POLL, SETTLE_TIMEOUT, &what, || async {
            let ok = self.assert_verifies().await;
            let checked = ok[OK.len()..].split(' ').next();
            if checked
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|n| n >= total)
            {
                Ok(ok)
            } else {
                Err(ok)
            }
        })
        .await
    }

    /// The instant the newest event counts from.
    pub async fn latest_recorded_at(&self) -> chrono::DateTime<chrono::Utc> {
        let store = self.store().await;
        let t = store
            .feed()
            .latest_recorded_at()
            .await
            .expect("read the newest event's instant")
            .expect("events were written");
        store.close().await;
        t
    }

    pub async fn event_count(&self) -> i64 {
        let store = self.store().await;
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&store.any)
            .await
            .expect("count events");
        store.close().await;
        n
    }
}
