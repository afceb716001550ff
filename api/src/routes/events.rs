//! Server-sent events: the workspace's committed events as they happen.
//! Fed by NATS JetStream when configured, otherwise by the in-process bus.
//!
//! Each stream counts against its token's and its workspace's caps (429 `too_many_streams`
//! beyond), and ends within about a quarter of a second of its token's revocation,
//! whichever server process revoked it (see [`crate::streams`]).

use crate::auth::{Caller, READERS};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::streams::{token_revoked, until_ended, Ending, TooMany};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use syncledger_bus::parse_stream_id;
use syncledger_engine::live::BusEvent;

fn to_sse(ev: BusEvent) -> Result<Event, Infallible> {
    let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
    Ok(Event::default()
        .id(ev.stream_id())
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

/// Where a stream resumes: `?after=` (an event id the client kept).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Resume after this event id (an SSE `id` this stream sent); the `Last-Event-ID`
    /// header, which browsers send when they reconnect, wins over it.
    pub after: Option<String>,
}

/// The position a reconnecting client asks to resume after: its `Last-Event-ID`, else
/// `?after=`; `None` for a stream from now on. An id this server never sends is refused.
pub fn resume_after(
    headers: &HeaderMap,
    after: Option<&str>,
) -> ApiResult<Option<syncledger_store::Position>> {
    let (field, given) = match headers.get("last-event-id") {
        Some(v) => ("Last-Event-ID", v.to_str().unwrap_or("?")),
        None => match after {
            Some(a) => ("after", a),
            None => return Ok(None),
        },
    };
    if given.trim().is_empty() {
        return Ok(None);
    }
    parse_stream_id(given).map(Some).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            "must be an event id this stream sent (e.g. 42 or 7:42)",
        )
    })
}

/// Committed events of the caller's workspace, live (secrets redacted). With
/// `Last-Event-ID` (or `?after=`) the events committed after that one come first, then
/// the live ones, none missed and none twice. The stream ends when the caller's token is
/// revoked, and when the server shuts down.
#[utoipa::path(get, path = "/v1/events/stream", operation_id = "streamEvents", tag = "events", security(("bearer" = [])), params(StreamQuery),
    responses((status = 200, description = "text/event-stream of committed events", content_type = "text/event-stream"),
        (status = 400, description = "an event id this stream never sends", body = crate::error::ErrorBody),
        (status = 409, description = "resume_too_far: too many events since that id; re-read through the API", body = crate::error::ErrorBody),
        (status = 429, description = "too many streams open for this token or workspace", body = crate::error::ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require(READERS)?;
    let after = resume_after(&headers, q.after.as_deref())?;
    let slot = state
        .streams
        .open(&caller.token_id, &caller.workspace_id)
        .map_err(too_many)?;
    let events = state
        .engine
        .live_events_after(&caller.workspace_id, after)
        .await?;
    let revoked = token_revoked(state.store.any.clone(), caller.token_id.clone());
    let closing = state.streams.closing();
    let end = async move {
        tokio::select! {
            _ = revoked => Ending::NoLongerValid,
            _ = closing => Ending::ShuttingDown,
        }
    };
    let events = events.map(move |ev| {
        // The slot lives as long as the stream: it is freed when the stream ends or the
        // client goes away.
        let _counted = &slot;
        to_sse(ev)
    });
    let events = until_ended(events, end);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
