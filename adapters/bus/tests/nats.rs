//! NATS JetStream: exactly-once publishing across restarts, and per-workspace subscriptions.
//! Runs against the real server at `NATS_URL` (default nats://127.0.0.1:4222); skipped when
//! unreachable unless `CI=true`.

mod common;

use common::{append_events, with_nats};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use syncledger_bus::{
    load_checkpoint, message_id, run_nats_publisher, run_nats_publisher_woken, BusEvent, NatsBus,
    NATS_PUBLISHER_CHECKPOINT,
};
use syncledger_store::Store;
use syncledger_testkit::db::{postgres_store, sqlite_store};
use syncledger_testkit::wait_until;
use tokio::sync::{watch, Notify};

const CATCH_UP: Duration = Duration::from_secs(30);

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_publisher(store: &Store, nats: &NatsBus) -> Running {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run_nats_publisher(store.clone(), nats.clone(), rx));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).expect("send shutdown");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("publisher did not stop promptly")
            .expect("publisher task");
    }
}

/// Wait until the publisher's checkpoint covers every stored event and sits at the feed's
/// head. (On PostgreSQL the visible head can lag behind commits while other transactions
/// are open on the server, so the head is re-read on every poll.)
async fn wait_for_checkpoint_at_head(store: &Store) {
    let feed = store.feed();
    let stored = feed.count().await.expect("count events");
    wait_until(
        CATCH_UP,
        "the NATS publisher checkpoint to reach the head",
        || async {
            let head = feed.head().await.expect("head");
            load_checkpoint(&store.any, NATS_PUBLISHER_CHECKPOINT)
                .await
                .expect("read checkpoint")
                .is_some_and(|cp| cp.events == stored && cp.position == head)
        },
    )
    .await;
}

/// Every message in the stream, in stream order: (Nats-Msg-Id, subject, decoded event).
async fn stream_messages(nats: &NatsBus) -> Vec<(String, String, BusEvent)> {
    let mut stream = nats
        .jetstream()
        .get_stream(&nats.config().stream)
        .await
        .expect("get stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let msg = stream.get_raw_message(seq).await.expect("get message");
        if msg.subject.ends_with(".foreign.note") {
            continue;
        }
        let id = msg
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap_or_else(|| panic!("Nats-Msg-Id header missing: {:?}", msg.headers))
            .as_str()
            .to_string();
        let ev: BusEvent = serde_json::from_slice(&msg.payload).expect("decode BusEvent");
        out.push((id, msg.subject.to_string(), ev));
    }
    out
}

#[tokio::test]
async fn publisher_is_exactly_once_across_restart_and_crash() {
    with_nats(|nats| async move {
        let (store, _dir) = sqlite_store().await;
        restart_scenario(nats, store, false).await;
    })
    .await;
}

/// A publisher whose poll is an hour away publishes an idle-time commit at once when it
/// is woken (as a process's runs wake it after each commit), and again for the next.
#[tokio::test]
async fn a_woken_publisher_does_not_wait_for_its_poll() {
    with_nats(|nats| async move {
        let (store, _dir) = sqlite_store().await;
        let wake = Arc::new(Notify::new());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_nats_publisher_woken(
            store.clone(),
            nats.clone(),
            wake.clone(),
            Duration::from_secs(3600),
            rx,
        ));
        for _ in 0..3 {
            append_events(&store, "ws-woken", "integration", 2).await;
            wake.notify_waiters();
            wait_for_checkpoint_at_head(&store).await;
        }
        assert_eq!(stream_messages(&nats).await.len(), 6);
        let _ = stop.send(true);
        task.await.expect("the publisher stops");
    })
    .await;
}

/// Same, with a foreign message (another writer's) after the publisher's own at the
/// stream's tail: the restarted publisher passes over it and still finds its own (or
/// re-publishes them and the server's duplicate window drops them).
#[tokio::test]
async fn republished_events_after_a_crash_are_dropped_by_the_duplicate_window() {
    with_nats(|nats| async move {
        let (store, _dir) = sqlite_store().await;
        restart_scenario(nats, store, true).await;
    })
    .await;
}

