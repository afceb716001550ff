//! Support for the CLI tests: a private data directory (and PostgreSQL database) per
//! test, the `syncledger` binary run against it, and a small HTTP client.

pub mod api;
mod audit;
pub mod env;
pub mod pg;
pub mod server;

pub use api::Api;
pub use env::{TestEnv, Workspace};
pub use server::Server;

use std::process::Output;
use std::time::Duration;

/// How long [`poll_until`] waits for its condition, and how often it looks.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` until it yields a value (the condition holds); panics naming `what` after
/// [`POLL_TIMEOUT`]. The one way these tests wait for another process (a server, a worker, a CLI run).
pub async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + POLL_TIMEOUT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "{what}: not after {POLL_TIMEOUT:?}; last seen: {last}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// 32 random hex characters, for secrets the tests then look for.
pub fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
