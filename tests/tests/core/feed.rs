//! The global-order feed under concurrent writers, and the late-commit case on PostgreSQL.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{EventPool, Metadata, Position, Store, StoredEvent};
use syncledger_testkit::wait::FEED_SETTLE_TIMEOUT;
use syncledger_testkit::{wait_until, with_postgres, with_sqlite};
use tokio::time::Instant;

const WRITERS: usize = 8;
const AGGREGATES_PER_WRITER: usize = 20;
const EVENTS_PER_AGGREGATE: i64 = 100;
const TOTAL: usize = WRITERS * AGGREGATES_PER_WRITER * EVENTS_PER_AGGREGATE as usize;
const READ_LIMIT: i64 = 500;
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(120);
const AGGREGATE_TYPE: &str = "feed_test";

fn new_event(aggregate_id: &str, sequence: i64) -> NewEvent {
    NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: aggregate_id.into(),
        sequence,
        event_type: "Ticked".into(),
        event_version: "1".into(),
        payload: json!({ "aggregate": aggregate_id, "n": sequence }).to_string(),
        metadata: Metadata::new("feed-test", "ws-feed", "corr"),
    }
}

/// One writer: 20 aggregates of 100 events, appended in transactions of 1 to 10 events
/// that interleave the aggregates at random (seeded, so a failure can be replayed).
async fn write(store: Store, writer: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(writer as u64);
    let mut next: Vec<(String, i64)> = (0..AGGREGATES_PER_WRITER)
        .map(|a| (format!("w{writer}-a{a}"), 1))
        .collect();
    while !next.is_empty() {
        let size = rng.gen_range(1..=10);
        let mut batch = Vec::with_capacity(size);
        for _ in 0..size {
            if next.is_empty() {
                break;
            }
            let i = rng.gen_range(0..next.len());
            batch.push(new_event(&next[i].0, next[i].1));
            next[i].1 += 1;
            if next[i].1 > EVENTS_PER_AGGREGATE {
                next.swap_remove(i);
            }
        }
        append(&store.events, &batch).await?;
    }
    Ok(())
}

/// What a follower of the feed saw, checked as it arrives.
#[derive(Default)]
struct Seen {
    order: Vec<Position>,
    keys: HashSet<(String, i64)>,
    positions: HashSet<i64>,
    last_sequence: HashMap<String, i64>,
}

impl Seen {
    fn take(&mut self, e: &StoredEvent) {
        let after = self.order.last().copied().unwrap_or(Position::START);
        assert!(
            e.position > after,
            "feed went backwards: {:?} after {after:?}",
            e.position
        );
        assert!(
            self.keys.insert((e.aggregate_id.clone(), e.sequence)),
            "{} #{} delivered twice",
            e.aggregate_id,
            e.sequence
        );
        assert!(
            self.positions.insert(e.position.pos),
            "global position {} seen twice",
            e.position.pos
        );
        let last = self
            .last_sequence
            .entry(e.aggregate_id.clone())
            .or_insert(0);
        assert_eq!(
            e.sequence,
            *last + 1,
            "{} out of order: #{} after #{last}",
            e.aggregate_id,
            e.sequence
        );
        *last = e.sequence;
        self.order.push(e.position);
    }
}

/// Follow the feed from the start until `TOTAL` events were seen.
async fn follow(store: Store) -> anyhow::Result<Seen> {
    let feed = store.feed();
    let deadline = Instant::now() + FOLLOW_TIMEOUT;
    let mut seen = Seen::default();
    while seen.order.len() < TOTAL {
        anyhow::ensure!(
            Instant::now() < deadline,
            "saw only {} of {TOTAL} events",
            seen.order.len()
        );
        let after = seen.order.last().copied().unwrap_or(Position::START);
        let batch = feed.read(after, READ_LIMIT).await?;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        batch.iter().for_each(|e| seen.take(e));
    }
    Ok(seen)
}

async fn concurrent_writers_and_a_follower(store: Store) -> anyhow::Result<()> {
    let reader = tokio::spawn(follow(store.clone()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(store.clone(), w)))
        .collect();
    for w in writers {
        w.await??;
    }
    let seen = reader.await??;
    assert_eq!(seen.keys.len(), TOTAL);
    assert_eq!(seen.positions.len(), TOTAL);
    assert_eq!(seen.last_sequence.len(), WRITERS * AGGREGATES_PER_WRITER);
    assert!(seen
        .last_sequence
        .values()
        .all(|&s| s == EVENTS_PER_AGGREGATE));
    assert_eq!(store.feed().count().await?, TOTAL as i64);
    // Nothing is left after the last event, and a reader starting now sees the same order.
    let last = seen.order.last().copied().unwrap_or(Position::START);
    assert!(store.feed().read(last, READ_LIMIT).await?.is_empty());
    assert_eq!(store.feed().head().await?, last);
    assert_eq!(replay_order(&store).await?, seen.order);
    Ok(())
}

