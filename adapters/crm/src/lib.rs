//! CRM provider adapters.
//!
//! One [`CrmAdapter`] trait covers every provider: OAuth 2.0 with PKCE, the
//! field catalogue, full and incremental pulls, batched pushes and deletions.
//! Every adapter sends its requests through [`http::Executor`], which paces,
//! retries and classifies failures the same way for all providers.
//!
//! Lives here: each provider's wire protocol. Must not: the event store, sync decisions
//! (which record wins, what to push) or the HTTP API's types; those are the engine's.

pub mod adapter;
pub mod catalogue;
pub mod custom;
pub mod error;
pub mod http;
pub mod hubspot;
pub mod leads;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod pipedrive;
pub mod salesforce;
pub mod types;
pub mod window;
pub mod zoho;

pub use adapter::CrmAdapter;
pub use custom::{CustomAdapter, CustomOptions, CustomSpec};
pub use error::CrmError;
pub use hubspot::{HubSpotAdapter, HubSpotConfig};
pub use leads::{LeadsAdapter, LeadsConfig};
pub use pipedrive::{PipedriveAdapter, PipedriveConfig};
pub use salesforce::{SalesforceAdapter, SalesforceConfig};
pub use syncledger_domain::Entity;
pub use types::{
    Credentials, Cursor, FieldInfo, Identity, Page, PushKind, PushOp, PushResult, RemoteRecord,
    Tokens, Usage,
};
pub use zoho::{ZohoAdapter, ZohoConfig};
