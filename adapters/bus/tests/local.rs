//! The in-process bus: the follower publishes committed events in order, exactly once.

mod common;

use common::append_events;
use std::time::Duration;
use syncledger_bus::{run_local_follower, run_local_follower_from, BusEvent, LocalBus};
use syncledger_testkit::db::sqlite_store;
use tokio::sync::broadcast;
use tokio::sync::watch;

const RECV_TIMEOUT: Duration = Duration::from_secs(10);

async fn recv(rx: &mut broadcast::Receiver<BusEvent>) -> BusEvent {
    tokio::time::timeout(RECV_TIMEOUT, rx.recv())
        .await
        .expect("timed out waiting for a bus event")
        .expect("bus receive")
}

async fn stop(tx: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    tx.send(true).expect("send shutdown");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("follower did not stop promptly")
        .expect("follower task");
}

#[tokio::test]
async fn follower_delivers_appended_events_in_order_exactly_once() {
    let (store, _dir) = sqlite_store().await;
    let feed = store.feed();
    let bus = LocalBus::new();
    let mut rx = bus.subscribe();

    // History before the follower starts is not delivered.
    append_events(&store, "ws-old", "contact", 10).await;
    let start = feed.head().await.expect("head");

    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_local_follower_from(
        feed.clone(),
        bus.clone(),
        start,
        stop_rx,
    ));

    // More than one feed batch, in several commits, across workspaces.
    for (i, ws) in ["ws-a", "ws-b", "ws-a", "ws-c", "ws-b", "ws-a"]
        .iter()
        .enumerate()
    {
        append_events(
            &store,
            ws,
            if i % 2 == 0 { "contact" } else { "integration" },
            120,
        )
        .await;
        bus.notify();
    }
    let expected = feed.read(start, 10_000).await.expect("read feed");
    assert_eq!(expected.len(), 720);

    for want in &expected {
        let got = recv(&mut rx).await;
        assert_eq!(got, BusEvent::from_stored(want));
        assert!(
            !got.payload.to_string().contains("s3cret"),
            "payload not redacted"
        );
    }

    // Nothing else arrives before a newer event: no duplicates, no stragglers.
    append_events(&store, "ws-z", "sentinel", 1).await;
    bus.notify();
    let sentinel = recv(&mut rx).await;
    assert_eq!(sentinel.aggregate_type, "sentinel");
    assert_eq!(
        sentinel.position,
        expected.last().expect("events").position.pos + 1
    );

    stop(stop_tx, task).await;
}

#[tokio::test]
async fn follower_starts_at_the_head_and_then_misses_nothing() {
    let (store, _dir) = sqlite_store().await;
    let feed = store.feed();
    let bus = LocalBus::new();
    let mut rx = bus.subscribe();
    append_events(&store, "ws-old", "contact", 25).await;
    let old_head = feed.head().await.expect("head");

    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_local_follower(feed.clone(), bus.clone(), stop_rx));

    // Probe until the follower is live: events committed before it read the head are
    // (correctly) not delivered, so keep appending until one comes through.
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let first = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "follower never went live"
        );
        append_events(&store, "ws-a", "probe", 1).await;
        bus.notify();
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(ev) => break ev.expect("bus receive"),
            Err(_) => continue,
        }
    };
    assert!(
        first.position > old_head.pos,
        "history was delivered: {first:?}"
    );
    assert_eq!(first.aggregate_type, "probe");

    // Every probe after the first one delivered, then everything else, in order.
    append_events(&store, "ws-b", "contact", 300).await;
    bus.notify();
    let expected = feed
        .read(first.feed_position(), 10_000)
        .await
        .expect("read feed");
    for want in &expected {
        assert_eq!(recv(&mut rx).await.position, want.position.pos);
    }
    append_events(&store, "ws-z", "sentinel", 1).await;
    bus.notify();
    assert_eq!(recv(&mut rx).await.aggregate_type, "sentinel");

    stop(stop_tx, task).await;
}

#[tokio::test]
async fn follower_exits_promptly_when_idle_and_when_the_sender_is_dropped() {
    let (store, _dir) = sqlite_store().await;
    let bus = LocalBus::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_local_follower(store.feed(), bus.clone(), stop_rx));
    stop(stop_tx, task).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_local_follower(store.feed(), bus, stop_rx));
    drop(stop_tx);
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("follower did not stop when the shutdown sender was dropped")
        .expect("follower task");
}

#[tokio::test]
async fn workspace_subscription_only_yields_that_workspace() {
    use futures::StreamExt;

    let (store, _dir) = sqlite_store().await;
    let feed = store.feed();
    let bus = LocalBus::new();
    let mut only_a = bus.subscribe_workspace("ws-a");
    let start = feed.head().await.expect("head");
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_local_follower_from(
        feed.clone(),
        bus.clone(),
        start,
        stop_rx,
    ));

    for ws in ["ws-a", "ws-b", "ws-a", "ws-c"] {
        append_events(&store, ws, "contact", 5).await;
    }
    append_events(&store, "ws-a", "sentinel", 1).await;
    bus.notify();

    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(RECV_TIMEOUT, only_a.next())
            .await
            .expect("timed out")
            .expect("stream ended");
        assert_eq!(ev.workspace_id, "ws-a");
        let done = ev.aggregate_type == "sentinel";
        got.push(ev);
        if done {
            break;
        }
    }
    assert_eq!(got.len(), 11);
    assert!(got.windows(2).all(|w| w[0].position < w[1].position));

    stop(stop_tx, task).await;
}
