//! Committed events over NATS JetStream.

use crate::checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
use crate::event::subject_token;
use crate::shutdown::{is_stopped, sleep_or_stop, Backoff};
use crate::{BusError, BusEvent, BATCH_SIZE, POLL_INTERVAL};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamErrorKind, PublishAckFuture, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::ErrorCode;
use futures::stream::BoxStream;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use syncledger_store::config::redact_url;
use syncledger_store::{Feed, Position, Store};
use tokio::sync::{watch, Notify};

/// The publisher's row in `projection_checkpoints`.
pub const NATS_PUBLISHER_CHECKPOINT: &str = "nats_publisher";

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
const DEFAULT_STREAM: &str = "SYNCLEDGER_EVENTS";
const DEFAULT_SUBJECT_PREFIX: &str = "syncledger.events";

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-published duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How many messages at the tail of the stream the publisher inspects on (re)start to find
/// events it published but did not checkpoint.
const RECONCILE_SCAN_LIMIT: usize = 10 * BATCH_SIZE as usize;

/// Headroom left under the server's `max_payload` for headers and protocol overhead.
const PAYLOAD_HEADROOM: usize = 1024;

/// Where and under which names committed events are published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    pub url: String,
    /// JetStream stream name (default `SYNCLEDGER_EVENTS`).
    pub stream: String,
    /// Subjects are `<prefix>.<workspace>.<aggregate_type>` (default `syncledger.events`).
    pub subject_prefix: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_URL.into(),
            stream: DEFAULT_STREAM.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
        }
    }
}

impl NatsConfig {
    /// The default stream and prefix on the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), BusError> {
        let bad_char = |c: char| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        };
        if self.stream.is_empty() || self.stream.chars().any(bad_char) {
            return Err(BusError::Config(format!(
                "invalid stream name {:?}",
                self.stream
            )));
        }
        let token_ok = |t: &str| !t.is_empty() && !t.chars().any(|c| c != '.' && bad_char(c));
        if !self.subject_prefix.split('.').all(token_ok) {
            return Err(BusError::Config(format!(
                "invalid subject prefix {:?}",
                self.subject_prefix
            )));
        }
        Ok(())
    }

    /// `<prefix>.<workspace>.<aggregate_type>`, each token sanitized.
    pub fn subject_for(&self, ev: &BusEvent) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            subject_token(&ev.workspace_id),
            subject_token(&ev.aggregate_type)
        )
    }

    /// `<prefix>.<workspace>.>`: every event of one workspace.
    pub fn workspace_filter(&self, workspace_id: &str) -> String {
        format!("{}.{}.>", self.subject_prefix, subject_token(workspace_id))
    }

    /// `<prefix>.>`: the stream's subjects.
    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// A connection to NATS with JetStream. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct NatsBus {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    config: NatsConfig,
}

impl NatsBus {
    /// Connect with the default stream and subject prefix.
    pub async fn connect(url: &str) -> Result<NatsBus, BusError> {
        Self::connect_with(NatsConfig::new(url)).await
    }

