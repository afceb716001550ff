//! Group commit of a pull: pages decided while the run's previous commit was in flight
//! are committed together, in one transaction, each page's record events followed by
//! its page event; a record listed on two pages of one group makes the group's append
//! conflict, and the pages are then committed one at a time, the record once.
//!
//! To hold the commits back deterministically, the test locks the events table (SHARE
//! mode: reads go on, inserts wait) from its own PostgreSQL connection while the run is
//! at its first page, and lets go once the CRM has been asked for the last page. By then
//! every page but the last two has been decided and handed to the commits (the feed
//! asks for page n + 2 only after page n is handed over), so they queue up behind the
//! first commit and the next commit takes them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use tokio::sync::watch;

use crate::sync::{records, run_started, wait_run};
use syncledger_testkit::app::{send, Backend, Options, TestApp, TIMEOUT};

/// Pages the CRM serves, and records on each.
const PAGES: usize = 8;
const PER_PAGE: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pages_decided_during_a_commit_land_in_one_transaction() -> anyhow::Result<()> {
    let opts = Options {
        provider_pacing: false,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Postgres, opts).await? else {
        return Ok(());
    };
    let crm = HeldCrm::start(pages(None)).await?;
    let integration = connect(&app, &crm).await?;
    let run = held_run(&app, &crm, &integration).await?;
    assert_eq!(run["status"], "completed", "{run}");
    let total = (PAGES * PER_PAGE) as u64;
    assert_eq!(run["stats"]["processed"], total, "{run}");
    assert_eq!(run["stats"]["created"], total, "{run}");
    assert_eq!(run["stats"]["failed"], 0, "{run}");
    assert_eq!(pass_pages(&run), Some(PAGES as u64), "{run}");
    assert_each_listed_once(&app, &integration, total).await?;

    let commits = commits(&app, run["id"].as_str().context("run id")?).await?;
    // Every page event follows exactly its own page's record events.
    for commit in &commits {
        assert!(
            commit.iter().all(|&records| records == PER_PAGE),
            "{commits:?}"
        );
    }
    let pages: usize = commits.iter().map(Vec::len).sum();
    assert_eq!(pages, PAGES, "{commits:?}");
    // The first commit waited on the lock with one page (two at most); at least the
    // next four pages were waiting behind it and went in together.
    let largest = commits.iter().map(Vec::len).max().unwrap_or(0);
    assert!(largest >= 4, "no group commit: {commits:?}");
    crm.shutdown();
    app.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_record_on_two_pages_of_one_group_lands_once() -> anyhow::Result<()> {
    let opts = Options {
        provider_pacing: false,
        ..Options::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Postgres, opts).await? else {
        return Ok(());
    };
    // The last record of page 2 is listed again on page 3, changed since.
    let crm = HeldCrm::start(pages(Some((2, 3)))).await?;
    let integration = connect(&app, &crm).await?;
    let run = held_run(&app, &crm, &integration).await?;
    assert_eq!(run["status"], "completed", "{run}");
    let listed = (PAGES * PER_PAGE) as u64;
    assert_eq!(run["stats"]["processed"], listed, "{run}");
    assert_eq!(run["stats"]["created"], listed - 1, "{run}");
    assert_eq!(run["stats"]["updated"], 1, "{run}");
    assert_eq!(run["stats"]["failed"], 0, "{run}");
    assert_eq!(pass_pages(&run), Some(PAGES as u64), "{run}");
    assert_each_listed_once(&app, &integration, listed - 1).await?;

    let twice = records(&app, &integration, "contacts")
        .await?
        .into_iter()
        .find(|r| r["fields"]["email"]["value"] == "c-2-24@group.example")
        .context("the record listed twice")?;
    assert_eq!(
        twice["fields"]["first_name"]["value"], "Listed again",
        "{twice}"
    );
    let path = format!(
        "/v1/records/{}/history",
        twice["id"].as_str().context("id")?
    );
    let history = app.get(&path, &app.admin).await?;
    let ingested = history.expect(StatusCode::OK)["data"]
        .as_array()
        .context("history")?
        .len();
    assert!(
        ingested >= 2,
        "both listings are in the history: {}",
        history.text
    );

    // The group holding pages 2 and 3 conflicted, so they were committed apart.
    let commits = commits(&app, run["id"].as_str().context("run id")?).await?;
    let pages: usize = commits.iter().map(Vec::len).sum();
    assert_eq!(pages, PAGES, "{commits:?}");
    // The commit each page went in with.
    let commit_of: Vec<usize> = commits
        .iter()
        .enumerate()
        .flat_map(|(i, commit)| std::iter::repeat_n(i, commit.len()))
        .collect();
    assert_ne!(commit_of[2], commit_of[3], "{commits:?}");
    // Page 2 went in whole (alone, or with the pages before it when the machine was slow
    // enough for them to be decided before the first commit began); page 3, its bulk
    // append conflicting, record by record.
    let per_page: Vec<usize> = commits.concat();
    assert_eq!(per_page[2], PER_PAGE, "{commits:?}");
    assert_eq!(commits[commit_of[3]], [0], "{commits:?}");
    crm.shutdown();
    app.finish().await
}

/// An app on PostgreSQL that asks the test's CRM as fast as it answers (the custom
/// provider's pacing, one request a second, would only slow the test down).
/// The contacts of every page; with `dup = Some((a, b))`, page `b` ends with page `a`'s
/// last contact again, changed later, in place of a contact of its own.
fn pages(dup: Option<(usize, usize)>) -> Vec<Vec<Value>> {
    let contact = |page: usize, i: usize, name: &str, minute: usize| {
        json!({
            "id": format!("c-{page}-{i}"),
            "attributes": {"email": format!("c-{page}-{i}@group.example"), "first_name": name},
            "updated": format!("2026-11-01T10:{minute:02}:00Z"),
        })
    };
    (0..PAGES)
        .map(|page| {
            let mut list: Vec<Value> = (0..PER_PAGE)
                .map(|i| contact(page, i, "Listed", page))
                .collect();
            if let Some((a, b)) = dup {
                if page == b {
                    list[PER_PAGE - 1] = contact(a, PER_PAGE - 1, "Listed again", b);
                }
            }
            list
        })
        .collect()
}

/// A cursor-paged CRM that, once armed, holds its first page until the test says go,
/// and tells when it is asked for its last page.
struct HeldCrm {
    base: String,
    state: Arc<CrmState>,
    server: tokio::task::JoinHandle<()>,
}

struct CrmState {
    pages: Vec<Vec<Value>>,
    armed: AtomicBool,
    first_asked: watch::Sender<bool>,
    go: watch::Sender<bool>,
    last_asked: watch::Sender<bool>,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    cursor: Option<usize>,
}

async fn serve_page(State(state): State<Arc<CrmState>>, Query(q): Query<PageQuery>) -> Json<Value> {
    let n = q.cursor.unwrap_or(0).min(PAGES - 1);
    if state.armed.load(Ordering::SeqCst) {
        if n == 0 {
            state.first_asked.send_replace(true);
            let mut go = state.go.subscribe();
            let _ = go.wait_for(|go| *go).await;
        }
        if n == PAGES - 1 {
            state.last_asked.send_replace(true);
        }
    }
    let next = (n + 1 < PAGES).then(|| (n + 1).to_string());
    Json(json!({"data": {"items": state.pages[n]}, "meta": {"next": next}}))
}

impl HeldCrm {
    async fn start(pages: Vec<Vec<Value>>) -> anyhow::Result<HeldCrm> {
        let state = Arc::new(CrmState {
            pages,
            armed: AtomicBool::new(false),
            first_asked: watch::channel(false).0,
            go: watch::channel(false).0,
            last_asked: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/contacts", get(serve_page))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(HeldCrm {
            base,
            state,
            server,
        })
    }

    fn shutdown(self) {
        self.server.abort();
    }
}

async fn connect(app: &TestApp, crm: &HeldCrm) -> anyhow::Result<String> {
    let spec = json!({
        "name": "Paged CRM",
        "base_url": crm.base,
        "auth": {"type": "api_key", "header": "X-Api-Key"},
        "contacts": {
            "list": {
                "path": "/contacts",
                "records_path": "data.items",
                "id_path": "id",
                "updated_at_path": "updated",
                "fields": {"first_name": "attributes.first_name", "email": "attributes.email"}
            },
            "pagination": {"type": "cursor", "param": "cursor", "cursor_path": "meta.next",
                           "limit_param": "limit", "limit": PER_PAGE}
        }
    });
    let body = json!({"provider": "custom", "name": "Paged CRM", "spec": spec,
        "sync_config": {"direction": "pull", "frequency": "manual", "entities": ["contacts"],
                        "conflict_strategy": "crm_wins"}});
    let resp = app.post("/v1/integrations", &app.admin, body).await?;
    resp.expect(StatusCode::CREATED);
    let id = resp.str("id")?;
    let mappings = json!({"mappings": [
        {"crm_field": "email", "app_field": "email", "direction": "pull"},
        {"crm_field": "first_name", "app_field": "first_name", "direction": "pull"}
    ]});
    let path = format!("/v1/integrations/{id}/mappings/contacts");
    let resp = send(app.request(Method::PUT, &path, &app.admin).json(&mappings)).await?;
    resp.expect(StatusCode::OK);
    app.set_api_key(&app.admin, &id, "paged-crm-key").await?;
    let tested = app
        .post_empty(&format!("/v1/integrations/{id}/test"), &app.admin)
        .await?;
    assert_eq!(tested.expect(StatusCode::OK)["ok"], true, "{}", tested.text);
    Ok(id)
}

/// Runs a full pull with the events table locked from the first page until the last
/// page is asked for; returns the run's final view.
async fn held_run(app: &TestApp, crm: &HeldCrm, integration: &str) -> anyhow::Result<Value> {
    let url = app.pg_url().context("a PostgreSQL test")?;
    let mut lock = sqlx::PgConnection::connect(&url).await?;
    let (mut first_asked, mut last_asked) = (
        crm.state.first_asked.subscribe(),
        crm.state.last_asked.subscribe(),
    );
    crm.state.armed.store(true, Ordering::SeqCst);
    let run_id = run_started(app, integration, "full").await?;
    tokio::time::timeout(TIMEOUT, first_asked.wait_for(|a| *a))
        .await
        .context("the run asks for its first page")??;
    sqlx::query("BEGIN").execute(&mut lock).await?;
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut lock)
        .await?;
    crm.state.go.send_replace(true);
    tokio::time::timeout(TIMEOUT, last_asked.wait_for(|a| *a))
        .await
        .context("the run asks for its last page while its first commit waits")??;
    sqlx::query("ROLLBACK").execute(&mut lock).await?;
    lock.close().await?;
    wait_run(app, &run_id).await
}