/// The same scenario on PostgreSQL, where positions are (transaction id, global position).
#[tokio::test]
async fn publisher_is_exactly_once_on_postgres() {
    let Some((store, db)) = postgres_store().await else {
        return;
    };
    let scenario_store = store.clone();
    let outcome = tokio::spawn(with_nats(move |nats| async move {
        restart_scenario(nats, scenario_store, false).await;
    }))
    .await;
    store.close().await;
    db.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn restart_scenario(nats: NatsBus, store: Store, foreign_tail: bool) {
    for (ws, agg) in [
        ("ws-a", "contact"),
        ("ws-b", "integration"),
        ("ws.c d", "contact"),
    ] {
        append_events(&store, ws, agg, 100).await;
    }

    let publisher = start_publisher(&store, &nats);
    wait_for_checkpoint_at_head(&store).await;
    publisher.stop().await;
    let cp = load_checkpoint(&store.any, NATS_PUBLISHER_CHECKPOINT)
        .await
        .expect("checkpoint")
        .expect("checkpoint row");
    assert_eq!(cp.events, 300);

    append_events(&store, "ws-a", "contact", 120).await;
    append_events(&store, "ws-b", "sync_run", 80).await;

    // A crash after publishing but before checkpointing: the last 100 published events
    // are past the stored checkpoint.
    let published = store
        .feed()
        .read(syncledger_store::Position::START, 300)
        .await
        .expect("read feed");
    let rewound = published[199].position;
    sqlx::query(
        "UPDATE projection_checkpoints SET tx = $1, position = $2, events = events - 100
          WHERE projection = $3",
    )
    .bind(rewound.tx)
    .bind(rewound.pos)
    .bind(NATS_PUBLISHER_CHECKPOINT)
    .execute(&store.any)
    .await
    .expect("rewind checkpoint");
    if foreign_tail {
        let subject = format!("{}.foreign.note", nats.config().subject_prefix);
        nats.jetstream()
            .publish(subject, "not a bus event".into())
            .await
            .expect("publish foreign message")
            .await
            .expect("foreign message ack");
    }

    let publisher = start_publisher(&store, &nats);
    wait_for_checkpoint_at_head(&store).await;
    publisher.stop().await;

    let all = store
        .feed()
        .read(syncledger_store::Position::START, 10_000)
        .await
        .expect("read feed");
    assert_eq!(all.len(), 500);
    let messages = stream_messages(&nats).await;
    assert_eq!(
        messages.len(),
        500,
        "expected exactly one message per event"
    );
    let mut stream = nats
        .jetstream()
        .get_stream(&nats.config().stream)
        .await
        .expect("get stream");
    let stored = stream.info().await.expect("stream info").state.messages;
    assert_eq!(stored, 500 + u64::from(foreign_tail));
    let ids: HashSet<&str> = messages.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 500, "duplicate Nats-Msg-Id in the stream");
    let store_id = store.store_id().await.expect("store id");
    let positions: HashSet<String> = all
        .iter()
        .map(|e| message_id(&store_id, e.position.pos))
        .collect();
    assert_eq!(
        ids,
        positions.iter().map(String::as_str).collect::<HashSet<_>>()
    );

    // In feed order, with the right subject and a redacted payload.
    for ((id, subject, ev), stored) in messages.iter().zip(&all) {
        assert_eq!(*id, message_id(&store_id, stored.position.pos));
        assert_eq!(*ev, BusEvent::from_stored(stored));
        assert_eq!(*subject, nats.subject_for(ev));
        assert!(!ev.payload.to_string().contains("s3cret"));
    }
    let prefix = &nats.config().subject_prefix;
    assert!(messages
        .iter()
        .any(|(_, s, _)| *s == format!("{prefix}.ws_c_d.contact")));
    let cp = load_checkpoint(&store.any, NATS_PUBLISHER_CHECKPOINT)
        .await
        .expect("checkpoint")
        .expect("checkpoint row");
    assert_eq!(cp.events, 500);
}