    pub async fn connect_with(config: NatsConfig) -> Result<NatsBus, BusError> {
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("syncledger")
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|source| BusError::Connect {
                url: redact_url(&config.url),
                source,
            })?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(NatsBus { client, js, config })
    }

    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// Whether the client's connection to the server is up now (it reconnects by itself
    /// after a drop; until then publishing waits).
    pub fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// See [`NatsConfig::subject_for`].
    pub fn subject_for(&self, ev: &BusEvent) -> String {
        self.config.subject_for(ev)
    }

    /// Create the stream, or bring an existing one up to date: file storage, the configured
    /// subjects, a 10-minute duplicate window.
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        let subjects = self.config.all_subjects();
        match self.js.get_stream(&self.config.stream).await {
            Ok(existing) => {
                let mut cfg = existing.cached_info().config.clone();
                let mut changed = false;
                if !cfg.subjects.contains(&subjects) {
                    cfg.subjects.push(subjects);
                    changed = true;
                }
                let window = if cfg.max_age.is_zero() {
                    DUPLICATE_WINDOW
                } else {
                    DUPLICATE_WINDOW.min(cfg.max_age)
                };
                if cfg.duplicate_window != window {
                    cfg.duplicate_window = window;
                    changed = true;
                }
                if cfg.storage != StorageType::File {
                    tracing::warn!(stream = %cfg.name, "event stream uses memory storage; it cannot be changed in place");
                }
                if changed {
                    self.js
                        .update_stream(&cfg)
                        .await
                        .map_err(|e| BusError::nats("stream update", e))?;
                    tracing::info!(stream = %cfg.name, "event stream updated");
                }
                Ok(())
            }
            Err(e) if is_not_found(e.kind()) => {
                let cfg = stream::Config {
                    name: self.config.stream.clone(),
                    subjects: vec![subjects],
                    storage: StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    description: Some("syncledger committed events".into()),
                    ..Default::default()
                };
                match self.js.create_stream(cfg).await {
                    Ok(_) => {
                        tracing::info!(stream = %self.config.stream, "event stream created");
                        Ok(())
                    }
                    // Another process created it between our two requests.
                    Err(e)
                        if matches!(e.kind(), CreateStreamErrorKind::JetStream(j)
                            if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(BusError::nats("stream create", e)),
                }
            }
            Err(e) => Err(BusError::nats("stream lookup", e)),
        }
    }

    /// Delete the stream and every message in it; false if there was none.
    pub async fn delete_stream(&self) -> Result<bool, BusError> {
        match self.js.delete_stream(&self.config.stream).await {
            Ok(status) => Ok(status.success),
            Err(e) if is_not_found(e.kind()) => Ok(false),
            Err(e) => Err(BusError::nats("stream delete", e)),
        }
    }

    /// Publish one event of the store `store_id` and wait for the server's acknowledgement.
    /// Publishing the same position of the same store twice within the duplicate window
    /// stores it once (`ack.duplicate`).
    pub async fn publish_event(
        &self,
        store_id: &str,
        ev: &BusEvent,
    ) -> Result<PublishAck, BusError> {
        let position = ev.position;
        self.send_event(store_id, ev)
            .await?
            .await
            .map_err(|source| BusError::Publish { position, source })
    }

    /// Send one event; the returned future resolves to the server's acknowledgement.
    async fn send_event(
        &self,
        store_id: &str,
        ev: &BusEvent,
    ) -> Result<PublishAckFuture, BusError> {
        let payload = self.encode(ev)?;
        let publish = PublishMessage::build()
            .payload(payload)
            .message_id(message_id(store_id, ev.position));
        self.js
            .send_publish(self.subject_for(ev), publish)
            .await
            .map_err(|source| BusError::Publish {
                position: ev.position,
                source,
            })
    }

    /// JSON of the event; an event too large for the server is sent without its payload
    /// rather than blocking the stream forever.
    fn encode(&self, ev: &BusEvent) -> Result<bytes::Bytes, BusError> {
        let bytes = serde_json::to_vec(ev)?;
        let max = self.client.server_info().max_payload;
        if max == 0 || bytes.len() + PAYLOAD_HEADROOM <= max {
            return Ok(bytes.into());
        }
        tracing::warn!(
            position = ev.position,
            size = bytes.len(),
            max_payload = max,
            "event too large for NATS; publishing it without its payload"
        );
        let mut slim = ev.clone();
        slim.payload = serde_json::json!({ "truncated": true, "size": bytes.len() });
        Ok(serde_json::to_vec(&slim)?.into())
    }

    /// Events of the store `store_id` after `after` already stored at the tail of the
    /// stream: events a previous run published but did not checkpoint, by position. Scans
    /// back from the last message, at most [`RECONCILE_SCAN_LIMIT`] messages; messages of
    /// other stores (told by their message id) are passed over, and the scan stops at this
    /// store's first message at or before `after`, or at the first of its messages it cannot
    /// decode.
    async fn published_after(
        &self,
        store_id: &str,
        after: Position,
    ) -> Result<HashMap<i64, EventKey>, BusError> {
        let mut found = HashMap::new();
        let stream = match self.js.get_stream(&self.config.stream).await {
            Ok(s) => s,
            Err(e) if is_not_found(e.kind()) => return Ok(found),
            Err(e) => return Err(BusError::nats("stream lookup", e)),
        };
        let state = stream.cached_info().state.clone();
        if state.messages == 0 {
            return Ok(found);
        }
        let mut seq = state.last_sequence;
        let mut scanned = 0;
        while seq >= state.first_sequence.max(1) && scanned < RECONCILE_SCAN_LIMIT {
            match stream.get_raw_message(seq).await {
                Ok(msg) if !is_from_store(&msg.headers, store_id) => {}
                Ok(msg) => {
                    let Ok(ev) = serde_json::from_slice::<BusEvent>(&msg.payload) else {
                        break;
                    };
                    if ev.feed_position() <= after {
                        break;
                    }
                    found.insert(ev.position, EventKey::of(&ev));
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(BusError::nats("message get", e)),
            }
            seq -= 1;
            scanned += 1;
        }
        Ok(found)
    }

    /// The events of one workspace published from now on, decoded. Backed by an ephemeral
    /// ordered consumer filtered on `<prefix>.<workspace>.>`; the stream ends if the consumer
    /// cannot be recreated after a server or connection failure (an SSE client reconnects).
    pub async fn subscribe_workspace(
        &self,
        workspace_id: &str,
    ) -> Result<BoxStream<'static, BusEvent>, BusError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| BusError::nats("stream lookup", e))?;
        // "From now on" is "after the stream's current last message". Starting by sequence
        // rather than with DeliverPolicy::New leaves no gap between reading the last sequence
        // and creating the consumer, and lets us drop older messages if the client ever
        // recreates the consumer from the start of the stream.
        let last = stream.cached_info().state.last_sequence;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.config.workspace_filter(workspace_id),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::nats("consumer create", e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| BusError::nats("consumer messages", e))?;
        let ws = workspace_id.to_string();
        let events = futures::stream::unfold(
            (messages, ws, 0u32),
            move |(mut messages, ws, mut errors)| async move {
                loop {
                    match messages.next().await {
                        None => return None,
                        Some(Ok(msg)) => {
                            errors = 0;
                            if msg
                                .info()
                                .map(|i| i.stream_sequence <= last)
                                .unwrap_or(false)
                            {
                                continue;
                            }
                            match serde_json::from_slice::<BusEvent>(&msg.payload) {
                                Ok(ev) if ev.workspace_id == ws => {
                                    return Some((ev, (messages, ws, errors)))
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(subject = %msg.subject, error = %e, "undecodable bus message skipped")
                                }
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(workspace_id = %ws, error = %e, "bus subscription error");
                            errors += 1;
                            let fatal = matches!(e.kind(), pull::OrderedErrorKind::Recreate);
                            if fatal || errors >= 10 {
                                return None;
                            }
                        }
                    }
                }
            },
        );
        Ok(events.boxed())
    }
}