async fn replay_order(store: &Store) -> anyhow::Result<Vec<Position>> {
    let mut order: Vec<Position> = Vec::with_capacity(TOTAL);
    loop {
        let after = order.last().copied().unwrap_or(Position::START);
        let batch = store.feed().read(after, 5000).await?;
        if batch.is_empty() {
            return Ok(order);
        }
        order.extend(batch.iter().map(|e| e.position));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_feed_delivers_concurrent_appends_once_in_order() -> anyhow::Result<()> {
    with_sqlite(concurrent_writers_and_a_follower).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_feed_delivers_concurrent_appends_once_in_order() -> anyhow::Result<()> {
    with_postgres(concurrent_writers_and_a_follower).await
}

const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                      VALUES ($1, $2, 1, 'Ticked', '1', '{}'::json, '{}'::json)
                      RETURNING global_position";

fn pg_pool(store: &Store) -> anyhow::Result<&sqlx::PgPool> {
    match &store.events {
        EventPool::Postgres(pool) => Ok(pool),
        EventPool::Sqlite(_) => anyhow::bail!("expected a PostgreSQL store"),
    }
}

/// Read everything the feed offers now, after `after`.
async fn read_all(store: &Store, after: Position) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(store.feed().read(after, 100).await?)
}

/// Wait until the feed offers `n` events after `after` (transactions still open elsewhere
/// on the server may hold committed events back for a while), then return them.
async fn read_when(store: &Store, after: Position, n: usize) -> anyhow::Result<Vec<StoredEvent>> {
    let what = format!("the feed offers {n} event(s) after {after:?}");
    wait_until(FEED_SETTLE_TIMEOUT, &what, || async {
        matches!(read_all(store, after).await, Ok(e) if e.len() >= n)
    })
    .await;
    read_all(store, after).await
}

fn ids(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.aggregate_id.as_str()).collect()
}

/// A transaction takes a lower global position, another commits past it first: the
/// reader must hold back the later one until the first commits, then deliver both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_feed_waits_for_a_late_commit_with_a_lower_position() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        append(&store.events, &[new_event("before", 1)]).await?;
        let head = read_when(&store, Position::START, 1).await?[0].position;

        let pool = pg_pool(&store)?;
        let mut slow = pool.begin().await?;
        let slow_pos: i64 = sqlx::query_scalar(INSERT)
            .bind(AGGREGATE_TYPE)
            .bind("slow")
            .fetch_one(&mut *slow)
            .await?;
        append(&store.events, &[new_event("fast", 1)]).await?;
        let committed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(pool)
            .await?;
        assert_eq!(
            committed, 2,
            "the fast event is committed and visible to plain queries"
        );
        assert!(
            read_all(&store, head).await?.is_empty(),
            "the fast event must wait for the slow one"
        );
        assert_eq!(store.feed().head().await?, head);

        slow.commit().await?;
        let events = read_when(&store, head, 2).await?;
        assert_eq!(ids(&events), ["slow", "fast"]);
        assert_eq!(events[0].position.pos, slow_pos);
        assert!(events[0].position.pos < events[1].position.pos);
        assert!(events[0].position.tx < events[1].position.tx);
        assert_eq!(store.feed().head().await?, events[1].position);
        Ok(())
    })
    .await
}

/// The slow transaction takes its transaction id first but inserts after the fast one
/// committed, so its event has the higher global position. The feed orders by
/// (transaction id, position): the slow event comes first, and nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_feed_orders_by_transaction_id_then_position() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        let pool = pg_pool(&store)?;
        let mut slow = pool.begin().await?;
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *slow)
            .await?;
        append(&store.events, &[new_event("fast", 1)]).await?;
        assert!(read_all(&store, Position::START).await?.is_empty());
        sqlx::query(INSERT)
            .bind(AGGREGATE_TYPE)
            .bind("slow")
            .execute(&mut *slow)
            .await?;
        assert!(read_all(&store, Position::START).await?.is_empty());
        slow.commit().await?;

        let events = read_when(&store, Position::START, 2).await?;
        assert_eq!(ids(&events), ["slow", "fast"]);
        assert!(
            events[0].position.pos > events[1].position.pos,
            "slow inserted last"
        );
        assert!(events[0].position.tx < events[1].position.tx);
        Ok(())
    })
    .await
}
