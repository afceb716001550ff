//! `GET /events`: the signed-in person's workspace events, live, for the pages' live
//! regions. The same events as `/v1/events/stream` (secrets redacted), counted against
//! the same caps, but sent as unnamed events (so `EventSource.onmessage` sees each) and
//! ended when the session ends, not only when a token is revoked.

use super::error::PageError;
use super::session::{session_id, Person};
use crate::state::AppState;
use crate::streams::{until_ended, until_invalid, Ending};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;

pub async fn stream(State(state): State<AppState>, headers: HeaderMap, person: Person) -> Response {
    let caller = &person.caller;
    let Ok(slot) = state.streams.open(&caller.token_id, &caller.workspace_id) else {
        return PageError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            "too many live pages are open; close some tabs",
        )
        .into_response();
    };
    // A browser's EventSource sends Last-Event-ID when it reconnects: nothing is missed.
    let after = match crate::routes::events::resume_after(&headers, None) {
        Ok(after) => after,
        Err(e) => return PageError(e).into_response(),
    };
    let events = match state
        .engine
        .live_events_after(&caller.workspace_id, after)
        .await
    {
        Ok(events) => events,
        Err(e) => return PageError::from(e).into_response(),
    };
    let id = session_id(&state, &headers).unwrap_or_default();
    let (watch_state, closing) = (state.clone(), state.streams.closing());
    let ended = async move {
        let idle = watch_state.dashboard_idle;
        let engine = watch_state.engine.clone();
        tokio::select! {
            _ = until_invalid(|| {
                let (engine, id) = (engine.clone(), id.clone());
                async move { engine.sign_in().is_live(&id, idle).await }
            }) => Ending::NoLongerValid,
            _ = closing => Ending::ShuttingDown,
        }
    };
    let events = events.map(move |ev| {
        let _counted = &slot;
        let data = serde_json::to_string(&ev).unwrap_or_else(|_| "{}".into());
        Ok::<_, Infallible>(Event::default().id(ev.stream_id()).data(data))
    });
    let events = until_ended(events, ended);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
