//! syncledger's HTTP API, CLI and process wiring.
//!
//! Lives here: a thin shell. A route handler extracts its input, checks the caller's
//! role, makes one call into `syncledger-engine` and maps the result to JSON and a status
//! (`error.rs` maps every `EngineError`). The CLI parses arguments and calls the same use
//! cases. Must not: SQL, provider names or business rules in `routes/`, or imports of the
//! store, vault or CRM adapters from `routes/`. The dashboard (`dashboard/`) is the same
//! kind of shell for people: HTML pages over the same engine calls.

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod destinations_cmd;
pub mod error;
pub mod error_docs;
pub mod extract;
pub mod http_metrics;
pub mod idempotency;
pub mod import_cmd;
pub mod metrics;
pub mod openapi;
pub mod replay;
pub mod rollback_cmd;
pub mod routes;
pub mod state;
pub mod streams;
pub mod strict_query;
pub mod telemetry;
pub mod trail;
pub mod webhooks_cmd;
pub mod worker;

pub use app::Application;
pub use config::Settings;
