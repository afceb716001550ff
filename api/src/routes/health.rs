//! Probes for an orchestrator: liveness (`/v1/health`, answers while the process runs)
//! and readiness (`/v1/ready`, answers 200 only when the store, NATS and the projections
//! are fit to serve). Neither needs a token; neither says more than which part failed.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Liveness: answers without authentication.
#[utoipa::path(get, path = "/v1/health", operation_id = "getHealth", tag = "system", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One part of the readiness answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyCheck {
    /// `store`, `nats` (when configured), or `projection <name>`.
    pub part: String,
    pub ready: bool,
    /// What was found: `answered`, `caught up`, `12 s behind`, …
    pub detail: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, or `not_ready` (with 503).
    pub status: &'static str,
    /// The parts that are not ready, by name.
    pub failing: Vec<String>,
    pub checks: Vec<ReadyCheck>,
}

/// Readiness: the store answers a query, NATS is connected (when configured) and every
/// projection's oldest unapplied event has waited at most `ready_max_lag_secs`. 503 names
/// the failing parts. Without authentication.
#[utoipa::path(get, path = "/v1/ready", operation_id = "getReadiness", tag = "system",
    responses((status = 200, body = Readiness), (status = 503, description = "Not ready: `failing` names the parts", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let checks: Vec<ReadyCheck> = state
        .engine
        .readiness(state.ready_max_lag)
        .await
        .into_iter()
        .map(|c| ReadyCheck {
            part: c.part,
            ready: c.ready,
            detail: c.detail,
        })
        .collect();
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.part.clone())
        .collect();
    let (code, status) = if failing.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        code,
        Json(Readiness {
            status,
            failing,
            checks,
        }),
    )
}
