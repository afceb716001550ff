//! The pure core of syncledger: aggregates, commands, events and value types.
//!
//! Nothing here performs IO. Whatever a decision needs from the outside world
//! (the current time, fresh ids, ciphertext) is put into the command by the caller.
//! The event store adapter turns these aggregates into cqrs-es aggregates.

pub mod aggregate;
pub mod audit;
pub mod integration;
pub mod merge;
pub mod outbound;
pub mod plan;
pub mod provider;
pub mod provider_text;
pub mod record;
pub mod rollback;
pub mod spreadsheet;
pub mod sync_config;
pub mod sync_run;
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