fn pass_pages(run: &Value) -> Option<u64> {
    run["passes"]
        .as_array()?
        .iter()
        .find(|p| p["pass"] == "contacts/pull")?["pages"]
        .as_u64()
}

async fn assert_each_listed_once(
    app: &TestApp,
    integration: &str,
    expected: u64,
) -> anyhow::Result<()> {
    let listed = records(app, integration, "contacts").await?;
    let mut by_email = BTreeMap::new();
    for r in &listed {
        let email = r["fields"]["email"]["value"].as_str().unwrap_or_default();
        *by_email.entry(email.to_string()).or_insert(0) += 1;
    }
    assert_eq!(listed.len() as u64, expected, "records");
    assert!(by_email.values().all(|&n| n == 1), "{by_email:?}");
    Ok(())
}

/// The run's pull commits in order: per transaction, the number of record events
/// before each of its page events (none for a page whose records were appended one
/// by one, each in a transaction of its own).
async fn commits(app: &TestApp, run_id: &str) -> anyhow::Result<Vec<Vec<usize>>> {
    let url = app.pg_url().context("a PostgreSQL test")?;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    let rows = sqlx::query(
        "SELECT transaction_id::text AS tx, aggregate_type, event_type FROM events
         WHERE transaction_id IN (SELECT transaction_id FROM events
                                  WHERE aggregate_type = 'sync_run' AND aggregate_id = $1
                                    AND event_type = 'PageCommitted'
                                    AND payload->>'phase' = 'pull')
           AND (aggregate_type = 'record' OR aggregate_id = $1)
         ORDER BY global_position",
    )
    .bind(run_id)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut commits: Vec<(String, Vec<usize>)> = Vec::new();
    let mut records = 0;
    for row in rows {
        let tx: String = row.try_get("tx")?;
        if commits.last().is_none_or(|(t, _)| *t != tx) {
            assert_eq!(records, 0, "record events after a commit's last page event");
            commits.push((tx, Vec::new()));
        }
        let kind: String = row.try_get("aggregate_type")?;
        let event: String = row.try_get("event_type")?;
        if kind == "record" {
            records += 1;
        } else if event == "PageCommitted" {
            if let Some((_, pages)) = commits.last_mut() {
                pages.push(records);
            }
            records = 0;
        }
    }
    Ok(commits.into_iter().map(|(_, pages)| pages).collect())
}
