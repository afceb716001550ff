//! The `syncledger` binary as the tests run it (`api/tests/{cli,workers}`): a private
//! data directory (and PostgreSQL database) per test ([`TestEnv`]), CLI commands run
//! against it, `serve` ([`Server`]) and `worker` ([`Worker`]) children with their logs, and
//! a small HTTP client ([`Api`]) with the flows the worker tests share.

mod audit;
mod client;
mod env;
mod server;
mod worker;

pub use crate::random_hex;
pub use crate::sandbox::sandbox_records;
pub use client::{pull_integration_body, Api};
pub use env::{TestEnv, Workspace};
pub use server::{Server, Stopped};
pub use worker::{
    call, connect_hubspot, is_active, records, remote_id, run_view, runs_ended, start_run,
    wait_run, Worker, QUIET, RUN_TIMEOUT,
};

use std::process::Output;
use std::time::Duration;

/// How long [`poll_until`] waits for its condition, and how often it looks.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` until it yields a value (the condition holds); panics naming `what` after
/// [`POLL_TIMEOUT`]. How these tests wait for another process (a server, a worker, a CLI
/// run): [`crate::wait::poll_every`] with that patience.
pub async fn poll_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    crate::wait::poll_every(POLL, POLL_TIMEOUT, what, probe).await
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// `text` with ANSI colour sequences (`ESC [ … letter`) removed.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Panics naming `place` if any secret occurs in `haystack`.
pub fn assert_absent(haystack: &[u8], secrets: &[String], place: &str) {
    for secret in secrets {
        let found = haystack
            .windows(secret.len())
            .any(|w| w == secret.as_bytes());
        assert!(!found, "a secret ({}…) appears in {place}", &secret[..6]);
    }
}
