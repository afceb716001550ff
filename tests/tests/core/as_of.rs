//! The instant each event counts from (its recording, or the earlier time it states), and
//! one aggregate's events as of an instant
//! (`syncledger_store::history`), on SQLite and PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use syncledger_domain::record::{Record, RecordCommand};
use syncledger_domain::{Aggregate, Entity};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::history::{counts_from, fold};
use syncledger_store::{EventPool, Metadata, Store, StoredEvent};
use syncledger_testkit::{with_postgres, with_sqlite};

const EDITS: usize = 30;

fn far_future() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn versions(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.sequence).collect()
}

/// A record written by a create and `EDITS` edits in quick succession (several often fall
/// in the same millisecond): each command's instant is distinct, and the events as of each
/// instant are exactly those up to that command's.
async fn quick_writes_are_told_apart(store: Store) -> anyhow::Result<()> {
    let records = store.cqrs::<Record>();
    let id = uuid::Uuid::now_v7().to_string();
    let meta = Metadata::new("test", "ws-as-of", "corr");
    let before = Utc::now();
    let create = RecordCommand::Create {
        record_id: id.clone(),
        workspace_id: "ws-as-of".into(),
        entity: Entity::Contacts,
        fields: BTreeMap::from([("email".into(), Some("a@example.com".into()))]),
        actor: "test".into(),
        at: Utc::now(),
    };
    records.execute(&id, create, &meta).await?;
    for n in 0..EDITS {
        let edit = RecordCommand::Edit {
            fields: BTreeMap::from([("n".into(), Some(n.to_string()))]),
            actor: "test".into(),
            at: Utc::now(),
        };
        records.execute(&id, edit, &meta).await?;
    }
    let all = store.feed().events_of(Record::TYPE, &id).await?;
    assert_eq!(all.len(), EDITS + 2, "created, first values, one per edit");
    assert!(all[0].recorded_at >= before);
    // The create's two events share their command's instant; every command has its own.
    assert_eq!(all[0].recorded_at, all[1].recorded_at);
    for pair in all[1..].windows(2) {
        assert!(
            pair[0].recorded_at < pair[1].recorded_at,
            "instants are distinct and ordered: {} then {}",
            pair[0].recorded_at,
            pair[1].recorded_at
        );
    }
    let micro = Duration::microseconds(1);
    for e in &all {
        // The events of e's command: 1 and 2 for the create, e alone for an edit.
        let (first, last) = if e.sequence <= 2 {
            (1, 2)
        } else {
            (e.sequence, e.sequence)
        };
        let upto = store.events_as_of(Record::TYPE, &id, e.recorded_at).await?;
        assert_eq!(versions(&upto), (1..=last).collect::<Vec<_>>());
        let state: Record = fold(&upto)?;
        assert_eq!(state.version, last as u64);
        // An event counts from the time it states when that is earlier than its
        // recording (the time the record shows for its values).
        assert!(counts_from(e) <= e.recorded_at);
        let upto = store
            .events_as_of(Record::TYPE, &id, counts_from(e))
            .await?;
        assert_eq!(versions(&upto), (1..=last).collect::<Vec<_>>());
        let just_before = store
            .events_as_of(Record::TYPE, &id, counts_from(e) - micro)
            .await?;
        assert_eq!(versions(&just_before), (1..first).collect::<Vec<_>>());
    }
    assert!(store
        .events_as_of(Record::TYPE, &id, before - micro)
        .await?
        .is_empty());
    let now = store.events_as_of(Record::TYPE, &id, far_future()).await?;
    let current: Record = fold(&now)?;
    assert_eq!(
        serde_json::to_value(&current)?,
        serde_json::to_value(records.load(&id).await?)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_quick_writes_are_told_apart() -> anyhow::Result<()> {
    with_sqlite(quick_writes_are_told_apart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_quick_writes_are_told_apart() -> anyhow::Result<()> {
    with_postgres(quick_writes_are_told_apart).await
}

/// Bulk appends (sync runs) carry metadata made when the run began: the store stamps the
/// time of writing, and the instant follows it.
async fn bulk_appends_are_stamped_when_written(store: Store) -> anyhow::Result<()> {
    let mut meta = Metadata::new("run", "ws", "run-1");
    meta.time -= Duration::days(1);
    let event = |sequence| NewEvent {
        aggregate_type: "as_of_test".into(),
        aggregate_id: "a".into(),
        sequence,
        event_type: "Ticked".into(),
        event_version: "1".into(),
        payload: "{}".into(),
        metadata: meta.clone(),
    };
    let before = Utc::now();
    append(&store.events, &[event(1), event(2)]).await?;
    let stored = store.feed().events_of("as_of_test", "a").await?;
    assert_eq!(stored.len(), 2);
    for e in &stored {
        let time = Metadata::from_json(&e.metadata).time;
        assert!(time >= before, "stamped {time}, written after {before}");
        assert_eq!(
            e.metadata["actor"], "run",
            "the rest of the metadata is kept"
        );
        assert!(e.recorded_at >= before);
    }
    assert_eq!(
        versions(&store.events_as_of("as_of_test", "a", before).await?),
        Vec::<i64>::new()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bulk_appends_are_stamped_when_written() -> anyhow::Result<()> {
    with_sqlite(bulk_appends_are_stamped_when_written).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bulk_appends_are_stamped_when_written() -> anyhow::Result<()> {
    with_postgres(bulk_appends_are_stamped_when_written).await
}

const LITE_INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                           VALUES ('raw', $1, 1, 'Ticked', '1', '{}', $2)";

/// SQLite: the instant is the metadata's `time`, never earlier than the previous event's,
/// and always in the fixed microsecond width (the server clock when there is no time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_instants_come_from_metadata_and_follow_commit_order() -> anyhow::Result<()> {
    with_sqlite(|store| async move {
        let EventPool::Sqlite(pool) = &store.events else {
            anyhow::bail!("expected a SQLite store");
        };
        let insert = |id: &'static str, metadata: &'static str| {
            sqlx::query(LITE_INSERT)
                .bind(id)
                .bind(metadata)
                .execute(pool)
        };
        let recorded = |id: &'static str| {
            sqlx::query_scalar::<_, String>(
                "SELECT recorded_at FROM events WHERE aggregate_type = 'raw' AND aggregate_id = $1",
            )
            .bind(id)
            .fetch_one(pool)
        };
        insert("no-time", "{}").await?;
        let server = recorded("no-time").await?;
        assert_eq!(server.len(), 27, "{server}");
        assert!(server.ends_with("000Z"), "{server}");
        insert("odd-time", r#"{"time": "2030-01-01T00:00:00+00:00"}"#).await?;
        assert_eq!(recorded("odd-time").await?.len(), 27);
        insert("later", r#"{"time": "2090-01-02T03:04:05.678901Z"}"#).await?;
        assert_eq!(recorded("later").await?, "2090-01-02T03:04:05.678901Z");
        // Committed after "later" with an earlier time: it counts from "later"'s instant.
        insert("earlier", r#"{"time": "2080-01-01T00:00:00.000001Z"}"#).await?;
        assert_eq!(recorded("earlier").await?, "2090-01-02T03:04:05.678901Z");
        Ok(())
    })
    .await
}

/// PostgreSQL keeps the server's `recorded_at`. If an aggregate's events were recorded out
/// of order, the state as of an instant stops at the first event recorded later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prefix_stops_at_the_first_event_recorded_later() -> anyhow::Result<()> {
    with_postgres(|store| async move {
        let EventPool::Postgres(pool) = &store.events else {
            anyhow::bail!("expected a PostgreSQL store");
        };
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        for (sequence, at) in [
            (1, "2024-01-01T00:00:01Z"),
            (2, "2024-01-01T00:00:03Z"),
            (3, "2024-01-01T00:00:02Z"),
        ] {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                     payload, metadata, recorded_at)
                 VALUES ('raw', 'a', $1, 'Ticked', '1', '{}', '{}', $2)",
            )
            .bind(sequence)
            .bind(t(at))
            .execute(pool)
            .await?;
        }
        let at = |s: &'static str| store.events_as_of("raw", "a", t(s));
        assert_eq!(versions(&at("2024-01-01T00:00:00Z").await?), Vec::<i64>::new());
        assert_eq!(versions(&at("2024-01-01T00:00:02.5Z").await?), [1]);
        assert_eq!(versions(&at("2024-01-01T00:00:03Z").await?), [1, 2, 3]);
        Ok(())
    })
    .await
}