#[tokio::test]
async fn republishing_a_position_is_deduplicated_by_the_server() {
    with_nats(|nats| async move {
        let (store, _dir) = sqlite_store().await;
        nats.ensure_stream().await.expect("ensure stream");
        nats.ensure_stream()
            .await
            .expect("ensure stream is idempotent");
        append_events(&store, "ws-a", "contact", 3).await;
        let store_id = store.store_id().await.expect("store id");
        let events = store
            .feed()
            .read(syncledger_store::Position::START, 10)
            .await
            .expect("read");
        for ev in &events {
            let ev = BusEvent::from_stored(ev);
            let first = nats.publish_event(&store_id, &ev).await.expect("publish");
            assert!(!first.duplicate);
            let again = nats
                .publish_event(&store_id, &ev)
                .await
                .expect("publish again");
            assert!(
                again.duplicate,
                "second publish of {} not deduplicated",
                ev.position
            );
            assert_eq!(again.sequence, first.sequence);
        }
        assert_eq!(stream_messages(&nats).await.len(), 3);

        // A publisher starting without a checkpoint finds these at the stream's tail.
        append_events(&store, "ws-b", "contact", 4).await;
        let publisher = start_publisher(&store, &nats);
        wait_for_checkpoint_at_head(&store).await;
        publisher.stop().await;
        let ids: Vec<String> = stream_messages(&nats)
            .await
            .into_iter()
            .map(|m| m.0)
            .collect();
        let expected: Vec<String> = (1..=7).map(|p| message_id(&store_id, p)).collect();
        assert_eq!(ids, expected);
    })
    .await;
}

#[tokio::test]
async fn subscribe_workspace_yields_only_that_workspace_from_now_on() {
    with_nats(|nats| async move {
        let (store, _dir) = sqlite_store().await;
        let publisher = start_publisher(&store, &nats);

        // History, published before anyone subscribes: not delivered.
        append_events(&store, "ws-a", "contact", 20).await;
        wait_for_checkpoint_at_head(&store).await;

        let mut only_a = nats
            .subscribe_workspace("ws-a")
            .await
            .expect("subscribe ws-a");
        // "ws_a" and "ws.a" share a subject token; the subscription still keeps them apart.
        let mut only_underscore = nats
            .subscribe_workspace("ws_a")
            .await
            .expect("subscribe ws_a");

        for ws in ["ws-a", "ws-b", "ws.a", "ws_a", "ws-a", "ws-c"] {
            append_events(&store, ws, "contact", 7).await;
        }
        append_events(&store, "ws-a", "sentinel", 1).await;
        append_events(&store, "ws_a", "sentinel", 1).await;

        async fn collect_until_sentinel(
            sub: &mut futures::stream::BoxStream<'static, BusEvent>,
            ws: &str,
        ) -> Vec<BusEvent> {
            let mut got = Vec::new();
            loop {
                let ev = tokio::time::timeout(CATCH_UP, sub.next())
                    .await
                    .unwrap_or_else(|_| panic!("timed out waiting for {ws} events"))
                    .expect("subscription ended");
                assert_eq!(ev.workspace_id, ws, "foreign event delivered: {ev:?}");
                let done = ev.aggregate_type == "sentinel";
                got.push(ev);
                if done {
                    return got;
                }
            }
        }
        let a = collect_until_sentinel(&mut only_a, "ws-a").await;
        assert_eq!(a.len(), 15, "ws-a: 2 x 7 live events + sentinel");
        assert!(a.windows(2).all(|w| w[0].position < w[1].position));
        assert!(a.iter().all(|e| e.position > 20), "history delivered");
        let u = collect_until_sentinel(&mut only_underscore, "ws_a").await;
        assert_eq!(u.len(), 8);

        publisher.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connect_failure_is_reported_without_the_password() {
    let config = syncledger_bus::NatsConfig::new("nats://user:hunter2@127.0.0.1:1");
    let err = NatsBus::connect_with(config)
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
}

#[tokio::test]
async fn invalid_names_are_rejected() {
    for (stream, prefix) in [
        ("A.B", "x.y"),
        ("", "x"),
        ("OK", "x.*"),
        ("OK", "x..y"),
        ("OK", ""),
    ] {
        let config = syncledger_bus::NatsConfig {
            url: common::nats_url(),
            stream: stream.into(),
            subject_prefix: prefix.into(),
        };
        assert!(
            matches!(
                NatsBus::connect_with(config).await,
                Err(syncledger_bus::BusError::Config(_))
            ),
            "{stream:?} / {prefix:?} accepted"
        );
    }
}
