//! Named points where a test may make the process die, to prove that a run resumes
//! after a crash at that point without losing or duplicating anything.
//!
//! Inert unless `SYNCLEDGER_CRASH_AT=<point>:<n>` is set: then the n-th time (1-based)
//! the process passes `<point>`, it aborts on the spot, as a `kill -9` would stop it
//! (no destructors, no flushing). Points: `pull:fetched` (a page fetched, nothing
//! written), `pull:committed` (a page written), `push:sent` (a batch reached the CRM,
//! nothing recorded), `push:committed`, `run:finishing`, `integration:reserved` (an
//! integration's creation and its workspace slot decided, nothing written), `sink:applied` (a
//! destination batch written in its target, not yet committed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let spec = std::env::var("SYNCLEDGER_CRASH_AT").ok()?;
        let (point, n) = spec.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    })
}

/// Passes the named point; aborts the process if this is the configured crash.
pub fn reach(point: &str) {
    if let Some((name, n)) = target() {
        if name == point && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("crash point {point} reached: aborting as configured");
            std::process::abort();
        }
    }
}
