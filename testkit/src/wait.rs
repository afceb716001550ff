//! Waiting without `sleep`-and-hope: poll a condition until it holds or a deadline passes.
//! [`poll_every`] is the one polling loop of the tests; [`poll_until`] polls every 20 ms,
//! [`wait_until`] is its form for a yes/no condition.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `probe` every ~20 ms until it yields a value (the condition holds); panics naming
/// `what` and the last thing `probe` saw if it still does not after `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    poll_every(POLL_EVERY, timeout, what, probe).await
}

/// [`poll_until`], looking every `every` (probes that start a process or ask another
/// process's database look less often).
pub async fn poll_every<T, F, Fut>(
    every: Duration,
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting until {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `condition` until it returns true; panics naming `what` if it still does not
/// after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(timeout, what, || {
        let holds = condition();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        }
    })
    .await;
}

/// How long committed events may stay invisible to feed readers in a test.
pub const FEED_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until every committed event is visible through the feed.
///
/// On PostgreSQL the feed only returns events below `pg_snapshot_xmin`, which is
/// cluster-wide: a transaction still open anywhere on the server (another test's
/// database included) holds back events committed after it began. Tests that assert on
/// "everything so far" call this first.
pub async fn feed_settled(store: &syncledger_store::Store) {
    wait_until(
        FEED_SETTLE_TIMEOUT,
        "every committed event is visible in the feed",
        || async { matches!(visible_and_committed(store).await, Ok((v, c)) if v == c) },
    )
    .await;
}

async fn visible_and_committed(store: &syncledger_store::Store) -> Result<(i64, i64), sqlx::Error> {
    let feed = store.feed();
    let committed = feed.count().await?;
    let mut after = syncledger_store::Position::START;
    let mut visible = 0;
    loop {
        let batch = feed.read(after, 1000).await?;
        let Some(last) = batch.last() else {
            return Ok((visible, committed));
        };
        after = last.position;
        visible += batch.len() as i64;
    }
}
