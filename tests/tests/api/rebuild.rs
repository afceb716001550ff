//! Rebuilding projections while the API serves them: the new tables are built aside and
//! swapped in at once, so readers see the old rows or the new ones, never an empty or a
//! partial read model, and never an error.

use anyhow::Context;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use syncledger_domain::merge::Fields;
use syncledger_domain::record::{Record, RecordEvent, Source};
use syncledger_domain::Entity;
use syncledger_store::append::{append, NewEvent};
use syncledger_store::Metadata;
use syncledger_testkit::app::{on_both_backends, send, Backend, Options, TestApp, TIMEOUT};

const RECORDS: usize = 2_000;
/// Concurrent readers; each pages through the whole list again and again.
const READERS: usize = 3;

/// `RECORDS` contacts, two events each, appended in bulk; returns their ids.
async fn seed_records(app: &TestApp) -> anyhow::Result<BTreeSet<String>> {
    let meta = Metadata::new(
        "user:test",
        &app.workspace_id,
        uuid::Uuid::now_v7().to_string(),
    );
    let mut events = Vec::new();
    let mut ids = BTreeSet::new();
    for k in 0..RECORDS {
        let id = uuid::Uuid::now_v7().to_string();
        let created = RecordEvent::RecordCreated {
            record_id: id.clone(),
            workspace_id: app.workspace_id.clone(),
            entity: Entity::Contacts,
            at: Utc::now(),
        };
        let fields: Fields = [("email".to_string(), Some(format!("c{k}@example.com")))].into();
        let changed = RecordEvent::FieldsChanged {
            fields,
            source: Source::App {
                actor: "user:test".into(),
            },
            run_id: None,
            at: Utc::now(),
        };
        events.push(NewEvent::of::<Record>(&id, 1, &created, &meta)?);
        events.push(NewEvent::of::<Record>(&id, 2, &changed, &meta)?);
        ids.insert(id);
    }
    append(&app.state.store.events, &events).await?;
    app.state.projections_wake.notify_waiters();
    app.caught_up().await;
    Ok(ids)
}

/// Every item id of a paged list, or what went wrong, as a reader saw it.
async fn read_all(app: &TestApp, path: &str, key: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut q = vec![("limit", "500".to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let rb = app.request(Method::GET, path, &app.admin).query(&q);
        let resp = send(rb).await.map_err(|e| format!("{path}: {e:#}"))?;
        if resp.status != StatusCode::OK {
            return Err(format!("{path}: {} {}", resp.status, resp.text));
        }
        let page = resp.body["data"].as_array().cloned().unwrap_or_default();
        ids.extend(page.iter().map(|item| item[key].to_string()));
        match resp.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(ids),
        }
    }
    Err(format!("{path}: more than 100 pages"))
}

/// What the readers saw while the rebuild ran.
#[derive(Default)]
struct Seen {
    /// Whole reads of both lists that started after the rebuild began and ended before
    /// it returned.
    during: AtomicUsize,
    wrong: Mutex<Vec<String>>,
}

/// Readers of `/v1/records` and `/v1/audit` run before, during and after a rebuild of
/// both projections; every read holds exactly the rows there were before.
async fn reads_stay_whole_during_a_rebuild(backend: Backend) -> anyhow::Result<()> {
    let opts = Options {
        rate_limit_per_minute: 1_000_000,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await? else {
        return Ok(());
    };
    let app = Arc::new(app);
    let seeded = seed_records(&app).await?;
    let records: BTreeSet<String> = read_all(&app, "/v1/records", "id")
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .collect();
    assert_eq!(records.len(), RECORDS, "the read model holds every record");
    assert!(records
        .iter()
        .all(|id| seeded.contains(id.trim_matches('"'))));
    let audit = read_all(&app, "/v1/audit", "position")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(audit.len() > 2 * RECORDS, "{} audit rows", audit.len());

    let rebuilding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (app, rebuilding, stop, seen) =
            (app.clone(), rebuilding.clone(), stop.clone(), seen.clone());
        let (records, audit) = (records.clone(), audit.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let began = rebuilding.load(Ordering::SeqCst);
                let now = read_all(&app, "/v1/records", "id").await;
                let check = match now {
                    Ok(ids)
                        if ids.len() == records.len()
                            && ids.iter().cloned().collect::<BTreeSet<_>>() == records =>
                    {
                        Ok(())
                    }
                    Ok(ids) => Err(format!(
                        "/v1/records: {} of {} records",
                        ids.len(),
                        records.len()
                    )),
                    Err(e) => Err(e),
                };
                let check = match check {
                    Ok(()) => match read_all(&app, "/v1/audit", "position").await {
                        Ok(rows) if rows == audit => Ok(()),
                        Ok(rows) => {
                            Err(format!("/v1/audit: {} of {} rows", rows.len(), audit.len()))
                        }
                        Err(e) => Err(e),
                    },
                    e => e,
                };
                if let Err(e) = check {
                    seen.wrong
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push(e);
                }
                if began && rebuilding.load(Ordering::SeqCst) {
                    seen.during.fetch_add(1, Ordering::SeqCst);
                }
                reads += 1;
            }
            anyhow::Ok(reads)
        }));
    }

    let store = app.state.store.clone();
    rebuilding.store(true, Ordering::SeqCst);
    // Small batches: the rebuild takes many transactions, and the readers many reads.
    for name in ["records", "audit_log"] {
        let p = syncledger_projections::by_name(name)?;
        syncledger_projections::rebuild::rebuild(&store, p.as_ref(), 100, &|_| {}).await?;
    }
    rebuilding.store(false, Ordering::SeqCst);
    // One more whole read each after the swap, then stop.
    let after = seen.during.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += tokio::time::timeout(TIMEOUT, r)
            .await
            .context("a reader did not stop")???;
    }
    eprintln!("{backend:?}: {reads} whole reads, {after} of them inside the rebuild");
    let wrong = seen
        .wrong
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert!(
        wrong.is_empty(),
        "readers saw during the rebuild: {wrong:?}"
    );
    assert!(
        after >= 1,
        "only {after} whole read(s) fell inside the rebuild ({reads} in all)"
    );

    // The live runner carries on over the swapped-in tables.
    let body = json!({"entity": "contacts", "fields": {"email": "new@example.com"}});
    let created = app.post("/v1/records", &app.admin, body).await?;
    created.expect(StatusCode::CREATED);
    app.caught_up().await;
    let now = read_all(&app, "/v1/records", "id")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(now.len(), RECORDS + 1);
    let app = Arc::into_inner(app).context("every reader has let go of the app")?;
    app.finish().await
}

on_both_backends!(reads_stay_whole_during_a_rebuild);
