//! The committed-event bus. Lives here: carrying committed events to subscribers.
//! Must not: decide anything about them (that is the engine's and the projections').
//!
//! Events reach the bus only after they are committed: every producer here reads the
//! global-order [`Feed`](syncledger_store::Feed), never the command path, so a subscriber
//! never sees an event that a rollback later removed.
//!
//! - [`LocalBus`] + [`run_local_follower`]: the embedded default, an in-process
//!   `tokio::sync::broadcast` fed by a follower that tails the feed from its head.
//! - [`NatsBus`] + [`run_nats_publisher`]: scale-out, committed events carried by NATS
//!   JetStream. The publisher keeps its own checkpoint (`nats_publisher` in
//!   `projection_checkpoints`), advances it only over acknowledged messages, and sets
//!   `Nats-Msg-Id` to `<store id>:<global position>` so a re-publish after a crash is
//!   deduplicated while another database's events on the same stream never are.
//!
//! - [`JobQueue`]: sync-run jobs over a JetStream work queue, shared by worker processes.
//!
//! Every event crosses the bus as a [`BusEvent`], whose payload is redacted.

mod checkpoint;
mod event;
mod jobs;
mod local;
mod nats;
mod shutdown;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use event::{parse_stream_id, subject_token, BusEvent};
pub use jobs::{Job, JobQueue, JobQueueConfig, DEFAULT_ACK_WAIT};
pub use local::{
    forward_commits, run_local_follower, run_local_follower_from, LocalBus, LOCAL_BUS_CAPACITY,
};
pub use nats::{
    message_id, run_nats_publisher, run_nats_publisher_woken, NatsBus, NatsConfig,
    NATS_PUBLISHER_CHECKPOINT,
};

/// Events read from the feed per batch, by the follower and the publisher.
pub const BATCH_SIZE: i64 = 500;

/// How long a caught-up follower or publisher waits before polling the feed again.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The NATS server could not be reached. The URL is shown with any password removed.
    #[error("could not connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// A NATS or JetStream request failed.
    #[error("NATS {op} failed: {source}")]
    Nats {
        op: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// The server rejected or did not acknowledge a published event.
    #[error("publishing event at position {position} failed: {source}")]
    Publish {
        position: i64,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    #[error("invalid bus configuration: {0}")]
    Config(String),
    #[error("event encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl BusError {
    pub(crate) fn nats(op: &'static str, source: impl Into<async_nats::Error>) -> Self {
        BusError::Nats {
            op,
            source: source.into(),
        }
    }
}
