/// Errors of the vault. None of the messages contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key must be base64 of exactly 32 bytes")]
    InvalidMasterKey,
    #[error("master key file {path} is readable by group or others; chmod 600 it")]
    InsecureKeyFile { path: String },
    #[error("no data key for this workspace (deleted or never created)")]
    KeyNotFound,
    #[error(
        "data key was wrapped by master key {found}, but the configured master key is {expected}"
    )]
    WrongMasterKey { expected: String, found: String },
    #[error("ciphertext failed authentication: it was altered, truncated, or belongs to another workspace")]
    Tampered,
    #[error("malformed sealed value: {0}")]
    Malformed(&'static str),
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    #[error("key store: {0}")]
    Store(#[from] sqlx::Error),
}
