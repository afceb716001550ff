//! Live event streams: how many each token and each workspace may hold open, and when one
//! must end because its token was revoked.
//!
//! Revocation is a row (`api_tokens.revoked_at`), written by whichever server process
//! answered the `DELETE /v1/tokens/{id}`. A stream cannot count on being told, so it asks:
//! every [`REVOCATION_CHECK`] it looks its token up again and ends when the token is gone,
//! revoked, or cannot be checked for a second.

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use sqlx::AnyPool;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// Default cap on live streams per API token.
pub const DEFAULT_PER_TOKEN: usize = 5;
/// Default cap on live streams per workspace.
pub const DEFAULT_PER_WORKSPACE: usize = 25;

/// How often a stream checks that its token is still valid (a revoked token's streams
/// end within this, plus one query).
pub const REVOCATION_CHECK: Duration = Duration::from_millis(250);

/// Consecutive failed checks after which a stream ends rather than run unchecked.
const FAILED_CHECKS: u32 = 4;

/// Which limit a refused stream ran into.
#[derive(Debug, PartialEq, Eq)]
pub enum TooMany {
    Token(usize),
    Workspace(usize),
}

/// Open streams, counted per token and per workspace.
#[derive(Debug)]
pub struct Streams {
    per_token: AtomicUsize,
    per_workspace: AtomicUsize,
    open: Mutex<Counts>,
    /// Turns true when the server shuts down: every stream ends, so that a client left
    /// connected cannot hold the graceful shutdown open.
    closing: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Counts {
    by_token: HashMap<String, usize>,
    by_workspace: HashMap<String, usize>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams::new(DEFAULT_PER_TOKEN, DEFAULT_PER_WORKSPACE)
    }
}

impl Streams {
    pub fn new(per_token: usize, per_workspace: usize) -> Self {
        Streams {
            per_token: AtomicUsize::new(per_token),
            per_workspace: AtomicUsize::new(per_workspace),
            open: Mutex::new(Counts::default()),
            closing: watch::Sender::new(false),
        }
    }

    /// End every stream, open or opened from now on (the server is shutting down).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Streams::close_all`] was called.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }

    /// Change the caps (streams already open stay open).
    pub fn set_limits(&self, per_token: usize, per_workspace: usize) {
        self.per_token.store(per_token, Ordering::Relaxed);
        self.per_workspace.store(per_workspace, Ordering::Relaxed);
    }

    /// Count one more stream for `token_id` in `workspace_id`, unless either is at its cap.
    /// The stream is counted until the returned slot is dropped.
    pub fn open(
        self: &Arc<Self>,
        token_id: &str,
        workspace_id: &str,
    ) -> Result<StreamSlot, TooMany> {
        let (per_token, per_workspace) = (
            self.per_token.load(Ordering::Relaxed),
            self.per_workspace.load(Ordering::Relaxed),
        );
        let mut open = self.lock();
        if open.by_token.get(token_id).copied().unwrap_or(0) >= per_token {
            return Err(TooMany::Token(per_token));
        }
        if open.by_workspace.get(workspace_id).copied().unwrap_or(0) >= per_workspace {
            return Err(TooMany::Workspace(per_workspace));
        }
        *open.by_token.entry(token_id.to_string()).or_default() += 1;
        *open
            .by_workspace
            .entry(workspace_id.to_string())
            .or_default() += 1;
        Ok(StreamSlot {
            streams: self.clone(),
            token_id: token_id.to_string(),
            workspace_id: workspace_id.to_string(),
        })
    }

    /// Streams open for `token_id`.
    pub fn open_for_token(&self, token_id: &str) -> usize {
        self.lock().by_token.get(token_id).copied().unwrap_or(0)
    }

    /// Streams open in all.
    pub fn open_total(&self) -> usize {
        self.lock().by_workspace.values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is one
        // statement, so take them as they are.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self, token_id: &str, workspace_id: &str) {
        let mut open = self.lock();
        release(&mut open.by_token, token_id);
        release(&mut open.by_workspace, workspace_id);
    }
}

fn release(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// One counted stream; dropping it (the stream ended or the client went away) frees it.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<Streams>,
    token_id: String,
    workspace_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams.close(&self.token_id, &self.workspace_id);
    }
}

/// Resolves once `token_id` is no longer a valid token: revoked (by any process on this
/// database), deleted, or not checkable for [`FAILED_CHECKS`] checks in a row.
pub async fn token_revoked(pool: AnyPool, token_id: String) {
    until_invalid(|| syncledger_engine::workspaces::token_is_live(&pool, &token_id)).await
}

