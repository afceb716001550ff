//! A workspace's committed events as they happen, for live views: from NATS JetStream
//! when the process publishes there, else from the in-process bus. The stream ends when
//! the token that opened it is revoked (checked by [`crate::workspaces::token_is_live`]).
//!
//! A stream can resume after the last event a client saw (SSE `Last-Event-ID`): the
//! events after it are read from the store's feed, the source of truth for both buses,
//! then the live events follow. To leave no gap and send nothing twice, the feed is read
//! up to its end, the live subscription opened, the feed read once more (events
//! published in between), and only live events after the last one read are passed on.
//! Both buses publish in feed order, so that is exact.

use futures::stream::{BoxStream, StreamExt};
pub use syncledger_bus::BusEvent;
use syncledger_store::Position;

use crate::app::Engine;
use crate::error::EngineError;

/// Events a resume may read from the feed (all workspaces') before it gives up: a client
/// that far behind re-reads through the API instead of replaying the log over SSE.
pub const RESUME_SCAN_LIMIT: usize = 50_000;

/// Feed events read per query while resuming.
const RESUME_PAGE: i64 = 1_000;

impl Engine {
    /// The workspace's committed events from now on.
    pub async fn live_events(
        &self,
        workspace_id: &str,
    ) -> Result<BoxStream<'static, BusEvent>, EngineError> {
        match &self.nats {
            Some(nats) => nats
                .subscribe_workspace(workspace_id)
                .await
                .map_err(|e| EngineError::Internal(e.to_string())),
            None => Ok(self.fresh.bus().subscribe_workspace(workspace_id)),
        }
    }

    /// The workspace's committed events after `after` (a position a stream sent), then
    /// live; from now on when `after` is `None`.
    pub async fn live_events_after(
        &self,
        workspace_id: &str,
        after: Option<Position>,
    ) -> Result<BoxStream<'static, BusEvent>, EngineError> {
        let Some(after) = after else {
            return self.live_events(workspace_id).await;
        };
        let mut scanned = 0;
        let (mut missed, last) = self.missed_since(workspace_id, after, &mut scanned).await?;
        let live = self.live_events(workspace_id).await?;
        let (more, last) = self.missed_since(workspace_id, last, &mut scanned).await?;
        missed.extend(more);
        let live = live.filter(move |ev| futures::future::ready(ev.feed_position() > last));
        Ok(futures::stream::iter(missed).chain(live).boxed())
    }

    /// The workspace's events in the feed after `after`, up to the feed's end, and the
    /// position read up to; counts every event read in `scanned`.
    async fn missed_since(
        &self,
        workspace_id: &str,
        after: Position,
        scanned: &mut usize,
    ) -> Result<(Vec<BusEvent>, Position), EngineError> {
        let feed = self.store.feed();
        let (mut missed, mut last) = (Vec::new(), after);
        loop {
            let page = feed.read(last, RESUME_PAGE).await?;
            let Some(end) = page.last() else {
                return Ok((missed, last));
            };
            last = end.position;
            *scanned += page.len();
            if *scanned > RESUME_SCAN_LIMIT {
                return Err(EngineError::NotNow {
                    code: "resume_too_far",
                    message: format!(
                        "more than {RESUME_SCAN_LIMIT} events were committed since that event \
                         id; read the current state through the API and open the stream anew"
                    ),
                });
            }
            missed.extend(
                page.iter()
                    .filter(|e| e.workspace_id() == workspace_id)
                    .map(BusEvent::from_stored),
            );
        }
    }
}
