//! The pure core of syncledger: aggregates, commands, events and value types.
//!
//! Nothing here performs IO. Whatever a decision needs from the outside world
//! (the current time, fresh ids, ciphertext) is put into the command by the caller.
//! The event store adapter turns these aggregates into cqrs-es aggregates.
//!
//! Lives here: every rule that needs no IO (transitions, merges, plans, the provider
//! catalogue's facts, rollback plans, audit hashing). Must not: tokio, sqlx, reqwest,
//! axum or cqrs-es, reading the clock, or anything another crate of syncledger defines.

pub mod aggregate;
pub mod audit;
pub mod destination;
pub mod entity;
pub mod import;
pub mod integration;
pub mod merge;
pub mod outbound;
pub mod plan;
pub mod provider;
pub mod provider_text;
pub mod record;
pub mod rollback;
pub mod signed_webhook;
pub mod spreadsheet;
pub mod sync_config;
pub mod sync_run;
pub mod webhook;
pub mod workspace;

pub use aggregate::{Aggregate, DomainEvent};
pub use integration::{
    Integration, IntegrationCommand, IntegrationError, IntegrationEvent, Status,
};
pub use plan::Plan;
pub use sync_config::{
    ConflictStrategy, Direction, Entity, Frequency, OnAppArchive, OnCrmDelete, SyncConfig,
};
pub use workspace::{Role, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent};
