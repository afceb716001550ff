//! The Postgres sink: each destination follows the global feed from the checkpoint kept
//! in its own database and writes the records of its workspace into the app's tables.
//!
//! Exactly once in effect: a batch's rows, its held records and the checkpoint's move
//! commit in one transaction of the target (see [`target::apply`]), so a crash anywhere
//! leaves the tables as the events up to the checkpoint say. A record's row is its state
//! at the batch's last event, folded from its history (a record with five events in a
//! batch is written once). What cannot be written is held with its reason and tried
//! again whenever the record changes (and, for lookups, every little while). Two servers
//! may run the sink for one destination: the checkpoint row's lock decides which batch
//! lands, the other's is dropped unwritten.
//!
//! A rebuild (the destination's generation above the target's) fills fresh copies of the
//! tables from the feed's beginning while the live ones stay as they are, then swaps them
//! in in one transaction.

pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use syncledger_domain::destination::{Destination, KeySource, Planned};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_domain::record::{Record, RecordEvent};
use syncledger_domain::Aggregate;
use syncledger_projections::destinations::Query;
use syncledger_store::{Position, StoredEvent};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::app::Engine;
use crate::error::EngineError;
use target::{Applied, Batch, Checkpoint, Slot, Types};

/// How the sink behaves; the defaults are production's.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Which hosts destinations may be on.
    pub policy: OutboundPolicy,
    /// Events read per batch.
    pub batch: i64,
    /// How often held records are tried again when nothing else happens.
    pub retry_held: Duration,
    /// How many records' folded states a destination keeps between batches (see
    /// [`States`]; about 5 KB each for a contact linked to one CRM); records beyond
    /// it are read again from the store when they change.
    pub kept_states: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            policy: OutboundPolicy::default(),
            batch: 5_000,
            retry_held: Duration::from_secs(10),
            kept_states: 100_000,
        }
    }
}

/// How often an idle destination looks at the feed when nothing wakes it.
const IDLE: Duration = Duration::from_secs(1);

