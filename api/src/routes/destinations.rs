//! Postgres destinations (admin): the app's own database that records are written into,
//! as table mappings; how far the sink has come, the records it holds back, a rebuild.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, List, Page, Query};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use syncledger_domain::destination::TableMapping;
use syncledger_engine::destinations::{DestinationInput, DestinationView as Viewed};
use syncledger_engine::sink::target::Held;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDestination {
    pub name: String,
    /// `postgres://user:password@host:5432/database?sslmode=require` (a Supabase
    /// connection string works as it is). Sealed like any credential; never shown again.
    pub database_url: String,
    /// The schema the tables are in (default `public`).
    #[serde(default)]
    pub schema: Option<String>,
    /// One table mapping per entity: `{"entity": "contacts", "table": "clients",
    /// "key": {"column": "id", "source": "record_id" | "crm_id", "integration_id": "…",
    /// "type": "text|uuid|integer"}, "columns": [{"column": "email", "field": "email",
    /// "type": "text|integer|numeric|boolean|date|timestamptz|uuid|jsonb|text[]",
    /// "required": true, "normalise": {"kind": "email"} | {"kind": "enum", "map": {"Lead":
    /// "lead"}, "unknown": "null|hold"} | {"kind": "local_time", "zone": "Europe/Berlin"} |
    /// {"kind": "lookup", "table": "suppliers", "by": "email|uuid", "match_column":
    /// "email", "id_column": "id"}}], "on_archive": {"action": "delete"} | {"action":
    /// "set", "column": "archived", "value": "true"}}`.
    #[schema(value_type = Vec<Object>)]
    pub mappings: Vec<serde_json::Value>,
    /// Create each mapped table that does not exist (default false: a missing table is
    /// an error).
    #[serde(default)]
    pub create_tables: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SinkView {
    /// The last feed position written into the tables (`null`: not started yet).
    pub position: Option<i64>,
    /// Whether every event committed when asked has been written.
    pub caught_up: bool,
    /// A rebuild in progress: the feed position it has reached.
    pub rebuilding: Option<i64>,
    /// Records held back (see `…/held`).
    pub held: i64,
    /// Why the sink cannot go on, while it cannot.
    pub last_error: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DestinationView {
    pub id: String,
    pub name: String,
    /// `host:port/database` (no user, no password).
    pub target: String,
    pub schema: String,
    #[schema(value_type = Vec<Object>)]
    pub mappings: Vec<TableMapping>,
    /// Rebuilds asked for so far.
    pub generation: i64,
    pub created_at: Option<String>,
    /// How far the sink has come, as the destination's database tells (absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkView>,
    /// Why the destination's database could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink_error: Option<String>,
}

impl From<syncledger_domain::destination::Destination> for DestinationView {
    fn from(d: syncledger_domain::destination::Destination) -> Self {
        DestinationView {
            id: d.id.unwrap_or_default(),
            name: d.name,
            target: d.target,
            schema: d.schema,
            mappings: d.mappings,
            generation: d.generation,
            created_at: d
                .created_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            sink: None,
            sink_error: None,
        }
    }
}

impl From<Viewed> for DestinationView {
    fn from(v: Viewed) -> Self {
        let mut view = DestinationView::from(v.destination);
        match v.standing {
            Ok(s) => {
                let position = s.live.map(|c| c.position);
                view.sink = Some(SinkView {
                    position: position.map(|p| p.pos),
                    caught_up: position.is_some_and(|p| p >= v.head)
                        && s.live.is_some_and(|c| c.generation >= view.generation),
                    rebuilding: s.rebuilding.map(|c| c.position.pos),
                    held: s.held,
                    last_error: s.last_error,
                })
            }
            Err(e) => view.sink_error = Some(e),
        }
        view
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HeldView {
    pub record_id: String,
    pub entity: String,
    /// Why it cannot be written (a required column, an enum value without mapping, a
    /// lookup that finds nothing, a value the table refuses).
    pub reason: String,
    pub held_at: String,
}

impl From<Held> for HeldView {
    fn from(h: Held) -> Self {
        HeldView {
            record_id: h.record_id,
            entity: h.entity,
            reason: h.reason,
            held_at: h.held_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// Create a destination (admin). Each mapping is checked against the database's
/// catalogue (the table, each column and its type, enum labels, a unique key, NOT NULL
/// columns left unmapped): a 400 names every mismatch. Writing starts from the feed's
/// beginning (a backfill).
#[utoipa::path(post, path = "/v1/destinations", operation_id = "createDestination", tag = "destinations", security(("bearer" = [])), request_body = NewDestination,
    responses((status = 201, body = DestinationView), (status = 400, response = crate::error_docs::BadRequest)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(req): Body<NewDestination>,
) -> ApiResult<(StatusCode, Json<DestinationView>)> {
    let mappings = req
        .mappings
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::from_value::<TableMapping>(m)
                .map_err(|e| ApiError::invalid_field(&format!("mappings[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let input = DestinationInput {
        name: req.name,
        database_url: SecretString::from(req.database_url),
        schema: req.schema,
        mappings,
        create_tables: req.create_tables,
    };
    let made = state
        .engine
        .destinations()
        .create(&caller.metadata(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// The workspace's destinations, by id (admin).
#[utoipa::path(get, path = "/v1/destinations", operation_id = "listDestinations", tag = "destinations", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<DestinationView>))))]
pub async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<DestinationView>>> {
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = state
        .engine
        .destinations()
        .list(&caller.workspace_id, &after, limit + 1)
        .await?;
    let views = rows.into_iter().map(DestinationView::from).collect();
    Ok(Json(List::page(views, limit, |v| v.id.clone())))
}

/// One destination and how far its sink has come (admin).
#[utoipa::path(get, path = "/v1/destinations/{id}", operation_id = "getDestination", tag = "destinations", security(("bearer" = [])),
    responses((status = 200, body = DestinationView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn get(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<DestinationView>> {
    let v = state
        .engine
        .destinations()
        .view(&caller.workspace_id, &id)
        .await?;
    Ok(Json(v.into()))
}

/// Stop writing into a destination (admin); its tables stay as they are.
#[utoipa::path(delete, path = "/v1/destinations/{id}", operation_id = "deleteDestination", tag = "destinations", security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .destinations()
        .delete(&caller.metadata(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The records held back from the tables, with why (admin); each is written as soon as a
/// later change makes it writable (a lookup is tried again every few seconds).
#[utoipa::path(get, path = "/v1/destinations/{id}/held", operation_id = "listHeldRecords", tag = "destinations", security(("bearer" = [])), params(Page),
    responses((status = 200, body = inline(List<HeldView>)), (status = 404, response = crate::error_docs::NotFound), (status = 503, response = crate::error_docs::ServiceUnavailable)))]
pub async fn held(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<List<HeldView>>> {
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or_default();
    let rows = state
        .engine
        .destinations()
        .held(&caller.workspace_id, &id, &after, limit + 1)
        .await?;
    let views = rows.into_iter().map(HeldView::from).collect();
    Ok(Json(List::page(views, limit, |v| v.record_id.clone())))
}

/// Refill every table of the destination from the feed's beginning into fresh copies,
/// then swap them in in one transaction (admin). The live tables stay as they are
/// meanwhile.
#[utoipa::path(post, path = "/v1/destinations/{id}/rebuild", operation_id = "rebuildDestination", tag = "destinations", security(("bearer" = [])),
    responses((status = 202, body = DestinationView), (status = 404, response = crate::error_docs::NotFound)))]
pub async fn rebuild(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DestinationView>)> {
    let d = state
        .engine
        .destinations()
        .rebuild(&caller.metadata(), &id)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}
