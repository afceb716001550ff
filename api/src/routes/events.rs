//! Server-sent events: the workspace's committed events as they happen.
//! Fed by NATS JetStream when configured, otherwise by the in-process bus.
//!
//! Each stream counts against its token's and its workspace's caps (429 `too_many_streams`
//! beyond), and ends within about a quarter of a second of its token's revocation,
//! whichever server process revoked it (see [`crate::streams`]).

use crate::auth::{Caller, READERS};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::streams::{token_revoked, TooMany};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use std::convert::Infallible;
use syncledger_engine::live::BusEvent;

fn to_sse(ev: BusEvent) -> Result<Event, Infallible> {
    let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
    Ok(Event::default()
        .id(ev.position.to_string())
        .event(ev.event_type.clone())
        .data(data))
}

fn too_many(limit: TooMany) -> ApiError {
    let message = match limit {
        TooMany::Token(n) => {
            format!("this token already has {n} event streams open; close one first")
        }
        TooMany::Workspace(n) => {
            format!("this workspace already has {n} event streams open; close one first")
        }
    };
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message)
}

/// Committed events of the caller's workspace, live (secrets redacted). The stream ends
/// when the caller's token is revoked, and when the server shuts down.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of committed events", content_type = "text/event-stream"),
        (status = 429, description = "too many streams open for this token or workspace", body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(READERS)?;
    let slot = state
        .streams
        .open(&caller.token_id, &caller.workspace_id)
        .map_err(too_many)?;
    let events = state.engine.live_events(&caller.workspace_id).await?;
    let revoked = token_revoked(state.store.any.clone(), caller.token_id.clone());
    let closing = state.streams.closing();
    let end = Box::pin(async move {
        tokio::select! {
            _ = revoked => {}
            _ = closing => {}
        }
    });
    let events = events.take_until(end).map(move |ev| {
        // The slot lives as long as the stream: it is freed when the stream ends or the
        // client goes away.
        let _counted = &slot;
        to_sse(ev)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
