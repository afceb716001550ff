//! Server-sent events: the workspace's committed events as they happen.
//! Fed by NATS JetStream when configured, otherwise by the in-process bus.

use crate::auth::{Caller, READERS};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{BoxStream, Stream, StreamExt};
use std::convert::Infallible;
use syncledger_bus::BusEvent;

fn to_sse(ev: BusEvent) -> Result<Event, Infallible> {
    let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
    Ok(Event::default()
        .id(ev.position.to_string())
        .event(ev.event_type.clone())
        .data(data))
}

/// Committed events of the caller's workspace, live (secrets redacted).
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of committed events", content_type = "text/event-stream")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(READERS)?;
    let events: BoxStream<'static, BusEvent> = match &state.nats {
        Some(nats) => nats
            .subscribe_workspace(&caller.workspace_id)
            .await
            .map_err(crate::error::ApiError::internal)?,
        None => state.bus.subscribe_workspace(&caller.workspace_id),
    };
    Ok(Sse::new(events.map(to_sse)).keep_alive(KeepAlive::default()))
}
