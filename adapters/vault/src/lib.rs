//! AES-256-GCM envelope encryption for syncledger.
//!
//! A [`MasterKey`] (from configuration or a `0600` key file) wraps one data key
//! per workspace; the data keys live in the mutable `data_keys` table and
//! encrypt credentials. Events only ever carry a [`Sealed`] value (key id,
//! nonce, ciphertext). Rotating the master key re-wraps the data keys without
//! touching any sealed value, and deleting a workspace's data key
//! ([`Vault::shred`]) makes everything sealed under it unreadable.
//!
//! No key material or plaintext is ever included in an error message or in
//! `Debug` output.
//!
//! Lives here: keys, sealing and the `data_keys` table. Must not: know what it seals
//! (credential formats are the engine's `credentials`).

mod cipher;
mod error;
mod master;
mod vault;

pub use error::VaultError;
pub use master::{MasterKey, KEY_FILE_NAME};
pub use vault::{Sealed, Vault};

/// Re-exported so callers can read the result of [`Vault::open`].
pub use secrecy::{ExposeSecret, SecretBox};
