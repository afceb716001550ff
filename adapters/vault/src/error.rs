/// Errors of the vault. None of the messages contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key must be base64 of exactly 32 bytes")]
    InvalidMasterKey,
    #[error("master key file {path} is readable by group or others; chmod 600 it")]
    InsecureKeyFile { path: String },
    #[error("no data key for this workspace (deleted or never created)")]
    KeyNotFound,
    /// A stored data key is wrapped by master key `found`, but this vault
    /// holds master key `expected`. Typically the master key was rotated by
    /// another process (`syncledger keys rotate-master`) while this one kept
    /// the old key in memory; creating a data key is refused in that case,
    /// since wrapping it with the stale key would lose it.
    #[error(
        "data key store uses master key {found}, but this process holds master key {expected}: \
         the master key was probably rotated by another process; \
         restart this process with the new master key"
    )]
    WrongMasterKey { expected: String, found: String },
    /// At start: the store's data keys are wrapped by master key `found`, not by the
    /// configured `expected`.
    #[error(
        "this store's data keys are wrapped by master key {found}, but the configured master \
         key is {expected}: it belongs to another store, or the key was rotated elsewhere \
         (`keys rotate-master`); start with the master key this store uses"
    )]
    ForeignMasterKey { expected: String, found: String },
    #[error("ciphertext failed authentication: it was altered, truncated, or belongs to another workspace")]
    Tampered,
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    #[error("key store: {0}")]
    Store(#[from] sqlx::Error),
}
