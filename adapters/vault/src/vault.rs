//! Per-workspace data keys and sealing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::SecretBox;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, RwLock};
use zeroize::Zeroizing;

use crate::cipher::{self, random_key, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::{MasterKey, VaultError};

/// What gets stored in events: the data key id, the nonce and the
/// ciphertext (with its authentication tag). Never plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the workspace data key that encrypted the value.
    pub key_id: String,
    /// Base64 (standard, padded) of the 96-bit nonce.
    pub nonce: String,
    /// Base64 (standard, padded) of ciphertext || 128-bit tag.
    pub ciphertext: String,
}

/// An unwrapped data key; zeroized when the last reference is dropped.
struct DataKey {
    key_id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

#[derive(Default)]
struct KeyCache {
    /// Bumped by every `shred`, so a load that raced with a shred does not
    /// put the deleted key back into the cache.
    epoch: u64,
    keys: HashMap<String, Arc<DataKey>>,
}

struct KeyRow {
    key_id: String,
    master_key_id: String,
    wrapped_key: String,
}

/// Envelope encryption over the `data_keys` table.
///
/// Clones share the master key and the cache of unwrapped data keys. The
/// cache is per process: a data key shredded by another process stays
/// usable here until this process restarts.
///
/// The master key is also held per process. If another process rotates it,
/// this vault keeps opening data keys it has cached, but refuses to create
/// a data key ([`VaultError::WrongMasterKey`]) rather than wrap it with the
/// stale master key; the process must be restarted with the new key.
#[derive(Clone)]
pub struct Vault {
    pool: AnyPool,
    master: Arc<RwLock<MasterKey>>,
    cache: Arc<Mutex<KeyCache>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn wrap_aad(workspace_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + workspace_id.len());
    aad.extend_from_slice(b"datakey:");
    aad.extend_from_slice(workspace_id.as_bytes());
    aad
}

/// base64(nonce || ciphertext || tag) of the data key under the master key.
fn wrap_data_key(
    master: &MasterKey,
    workspace_id: &str,
    key: &[u8; KEY_LEN],
) -> Result<String, VaultError> {
    let (nonce, ct) = cipher::encrypt(master.bytes(), key, &wrap_aad(workspace_id))?;
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(STANDARD.encode(out))
}

fn unwrap_data_key(
    master: &MasterKey,
    workspace_id: &str,
    wrapped: &str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    let raw = STANDARD
        .decode(wrapped)
        .map_err(|_| VaultError::Malformed("stored data key is not valid base64"))?;
    if raw.len() != WRAPPED_LEN {
        return Err(VaultError::Malformed(
            "stored data key has the wrong length",
        ));
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let mut nonce_arr = [0u8; NONCE_LEN];
    nonce_arr.copy_from_slice(nonce);
    let plain = cipher::decrypt(master.bytes(), &nonce_arr, ct, &wrap_aad(workspace_id))?;
    if plain.len() != KEY_LEN {
        return Err(VaultError::Malformed(
            "stored data key has the wrong length",
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain);
    Ok(key)
}

fn decode_nonce(nonce: &str) -> Result<[u8; NONCE_LEN], VaultError> {
    let raw = STANDARD
        .decode(nonce)
        .map_err(|_| VaultError::Malformed("nonce is not valid base64"))?;
    raw.try_into()
        .map_err(|_| VaultError::Malformed("nonce must be 12 bytes"))
}

impl Vault {
    /// A vault over `pool` (the `data_keys` table must exist; see
    /// `migrations/*/0002_data_keys.sql`).
    pub fn new(pool: AnyPool, master: MasterKey) -> Vault {
        Vault {
            pool,
            master: Arc::new(RwLock::new(master)),
            cache: Arc::new(Mutex::new(KeyCache::default())),
        }
    }

    /// Id of the master key currently in use (not secret).
    pub async fn master_key_id(&self) -> String {
        self.master.read().await.id().to_owned()
    }

    /// Checks, at start, that this vault's master key is the one the store's data keys
    /// are wrapped with: a key file or `master_key` of another store (or one replaced by
    /// `keys rotate-master` elsewhere) is refused here, with both key ids, instead of as
    /// a failure on the first credential read.
    pub async fn check_master(&self) -> Result<(), VaultError> {
        let expected = self.master_key_id().await;
        let found: Option<(String,)> =
            sqlx::query_as("SELECT master_key_id FROM data_keys WHERE master_key_id <> $1 LIMIT 1")
                .bind(&expected)
                .fetch_optional(&self.pool)
                .await?;
        match found {
            Some((found,)) => Err(VaultError::ForeignMasterKey { expected, found }),
            None => Ok(()),
        }
    }

    /// Encrypts `plaintext` for the workspace with its data key, which is
    /// created, wrapped with the master key and stored on first use.
    /// The workspace id is the associated data, so a sealed value moved to
    /// another workspace fails to open.
    pub async fn seal(&self, workspace_id: &str, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        let dk = self.data_key(workspace_id, true).await?;
        let (nonce, ct) = cipher::encrypt(&dk.key, plaintext, workspace_id.as_bytes())?;
        Ok(Sealed {
            key_id: dk.key_id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ct),
        })
    }

    /// Decrypts a value sealed for this workspace.
    ///
    /// Errors: [`VaultError::KeyNotFound`] if the data key was shredded (or
    /// never existed), [`VaultError::Tampered`] if the value was altered,
    /// truncated or sealed for another workspace, [`VaultError::Malformed`]
    /// if it is not even well-formed base64 / a 12-byte nonce.
    pub async fn open(
        &self,
        workspace_id: &str,
        sealed: &Sealed,
    ) -> Result<SecretBox<Vec<u8>>, VaultError> {
        let nonce = decode_nonce(&sealed.nonce)?;
        let ct = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Malformed("ciphertext is not valid base64"))?;
        let dk = self.data_key(workspace_id, false).await?;
        if dk.key_id != sealed.key_id {
            // Sealed under a data key this workspace does not have: either
            // another workspace's key (moved ciphertext) or a deleted one.
            return Err(if self.key_id_exists(&sealed.key_id).await? {
                VaultError::Tampered
            } else {
                VaultError::KeyNotFound
            });
        }
        let mut plain = cipher::decrypt(&dk.key, &nonce, &ct, workspace_id.as_bytes())?;
        // Move the buffer out without copying; the now empty Zeroizing
        // wrapper has nothing left to wipe.
        Ok(SecretBox::new(Box::new(std::mem::take(&mut *plain))))
    }

    /// Re-wraps every data key with `new_master` in one transaction; on
    /// success the vault uses `new_master` from then on. Sealed values are
    /// untouched and keep opening. Returns the number of data keys re-wrapped
    /// (keys already wrapped by `new_master` are left as they are).
    ///
    /// Fails with [`VaultError::WrongMasterKey`] (and changes nothing) if a
    /// data key is wrapped by a master key other than the current one.
    pub async fn rotate_master(&self, new_master: MasterKey) -> Result<usize, VaultError> {
        // Held for the whole rotation: no data key gets created or wrapped
        // with the old master key meanwhile.
        let mut master = self.master.write().await;
        let mut tx = self.pool.begin().await?;
        let rotated_at = now();
        let mut count = 0usize;
        // Repeated until every data key is wrapped by the new master: on
        // PostgreSQL (READ COMMITTED) each statement sees data keys that
        // other processes committed after this transaction began, and those
        // are re-wrapped as well instead of being left under the old master.
        loop {
            let rows = sqlx::query(
                "SELECT workspace_id, master_key_id, wrapped_key FROM data_keys \
                 WHERE master_key_id <> $1 ORDER BY workspace_id",
            )
            .bind(new_master.id().to_owned())
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let workspace_id: String = row.try_get("workspace_id")?;
                let master_key_id: String = row.try_get("master_key_id")?;
                let wrapped: String = row.try_get("wrapped_key")?;
                if master_key_id != master.id() {
                    return Err(VaultError::WrongMasterKey {
                        expected: master.id().to_owned(),
                        found: master_key_id,
                    });
                }
                let key = unwrap_data_key(&master, &workspace_id, &wrapped)?;
                let rewrapped = wrap_data_key(&new_master, &workspace_id, &key)?;
                let res = sqlx::query(
                    "UPDATE data_keys SET master_key_id = $1, wrapped_key = $2, rotated_at = $3 \
                     WHERE workspace_id = $4 AND master_key_id = $5",
                )
                .bind(new_master.id().to_owned())
                .bind(rewrapped)
                .bind(rotated_at.clone())
                .bind(workspace_id)
                .bind(master_key_id)
                .execute(&mut *tx)
                .await?;
                if res.rows_affected() > 0 {
                    count += 1;
                }
            }
        }
        tx.commit().await?;
        tracing::info!(
            old_master_key_id = master.id(),
            new_master_key_id = new_master.id(),
            data_keys = count,
            "rotated master key"
        );
        *master = new_master;
        Ok(count)
    }

    /// Crypto-shredding: deletes the workspace's data key, so everything
    /// sealed under it can no longer be opened ([`VaultError::KeyNotFound`]).
    /// Idempotent. A later `seal` creates a new, unrelated data key.
    pub async fn shred(&self, workspace_id: &str) -> Result<(), VaultError> {
        // Serialise with rotation and key creation.
        let _master = self.master.read().await;
        sqlx::query("DELETE FROM data_keys WHERE workspace_id = $1")
            .bind(workspace_id.to_owned())
            .execute(&self.pool)
            .await?;
        let mut cache = self.cache.lock().await;
        cache.epoch = cache.epoch.wrapping_add(1);
        cache.keys.remove(workspace_id);
        drop(cache);
        tracing::info!(workspace_id, "shredded workspace data key");
        Ok(())
    }

    /// The workspace's unwrapped data key, from the cache or the key table;
    /// created first if `create` and none exists.
    async fn data_key(&self, workspace_id: &str, create: bool) -> Result<Arc<DataKey>, VaultError> {
        let epoch = {
            let cache = self.cache.lock().await;
            if let Some(dk) = cache.keys.get(workspace_id) {
                return Ok(Arc::clone(dk));
            }
            cache.epoch
        };

        let master = self.master.read().await;
        let row = match self.fetch_row(workspace_id).await? {
            Some(row) => row,
            None if create => {
                self.insert_new_key(&master, workspace_id).await?;
                // Whoever won the insert race, everyone uses the stored key.
                self.fetch_row(workspace_id)
                    .await?
                    .ok_or(VaultError::KeyNotFound)?
            }
            None => return Err(VaultError::KeyNotFound),
        };
        if row.master_key_id != master.id() {
            return Err(VaultError::WrongMasterKey {
                expected: master.id().to_owned(),
                found: row.master_key_id,
            });
        }
        let key = unwrap_data_key(&master, workspace_id, &row.wrapped_key)?;
        drop(master);

        let dk = Arc::new(DataKey {
            key_id: row.key_id,
            key,
        });
        let mut cache = self.cache.lock().await;
        if cache.epoch == epoch {
            let cached = cache
                .keys
                .entry(workspace_id.to_owned())
                .or_insert_with(|| Arc::clone(&dk));
            return Ok(Arc::clone(cached));
        }
        Ok(dk)
    }

    async fn fetch_row(&self, workspace_id: &str) -> Result<Option<KeyRow>, VaultError> {
        let row = sqlx::query(
            "SELECT key_id, master_key_id, wrapped_key FROM data_keys WHERE workspace_id = $1",
        )
        .bind(workspace_id.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(KeyRow {
            key_id: row.try_get("key_id")?,
            master_key_id: row.try_get("master_key_id")?,
            wrapped_key: row.try_get("wrapped_key")?,
        }))
    }

    async fn key_id_exists(&self, key_id: &str) -> Result<bool, VaultError> {
        let row = sqlx::query("SELECT workspace_id FROM data_keys WHERE key_id = $1")
            .bind(key_id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Creates, wraps and stores a data key unless the workspace already
    /// has one (race safe via `ON CONFLICT DO NOTHING`).
    ///
    /// The insert is guarded, in the same statement, by "no stored data key
    /// is wrapped by another master key": a vault whose master key was
    /// rotated by another process (e.g. `syncledger keys rotate-master`
    /// while the server runs) must not wrap a new data key with the stale
    /// master, which would be lost with the old key file. That case fails
    /// with [`VaultError::WrongMasterKey`] and stores nothing.
    async fn insert_new_key(
        &self,
        master: &MasterKey,
        workspace_id: &str,
    ) -> Result<(), VaultError> {
        let key = random_key();
        let mut id_bytes = [0u8; 16];
        OsRng.fill_bytes(&mut id_bytes);
        let key_id = hex::encode(id_bytes);
        let wrapped = wrap_data_key(master, workspace_id, &key)?;
        // An INSERT ... SELECT with an upsert clause needs the WHERE clause
        // on SQLite to parse unambiguously; this one has it.
        let res = sqlx::query(
            "INSERT INTO data_keys (workspace_id, key_id, master_key_id, wrapped_key, created_at) \
             SELECT $1, $2, $3, $4, $5 \
             WHERE NOT EXISTS (SELECT 1 FROM data_keys WHERE master_key_id <> $3) \
             ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind(workspace_id.to_owned())
        .bind(key_id.clone())
        .bind(master.id().to_owned())
        .bind(wrapped)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() > 0 {
            tracing::info!(workspace_id, key_id = %key_id, "created workspace data key");
            return Ok(());
        }
        // Nothing inserted: either another vault created the workspace's key
        // first (fine, the caller uses the stored one) or the guard refused.
        if self.fetch_row(workspace_id).await?.is_some() {
            return Ok(());
        }
        let found = self
            .foreign_master_key_id(master)
            .await?
            // The conflicting row vanished meanwhile (shredded); still refuse
            // rather than retry: this vault's master is not trustworthy.
            .unwrap_or_else(|| "<unknown>".to_owned());
        tracing::error!(
            workspace_id,
            configured_master_key_id = master.id(),
            stored_master_key_id = %found,
            "refusing to create a data key: the master key was rotated by another process"
        );
        Err(VaultError::WrongMasterKey {
            expected: master.id().to_owned(),
            found,
        })
    }

    /// Id of a master key, other than `master`, that wraps a stored data key.
    async fn foreign_master_key_id(
        &self,
        master: &MasterKey,
    ) -> Result<Option<String>, VaultError> {
        let row = sqlx::query(
            "SELECT master_key_id FROM data_keys WHERE master_key_id <> $1 \
             ORDER BY master_key_id LIMIT 1",
        )
        .bind(master.id().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| row.try_get("master_key_id"))
            .transpose()
            .map_err(VaultError::from)
    }
}
