//! Bridges the pure domain aggregates to cqrs-es, which decides every command with
//! optimistic concurrency over postgres-es or sqlite-es.
//!
//! The domain crate does not depend on cqrs-es (and so not on tokio); [`Es`] and [`Ev`]
//! are thin transparent wrappers that implement the framework's traits here.

use crate::meta::Metadata;
use crate::EventPool;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use sqlite_es::SqliteEventRepository;
use syncledger_domain::{Aggregate, DomainEvent};

#[derive(Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Es<A>(pub A);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ev<E>(pub E);

impl<E: DomainEvent> cqrs_es::DomainEvent for Ev<E> {
    fn event_type(&self) -> String {
        self.0.event_type().to_string()
    }
    fn event_version(&self) -> String {
        self.0.event_version().to_string()
    }
}

impl<A: Aggregate> cqrs_es::Aggregate for Es<A> {
    const TYPE: &'static str = A::TYPE;
    type Command = A::Command;
    type Event = Ev<A::Event>;
    type Error = A::Error;
    type Services = ();

    async fn handle(
        &mut self,
        command: A::Command,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), A::Error> {
        let events = self.0.decide(command)?;
        for event in events {
            sink.write(Ev(event), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Ev<A::Event>) {
        self.0.apply(&event.0);
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    /// Another writer kept winning the race for this aggregate.
    #[error("the resource was changed concurrently; retry")]
    Conflict,
    #[error("event store: {0}")]
    Store(String),
    /// The caller asked for a version the aggregate is no longer (or not yet) at.
    #[error("the resource is at version {current}, not the one the request was based on")]
    Stale { current: i64 },
}

impl<E: std::error::Error> From<AggregateError<E>> for CommandError<E> {
    fn from(e: AggregateError<E>) -> Self {
        match e {
            AggregateError::UserError(e) => CommandError::Domain(e),
            AggregateError::AggregateConflict => CommandError::Conflict,
            other => CommandError::Store(other.to_string()),
        }
    }
}

type PgStore<A> = PersistedEventStore<PostgresEventRepository, Es<A>>;
type LiteStore<A> = PersistedEventStore<SqliteEventRepository, Es<A>>;

/// The cqrs-es framework and event store of one aggregate type, on the store's backend.
enum Backend<A: Aggregate> {
    Pg(CqrsFramework<Es<A>, PgStore<A>>, PgStore<A>),
    Lite(CqrsFramework<Es<A>, LiteStore<A>>, LiteStore<A>),
}

/// A command bus for one aggregate type.
pub struct Cqrs<A: Aggregate> {
    backend: Backend<A>,
}

/// How many times a command is decided again on fresh state after losing a race.
const CONFLICT_RETRIES: usize = 5;

impl<A: Aggregate + 'static> Cqrs<A> {
    pub(crate) fn new(pool: &EventPool) -> Self {
        let backend = match pool {
            EventPool::Postgres(p) => {
                let store = || {
                    PersistedEventStore::new_event_store(PostgresEventRepository::new(p.clone()))
                };
                Backend::Pg(CqrsFramework::new(store(), vec![], ()), store())
            }
            EventPool::Sqlite(p) => {
                let store =
                    || PersistedEventStore::new_event_store(SqliteEventRepository::new(p.clone()));
                Backend::Lite(CqrsFramework::new(store(), vec![], ()), store())
            }
        };
        Cqrs { backend }
    }

    /// Decide and append. A version conflict is retried on fresh state a few times,
    /// so the caller sees `Conflict` only under sustained contention.
    ///
    /// The events' metadata `time` is stamped at each attempt: the instant the events
    /// count from on SQLite (see [`crate::history`]), even when `metadata` was made long
    /// before (a sync run's).
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<(), CommandError<A::Error>> {
        let mut metadata = metadata.clone();
        let mut attempt = 0;
        loop {
            metadata.time = chrono::Utc::now();
            let result = match &self.backend {
                Backend::Pg(f, _) => {
                    f.execute_with_metadata(aggregate_id, command.clone(), metadata.to_map())
                        .await
                }
                Backend::Lite(f, _) => {
                    f.execute_with_metadata(aggregate_id, command.clone(), metadata.to_map())
                        .await
                }
            };
            match result.map_err(CommandError::from) {
                Err(CommandError::Conflict) if attempt < CONFLICT_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// Decide and append only if the aggregate's last event has sequence `expected`:
    /// `Stale` with the current sequence otherwise, also when another writer appends between
    /// the read and the append (the append carries the sequence it read). Never retried:
    /// the caller decided on that version, not on whatever came after it.
    pub async fn execute_at(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
        expected: i64,
    ) -> Result<(), CommandError<A::Error>> {
        let mut metadata = metadata.clone();
        metadata.time = chrono::Utc::now();
        let metadata = metadata.to_map();
        match &self.backend {
            Backend::Pg(_, s) => decide_at(s, aggregate_id, command, metadata, expected).await,
            Backend::Lite(_, s) => decide_at(s, aggregate_id, command, metadata, expected).await,
        }
    }

    /// The aggregate's state and the sequence of its last event (0 when it has none):
    /// what a bulk append needs to write the next events with conflict detection.
    pub async fn load_versioned(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, i64), CommandError<A::Error>> {
        let (state, sequence) = match &self.backend {
            Backend::Pg(_, s) => {
                let c = s.load_aggregate(aggregate_id).await?;
                (c.aggregate.0, c.current_sequence)
            }
            Backend::Lite(_, s) => {
                let c = s.load_aggregate(aggregate_id).await?;
                (c.aggregate.0, c.current_sequence)
            }
        };
        Ok((state, i64::try_from(sequence).unwrap_or(i64::MAX)))
    }

    /// The aggregate's current state, replayed from its events (no snapshots).
    pub async fn load(&self, aggregate_id: &str) -> Result<A, CommandError<A::Error>> {
        let state = match &self.backend {
            Backend::Pg(_, s) => s.load_aggregate(aggregate_id).await?.aggregate.0,
            Backend::Lite(_, s) => s.load_aggregate(aggregate_id).await?.aggregate.0,
        };
        Ok(state)
    }
}

/// [`Cqrs::execute_at`] on one backend's event store.
async fn decide_at<A, R>(
    store: &PersistedEventStore<R, Es<A>>,
    aggregate_id: &str,
    command: A::Command,
    metadata: std::collections::HashMap<String, String>,
    expected: i64,
) -> Result<(), CommandError<A::Error>>
where
    A: Aggregate + 'static,
    R: cqrs_es::persist::PersistedEventRepository,
{
    let context = store.load_aggregate(aggregate_id).await?;
    let current = i64::try_from(context.current_sequence).unwrap_or(i64::MAX);
    if current != expected {
        return Err(CommandError::Stale { current });
    }
    let events = context
        .aggregate
        .0
        .decide(command)
        .map_err(CommandError::Domain)?;
    if events.is_empty() {
        return Ok(());
    }
    let events = events.into_iter().map(Ev).collect();
    match store.commit(events, context, metadata).await {
        Ok(_) => Ok(()),
        Err(AggregateError::AggregateConflict) => {
            // Someone appended after the read: the version asked for is gone.
            let current = store
                .load_aggregate(aggregate_id)
                .await
                .map(|c| i64::try_from(c.current_sequence).unwrap_or(i64::MAX))?;
            Err(CommandError::Stale { current })
        }
        Err(e) => Err(e.into()),
    }
}