/// What identifies an event independently of its position.
#[derive(Debug, PartialEq, Eq)]
struct EventKey {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
}

impl EventKey {
    fn of(ev: &BusEvent) -> Self {
        EventKey {
            aggregate_type: ev.aggregate_type.clone(),
            aggregate_id: ev.aggregate_id.clone(),
            sequence: ev.sequence,
        }
    }
}

/// The `Nats-Msg-Id` of an event: unique per store, so two databases publishing to one
/// stream never collide in the server's duplicate window.
pub fn message_id(store_id: &str, position: i64) -> String {
    format!("{store_id}:{position}")
}

/// Whether a message was published by the store `store_id` (its message id says so).
fn is_from_store(headers: &async_nats::HeaderMap, store_id: &str) -> bool {
    headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .and_then(|id| id.as_str().split_once(':'))
        .is_some_and(|(store, _)| store == store_id)
}

pub(crate) fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Publish every committed event to JetStream, exactly once, until `shutdown` turns true
/// (or its sender is dropped).
///
/// The publisher keeps its own checkpoint ([`NATS_PUBLISHER_CHECKPOINT`]). Per batch of the
/// feed it sends every event (`Nats-Msg-Id` = `<store id>:<global position>`, see
/// [`message_id`]), awaits every
/// acknowledgement, and then checkpoints the last event of the acknowledged prefix: the
/// checkpoint never passes an unacknowledged event. After a crash between publishing and
/// checkpointing, the restarted publisher finds the already-stored events at the stream's
/// tail (only its own store's messages count) and skips them; JetStream's duplicate window
/// catches any it missed. Errors are
/// logged and retried with backoff; the loop never gives up.
pub async fn run_nats_publisher(store: Store, nats: NatsBus, shutdown: watch::Receiver<bool>) {
    let never = Arc::new(Notify::new());
    run_nats_publisher_woken(store, nats, never, POLL_INTERVAL, shutdown).await
}

