//! A JetStream work queue of sync-run jobs, shared by any number of worker processes.
//!
//! One stream per database (`<events stream>_JOBS`, WorkQueue retention: a message is
//! gone once acknowledged) on one subject (`<events prefix>_jobs`: outside `<prefix>.>`,
//! which the events stream owns). A job is a run id, published with `Nats-Msg-Id` = run
//! id, so a second dispatch of the same run within the duplicate window is dropped.
//!
//! Every worker pulls from one durable consumer with explicit acks. A worker holding a
//! job sends in-progress acks while the run executes, so a long run is not handed out
//! again; a dead worker's job is redelivered once the ack wait passes. Each process caps
//! its own concurrency by pulling only as many jobs as it has free slots (the consumer's
//! `max_ack_pending` is consumer-wide, so it cannot be one process's limit).

use crate::nats::is_not_found;
use crate::{BusError, NatsBus};
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, ErrorCode, Message};
use futures::stream::BoxStream;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// The durable consumer every worker pulls from.
const CONSUMER: &str = "workers";

/// How long a dispatched run id is remembered to drop a duplicate dispatch.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Jobs handed out at once across all workers; each process pulls within its own limit.
const MAX_ACK_PENDING: i64 = 10_000;

/// Default time a job may go without an ack or an in-progress ack before it is
/// delivered again.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);

/// The job queue's names and timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQueueConfig {
    pub stream: String,
    pub subject: String,
    pub ack_wait: Duration,
}

impl JobQueueConfig {
    /// The job queue that goes with an events stream: `<stream>_JOBS` on
    /// `<prefix>_jobs`.
    pub fn for_events(nats: &crate::NatsConfig) -> Self {
        JobQueueConfig {
            stream: format!("{}_JOBS", nats.stream),
            subject: format!("{}_jobs", nats.subject_prefix),
            ack_wait: DEFAULT_ACK_WAIT,
        }
    }
}

/// The work queue of run ids. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct JobQueue {
    js: async_nats::jetstream::Context,
    config: JobQueueConfig,
    consumer: Arc<PullConsumer>,
}

impl JobQueue {
    /// Creates (or finds) the stream and the shared consumer. An existing consumer keeps
    /// its ack wait, and `config()` reports that one.
    pub async fn open(nats: &NatsBus, mut config: JobQueueConfig) -> Result<JobQueue, BusError> {
        let js = nats.jetstream().clone();
        let stream = ensure_stream(&js, &config).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    description: Some("syncledger workers".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BusError::nats("job consumer create", e))?;
        let ack_wait = consumer.cached_info().config.ack_wait;
        if !ack_wait.is_zero() {
            config.ack_wait = ack_wait;
        }
        Ok(JobQueue {
            js,
            config,
            consumer: Arc::new(consumer),
        })
    }

    pub fn config(&self) -> &JobQueueConfig {
        &self.config
    }

    /// Queues a run under a message id (normally the run id); false when the server
    /// dropped it as a duplicate of a recent job with that id.
    pub async fn publish(&self, run_id: &str, message_id: &str) -> Result<bool, BusError> {
        let publish = Publish::build()
            .payload(run_id.to_string().into())
            .message_id(message_id);
        let ack = self
            .js
            .send_publish(self.config.subject.clone(), publish)
            .await
            .map_err(|e| BusError::nats("job publish", e))?
            .await
            .map_err(|e| BusError::nats("job publish", e))?;
        Ok(!ack.duplicate)
    }

    /// Asks for up to `max` jobs, waiting at most `wait` for them; the stream yields each
    /// job as it arrives and ends when `max` arrived or `wait` passed.
    pub async fn pull(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<BoxStream<'static, Result<Job, BusError>>, BusError> {
        let batch = self
            .consumer
            .batch()
            .max_messages(max.max(1))
            .expires(wait)
            .messages()
            .await
            .map_err(|e| BusError::nats("job pull", e))?;
        Ok(batch
            .map(|m| {
                m.map(Job::from).map_err(|source| BusError::Nats {
                    op: "job pull",
                    source,
                })
            })
            .boxed())
    }

    /// Deletes the stream with every job in it; false if there was none.
    pub async fn delete(&self) -> Result<bool, BusError> {
        match self.js.delete_stream(&self.config.stream).await {
            Ok(status) => Ok(status.success),
            Err(e) if is_not_found(e.kind()) => Ok(false),
            Err(e) => Err(BusError::nats("job stream delete", e)),
        }
    }
}

async fn ensure_stream(
    js: &async_nats::jetstream::Context,
    config: &JobQueueConfig,
) -> Result<stream::Stream, BusError> {
    let cfg = stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.subject.clone()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        description: Some("syncledger sync-run jobs".into()),
        ..Default::default()
    };
    match js.get_stream(&config.stream).await {
        Ok(s) => Ok(s),
        Err(e) if !is_not_found(e.kind()) => Err(BusError::nats("job stream lookup", e)),
        Err(_) => match js.create_stream(cfg).await {
            Ok(s) => {
                tracing::info!(stream = %config.stream, "job stream created");
                Ok(s)
            }
            // Another process created it between our two requests.
            Err(e)
                if matches!(e.kind(), CreateStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
            {
                js.get_stream(&config.stream)
                    .await
                    .map_err(|e| BusError::nats("job stream lookup", e))
            }
            Err(e) => Err(BusError::nats("job stream create", e)),
        },
    }
}

/// One delivery of a run id. Settle it with exactly one of `ack`, `retry` or `reject`
/// (or leave it, and it is delivered again after the ack wait).
pub struct Job {
    message: Message,
    pub run_id: String,
    /// 1 on the first delivery.
    pub delivered: i64,
}

impl From<Message> for Job {
    fn from(message: Message) -> Self {
        let run_id = String::from_utf8_lossy(&message.payload).into_owned();
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        Job {
            message,
            run_id,
            delivered,
        }
    }
}

impl Job {
    /// Done: the job leaves the queue.
    pub async fn ack(&self) -> Result<(), BusError> {
        self.send(AckKind::Ack, "job ack").await
    }

    /// Still working: the ack wait starts again.
    pub async fn progress(&self) -> Result<(), BusError> {
        self.send(AckKind::Progress, "job progress").await
    }

    /// Hand it to a worker again, after `delay` (now with `None`).
    pub async fn retry(&self, delay: Option<Duration>) -> Result<(), BusError> {
        self.send(AckKind::Nak(delay), "job nak").await
    }

    /// Never deliver it again (it is not a job of ours).
    pub async fn reject(&self) -> Result<(), BusError> {
        self.send(AckKind::Term, "job term").await
    }

    async fn send(&self, kind: AckKind, op: &'static str) -> Result<(), BusError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|source| BusError::Nats { op, source })
    }
}