/// Resolves once `still_valid` answers false (a revoked token, an ended session), or
/// cannot answer for [`FAILED_CHECKS`] checks in a row; asks every [`REVOCATION_CHECK`].
pub async fn until_invalid<F, Fut>(still_valid: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, syncledger_engine::EngineError>>,
{
    let mut every = tokio::time::interval(REVOCATION_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        every.tick().await;
        match still_valid().await {
            Ok(true) => failures = 0,
            Ok(false) => return,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "event stream: cannot check its credentials");
                if failures >= FAILED_CHECKS {
                    return;
                }
            }
        }
    }
}

/// Why a live stream ended. The client is told in a final SSE comment, so that it can
/// tell a server going away (reconnect, with `Last-Event-ID`) from credentials that are no
/// longer valid (do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    ShuttingDown,
    NoLongerValid,
}

impl Ending {
    /// The comment line sent last (`: …` on the wire).
    pub fn comment(self) -> &'static str {
        match self {
            Ending::ShuttingDown => "server shutting down; reconnect with Last-Event-ID",
            Ending::NoLongerValid => "credentials no longer valid; stream closed",
        }
    }
}

/// `events` until `end` resolves, then one comment event saying why the stream ends. A
/// stream whose events run out on their own ends without the comment.
pub fn until_ended<S, F>(events: S, end: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Stream<Item = Result<Event, Infallible>>,
    F: std::future::Future<Output = Ending> + Send + 'static,
{
    let why = Arc::new(OnceLock::new());
    let noted = why.clone();
    let ended = Box::pin(async move {
        let _ = noted.set(end.await);
    });
    let last = futures::stream::once(async move { why.get().copied() })
        .filter_map(|e| async move { e.map(|e| Ok(Event::default().comment(e.comment()))) });
    events.take_until(ended).chain(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_token_and_per_workspace_and_freed_on_drop() {
        let streams = Arc::new(Streams::new(2, 3));
        let a1 = streams.open("a", "w").expect("first of a");
        let _a2 = streams.open("a", "w").expect("second of a");
        assert_eq!(
            streams.open("a", "w").expect_err("over the token cap"),
            TooMany::Token(2)
        );
        let _b1 = streams.open("b", "w").expect("b in w");
        assert_eq!(
            streams.open("c", "w").expect_err("over the workspace cap"),
            TooMany::Workspace(3)
        );
        let _other = streams.open("c", "v").expect("another workspace");
        drop(a1);
        assert_eq!(streams.open_for_token("a"), 1);
        let _a3 = streams.open("a", "w").expect("a slot was freed");
    }

    proptest::proptest! {
        /// Whatever clients open and close, no token or workspace is ever over its cap,
        /// and every count goes back to zero once all streams are closed.
        #[test]
        fn caps_hold_for_any_sequence_of_opens_and_closes(
            ops in proptest::collection::vec((0usize..4, 0usize..2, proptest::bool::ANY), 0..200)
        ) {
            let streams = Arc::new(Streams::new(2, 3));
            let mut open: Vec<(String, String, StreamSlot)> = Vec::new();
            for (token, workspace, close) in ops {
                if close && !open.is_empty() {
                    open.remove(token % open.len());
                    continue;
                }
                // A token belongs to one workspace.
                let (token, workspace) = (format!("t{token}{workspace}"), format!("w{workspace}"));
                if let Ok(slot) = streams.open(&token, &workspace) {
                    open.push((token, workspace, slot));
                }
                let in_token = |t: &str| open.iter().filter(|o| o.0 == t).count();
                let in_workspace = |w: &str| open.iter().filter(|o| o.1 == w).count();
                for (t, w, _) in &open {
                    proptest::prop_assert!(in_token(t) <= 2 && in_workspace(w) <= 3);
                    proptest::prop_assert_eq!(streams.open_for_token(t), in_token(t));
                }
            }
            open.clear();
            proptest::prop_assert!(streams.lock().by_token.is_empty());
            proptest::prop_assert!(streams.lock().by_workspace.is_empty());
        }
    }

    #[test]
    fn lowering_the_limits_keeps_open_streams_and_refuses_new_ones() {
        let streams = Arc::new(Streams::default());
        let _s = streams.open("a", "w").expect("open");
        streams.set_limits(1, 10);
        assert_eq!(
            streams.open("a", "w").expect_err("over the token cap"),
            TooMany::Token(1)
        );
    }
}
