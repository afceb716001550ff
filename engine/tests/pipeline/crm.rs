//! An in-memory CRM served on loopback to the declarative custom-provider adapter: one
//! list of contacts in cursor-paged pages, a log of the pages asked for, and a gate that
//! can hold one page's answer until the test lets it go.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::support::TIMEOUT;

/// Pages the CRM serves, and contacts on each.
pub const PAGES: usize = 8;
pub const PER_PAGE: usize = 25;

pub struct PagedCrm {
    pub base_url: String,
    state: Arc<CrmState>,
    server: tokio::task::JoinHandle<()>,
}

struct CrmState {
    pages: Mutex<Vec<Vec<Value>>>,
    /// The page whose answer waits for `go`, if any.
    held: Mutex<Option<usize>>,
    go: watch::Sender<bool>,
    /// The pages asked for, in order.
    asked: watch::Sender<Vec<usize>>,
}

#[derive(serde::Deserialize)]
struct PageQuery {
    cursor: Option<usize>,
}

/// The contact `i` of `page`, modified at minute `minute` with `first_name` `name`.
pub fn contact(page: usize, i: usize, name: &str, minute: usize) -> Value {
    json!({
        "id": remote_id(page, i),
        "attributes": {"email": email(page, i), "first_name": name},
        "updated": format!("2026-11-01T10:{minute:02}:00Z"),
    })
}

pub fn remote_id(page: usize, i: usize) -> String {
    format!("c-{page}-{i}")
}

pub fn email(page: usize, i: usize) -> String {
    format!("c-{page}-{i}@pipeline.example")
}

fn seeded() -> Vec<Vec<Value>> {
    (0..PAGES)
        .map(|page| {
            (0..PER_PAGE)
                .map(|i| contact(page, i, "Listed", page))
                .collect()
        })
        .collect()
}

async fn serve_page(State(state): State<Arc<CrmState>>, Query(q): Query<PageQuery>) -> Json<Value> {
    let n = q.cursor.unwrap_or(0).min(PAGES - 1);
    state.asked.send_modify(|asked| asked.push(n));
    let held = *state.held.lock().unwrap_or_else(PoisonError::into_inner);
    if held == Some(n) {
        let mut go = state.go.subscribe();
        let _ = go.wait_for(|go| *go).await;
    }
    let items = state.pages.lock().unwrap_or_else(PoisonError::into_inner)[n].clone();
    let next = (n + 1 < PAGES).then(|| (n + 1).to_string());
    Json(json!({"data": {"items": items}, "meta": {"next": next}}))
}

impl PagedCrm {
    pub async fn start() -> anyhow::Result<PagedCrm> {
        let state = Arc::new(CrmState {
            pages: Mutex::new(seeded()),
            held: Mutex::new(None),
            go: watch::channel(false).0,
            asked: watch::channel(Vec::new()).0,
        });
        let router = Router::new()
            .route("/contacts", get(serve_page))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(PagedCrm {
            base_url,
            state,
            server,
        })
    }

    /// The custom-provider spec that reads this CRM.
    pub fn spec(&self) -> String {
        json!({
            "name": "Paged CRM",
            "base_url": self.base_url,
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
        })
        .to_string()
    }

    /// Replaces contact `i` of `page` (an edit made in the CRM).
    pub fn edit(&self, page: usize, i: usize, contact: Value) {
        self.state
            .pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[page][i] = contact;
    }

    /// From now on, the answer to `page` waits until [`PagedCrm::release`].
    pub fn hold(&self, page: usize) {
        self.state.go.send_replace(false);
        *self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(page);
    }

    /// Lets the held page (and any later ask for it) be answered.
    pub fn release(&self) {
        *self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.state.go.send_replace(true);
    }

    /// Waits until `page` has been asked for `times` times in all.
    pub async fn asked_for(&self, page: usize, times: usize) -> anyhow::Result<()> {
        let mut asked = self.state.asked.subscribe();
        let seen = |log: &Vec<usize>| log.iter().filter(|&&p| p == page).count() >= times;
        tokio::time::timeout(TIMEOUT, asked.wait_for(seen))
            .await
            .map_err(|_| anyhow::anyhow!("page {page} was not asked for {times} time(s)"))??;
        Ok(())
    }

    /// The pages asked for so far, in order.
    pub fn asked(&self) -> Vec<usize> {
        self.state.asked.borrow().clone()
    }
}

impl Drop for PagedCrm {
    fn drop(&mut self) {
        self.server.abort();
    }
}
