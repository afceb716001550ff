//! Delivering webhooks: each enabled endpoint follows the global feed from its own
//! checkpoint and sends every event it subscribed to, in feed order, as a Standard
//! Webhooks message (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,…`).
//!
//! At least once, in order, one endpoint never holding up another: every endpoint has
//! its own task; a message is retried (same `webhook-id`) on timeouts, connection errors,
//! 5xx, 408 and 429 (`Retry-After` honoured) along [`RetrySchedule`] for up to 24 hours,
//! and the endpoint waits for it meanwhile; any other answer ends the message (a 2xx
//! delivers it, another 4xx fails it). An endpoint with no success for three days is
//! disabled (an event in its trail). The checkpoint moves after each message, so a crash
//! sends at most the message in flight again. Two servers never deliver one endpoint at
//! once: a lease in `webhook_checkpoints` decides which.

pub(crate) mod log;

pub use log::{list_statement as deliveries_statement, Attempt};

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use syncledger_crm::outbound::{resolver, Guard};
use syncledger_domain::integration::{EncryptedSecret, IntegrationEvent};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::sync_run::{SyncRun, SyncRunEvent};
use syncledger_domain::webhook::{
    EventType, RetrySchedule, WebhookEndpoint, WebhookEndpointCommand,
};
use syncledger_domain::{Aggregate, Integration};
use syncledger_projections::webhook_endpoints;
use syncledger_store::{history, Metadata, Position, StoredEvent};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::app::Engine;
use crate::error::EngineError;

/// How the delivery worker behaves; the defaults are production's.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    pub schedule: RetrySchedule,
    /// Which hosts endpoints may be on (the operator may allow private networks for
    /// an app's own endpoints).
    pub policy: OutboundPolicy,
    /// How long a receiver has to answer.
    pub timeout: StdDuration,
    /// This process, as lease holder.
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            schedule: RetrySchedule::default(),
            policy: OutboundPolicy::default(),
            timeout: StdDuration::from_secs(10),
            holder: format!("webhooks:{}", std::process::id()),
            lease: Duration::seconds(30),
        }
    }
}

/// Events read per feed read.
const BATCH: i64 = 1000;
/// How often an idle endpoint looks at the feed when nothing wakes it.
const IDLE: StdDuration = StdDuration::from_secs(1);

/// A message as sent: its id (stable across retries and replays), type and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    pub event_type: EventType,
    pub position: Position,
    pub body: Value,
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    Delivered(u16),
    /// Worth trying again: a timeout, a connection error, 5xx, 408 or 429.
    Retry {
        code: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Not worth trying again: another 4xx, or a URL the policy refuses.
    Refused {
        code: Option<u16>,
        error: String,
    },
}

