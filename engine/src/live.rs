//! A workspace's committed events as they happen, for live views: from NATS JetStream
//! when the process publishes there, else from the in-process bus. The stream ends when
//! the token that opened it is revoked (checked by [`crate::workspaces::token_is_live`]).

use futures::stream::BoxStream;
pub use syncledger_bus::BusEvent;

use crate::app::Engine;
use crate::error::EngineError;

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
}