/// [`run_nats_publisher`], reading the feed again as soon as `wake` is notified (a
/// process's runs notify it after each commit, see `SyncRuns::committed`) and otherwise
/// every `poll` while idle. The wait is registered before each read, so a commit between
/// the read and the wait still wakes it.
pub async fn run_nats_publisher_woken(
    store: Store,
    nats: NatsBus,
    wake: Arc<Notify>,
    poll: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut publisher = Publisher {
        feed: store.feed(),
        store,
        nats,
        store_id: None,
        checkpoint: None,
        skip: HashMap::new(),
        stream_ready: false,
    };
    let mut backoff = Backoff::new();
    loop {
        if is_stopped(&shutdown) {
            return;
        }
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match publisher.step().await {
            Ok(0) => {
                backoff.reset();
                tokio::select! {
                    _ = woken => {}
                    stop = sleep_or_stop(poll, &mut shutdown) => if stop { return },
                }
            }
            Ok(_) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "NATS publisher: retrying");
                // Start again from the stored checkpoint, reconciling with the stream.
                publisher.checkpoint = None;
                if sleep_or_stop(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

struct Publisher {
    store: Store,
    feed: Feed,
    nats: NatsBus,
    /// The store's id (migration 0013), once loaded.
    store_id: Option<String>,
    /// The stored checkpoint, once loaded.
    checkpoint: Option<Checkpoint>,
    /// Events past the checkpoint already in the stream, by position.
    skip: HashMap<i64, EventKey>,
    stream_ready: bool,
}

impl Publisher {
    /// Publish and checkpoint one batch; returns how many events it covered (0 = caught up).
    async fn step(&mut self) -> Result<usize, BusError> {
        if !self.stream_ready {
            self.nats.ensure_stream().await?;
            self.stream_ready = true;
        }
        let store_id = match &self.store_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.store_id().await?;
                self.store_id = Some(id.clone());
                id
            }
        };
        let cp = match self.checkpoint {
            Some(cp) => cp,
            None => {
                let cp = load_checkpoint(&self.store.any, NATS_PUBLISHER_CHECKPOINT)
                    .await?
                    .unwrap_or_default();
                self.skip = self.nats.published_after(&store_id, cp.position).await?;
                if !self.skip.is_empty() {
                    tracing::info!(
                        events = self.skip.len(),
                        "NATS publisher: events past the checkpoint are already in the stream; skipping them"
                    );
                }
                self.checkpoint = Some(cp);
                cp
            }
        };

        let batch = self.feed.read(cp.position, BATCH_SIZE).await?;
        if batch.is_empty() {
            return Ok(0);
        }

        // Send the whole batch, then collect the acknowledgements.
        let mut pending: Vec<Option<PublishAckFuture>> = Vec::with_capacity(batch.len());
        let mut send_error = None;
        for ev in &batch {
            let ev = BusEvent::from_stored(ev);
            // Skip only the very same event: a stream that outlived its database holds other
            // events under the same positions.
            if self.skip.remove(&ev.position) == Some(EventKey::of(&ev)) {
                pending.push(None);
                continue;
            }
            match self.nats.send_event(&store_id, &ev).await {
                Ok(ack) => pending.push(Some(ack)),
                Err(e) => {
                    send_error = Some(e);
                    break;
                }
            }
        }
        let mut acked = 0usize;
        let mut duplicates = 0usize;
        let mut ack_error = None;
        for (ev, ack) in batch.iter().zip(pending) {
            match ack {
                None => acked += 1,
                Some(fut) => match fut.await {
                    Ok(ack) => {
                        duplicates += usize::from(ack.duplicate);
                        acked += 1;
                    }
                    Err(source) => {
                        ack_error = Some(BusError::Publish {
                            position: ev.position.pos,
                            source,
                        });
                        break;
                    }
                },
            }
        }

        // Checkpoint the acknowledged prefix only.
        if acked > 0 {
            let next = Checkpoint {
                position: batch[acked - 1].position,
                events: cp.events + acked as i64,
            };
            save_checkpoint(&self.store.any, NATS_PUBLISHER_CHECKPOINT, next).await?;
            self.checkpoint = Some(next);
            if duplicates > 0 {
                tracing::debug!(
                    duplicates,
                    "NATS publisher: server dropped re-published duplicates"
                );
            }
        }
        match ack_error.or(send_error) {
            Some(e) => {
                if let BusError::Publish { source, .. } = &e {
                    if source.kind() == PublishErrorKind::StreamNotFound {
                        self.stream_ready = false;
                    }
                }
                Err(e)
            }
            None => Ok(acked),
        }
    }
}
