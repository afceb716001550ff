//! The one trait every provider implements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use syncledger_domain::Entity;

use crate::error::CrmError;
use crate::types::{Cursor, FieldInfo, Identity, Page, PushOp, PushResult, Tokens};

#[async_trait]
pub trait CrmAdapter: Send + Sync {
    /// The URL to send the user to, and the PKCE verifier to keep for
    /// [`CrmAdapter::exchange_code`]. Each call makes a fresh verifier; the
    /// caller binds `state` to the workspace and integration.
    fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
    ) -> Result<(String, String), CrmError>;

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, CrmError>;

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError>;

    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError>;

    async fn test_connection(&self, tokens: &Tokens) -> Result<Identity, CrmError>;

    async fn fields(&self, tokens: &Tokens, entity: Entity) -> Result<Vec<FieldInfo>, CrmError>;

    /// A full pull when `since` is `None`, else the records modified at or
    /// after `since`. Pages may overlap; the engine deduplicates.
    async fn pull_page(
        &self,
        tokens: &Tokens,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError>;

    /// One result per input, in input order. Inputs the provider refused
    /// carry an `error`. Creates are not retried after a timeout or 5xx (the
    /// provider may have applied them); such failures, and `Unauthorized` or
    /// quota errors, end the call with `Err` even if earlier chunks were
    /// written, so prefer upserts where a key property exists.
    async fn push_batch(
        &self,
        tokens: &Tokens,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError>;

    /// Archived (deleted) records, paged like a full pull.
    async fn deletions(
        &self,
        tokens: &Tokens,
        entity: Entity,
        cursor: Option<Cursor>,
    ) -> Result<Page, CrmError>;
}