/// Runs the sink until `shutdown`: one task per destination, started and stopped as
/// destinations come and go. `wake` tells it that events were committed.
pub fn spawn(
    engine: Engine,
    options: SinkOptions,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
        let mut stop = shutdown.clone();
        loop {
            tasks.retain(|_, t| !t.is_finished());
            match Query(&engine.store.any).active().await {
                Ok(ids) => {
                    for id in ids {
                        if tasks.contains_key(&id) {
                            continue;
                        }
                        let task = spawn_one(
                            engine.clone(),
                            options.clone(),
                            id.clone(),
                            wake.clone(),
                            shutdown.clone(),
                        );
                        tasks.insert(id, task);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "destinations could not be listed"),
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

/// Runs the sink of one destination until `shutdown` or its deletion.
pub fn spawn_one(
    engine: Engine,
    options: SinkOptions,
    id: String,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let worker = Worker {
        engine,
        options,
        id,
    };
    tokio::spawn(worker.run(wake, shutdown))
}

/// The earlier events of the records `events` (a batch's, in feed order) touch, read from
/// the store only for records whose history starts before the batch (a record created in
/// the batch, as every record of an import, has its whole history in it).
async fn earlier(
    engine: &Engine,
    events: &[&StoredEvent],
) -> Result<Vec<StoredEvent>, EngineError> {
    let mut starts: HashMap<&str, i64> = HashMap::new();
    for e in events {
        starts.entry(e.aggregate_id.as_str()).or_insert(e.sequence);
    }
    let mut older: Vec<&str> = starts
        .iter()
        .filter(|(_, first)| **first > 1)
        .map(|(id, _)| *id)
        .collect();
    if older.is_empty() {
        return Ok(Vec::new());
    }
    older.sort_unstable();
    let first_in_batch = |e: &StoredEvent| starts.get(e.aggregate_id.as_str()).copied();
    Ok(engine
        .store
        .feed()
        .events_of_many(Record::TYPE, &older)
        .await?
        .into_iter()
        .filter(|e| first_in_batch(e).is_some_and(|first| e.sequence < first))
        .collect())
}

/// The records `events` (any order; each record's events complete from its first) make,
/// as they stand at `until`, with their ids.
pub fn fold_records(
    events: &[&StoredEvent],
    until: Position,
) -> Result<Vec<(String, Record)>, EngineError> {
    fold_onto(&mut HashMap::new(), events, until)
}

/// The records `events` make as they stand at `until`, each folded onto its state in
/// `known` when it has one there (`events` then holding only what came after that state),
/// or from nothing (`events` then holding its whole history). A state folded on is taken
/// out of `known` (moved, not copied): the caller keeps the folded records in its place.
pub fn fold_onto(
    known: &mut HashMap<String, Record>,
    events: &[&StoredEvent],
    until: Position,
) -> Result<Vec<(String, Record)>, EngineError> {
    let mut refs: Vec<&StoredEvent> = events
        .iter()
        .copied()
        .filter(|e| e.position <= until)
        .collect();
    refs.sort_by(|a, b| {
        (a.aggregate_id.as_str(), a.sequence).cmp(&(b.aggregate_id.as_str(), b.sequence))
    });
    let corrupt = |_| EngineError::Corrupt("an event of a destination's record");
    let mut out = Vec::new();
    for group in refs.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
        let id = &group[0].aggregate_id;
        let mut record = known.remove(id).unwrap_or_default();
        for e in group {
            record.apply(&RecordEvent::deserialize(&e.payload).map_err(corrupt)?);
        }
        out.push((id.clone(), record));
    }
    Ok(out)
}

/// What a destination's worker carries from one batch to the next.
#[derive(Default)]
struct Carry {
    states: States,
    /// The next batch's read, started while the current one was written: the position it
    /// reads after, and the read.
    ahead: Option<(Position, Read)>,
}

/// A read of the feed under way.
type Read = JoinHandle<Result<Vec<StoredEvent>, sqlx::Error>>;

/// The records of a destination's workspace as they stood at a slot's checkpoint, kept
/// between batches so that a batch folds its own events onto them instead of reading
/// and folding every touched record's whole history again (which grows with the log).
/// Only ever trusted at exactly the checkpoint it was left at: any other checkpoint (a
/// batch another process applied, a rebuild, a failure) forgets it all. A record not kept
/// is read from the store as before.
#[derive(Default)]
struct States {
    at: Option<(Slot, Checkpoint)>,
    records: HashMap<String, Record>,
}

impl States {
    /// The states as of `cp` in `slot`: what is kept if it was left there, else nothing.
    /// A state taken out (folded on) and not kept again is simply not kept: the record is
    /// read from the store the next time.
    fn at(&mut self, slot: Slot, cp: Checkpoint) -> &mut HashMap<String, Record> {
        if self.at != Some((slot, cp)) {
            self.forget();
        }
        &mut self.records
    }

    fn forget(&mut self) {
        self.at = None;
        self.records.clear();
    }

    /// Keeps `folded` (a batch's records at its end, `cp`): every record already kept is
    /// updated, and others are admitted while there is room for `room`. A full destination
    /// does not make room by forgetting: a backlog touches records in cycles (every
    /// incremental run walks the CRM), where forgetting the oldest would forget each
    /// record just before it is needed again; kept as they are, `room` of them are hit.
    fn keep(&mut self, slot: Slot, cp: Checkpoint, folded: Vec<(String, Record)>, room: usize) {
        for (id, record) in folded {
            if let Some(kept) = self.records.get_mut(&id) {
                *kept = record;
            } else if self.records.len() < room {
                self.records.insert(id, record);
            }
        }
        self.at = Some((slot, cp));
    }
}

/// What a batch of records does in a destination's tables.
pub fn plan(destination: &Destination, records: &[(String, Record)]) -> Batch {
    let mut batch = Batch::default();
    for (id, record) in records {
        if record.workspace_id != destination.workspace_id {
            continue;
        }
        let Some(entity) = record.entity else {
            continue;
        };
        let Some((m, mapping)) = destination
            .mappings
            .iter()
            .enumerate()
            .find(|(_, m)| m.entity == entity)
        else {
            continue;
        };
        batch.touched.push(id.clone());
        let crm_id = match (mapping.key.source, &mapping.key.integration_id) {
            (KeySource::CrmId, Some(integration_id)) => record
                .links
                .get(integration_id)
                .filter(|l| l.is_active())
                .map(|l| l.remote_id.as_str()),
            _ => None,
        };
        let archived = record.archived;
        match mapping.plan(id, crm_id, &record.values(), archived) {
            Planned::Write(row) => {
                let part = batch.tables.entry(m).or_default();
                if row.archived {
                    part.archived.push(row.key.clone());
                }
                part.writes.push((id.clone(), row));
            }
            Planned::Archive { key } => batch.tables.entry(m).or_default().archived.push(key),
            Planned::Nothing => {}
            Planned::Hold { reason } => {
                batch
                    .held
                    .insert(id.clone(), (entity.as_str().to_owned(), reason));
            }
        }
    }
    batch
}

struct Worker {
    engine: Engine,
    options: SinkOptions,
    id: String,
}

/// A connection to the target and what the catalogue said of its tables.
struct Target {
    pool: sqlx::PgPool,
    /// Per mapping, its columns' SQL types.
    types: Vec<Types>,
}

enum Step {
    /// More may follow at once.
    Busy,
    Idle,
    Gone,
}

impl Worker {
    async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut target: Option<Target> = None;
        let mut backoff = Duration::from_millis(200);
        let mut held_tried = Instant::now();
        let mut carry = Carry::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Listening before the step reads the feed: a commit that lands between the
            // read and the wait still wakes the worker.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.step(&mut target, &mut held_tried, &mut carry).await {
                Ok(Step::Gone) => break,
                Ok(Step::Busy) => backoff = Duration::from_millis(200),
                Ok(Step::Idle) => {
                    backoff = Duration::from_millis(200);
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(destination = %self.id, error = %e, "destination sink failed; retrying");
                    if let Some(t) = &target {
                        let _ = target::set_error(&t.pool, &self.id, Some(&e.to_string())).await;
                    }
                    // Connect again (and read the catalogue again: the app may have
                    // fixed its table).
                    target = None;
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn open(&self, destination: &Destination) -> Result<Target, EngineError> {
        let url = open_url(&self.engine, destination).await?;
        let pool = target::connect(&url, self.options.policy).await?;
        target::prepare(&pool).await?;
        let mut types = Vec::new();
        for m in &destination.mappings {
            let Some((table, t)) = target::table(&pool, &destination.schema, &m.table).await?
            else {
                return Err(EngineError::Unavailable {
                    code: "destination_table_missing",
                    message: format!("table {} no longer exists in the destination", m.table),
                });
            };
            let problems = m.check(Some(&table));
            if !problems.is_empty() {
                return Err(EngineError::Unavailable {
                    code: "destination_table_changed",
                    message: format!(
                        "the table no longer fits the mapping: {}",
                        problems.join("; ")
                    ),
                });
            }
            types.push(t);
        }
        Ok(Target { pool, types })
    }

    async fn step(
        &self,
        target: &mut Option<Target>,
        held_tried: &mut Instant,
        carry: &mut Carry,
    ) -> Result<Step, EngineError> {
        let destination: Destination = self.engine.store.cqrs().load(&self.id).await?;
        if destination.id.is_none() || destination.deleted {
            return Ok(Step::Gone);
        }
        if target.is_none() {
            *target = Some(self.open(&destination).await?);
        }
        let Some(t) = target.as_ref() else {
            return Ok(Step::Idle);
        };
        target::start(&t.pool, &self.id, destination.generation).await?;
        let live = target::checkpoint(&t.pool, &self.id, Slot::Live)
            .await?
            .ok_or(EngineError::Internal("the live checkpoint vanished".into()))?;
        if destination.generation > live.generation {
            return self.rebuild_step(&destination, t, carry).await;
        }
        match self.batch(&destination, t, Slot::Live, live, carry).await? {
            Step::Idle if held_tried.elapsed() >= self.options.retry_held => {
                *held_tried = Instant::now();
                self.retry_held(&destination, t, live).await?;
                Ok(Step::Idle)
            }
            step => Ok(step),
        }
    }

    async fn rebuild_step(
        &self,
        destination: &Destination,
        t: &Target,
        carry: &mut Carry,
    ) -> Result<Step, EngineError> {
        let schema = &destination.schema;
        let cp = match target::checkpoint(&t.pool, &self.id, Slot::Rebuild).await? {
            Some(cp) if cp.generation == destination.generation => cp,
            _ => {
                tracing::info!(destination = %self.id, generation = destination.generation, "destination rebuild starting");
                target::begin_rebuild(
                    &t.pool,
                    schema,
                    &self.id,
                    &destination.mappings,
                    destination.generation,
                )
                .await?;
                return Ok(Step::Busy);
            }
        };
        match self.batch(destination, t, Slot::Rebuild, cp, carry).await? {
            Step::Idle => {
                if target::swap(&t.pool, schema, &self.id, &destination.mappings, cp).await? {
                    tracing::info!(destination = %self.id, generation = destination.generation, "destination rebuild swapped in");
                }
                Ok(Step::Busy)
            }
            step => Ok(step),
        }
    }

    /// Applies the next batch after `cp` to the slot's tables.
    async fn batch(
        &self,
        destination: &Destination,
        t: &Target,
        slot: Slot,
        cp: Checkpoint,
        carry: &mut Carry,
    ) -> Result<Step, EngineError> {
        let feed = self.engine.store.feed();
        let mut events = match carry.ahead.take() {
            Some((from, read)) if from == cp.position => read
                .await
                .map_err(|e| EngineError::Internal(format!("reading ahead: {e}")))??,
            _ => Vec::new(),
        };
        // Nothing read ahead, or nothing there yet when it was read (what was committed
        // since is read now, not left to the next wake-up).
        if events.is_empty() {
            events = feed.read(cp.position, self.options.batch).await?;
        }
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Step::Idle);
        };
        // A full batch: more is waiting. The next batch is read while this one is
        // folded and written; it is used only if this one lands.
        if events.len() as i64 >= self.options.batch {
            let (feed, limit) = (self.engine.store.feed(), self.options.batch);
            carry.ahead = Some((
                last,
                tokio::spawn(async move { feed.read(last, limit).await }),
            ));
        }
        let ours: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| {
                e.aggregate_type == Record::TYPE && e.workspace_id() == destination.workspace_id
            })
            .collect();
        let states = &mut carry.states;
        let known = states.at(slot, cp);
        let unknown: Vec<&StoredEvent> = ours
            .iter()
            .copied()
            .filter(|e| !known.contains_key(&e.aggregate_id))
            .collect();
        let before = earlier(&self.engine, &unknown).await?;
        let all: Vec<&StoredEvent> = before.iter().chain(ours.iter().copied()).collect();
        let folded = fold_onto(known, &all, last)?;
        let batch = plan(destination, &folded);
        let applied = target::apply(
            &t.pool,
            &destination.schema,
            &self.id,
            slot,
            &destination.mappings,
            &t.types,
            batch,
            cp,
            last,
        )
        .await?;
        match applied {
            Applied::Done { rows } => {
                metrics::counter!("syncledger_destination_rows_total").increment(rows as u64);
                let now = Checkpoint {
                    generation: cp.generation,
                    position: last,
                };
                states.keep(slot, now, folded, self.options.kept_states);
            }
            Applied::Moved => {
                states.forget();
                carry.ahead = None;
            }
        }
        Ok(Step::Busy)
    }

    /// Tries the held records again as they stand at the checkpoint (a lookup may find
    /// its row now); the checkpoint does not move.
    async fn retry_held(
        &self,
        destination: &Destination,
        t: &Target,
        live: Checkpoint,
    ) -> Result<(), EngineError> {
        let held = target::held(&t.pool, &self.id, "", 1_000).await?;
        if held.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = held.iter().map(|h| h.record_id.as_str()).collect();
        let histories = self
            .engine
            .store
            .feed()
            .events_of_many(Record::TYPE, &ids)
            .await?;
        let all: Vec<&StoredEvent> = histories.iter().collect();
        let batch = plan(destination, &fold_records(&all, live.position)?);
        target::apply(
            &t.pool,
            &destination.schema,
            &self.id,
            Slot::Live,
            &destination.mappings,
            &t.types,
            batch,
            live,
            live.position,
        )
        .await?;
        Ok(())
    }
}

/// The destination's database URL in the clear.
pub(crate) async fn open_url(
    engine: &Engine,
    destination: &Destination,
) -> Result<String, EngineError> {
    let sealed = destination
        .url
        .as_ref()
        .ok_or(EngineError::Corrupt("a destination without its URL"))?;
    let secret = crate::delivery::open_secret(engine, &destination.workspace_id, sealed).await?;
    Ok(secrecy::ExposeSecret::expose_secret(&secret).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use syncledger_domain::record::Source;
    use syncledger_domain::Entity;

    /// A record's history: created, then `n` edits of its name, as the store keeps it.
    fn history(id: &str, n: usize, first_pos: i64) -> Vec<StoredEvent> {
        let at =
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let mut events = vec![RecordEvent::RecordCreated {
            record_id: id.into(),
            workspace_id: "w".into(),
            entity: Entity::Contacts,
            at,
        }];
        for i in 0..n {
            events.push(RecordEvent::FieldsChanged {
                fields: [("name".to_owned(), Some(format!("v{i}")))].into(),
                source: Source::App { actor: "t".into() },
                run_id: None,
                at,
            });
        }
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| StoredEvent {
                position: Position {
                    tx: 0,
                    pos: first_pos + i as i64 * 2,
                },
                aggregate_type: Record::TYPE.into(),
                aggregate_id: id.into(),
                sequence: i as i64 + 1,
                event_type: "e".into(),
                event_version: "1".into(),
                payload: serde_json::to_value(&e).unwrap_or_default(),
                metadata: serde_json::json!({"workspace_id": "w"}),
                recorded_at: at,
            })
            .collect()
    }

    proptest! {
        /// However a batch cuts two interleaved histories and in whatever order the parts
        /// arrive, the records folded are those of the whole histories up to the cut.
        #[test]
        fn folding_a_batch_with_its_earlier_events_is_folding_the_history(
            n in 0usize..6, m in 0usize..6, cut in 0i64..30, reversed in any::<bool>()
        ) {
            let (a, b) = (history("a", n, 1), history("b", m, 2));
            let until = Position { tx: 0, pos: cut };
            let mut given: Vec<&StoredEvent> = a.iter().chain(&b).collect();
            if reversed {
                given.reverse();
            }
            let folded = fold_records(&given, until).unwrap_or_default();
            let whole = |h: &[StoredEvent]| {
                let mut r = Record::default();
                for e in h.iter().filter(|e| e.position <= until) {
                    r.apply(&RecordEvent::deserialize(&e.payload).unwrap_or_else(|e| panic!("{e}")));
                }
                r
            };
            let expected: Vec<(String, Record)> = [("a", whole(&a)), ("b", whole(&b))]
                .into_iter()
                .filter(|(_, r)| r.id.is_some())
                .map(|(id, r)| (id.to_owned(), r))
                .collect();
            prop_assert_eq!(folded, expected);
        }

        /// Folding a later batch onto the states kept at an earlier cut gives the records
        /// the whole histories give, whichever records were kept and which read again.
        #[test]
        fn folding_onto_kept_states_is_folding_the_history(
            n in 0usize..6, m in 0usize..6, first in 0i64..30, second in 0i64..30,
            keep_a in any::<bool>(), keep_b in any::<bool>()
        ) {
            let (first, second) = (first.min(second), first.max(second));
            let (a, b) = (history("a", n, 1), history("b", m, 2));
            let cut = |pos| Position { tx: 0, pos };
            let all: Vec<&StoredEvent> = a.iter().chain(&b).collect();
            let mut known: HashMap<String, Record> = fold_records(&all, cut(first))
                .unwrap_or_default()
                .into_iter()
                .collect();
            let kept = |id: &str| (id == "a" && keep_a) || (id == "b" && keep_b);
            known.retain(|id, _| kept(id));
            // A kept record brings only its events after the first cut; another its whole
            // history (as `earlier` reads it).
            let given: Vec<&StoredEvent> = all
                .iter()
                .copied()
                .filter(|e| !known.contains_key(&e.aggregate_id) || e.position > cut(first))
                .collect();
            let onto = fold_onto(&mut known.clone(), &given, cut(second)).unwrap_or_default();
            let whole = fold_records(&all, cut(second)).unwrap_or_default();
            // A kept record the second batch does not touch is not folded again.
            let touched: Vec<(String, Record)> = whole
                .into_iter()
                .filter(|(id, _)| {
                    !known.contains_key(id)
                        || all.iter().any(|e| &e.aggregate_id == id
                            && e.position > cut(first) && e.position <= cut(second))
                })
                .collect();
            prop_assert_eq!(onto, touched);
        }
    }

    fn checkpoint(pos: i64) -> Checkpoint {
        Checkpoint {
            generation: 1,
            position: Position { tx: 0, pos },
        }
    }

    fn state(id: &str) -> (String, Record) {
        (
            id.to_owned(),
            Record {
                id: Some(id.to_owned()),
                ..Record::default()
            },
        )
    }

    #[test]
    fn kept_states_are_trusted_only_at_the_checkpoint_they_were_left_at() {
        let mut states = States::default();
        states.keep(Slot::Live, checkpoint(10), vec![state("a")], 10);
        assert!(states.at(Slot::Live, checkpoint(10)).contains_key("a"));
        // Another process moved the checkpoint on: what is kept is stale.
        assert!(states.at(Slot::Live, checkpoint(12)).is_empty());
        states.keep(Slot::Live, checkpoint(12), vec![state("a")], 10);
        // The rebuild's slot at the same position is another table's history.
        assert!(states.at(Slot::Rebuild, checkpoint(12)).is_empty());
        states.keep(Slot::Live, checkpoint(14), vec![state("a")], 10);
        let next_generation = Checkpoint {
            generation: 2,
            ..checkpoint(14)
        };
        assert!(states.at(Slot::Live, next_generation).is_empty());
    }

    #[test]
    fn a_full_destination_updates_what_it_keeps_and_admits_no_more() {
        let mut states = States::default();
        let first: Vec<(String, Record)> = (0..5).map(|i| state(&format!("old{i}"))).collect();
        states.keep(Slot::Live, checkpoint(1), first, 6);
        let mut changed = state("old0");
        changed.1.version = 7;
        let mut second: Vec<(String, Record)> = (0..3).map(|i| state(&format!("new{i}"))).collect();
        second.push(changed);
        states.keep(Slot::Live, checkpoint(2), second, 6);
        let kept = states.at(Slot::Live, checkpoint(2));
        assert_eq!(kept.len(), 6);
        assert!((0..5).all(|i| kept.contains_key(&format!("old{i}"))));
        assert_eq!(kept.get("old0").map(|r| r.version), Some(7));
        assert_eq!(
            (0..3)
                .filter(|i| kept.contains_key(&format!("new{i}")))
                .count(),
            1
        );
    }
}
