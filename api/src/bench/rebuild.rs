//! `syncledger bench rebuild`: a log of N events shaped like a real installation's, then
//! every projection rebuilt from it (the same `rebuild` as `syncledger replay`). One JSON
//! line for writing the log, one per projection, and a total.
//!
//! The log: one workspace with four HubSpot integrations; a full import per integration
//! (one `RecordImported` per contact, a `PageCommitted` per 100), then incremental runs
//! of 500 contacts each until N events: mostly a CRM change (`FieldsChanged` then
//! `RemoteMerged`), about one in 17 an app edit pushed to the CRM (`FieldsChanged`,
//! `RemotePushed`), every 50th a queued conflict; each run also tests its connection.
//! Events are bulk-appended (the store's `append`), with metadata like the engine's.

use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use syncledger_domain::integration::{CredentialKind, EncryptedSecret};
use syncledger_domain::merge::{FieldConflict, Fields};
use syncledger_domain::record::{Record, RecordEvent, Source};
use syncledger_domain::sync_run::{Phase, RunKind, RunStats, RunStatus, SyncRun, SyncRunEvent};
use syncledger_domain::{
    Aggregate, Entity, Integration, IntegrationEvent, Plan, SyncConfig, Workspace, WorkspaceEvent,
};
use syncledger_store::append::{append, NewEvent};
use syncledger_store::{Metadata, Store};

use super::round2;
use crate::config::Settings;

#[derive(clap::Args, Debug, Clone)]
pub struct RebuildBenchArgs {
    /// Events in the log.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// A PostgreSQL server: a fresh database is created on it for the run and dropped
    /// after. Without it, a fresh SQLite file.
    #[arg(long, env = "SYNCLEDGER_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Events per rebuild batch (one transaction each).
    #[arg(long, default_value_t = 2000)]
    pub batch: i64,
}

pub(super) const INTEGRATIONS: usize = 4;
/// Contacts per incremental run, and per committed page.
const RUN_RECORDS: usize = 500;
const PAGE: usize = 100;
/// Events appended per transaction while writing the log.
const APPEND_CHUNK: usize = 5000;

pub async fn run(base: &Settings, args: RebuildBenchArgs) -> anyhow::Result<ExitCode> {
    let url = args.database_url.clone();
    super::on_scratch(base.clone(), url.as_deref(), |settings| async move {
        bench(&settings, &args).await
    })
    .await
}

async fn bench(settings: &Settings, args: &RebuildBenchArgs) -> anyhow::Result<()> {
    let store = Store::open(&settings.store_config()).await?;
    let backend = if store.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let started = Instant::now();
    let mut log = Log::new(&store, Shape::of_events(args.events));
    log.write().await?;
    let seconds = started.elapsed().as_secs_f64();
    let events = store.feed().count().await?;
    println!(
        "{}",
        json!({"phase": "write", "store": backend, "events": events,
               "records": log.records.len(), "seconds": round2(seconds),
               "events_per_s": round2(events as f64 / seconds.max(1e-9))})
    );
    let mut total = 0.0;
    for p in syncledger_projections::all() {
        let started = Instant::now();
        let applied =
            syncledger_projections::rebuild::rebuild(&store, p.as_ref(), args.batch, &|_| {})
                .await?;
        let seconds = started.elapsed().as_secs_f64();
        total += seconds;
        anyhow::ensure!(
            applied == events,
            "{} applied {applied} of {events} events",
            p.name()
        );
        println!(
            "{}",
            json!({"phase": "rebuild", "store": backend, "projection": p.name(),
                   "events": applied, "seconds": round2(seconds),
                   "events_per_s": round2(applied as f64 / seconds.max(1e-9))})
        );
    }
    println!(
        "{}",
        json!({"phase": "rebuild", "store": backend, "projection": "all, one after another",
               "events": events, "projections": syncledger_projections::all().len(),
               "seconds": round2(total), "events_per_s": round2(events as f64 / total.max(1e-9))})
    );
    // What `syncledger replay` does: the log read once, every projection fed from it.
    let all = syncledger_projections::all();
    let selected: Vec<&dyn syncledger_projections::Projection> =
        all.iter().map(|p| p.as_ref()).collect();
    let started = Instant::now();
    let applied =
        syncledger_projections::rebuild::rebuild_all(&store, &selected, args.batch, &|_| {})
            .await?;
    let seconds = started.elapsed().as_secs_f64();
    for (name, n) in &applied {
        anyhow::ensure!(*n == events, "{name} applied {n} of {events} events");
    }
    println!(
        "{}",
        json!({"phase": "rebuild", "store": backend, "projection": "all, one read of the log",
               "events": events, "projections": applied.len(), "seconds": round2(seconds),
               "events_per_s": round2(events as f64 / seconds.max(1e-9))})
    );
    store.close().await;
    Ok(())
}

