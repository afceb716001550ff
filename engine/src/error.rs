//! Why a use case failed. Messages never carry secrets.

use syncledger_crm::CrmError;
use syncledger_domain::record::RecordError;
use syncledger_domain::{IntegrationError, WorkspaceError};
use syncledger_store::CommandError;
use syncledger_vault::VaultError;

use crate::creation::CreationError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("integration not found")]
    NotFound,
    /// The integration holds no credentials (never connected, or disconnected).
    #[error("the integration has no credentials; connect it first")]
    NotConnected,
    /// The integration cannot be used in its state (error, disconnected).
    #[error("the integration is {status}: {reason}")]
    Unusable {
        status: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The refresh token was refused: the user must connect again.
    #[error("the provider refused the refresh token; reconnect the integration")]
    RefreshRejected,
    #[error(transparent)]
    Provider(#[from] CrmError),
    #[error("credential vault: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Domain(#[from] IntegrationError),
    #[error("the integration was changed concurrently; retry")]
    Conflict,
    #[error("event store: {0}")]
    Store(String),
    /// Stored data that should parse does not (never shows its content).
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("sync run not found")]
    RunNotFound,
    /// The integration's mappings cannot be compiled.
    #[error("field mapping: {0}")]
    Mapping(String),
    #[error("timed out waiting for another worker's credential refresh")]
    RefreshTimeout,
    /// Input the caller sent breaks a rule: `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Something other than an integration or a run does not exist, or is not the
    /// caller's (`what`: "record", "conflict", "token", …).
    #[error("{0} not found")]
    Missing(&'static str),
    /// The request cannot be served as asked; `code` says why (e.g. `invalid_state`,
    /// `issuer_mismatch`, `provider_not_configured`).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The resource is not in a state that allows this now (`code`: e.g.
    /// `conflict_not_open`, `invalid_transition`).
    #[error("{message}")]
    NotNow { code: &'static str, message: String },
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Another writer changed the resource between its read and this write.
    #[error("the resource was changed concurrently; retry the request")]
    Concurrent,
    /// The caller's precondition (`If-Match`) named a version the resource is no longer at.
    #[error("the resource is at version {current}, not the one the request was based on")]
    Stale { current: i64 },
    /// The caller could not be authenticated (`code`: e.g. `invalid_signature`).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// Try again shortly (`code`: e.g. `busy`, `read_model_behind`).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A failure that is ours, not the caller's nor the provider's (logged, never shown).
    #[error("internal: {0}")]
    Internal(String),
    /// Other writers kept winning the workspace for the whole creation budget.
    #[error("the workspace is too busy to take another integration now; retry later")]
    Busy,
}

impl EngineError {
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        EngineError::Invalid {
            field: field.to_owned(),
            message: message.to_string(),
        }
    }

    /// A command refused by an aggregate other than through the run pipeline: a lost
    /// optimistic-concurrency race is the caller's to retry ([`EngineError::Concurrent`]).
    pub fn command<E: std::error::Error + Into<EngineError>>(e: CommandError<E>) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Conflict => EngineError::Concurrent,
            CommandError::Stale { current } => EngineError::Stale { current },
            CommandError::Store(s) => EngineError::Store(s),
        }
    }
}

impl From<CommandError<WorkspaceError>> for EngineError {
    fn from(e: CommandError<WorkspaceError>) -> Self {
        EngineError::command(e)
    }
}

impl From<CommandError<RecordError>> for EngineError {
    fn from(e: CommandError<RecordError>) -> Self {
        EngineError::command(e)
    }
}

impl From<syncledger_domain::webhook::WebhookEndpointError> for EngineError {
    fn from(e: syncledger_domain::webhook::WebhookEndpointError) -> Self {
        use syncledger_domain::webhook::WebhookEndpointError as W;
        match e {
            W::NotFound => EngineError::Missing("webhook endpoint"),
            W::AlreadyExists => EngineError::Concurrent,
            W::Invalid { field, message } => EngineError::invalid(field, message),
        }
    }
}

impl From<CommandError<syncledger_domain::webhook::WebhookEndpointError>> for EngineError {
    fn from(e: CommandError<syncledger_domain::webhook::WebhookEndpointError>) -> Self {
        EngineError::command(e)
    }
}

impl From<syncledger_domain::destination::DestinationError> for EngineError {
    fn from(e: syncledger_domain::destination::DestinationError) -> Self {
        use syncledger_domain::destination::DestinationError as D;
        match e {
            D::NotFound => EngineError::Missing("destination"),
            D::AlreadyExists => EngineError::Concurrent,
            D::Invalid { field, message } => EngineError::Invalid { field, message },
        }
    }
}

impl From<CommandError<syncledger_domain::destination::DestinationError>> for EngineError {
    fn from(e: CommandError<syncledger_domain::destination::DestinationError>) -> Self {
        EngineError::command(e)
    }
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> Self {
        EngineError::Store(e.to_string())
    }
}

impl From<syncledger_projections::ProjectionError> for EngineError {
    fn from(e: syncledger_projections::ProjectionError) -> Self {
        match e {
            // Unreadable stored data is no outage: waiting would not mend it.
            syncledger_projections::ProjectionError::Corrupt(_) => {
                EngineError::Corrupt("a read-model row")
            }
            other => EngineError::Store(other.to_string()),
        }
    }
}

impl From<CreationError> for EngineError {
    fn from(e: CreationError) -> Self {
        match e {
            CreationError::Workspace(e) => EngineError::Workspace(e),
            CreationError::Integration(e) => EngineError::Domain(e),
            CreationError::Contended => EngineError::Busy,
            CreationError::Store(cause) => EngineError::Store(cause),
        }
    }
}

impl From<CommandError<IntegrationError>> for EngineError {
    fn from(e: CommandError<IntegrationError>) -> Self {
        match e {
            CommandError::Domain(IntegrationError::NotFound) => EngineError::NotFound,
            CommandError::Domain(d) => EngineError::Domain(d),
            CommandError::Conflict => EngineError::Conflict,
            CommandError::Stale { current } => EngineError::Stale { current },
            CommandError::Store(s) => EngineError::Store(s),
        }
    }
}

/// The entity named `name`, or the error naming `field` that the caller sent.
pub fn entity_named(
    field: &str,
    name: Option<&str>,
) -> Result<syncledger_domain::Entity, EngineError> {
    name.and_then(syncledger_domain::Entity::parse)
        .ok_or_else(|| {
            let not = name.map(|n| format!(", not {n:?}")).unwrap_or_default();
            EngineError::invalid(field, format!("must be contacts or companies{not}"))
        })
}
