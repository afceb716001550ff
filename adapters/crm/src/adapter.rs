//! The one trait every provider implements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use syncledger_domain::Entity;

use crate::error::CrmError;
use crate::oauth::IssuerRule;
use crate::types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushOp, PushResult, RemoteRecord, Tokens, Usage,
};

#[async_trait]
pub trait CrmAdapter: Send + Sync {
    /// Whether this provider connects through OAuth 2.0 (else: API key or basic).
    fn supports_oauth(&self) -> bool {
        true
    }

    /// What this adapter has asked of the provider so far: requests sent (retries
    /// included) and 429 answers it waited out before trying again.
    fn usage(&self) -> Usage {
        Usage::default()
    }

    /// The most records one `push_batch` call carries; the engine sends batches of
    /// this size so each costs one request.
    fn push_batch_size(&self) -> usize {
        100
    }

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

    /// [`CrmAdapter::exchange_code`] at the authorization server the callback named
    /// (Zoho's `accounts-server`: hostile input, which the adapter checks against the
    /// provider's own servers). Providers with one authorization server ignore it.
    async fn exchange_code_at(
        &self,
        code: &str,
        pkce_verifier: &str,
        redirect_uri: &str,
        server: Option<&str>,
    ) -> Result<Tokens, CrmError> {
        let _ = server;
        self.exchange_code(code, pkce_verifier, redirect_uri).await
    }

    /// [`CrmAdapter::refresh`] for tokens kept with the `instance_url` they were issued
    /// for: a provider with several authorization servers (Zoho's data centres) refreshes
    /// at the one that URL belongs to. Others ignore it.
    async fn refresh_at(
        &self,
        refresh_token: &str,
        instance_url: Option<&str>,
    ) -> Result<Tokens, CrmError> {
        let _ = instance_url;
        self.refresh(refresh_token).await
    }

    /// New tokens for a refresh token. When the provider does not rotate refresh
    /// tokens (Salesforce), the result carries the one passed in; when it does not
    /// answer with an instance URL, the caller keeps the one it had.
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, CrmError>;

    async fn revoke(&self, tokens: &Tokens) -> Result<(), CrmError>;

    /// The authorization server's issuer, when known: the callback's `iss` (RFC 9207)
    /// is then checked against it. None of the built-in providers documents one.
    fn issuer(&self) -> Option<IssuerRule> {
        None
    }

    async fn test_connection(&self, credentials: &Credentials) -> Result<Identity, CrmError>;

    async fn fields(
        &self,
        credentials: &Credentials,
        entity: Entity,
    ) -> Result<Vec<FieldInfo>, CrmError>;

    /// A full pull when `since` is `None`, else the records modified at or
    /// after `since`. Pages may overlap; the engine deduplicates.
    async fn pull_page(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError>;

    /// [`CrmAdapter::pull_page`] for a caller that already holds the records
    /// modified exactly at `since` whose remote ids are in `seen` (the previous
    /// run's last instant). A provider that can filter on ids leaves them out, so
    /// the inclusive boundary costs no repeated results; records at `since` not in
    /// `seen` still come. Pass the same `seen` for every page of one pull. By
    /// default `seen` is ignored and the engine deduplicates the overlap.
    async fn pull_page_since(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
        seen: &[String],
    ) -> Result<Page, CrmError> {
        let _ = seen;
        self.pull_page(credentials, entity, cursor, since).await
    }

    /// One result per input, in input order. Inputs the provider refused
    /// carry an `error`. Creates are not retried after a timeout or 5xx (the
    /// provider may have applied them); such failures, and `Unauthorized` or
    /// quota errors, end the call with `Err` even if earlier chunks were
    /// written, so prefer upserts where a key property exists.
    async fn push_batch(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ops: Vec<PushOp>,
    ) -> Result<Vec<PushResult>, CrmError>;

    /// The current versions of these CRM records, read by id in as few calls as the
    /// provider allows: a push re-reads its batch first, so that a change made in the
    /// CRM since the pull is merged instead of overwritten. Records the provider no
    /// longer has are left out. `None`: this provider cannot read records by id, and the
    /// push goes on without re-reading.
    async fn read_records(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<RemoteRecord>>, CrmError> {
        let _ = (credentials, entity, ids);
        Ok(None)
    }

    /// Deletes these CRM records (what `on_app_archive: delete_in_crm` asks when the app
    /// archives a record): one result per id, in order; a record already gone counts as
    /// deleted. `None`: this provider cannot delete records (the setting is refused for
    /// it, see `syncledger_domain::provider::deletes_records`).
    async fn delete_records(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Option<Vec<PushResult>>, CrmError> {
        let _ = (credentials, entity, ids);
        Ok(None)
    }

    /// Whether the provider has no deletion feed for `entity` and every pull lists
    /// everything instead: then the engine takes the linked records a complete pull
    /// did not list as deletion candidates ([`CrmAdapter::confirm_absent`]).
    fn deletes_by_absence(&self, entity: Entity) -> bool {
        let _ = entity;
        false
    }

    /// Of the records a complete pull did not list, those that are really gone (the
    /// provider may confirm each); by default all of them.
    async fn confirm_absent(
        &self,
        credentials: &Credentials,
        entity: Entity,
        ids: &[String],
    ) -> Result<Vec<String>, CrmError> {
        let _ = (credentials, entity);
        Ok(ids.to_vec())
    }

    /// Records deleted (archived) at or after `since` (all the provider still
    /// remembers when `None`), paged like a full pull. Providers that keep
    /// deletions for a limited time (Salesforce: 15 days) clamp `since`.
    async fn deletions(
        &self,
        credentials: &Credentials,
        entity: Entity,
        cursor: Option<Cursor>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Page, CrmError>;
}