/// A new signing secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks
/// writes them.
pub fn new_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill(&mut bytes);
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` under each secret, space
/// separated (both secrets sign during a rotation's overlap). A secret that is not
/// `whsec_` + base64 signs nothing.
pub fn signature(secrets: &[SecretString], id: &str, timestamp: i64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    secrets
        .iter()
        .filter_map(|s| {
            let key = b64.decode(s.expose_secret().strip_prefix("whsec_")?).ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The event types of the catalogue a committed event is, among those `wants` keeps.
pub fn types_of(event: &StoredEvent, wants: impl Fn(EventType) -> bool) -> Vec<EventType> {
    let types: Vec<EventType> = match event.aggregate_type.as_str() {
        Record::TYPE => decode::<RecordEvent>(event)
            .map(|e| EventType::of_record(&e))
            .unwrap_or_default(),
        SyncRun::TYPE => decode::<SyncRunEvent>(event)
            .map(|e| EventType::of_run(&e))
            .unwrap_or_default(),
        Integration::TYPE => decode::<IntegrationEvent>(event)
            .map(|e| EventType::of_integration(&e))
            .unwrap_or_default(),
        _ => vec![],
    };
    types.into_iter().filter(|t| wants(*t)).collect()
}

/// The messages one committed event makes for an endpoint of its workspace subscribed to
/// `wants`; reads the aggregate's history to carry its state.
pub async fn messages_of(
    engine: &Engine,
    event: &StoredEvent,
    wants: impl Fn(EventType) -> bool,
) -> Result<Vec<Message>, EngineError> {
    let types = types_of(event, wants);
    if types.is_empty() {
        return Ok(vec![]);
    }
    let history = engine
        .store
        .feed()
        .events_of(&event.aggregate_type, &event.aggregate_id)
        .await?;
    messages_from(event, &types, &history)
}

/// The messages of `event` as `types`, its aggregate's state folded from `history` (its
/// events, in sequence order; later ones are left out).
pub fn messages_from(
    event: &StoredEvent,
    types: &[EventType],
    history: &[StoredEvent],
) -> Result<Vec<Message>, EngineError> {
    let data = data_of(event, history)?;
    let at = event
        .metadata
        .get("time")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(types
        .iter()
        .map(|t| Message {
            id: format!("msg_{}_{}", event.position.pos, t.as_str().replace('.', "_")),
            event_type: *t,
            position: event.position,
            body: json!({
                "type": t.as_str(),
                "timestamp": if at.is_empty() { event.recorded_at.to_rfc3339() } else { at.clone() },
                "workspace_id": event.workspace_id(),
                "data": data,
            }),
        })
        .collect())
}

fn decode<T: serde::de::DeserializeOwned>(e: &StoredEvent) -> Option<T> {
    T::deserialize(&e.payload).ok()
}

/// The `data` of a message: the aggregate as the event left it.
fn data_of(event: &StoredEvent, history: &[StoredEvent]) -> Result<Value, EngineError> {
    // A record's creation carries the values it was created with: the app's create
    // command appends them as the next event, in the same request.
    let created = matches!(
        decode::<RecordEvent>(event),
        Some(RecordEvent::RecordCreated { .. })
    );
    let request =
        |e: &StoredEvent| e.metadata.get("correlation_id") == event.metadata.get("correlation_id");
    let upto: Vec<StoredEvent> = history
        .iter()
        .take_while(|e| {
            e.sequence <= event.sequence
                || (created
                    && e.sequence == event.sequence + 1
                    && request(e)
                    && matches!(
                        decode::<RecordEvent>(e),
                        Some(RecordEvent::FieldsChanged { .. })
                    ))
        })
        .cloned()
        .collect();
    let corrupt = |_| EngineError::Corrupt("an event of a webhook's aggregate");
    Ok(match event.aggregate_type.as_str() {
        Record::TYPE => {
            let record: Record = history::fold(&upto).map_err(corrupt)?;
            let this = decode::<RecordEvent>(event);
            let (integration_id, field) = match &this {
                Some(RecordEvent::ConflictRaised {
                    integration_id,
                    conflict,
                    ..
                }) => (Some(integration_id.clone()), Some(conflict.field.clone())),
                Some(RecordEvent::RemoteMerged {
                    integration_id,
                    conflicts,
                    ..
                }) => (
                    Some(integration_id.clone()),
                    conflicts.first().map(|c| c.field.clone()),
                ),
                Some(
                    RecordEvent::ConflictResolved {
                        integration_id,
                        field,
                        ..
                    }
                    | RecordEvent::ConflictIgnored {
                        integration_id,
                        field,
                        ..
                    },
                ) => (Some(integration_id.clone()), Some(field.clone())),
                Some(RecordEvent::RecordImported { integration_id, .. }) => {
                    (Some(integration_id.clone()), None)
                }
                _ => (None, None),
            };
            let mut data = json!({
                "record_id": event.aggregate_id,
                "entity": record.entity.map(|e| e.as_str()),
                "fields": record.values(),
                "changed": if created {
                    record.fields.keys().cloned().collect()
                } else {
                    this.as_ref().map(EventType::changed_fields).unwrap_or_default()
                },
                "archived": record.archived,
            });
            if let Some(id) = integration_id {
                data["integration_id"] = json!(id);
            }
            if let Some(field) = field {
                data["field"] = json!(field);
            }
            data
        }
        SyncRun::TYPE => {
            let run: SyncRun = history::fold(&upto).map_err(corrupt)?;
            json!({
                "run_id": event.aggregate_id,
                "integration_id": run.integration_id,
                "kind": run.kind,
                "status": run.status.as_str(),
                "reason": run.reason,
                "stats": run.stats,
            })
        }
        _ => {
            let integration: Integration = history::fold(&upto).map_err(corrupt)?;
            json!({
                "integration_id": event.aggregate_id,
                "name": integration.name,
                "provider": integration.provider,
                "status": integration.status.as_str(),
                "last_error": integration.last_error,
            })
        }
    })
}

/// Sends one message once: no retry here.
pub async fn send(
    client: &reqwest::Client,
    policy: OutboundPolicy,
    url: &str,
    secrets: &[SecretString],
    message: &Message,
    now: DateTime<Utc>,
) -> Sent {
    if let Err(e) = Guard::custom(policy).check("url", url) {
        return Sent::Refused {
            code: None,
            error: e.to_string(),
        };
    }
    let body = serde_json::to_vec(&message.body).unwrap_or_default();
    let timestamp = now.timestamp();
    let signed = signature(secrets, &message.id, timestamp, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signed)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .map(Duration::seconds);
            match code {
                200..=299 => Sent::Delivered(code),
                408 | 429 | 500..=599 => Sent::Retry {
                    code: Some(code),
                    error: format!("the endpoint answered {code}"),
                    retry_after,
                },
                _ => Sent::Refused {
                    code: Some(code),
                    error: format!("the endpoint answered {code}"),
                },
            }
        }
        Err(e) => match syncledger_crm::outbound::refusal_of(&e) {
            Some(refused) => Sent::Refused {
                code: None,
                error: refused.to_string(),
            },
            None => Sent::Retry {
                code: None,
                error: if e.is_timeout() {
                    "the endpoint did not answer in time".into()
                } else {
                    "the endpoint could not be reached".into()
                },
                retry_after: None,
            },
        },
    }
}

/// The client every delivery uses: the checked resolver, no redirects (a redirect could
/// lead where the policy refuses), the receiver's time limit.
pub fn client(options: &DeliveryOptions) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .dns_resolver(resolver(options.policy))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .user_agent(concat!("syncledger-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EngineError::Internal(format!("webhook client: {e}")))
}

/// The endpoint's signing secrets in the clear, for a message sent at `now`.
async fn secrets_of(
    engine: &Engine,
    endpoint: &WebhookEndpoint,
    now: DateTime<Utc>,
) -> Result<Vec<SecretString>, EngineError> {
    let mut out = Vec::new();
    for sealed in endpoint.signing_secrets(now) {
        out.push(open_secret(engine, &endpoint.workspace_id, sealed).await?);
    }
    Ok(out)
}

pub(crate) async fn open_secret(
    engine: &Engine,
    workspace_id: &str,
    sealed: &EncryptedSecret,
) -> Result<SecretString, EngineError> {
    let plain = engine
        .vault
        .open(
            workspace_id,
            &syncledger_vault::Sealed {
                key_id: sealed.key_id.clone(),
                nonce: sealed.nonce.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
        )
        .await?;
    let text = std::str::from_utf8(plain.expose_secret())
        .map_err(|_| EngineError::Corrupt("a webhook signing secret"))?;
    Ok(SecretString::from(text.to_owned()))
}

/// Runs the delivery worker until `shutdown`: one task per enabled endpoint, started and
/// stopped as endpoints come and go. `wake` tells it that events were committed.
pub fn spawn(
    engine: Engine,
    options: DeliveryOptions,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = match client(&options) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook delivery could not start");
                return;
            }
        };
        let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
        let mut stop = shutdown.clone();
        loop {
            tasks.retain(|_, t| !t.is_finished());
            match webhook_endpoints::Query(&engine.store.any).enabled().await {
                Ok(endpoints) => {
                    for e in endpoints {
                        let Some(id) = e.id.clone() else { continue };
                        if tasks.contains_key(&id) {
                            continue;
                        }
                        let worker = EndpointWorker {
                            engine: engine.clone(),
                            options: options.clone(),
                            client: client.clone(),
                            id: id.clone(),
                        };
                        let (wake, shutdown) = (wake.clone(), shutdown.clone());
                        tasks.insert(id, tokio::spawn(worker.run(wake, shutdown)));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook endpoints could not be listed"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
            }
        }
        for (_, t) in tasks {
            let _ = t.await;
        }
    })
}

struct EndpointWorker {
    engine: Engine,
    options: DeliveryOptions,
    client: reqwest::Client,
    id: String,
}

/// What one pass over a batch carries from message to message.
struct Round<'a> {
    endpoint: &'a WebhookEndpoint,
    secrets: &'a [SecretString],
    generation: i64,
    /// The last event whose messages are all settled, not yet in the checkpoint.
    handled: Option<Position>,
    /// The next message is the first since the checkpoint.
    first: bool,
    /// The endpoint's last attempt failed (its failing streak is open).
    failing: bool,
    /// Delivered attempts not yet written: written together, before the checkpoint
    /// moves past them or a failure is written after them.
    delivered: Vec<Attempt>,
}

/// Why a worker stopped delivering a message.
enum Halt {
    Shutdown,
    /// The endpoint was turned off, deleted, or is served by another process now.
    Gone,
}

impl EndpointWorker {
    async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let pool = self.engine.store.any.clone();
        let mut backoff = StdDuration::from_millis(200);
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Listening before the round reads the feed: a commit that lands between the
            // read and the wait still wakes the worker.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.round(&mut shutdown).await {
                Ok(Some(Halt::Gone)) => break,
                Ok(Some(Halt::Shutdown)) => break,
                Ok(None) => {
                    backoff = StdDuration::from_millis(200);
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(endpoint = %self.id, error = %e, "webhook delivery failed; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(StdDuration::from_secs(10));
                }
            }
        }
        let _ = log::release(&pool, &self.id, &self.options.holder).await;
    }

    async fn renew(&self) -> Result<bool, EngineError> {
        // The checkpoint row exists from the endpoint's creation on (`log::start_at`).
        let now = Utc::now();
        Ok(log::lease(
            &self.engine.store.any,
            &self.id,
            &self.options.holder,
            now,
            now + self.options.lease,
        )
        .await?)
    }

    /// One pass over what the feed holds after the checkpoint: `None` when caught up.
    async fn round(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Halt>, EngineError> {
        let pool = &self.engine.store.any;
        if !self.renew().await? {
            return Ok(Some(Halt::Gone));
        }
        let endpoint: WebhookEndpoint = self.engine.store.cqrs().load(&self.id).await?;
        if !endpoint.enabled || endpoint.deleted {
            return Ok(Some(Halt::Gone));
        }
        let Some(cp) = log::checkpoint(pool, &self.id).await? else {
            return Ok(Some(Halt::Gone));
        };
        let events = self.engine.store.feed().read(cp.position, BATCH).await?;
        if events.is_empty() {
            return Ok(None);
        }
        // Opened once a batch: a rotation shows from the next one (the previous secret
        // signs for a day anyway).
        let secrets = secrets_of(&self.engine, &endpoint, Utc::now()).await?;
        let mut round = Round {
            endpoint: &endpoint,
            secrets: &secrets,
            generation: cp.generation,
            handled: None,
            first: true,
            failing: cp.failing_since.is_some(),
            delivered: Vec::new(),
        };
        // What each event is for this endpoint, then the histories of the aggregates
        // whose messages carry their state: one read per aggregate type and batch.
        let typed: Vec<Vec<EventType>> = events
            .iter()
            .map(|e| {
                if e.workspace_id() == endpoint.workspace_id {
                    types_of(e, |t| endpoint.wants(t))
                } else {
                    vec![]
                }
            })
            .collect();
        let mut histories: HashMap<(&str, &str), Vec<StoredEvent>> = HashMap::new();
        for kind in [Record::TYPE, SyncRun::TYPE, Integration::TYPE] {
            let mut ids: Vec<&str> = events
                .iter()
                .zip(&typed)
                .filter(|(e, t)| !t.is_empty() && e.aggregate_type == kind)
                .map(|(e, _)| e.aggregate_id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                continue;
            }
            for e in self.engine.store.feed().events_of_many(kind, &ids).await? {
                if let Ok(i) = ids.binary_search(&e.aggregate_id.as_str()) {
                    histories.entry((kind, ids[i])).or_default().push(e);
                }
            }
        }
        for (event, types) in events.iter().zip(&typed) {
            if !types.is_empty() {
                let history = histories
                    .get(&(event.aggregate_type.as_str(), event.aggregate_id.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let messages = messages_from(event, types, history)?;
                for message in messages {
                    if let Some(halt) = self.deliver(&mut round, &message, shutdown).await? {
                        self.flush(&mut round).await?;
                        if let Some(done) = round.handled {
                            log::advance(pool, &self.id, cp.generation, done).await?;
                        }
                        return Ok(Some(halt));
                    }
                    round.first = false;
                }
            }
            round.handled = Some(event.position);
        }
        // The checkpoint moves once a batch (and before a message starts being retried):
        // a crash sends at most the batch's messages again, under the same ids.
        self.flush(&mut round).await?;
        if let Some(done) = round.handled {
            if !log::advance(pool, &self.id, cp.generation, done).await? {
                // A replay moved the checkpoint: start again from there.
                return Ok(None);
            }
        }
        // More may follow at once.
        Box::pin(self.round(shutdown)).await
    }

    /// Delivers one message, retrying it along the schedule; `Some` when it stopped
    /// before the message was settled.
    async fn deliver(
        &self,
        round: &mut Round<'_>,
        message: &Message,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Halt>, EngineError> {
        let pool = &self.engine.store.any;
        let endpoint = round.endpoint;
        // Only the first message of a batch can have been left retrying (the checkpoint
        // moves up to a message before its retries start): it continues its schedule.
        let mut first_at = None;
        let mut attempts = 0u32;
        if round.first {
            let earlier = log::attempts_of(pool, &self.id, &message.id).await?;
            let pending: Vec<&Attempt> = earlier
                .iter()
                .rev()
                .take_while(|a| a.status == "retrying")
                .collect();
            first_at = pending.last().map(|a| a.attempted_at);
            attempts = u32::try_from(pending.len()).unwrap_or(u32::MAX);
            if let Some(due) = pending.first().and_then(|a| a.next_attempt_at) {
                if let Some(halt) = self.wait_until(due, shutdown).await? {
                    return Ok(Some(halt));
                }
            }
        }
        loop {
            attempts = attempts.saturating_add(1);
            let now = Utc::now();
            let sent = send(
                &self.client,
                self.options.policy,
                &endpoint.url,
                round.secrets,
                message,
                now,
            )
            .await;
            let first_at = *first_at.get_or_insert(now);
            let (status, code, error, next) = match &sent {
                Sent::Delivered(code) => ("delivered", Some(*code), None, None),
                Sent::Refused { code, error } => ("failed", *code, Some(error.clone()), None),
                Sent::Retry {
                    code,
                    error,
                    retry_after,
                } => {
                    let jitter = rand::thread_rng().gen_range(0.0..1.0);
                    let next = self.options.schedule.next_attempt(
                        attempts,
                        first_at,
                        now,
                        *retry_after,
                        jitter,
                    );
                    let status = if next.is_some() { "retrying" } else { "failed" };
                    (status, *code, Some(error.clone()), next)
                }
            };
            let this = Attempt {
                message_id: message.id.clone(),
                attempt: 0,
                position: message.position,
                event_type: message.event_type.as_str().to_owned(),
                status: status.to_owned(),
                response_code: code.map(i64::from),
                error: error.clone(),
                attempted_at: now,
                next_attempt_at: next,
            };
            if matches!(sent, Sent::Delivered(_)) {
                round.delivered.push(this);
                if round.failing {
                    log::set_failing(pool, &self.id, None).await?;
                    round.failing = false;
                }
                return Ok(None);
            }
            self.flush(round).await?;
            let attempt = log::record(pool, &self.id, &endpoint.workspace_id, &this).await?;
            tracing::info!(
                endpoint = %self.id,
                message = %message.id,
                attempt,
                status,
                code = code.map(i64::from),
                error = error.as_deref().unwrap_or_default(),
                "webhook delivery attempt failed"
            );
            round.failing = true;
            let since = log::set_failing(pool, &self.id, Some(now)).await?;
            if let Some(since) = since {
                if self.options.schedule.disables(since, now) {
                    self.disable(endpoint, since).await?;
                    return Ok(Some(Halt::Gone));
                }
            }
            match next {
                Some(due) => {
                    // What came before is settled: a restart starts from this message.
                    if let Some(done) = round.handled.take() {
                        log::advance(pool, &self.id, round.generation, done).await?;
                    }
                    round.first = true;
                    if let Some(halt) = self.wait_until(due, shutdown).await? {
                        return Ok(Some(halt));
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// Writes the round's delivered attempts.
    async fn flush(&self, round: &mut Round<'_>) -> Result<(), EngineError> {
        if !round.delivered.is_empty() {
            let workspace = &round.endpoint.workspace_id;
            log::record_all(
                &self.engine.store.any,
                &self.id,
                workspace,
                &round.delivered,
            )
            .await?;
            round.delivered.clear();
        }
        Ok(())
    }

    /// Waits for `due`, renewing the lease meanwhile.
    async fn wait_until(
        &self,
        due: DateTime<Utc>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Halt>, EngineError> {
        let slice = (self.options.lease / 3)
            .to_std()
            .unwrap_or(StdDuration::from_secs(10));
        loop {
            let left = (due - Utc::now()).to_std().unwrap_or_default();
            if left.is_zero() {
                return Ok(None);
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return Ok(Some(Halt::Shutdown)),
                _ = tokio::time::sleep(left.min(slice)) => {}
            }
            if !self.renew().await? {
                return Ok(Some(Halt::Gone));
            }
        }
    }

    async fn disable(
        &self,
        endpoint: &WebhookEndpoint,
        failing_since: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let meta = Metadata::new(
            &self.options.holder,
            &endpoint.workspace_id,
            uuid::Uuid::now_v7().to_string(),
        );
        let cmd = WebhookEndpointCommand::DisableFailing {
            failing_since,
            at: Utc::now(),
        };
        self.engine
            .store
            .cqrs::<WebhookEndpoint>()
            .execute(&self.id, cmd, &meta)
            .await
            .map_err(EngineError::command)?;
        tracing::warn!(endpoint = %self.id, since = %failing_since, "webhook endpoint disabled after failing");
        Ok(())
    }
}
