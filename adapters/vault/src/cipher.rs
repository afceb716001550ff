//! Thin AES-256-GCM helpers shared by key wrapping and sealing.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::VaultError;

pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Fresh random 256-bit key.
pub(crate) fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut_slice());
    key
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// Encrypts `plaintext` under `key` with a fresh random nonce.
/// Returns `(nonce, ciphertext || tag)`.
pub(crate) fn encrypt(
    key: &[u8; KEY_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<([u8; NONCE_LEN], Vec<u8>), VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    // Reserve room for the tag up front so the buffer holding the plaintext
    // is never reallocated (which would leave a plaintext copy behind).
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    if cipher(key)
        .encrypt_in_place(&Nonce::from(nonce), aad, &mut buf)
        .is_err()
    {
        use zeroize::Zeroize;
        buf.zeroize();
        return Err(VaultError::Malformed("plaintext is too long to encrypt"));
    }
    Ok((nonce, buf))
}

/// Decrypts `ciphertext || tag`. Any authentication failure (altered bytes,
/// wrong nonce, wrong key, wrong AAD, truncation) is reported as
/// [`VaultError::Tampered`].
pub(crate) fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if ciphertext.len() < TAG_LEN {
        return Err(VaultError::Tampered);
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher(key)
        .decrypt_in_place(&Nonce::from(*nonce), aad, &mut *buf)
        .map_err(|_| VaultError::Tampered)?;
    Ok(buf)
}
