//! The sync use cases, between the HTTP API (or a worker) and the adapters.
//!
//! Lives here: every use case, one module per resource, reached through [`Engine`]:
//! [`workspaces`] (and tokens; owns `api_tokens`), [`integrations`] (create with the
//! plan slot, config, credentials, disconnect), [`oauth`] (connect, callback, test, field
//! catalogue; owns `oauth_states`), [`conflicts`] (decisions and rules), [`records`],
//! [`mappings`], [`run_control`] (runs on a person's behalf), [`runs`] (trigger and execute),
//! [`divergence`], [`audit`], [`webhooks`], [`webhook_endpoints`] and [`destinations`];
//! [`delivery`] (webhooks) and [`sink`] (Postgres destinations) follow the feed; plus [`freshness`] (read-your-writes) and [`scheduler`].
//! Must not: HTTP (status codes, headers, axum), HTML, or SQL against a read model
//! (ask `syncledger-projections`).
//!
//! [`Connections`] turns an integration into a working provider session: the right
//! adapter for its provider (pointed at its base URL override), its credentials
//! opened from the vault, refreshed before they expire and after a 401, with one
//! refresh per credential generation however many workers ask at once.

pub mod app;
pub mod audit;
pub mod conflicts;
pub mod connector;
pub mod crashpoint;
pub mod creation;
pub mod credentials;
pub mod delivery;
pub mod destinations;
pub mod divergence;
pub mod editing;
pub mod error;
pub mod freshness;
pub mod idempotency;
pub mod imports;
pub mod integrations;
pub mod jobs;
pub mod live;
pub mod mapping;
pub mod mappings;
pub mod metrics;
pub mod oauth;
pub mod provider_hooks;
pub mod providers;
pub mod readiness;
pub mod reapply;
pub mod records;
pub mod rollback;
pub mod rules;
pub mod run_control;
pub mod runs;
pub mod scheduler;
pub mod session;
pub mod sign_in;
pub mod sink;
pub mod transform;
pub mod webhook_endpoints;
pub mod webhooks;
pub mod workers;
pub mod workspaces;

pub use app::Engine;
pub use connector::{ClientApp, Connector, ProviderApps};
pub use credentials::{open_credentials, seal_credentials};
pub use error::EngineError;
pub use runs::{RunError, SyncRuns};
pub use session::{Connections, Session};
pub use syncledger_crm::{FieldInfo, RemoteRecord};
