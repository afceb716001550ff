//! Why a use case failed. Messages never carry secrets.

use syncledger_crm::CrmError;
use syncledger_domain::IntegrationError;
use syncledger_store::CommandError;
use syncledger_vault::VaultError;

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
}

impl From<CommandError<IntegrationError>> for EngineError {
    fn from(e: CommandError<IntegrationError>) -> Self {
        match e {
            CommandError::Domain(IntegrationError::NotFound) => EngineError::NotFound,
            CommandError::Domain(d) => EngineError::Domain(d),
            CommandError::Conflict => EngineError::Conflict,
            CommandError::Store(s) => EngineError::Store(s),
        }
    }
}
