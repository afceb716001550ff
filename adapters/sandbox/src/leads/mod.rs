//! Receivers of the two write-only CRMs (`PROTOCOLS-NICHE.md` §9 and §10): Light Blue's
//! `POST /api.php` and ShootQ's contact form (view, then submit). Each checks the wire
//! format strictly — stricter than the vendor where the vendor's answer to a malformed
//! request is not documented (an HTTP 400 or 415 naming the fault then) — and keeps
//! every lead it accepted, for tests to read.
//!
//! | vendor      | accepts                                                                 |
//! |-------------|-------------------------------------------------------------------------|
//! | `lightblue` | `POST /api.php`, form-encoded, `key`, `type=contact form`; answers `0`, `-1` (wrong key: the vendor's code for it is not documented here), `-3` (bad type or no contact parameter), `-4` (an `ID`/`Reference` already received from the same `Source`) |
//! | `shootq`    | `GET /api/v1/contactform/contactformtemplate/{code}/view/` → `{id, …}`; `POST …/{id}/submit/` JSON of strings → 200, or 400 with an error dict (`{"email": ["This field is required."]}`) |
//!
//! Control API (no auth): `GET /_sandbox/received` lists the accepted leads in order
//! (Light Blue's without `key`); `POST /_sandbox/received` with a JSON object records
//! one as already received (a Light Blue `ID` then answers `-4`); `GET
//! /_sandbox/counters`.

mod lightblue;
mod shootq;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::grants::TokenPair;
use crate::Sandbox;

/// Which vendor the receiver plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeadVendor {
    LightBlue,
    ShootQ,
}

/// What a lead receiver accepts.
#[derive(Clone)]
pub struct LeadsSandboxConfig {
    pub addr: SocketAddr,
    pub vendor: LeadVendor,
    /// Light Blue's `key`.
    pub api_key: String,
    /// ShootQ's form link code, and the id its view answers.
    pub form_link_code: String,
    pub form_id: u64,
}

impl LeadsSandboxConfig {
    pub fn new(vendor: LeadVendor) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            vendor,
            api_key: "lightblue-sandbox-key".into(),
            form_link_code: "studio-form-1".into(),
            form_id: 4242,
        }
    }
}

// The key stays out of logs.
impl std::fmt::Debug for LeadsSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeadsSandboxConfig")
            .field("vendor", &self.vendor)
            .field("form_id", &self.form_id)
            .finish_non_exhaustive()
    }
}

pub struct LeadsState {
    config: LeadsSandboxConfig,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Map<String, Value>>,
    /// Light Blue's duplicate check: (`Source`, `ID` or `Reference`) received.
    references: BTreeSet<(String, String)>,
    counters: BTreeMap<String, u64>,
}

impl LeadsState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, key: &str) {
        *self.lock().counters.entry(key.to_owned()).or_default() += 1;
    }

    /// Keeps an accepted lead; `false` (nothing kept) when its reference was received
    /// before.
    fn receive(&self, lead: Map<String, Value>) -> bool {
        let mut inner = self.lock();
        if let Some(reference) = reference(&lead) {
            if !inner.references.insert(reference) {
                return false;
            }
        }
        inner.received.push(lead);
        true
    }
}

/// A Light Blue lead's (`Source`, `ID` or else `Reference`), when it has one.
fn reference(lead: &Map<String, Value>) -> Option<(String, String)> {
    let text = |name: &str| lead.get(name).and_then(Value::as_str).map(str::to_owned);
    let id = text("ID").or_else(|| text("Reference"))?;
    Some((text("Source").unwrap_or_default(), id))
}

impl crate::Simulator for LeadsState {
    fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Neither vendor uses OAuth.
    fn issue_tokens(&self) -> TokenPair {
        TokenPair {
            access_token: String::new(),
            refresh_token: String::new(),
            expires_in: 0,
            token_type: String::new(),
            token_use: String::new(),
            hub_id: 0,
        }
    }
}

async fn control_received(State(state): State<Arc<LeadsState>>) -> Json<Vec<Map<String, Value>>> {
    Json(state.lock().received.clone())
}

async fn control_receive(State(state): State<Arc<LeadsState>>, body: Bytes) -> Response {
    match serde_json::from_slice(&body) {
        Ok(Value::Object(lead)) => {
            state.receive(lead);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "a JSON object is required").into_response(),
    }
}

async fn control_counters(State(state): State<Arc<LeadsState>>) -> Json<BTreeMap<String, u64>> {
    Json(state.lock().counters.clone())
}

impl Sandbox {
    /// Binds `config.addr` and receives the vendor's leads.
    pub async fn start_leads(config: LeadsSandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = watch::channel(false);
        let api = match config.vendor {
            LeadVendor::LightBlue => lightblue::router(),
            LeadVendor::ShootQ => shootq::router(),
        };
        let state = Arc::new(LeadsState {
            config,
            inner: Mutex::default(),
        });
        let app = Router::new()
            .merge(api)
            .route(
                "/_sandbox/received",
                get(control_received).post(control_receive),
            )
            .route("/_sandbox/counters", get(control_counters))
            .with_state(state.clone());
        Ok(Sandbox::serve(
            listener, base_url, app, state, stop, stopped,
        ))
    }
}
