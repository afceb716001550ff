//! Waiting without `sleep`-and-hope: poll a condition until it holds or a deadline passes.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

const POLL_EVERY: Duration = Duration::from_millis(20);

/// Poll `condition` every ~20 ms until it returns true; panic naming `what` if it still
/// does not after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
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
