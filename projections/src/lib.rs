//! Read models built from the global-order feed.
//!
//! A projection turns a batch of events into writes on its own tables. The [`runner`]
//! applies each batch and moves the projection's checkpoint in the same transaction, so
//! every event takes effect exactly once across crashes and restarts. [`rebuild`] replays a
//! projection from position zero into fresh tables and swaps them in; [`replay`] builds one
//! as it was at a past instant into a separate database.
//!
//! Lives here: every read model's tables, the code that writes them, and their typed
//! reads (`Query` in each module: `integration_status`, `records`, `conflicts`,
//! `sync_runs`, `audit::query`). Nothing outside this crate writes SQL against a read
//! model. Must not: decide anything a command decides, or call a provider.

pub mod audit;
pub mod checkpoint;
pub mod conflicts;
pub mod destinations;
mod fold;
pub mod integration_status;
pub mod lag;
pub mod plans;
pub mod rebuild;
pub mod records;
pub mod replay;
pub mod run_reads;
pub mod runner;
pub mod statement;
pub mod statistics;
pub mod sync_runs;
pub mod webhook_endpoints;

use async_trait::async_trait;
use std::collections::HashMap;
use syncledger_store::StoredEvent;

pub use runner::Runner;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event at position {position} could not be read: {message}")]
    BadEvent { position: i64, message: String },
    #[error("unknown projection {0:?}: expected one of {names}", names = names().join(", "))]
    Unknown(String),
    #[error("{missing} event(s) recorded by the requested time are not readable yet (a transaction is still open on the server); try again")]
    Behind { missing: i64 },
    /// A rebuild's checkpoints, which move together, were found apart: another process is
    /// rebuilding the same projection.
    #[error("the rebuild of {0} was moved by another process meanwhile; run one rebuild at a time and start it again")]
    Interrupted(String),
    /// A read-model row that should parse does not (its content is not shown).
    #[error("a stored {0} row could not be read")]
    Corrupt(&'static str),
}

/// Physical names for a projection's logical tables: the live names, or the shadow
/// names a rebuild writes into.
#[derive(Clone, Debug, Default)]
pub struct Tables(HashMap<&'static str, String>);

impl Tables {
    pub fn live(names: &[&'static str]) -> Self {
        Tables(names.iter().map(|n| (*n, n.to_string())).collect())
    }

    pub fn shadow(names: &[&'static str]) -> Self {
        Tables(names.iter().map(|n| (*n, shadow_name(n))).collect())
    }

    pub fn get(&self, logical: &'static str) -> &str {
        self.0.get(logical).map(String::as_str).unwrap_or(logical)
    }
}

pub(crate) fn shadow_name(table: &str) -> String {
    format!("{table}_rebuild")
}

/// One read model.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and the `--projection` argument.
    fn name(&self) -> &'static str;
    /// The tables this projection owns (created by migrations).
    fn tables(&self) -> &'static [&'static str];
    /// Apply a batch of events, in order, inside the caller's transaction.
    async fn apply(
        &self,
        conn: &mut sqlx::AnyConnection,
        tables: &Tables,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError>;
}

/// Every projection syncledger maintains.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(integration_status::IntegrationStatus),
        std::sync::Arc::new(audit::AuditLog),
        std::sync::Arc::new(sync_runs::SyncRuns),
        std::sync::Arc::new(records::Records),
        std::sync::Arc::new(conflicts::Conflicts),
        std::sync::Arc::new(webhook_endpoints::WebhookEndpoints),
        std::sync::Arc::new(destinations::Destinations),
    ]
}

/// The names of [`all`], in order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

pub fn by_name(name: &str) -> Result<std::sync::Arc<dyn Projection>, ProjectionError> {
    all()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectionError::Unknown(name.to_string()))
}

/// A stored event's payload as the aggregate's event type, read straight from the parsed
/// JSON (no copy of it: a batch decodes thousands).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    e: &StoredEvent,
) -> Result<T, ProjectionError> {
    T::deserialize(&e.payload).map_err(|err| ProjectionError::BadEvent {
        position: e.position.pos,
        message: err.to_string(),
    })
}

pub(crate) fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