/// One record of the log and the sequence its next event takes.
struct Rec {
    id: String,
    remote_id: String,
    next: i64,
}

/// What a log holds: `records` imported contacts (a full import per integration), then
/// incremental runs of `run_records` contacts each until the log holds `events` events or
/// `runs` runs (the imports included).
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub events: usize,
    pub records: usize,
    pub runs: usize,
    pub run_records: usize,
}

impl Shape {
    /// `events` events, a tenth of them imported records, incremental runs of 500.
    pub(super) fn of_events(events: usize) -> Shape {
        Shape {
            events,
            records: events / 10,
            runs: usize::MAX,
            run_records: RUN_RECORDS,
        }
    }
}

/// Writes the log in order, appending in chunks.
pub(super) struct Log<'a> {
    store: &'a Store,
    shape: Shape,
    target: usize,
    written: usize,
    runs: usize,
    buf: Vec<NewEvent>,
    pub(super) workspace: String,
    pub(super) integrations: Vec<(String, i64)>,
    records: Vec<Rec>,
    /// Simulated time: one millisecond per event, ending about now.
    clock: DateTime<Utc>,
    /// Woken after each append, as a server's runs wake its followers.
    pub(super) wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl<'a> Log<'a> {
    pub(super) fn new(store: &'a Store, shape: Shape) -> Self {
        let target = shape.events;
        Log {
            store,
            shape,
            target,
            written: 0,
            runs: 0,
            buf: Vec::with_capacity(APPEND_CHUNK),
            workspace: uuid::Uuid::now_v7().to_string(),
            integrations: Vec::new(),
            records: Vec::new(),
            clock: Utc::now() - Duration::milliseconds(target as i64),
            wake: None,
        }
    }

    /// Appends what is buffered, and wakes whoever follows the feed.
    async fn flush(&mut self) -> anyhow::Result<()> {
        append(&self.store.events, &self.buf).await?;
        self.buf.clear();
        if let Some(wake) = &self.wake {
            wake.notify_waiters();
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.written >= self.target
    }

    async fn push<A: Aggregate>(
        &mut self,
        id: &str,
        sequence: i64,
        event: &A::Event,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        if self.full() {
            return Ok(());
        }
        let mut meta = meta.clone();
        self.clock += Duration::milliseconds(1);
        meta.time = self.clock;
        self.buf
            .push(NewEvent::of::<A>(id, sequence, event, &meta)?);
        self.written += 1;
        if self.buf.len() >= APPEND_CHUNK || self.full() {
            self.flush().await?;
        }
        Ok(())
    }

    pub(super) async fn write(&mut self) -> anyhow::Result<()> {
        self.setup().await?;
        let per_integration = (self.shape.records / INTEGRATIONS).max(1);
        for i in 0..INTEGRATIONS {
            self.full_import(i, per_integration).await?;
        }
        let mut cursor = 0usize;
        let mut run = 0usize;
        while !self.full() && self.runs < self.shape.runs {
            self.incremental(run % INTEGRATIONS, &mut cursor).await?;
            run += 1;
        }
        // Ended by its runs, the log may hold a part-filled chunk.
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }

    async fn setup(&mut self) -> anyhow::Result<()> {
        let ws = self.workspace.clone();
        let meta = Metadata::new("bench", &ws, uuid::Uuid::now_v7().to_string());
        let created = WorkspaceEvent::WorkspaceCreated {
            workspace_id: ws.clone(),
            name: "bench".into(),
            plan: Plan::Enterprise,
            at: self.clock,
        };
        self.push::<Workspace>(&ws, 1, &created, &meta).await?;
        for i in 0..INTEGRATIONS {
            let id = uuid::Uuid::now_v7().to_string();
            let name = format!("HubSpot {i}");
            let reserved = WorkspaceEvent::IntegrationSlotReserved {
                integration_id: id.clone(),
                name: name.clone(),
            };
            self.push::<Workspace>(&ws, 2 + i as i64, &reserved, &meta)
                .await?;
            let created = IntegrationEvent::IntegrationCreated {
                integration_id: id.clone(),
                workspace_id: ws.clone(),
                provider: "hubspot".into(),
                name,
                sync_config: SyncConfig::default(),
                base_url: None,
                spec: None,
                at: self.clock,
            };
            self.push::<Integration>(&id, 1, &created, &meta).await?;
            let stored = IntegrationEvent::CredentialsStored {
                kind: CredentialKind::Oauth2,
                secret: EncryptedSecret {
                    key_id: "bench".into(),
                    nonce: "AAAAAAAAAAAAAAAA".into(),
                    ciphertext: "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=".into(),
                },
                expires_at: Some(self.clock + Duration::minutes(30)),
                refresh_token: Some(true),
                at: self.clock,
            };
            self.push::<Integration>(&id, 2, &stored, &meta).await?;
            self.integrations.push((id, 3));
        }
        Ok(())
    }

    /// A connection check on the integration, as every run makes.
    async fn tested(&mut self, i: usize, meta: &Metadata) -> anyhow::Result<()> {
        let (id, seq) = self.integrations[i].clone();
        let event = IntegrationEvent::ConnectionTested {
            ok: true,
            detail: "connected".into(),
            account_id: Some(format!("portal-{i}")),
            at: self.clock,
        };
        self.push::<Integration>(&id, seq, &event, meta).await?;
        self.integrations[i].1 += 1;
        Ok(())
    }

    async fn start_run(&mut self, i: usize, kind: RunKind) -> anyhow::Result<Run> {
        self.runs += 1;
        let run = Run {
            id: uuid::Uuid::now_v7().to_string(),
            next: 1,
            stats: RunStats::default(),
            page: RunStats::default(),
            meta: Metadata::new(
                "worker:bench",
                &self.workspace,
                uuid::Uuid::now_v7().to_string(),
            ),
        };
        let mut run = run;
        let queued = SyncRunEvent::RunQueued {
            run_id: run.id.clone(),
            integration_id: self.integrations[i].0.clone(),
            workspace_id: self.workspace.clone(),
            kind,
            trigger: syncledger_domain::sync_run::Trigger::Scheduled,
            retry_of: None,
            rollback_of: None,
            options: Default::default(),
            at: self.clock,
        };
        self.run_event(&mut run, &queued).await?;
        let started = SyncRunEvent::RunStarted {
            worker: "worker:bench".into(),
            at: self.clock,
        };
        self.run_event(&mut run, &started).await?;
        self.tested(i, &run.meta.clone()).await?;
        Ok(run)
    }

    async fn run_event(&mut self, run: &mut Run, event: &SyncRunEvent) -> anyhow::Result<()> {
        let (id, seq, meta) = (run.id.clone(), run.next, run.meta.clone());
        self.push::<SyncRun>(&id, seq, event, &meta).await?;
        run.next += 1;
        Ok(())
    }

    async fn page(&mut self, run: &mut Run, done: bool) -> anyhow::Result<()> {
        let page = std::mem::take(&mut run.page);
        run.stats = run.stats.plus(page);
        let event = SyncRunEvent::PageCommitted {
            entity: Entity::Contacts,
            phase: Phase::Pull,
            cursor: (!done).then(|| json!({"after": run.stats.processed.to_string()})),
            done,
            stats: page,
            failures: Vec::new(),
            total: None,
            at: self.clock,
        };
        self.run_event(run, &event).await
    }

    async fn end_run(&mut self, mut run: Run) -> anyhow::Result<()> {
        self.page(&mut run, true).await?;
        let ended = SyncRunEvent::RunEnded {
            status: RunStatus::Completed,
            reason: None,
            at: self.clock,
        };
        self.run_event(&mut run, &ended).await
    }

    async fn full_import(&mut self, i: usize, count: usize) -> anyhow::Result<()> {
        let mut run = self.start_run(i, RunKind::Full).await?;
        let integration = self.integrations[i].0.clone();
        for n in 0..count {
            if self.full() {
                return Ok(());
            }
            let k = self.records.len();
            let rec = Rec {
                id: uuid::Uuid::now_v7().to_string(),
                remote_id: format!("{}", 1_000_000 + k),
                next: 2,
            };
            let fields = contact(k, 0);
            let event = RecordEvent::RecordImported {
                record_id: rec.id.clone(),
                workspace_id: self.workspace.clone(),
                entity: Entity::Contacts,
                integration_id: integration.clone(),
                remote_id: rec.remote_id.clone(),
                remote_updated_at: self.clock,
                remote: remote(&fields),
                fields,
                run_id: run.id.clone(),
                at: self.clock,
            };
            let (id, meta) = (rec.id.clone(), run.meta.clone());
            self.records.push(rec);
            self.push::<Record>(&id, 1, &event, &meta).await?;
            run.page.processed += 1;
            run.page.created += 1;
            if (n + 1) % PAGE == 0 {
                self.page(&mut run, false).await?;
            }
        }
        self.end_run(run).await
    }

    /// A run over the next `shape.run_records` contacts of integration `i`.
    async fn incremental(&mut self, i: usize, cursor: &mut usize) -> anyhow::Result<()> {
        let mut run = self.start_run(i, RunKind::Incremental).await?;
        let integration = self.integrations[i].0.clone();
        let share = self.records.len() / INTEGRATIONS;
        for n in 0..self.shape.run_records {
            if self.full() || share == 0 {
                return Ok(());
            }
            *cursor += 1;
            let k = i * share + (*cursor % share);
            let version = self.records[k].next;
            let changed = contact(k, version);
            let mut events = Vec::new();
            let at = self.clock;
            match *cursor % 50 {
                0 => {
                    // Both sides changed the job title: queued for review.
                    let conflict = FieldConflict {
                        field: "jobtitle".into(),
                        base: changed["jobtitle"].clone(),
                        app: Some(format!("App title {version}")),
                        crm: Some(format!("CRM title {version}")),
                        winner: None,
                    };
                    events.push(merged(&integration, &run.id, &changed, vec![conflict], at));
                    run.page.conflicts_detected += 1;
                }
                c if c % 20 == 1 => {
                    let edit: Fields = [("phone".to_string(), changed["phone"].clone())].into();
                    events.push(RecordEvent::FieldsChanged {
                        fields: edit.clone(),
                        source: Source::App {
                            actor: "token:bench".into(),
                        },
                        run_id: None,
                        at,
                    });
                    events.push(RecordEvent::RemotePushed {
                        integration_id: integration.clone(),
                        run_id: run.id.clone(),
                        fields: edit,
                        sent: Default::default(),
                        at,
                    });
                }
                _ => {
                    events.push(RecordEvent::FieldsChanged {
                        fields: changed.clone(),
                        source: Source::Crm {
                            integration_id: integration.clone(),
                            decided_by: None,
                        },
                        run_id: Some(run.id.clone()),
                        at,
                    });
                    events.push(merged(&integration, &run.id, &changed, Vec::new(), at));
                }
            }
            for event in &events {
                let (id, seq, meta) = (
                    self.records[k].id.clone(),
                    self.records[k].next,
                    run.meta.clone(),
                );
                self.push::<Record>(&id, seq, event, &meta).await?;
                self.records[k].next += 1;
            }
            run.page.processed += 1;
            run.page.updated += 1;
            if (n + 1) % PAGE == 0 {
                self.page(&mut run, false).await?;
            }
        }
        self.end_run(run).await
    }
}

struct Run {
    id: String,
    next: i64,
    stats: RunStats,
    page: RunStats,
    meta: Metadata,
}

fn merged(
    integration: &str,
    run: &str,
    fields: &Fields,
    conflicts: Vec<FieldConflict>,
    at: DateTime<Utc>,
) -> RecordEvent {
    RecordEvent::RemoteMerged {
        integration_id: integration.to_string(),
        run_id: run.to_string(),
        remote_updated_at: at,
        base: fields.clone(),
        pending_push: Fields::new(),
        conflicts,
        remote: Some(remote(fields)),
        at,
    }
}

/// A contact's app fields at `version` (some values change with it).
fn contact(k: usize, version: i64) -> Fields {
    let v = |s: String| Some(s);
    [
        ("email", v(format!("contact{k}@example{}.com", k % 97))),
        ("firstname", v(format!("First{}", k % 1000))),
        ("lastname", v(format!("Last{}", k / 1000))),
        (
            "phone",
            v(format!(
                "+1 555 {:07}",
                (k as i64 * 31 + version) % 10_000_000
            )),
        ),
        ("company", v(format!("Company {}", k % 5000))),
        ("jobtitle", v(format!("Title {}", version % 40))),
        ("city", v(format!("City {}", k % 300))),
        (
            "lifecyclestage",
            v(["lead", "customer", "opportunity"][(version % 3) as usize].into()),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// The CRM properties behind the fields (HubSpot names, plus bookkeeping ones).
fn remote(fields: &Fields) -> Fields {
    let mut out: Fields = fields.clone();
    out.insert(
        "hs_object_id".into(),
        fields.get("email").cloned().flatten(),
    );
    out.insert(
        "lastmodifieddate".into(),
        Some("2026-01-01T00:00:00Z".into()),
    );
    out
}
