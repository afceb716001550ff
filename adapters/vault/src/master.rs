//! The master key: configuration / key-file loading and formatting.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cipher::{random_key, KEY_LEN};
use crate::VaultError;

/// File name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "master.key";

/// Longest base64 text accepted for a key (a 32-byte key is 44 characters;
/// the slack allows for surrounding whitespace).
const MAX_KEY_TEXT: usize = 128;

/// The 256-bit master key that wraps the per-workspace data keys.
///
/// The key bytes are zeroized on drop; `Debug` never shows them.
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl MasterKey {
    fn from_bytes(key: Zeroizing<[u8; KEY_LEN]>) -> MasterKey {
        let digest = Sha256::digest(key.as_slice());
        let mut id = hex::encode(digest);
        id.truncate(16);
        MasterKey { key, id }
    }

    /// Public identifier of the key: the first 16 hex characters of the
    /// SHA-256 of the key bytes. Stored next to each wrapped data key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(random_key())
    }

    /// Parses standard (padded) base64 of exactly 32 bytes. Surrounding
    /// whitespace is ignored. The error never echoes the input.
    pub fn from_base64(s: &str) -> Result<MasterKey, VaultError> {
        let s = s.trim();
        if s.len() > MAX_KEY_TEXT {
            return Err(VaultError::InvalidMasterKey);
        }
        // Decode into a fixed, zeroized buffer larger than any valid key so
        // that the decoded bytes never land in an unmanaged allocation.
        let mut buf = Zeroizing::new([0u8; MAX_KEY_TEXT]);
        let n = STANDARD
            .decode_slice(s.as_bytes(), buf.as_mut_slice())
            .map_err(|_| VaultError::InvalidMasterKey)?;
        if n != KEY_LEN {
            return Err(VaultError::InvalidMasterKey);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&buf[..KEY_LEN]);
        Ok(MasterKey::from_bytes(key))
    }

    /// Standard (padded) base64 of the key bytes. The caller owns the
    /// returned secret and should not log it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.key.as_slice())
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// Loads the master key.
    ///
    /// * `env_value` set (e.g. from an environment variable): parse it with
    ///   [`MasterKey::from_base64`]; the key file is not consulted.
    /// * otherwise read `<data_dir>/master.key` (base64 text). The file is
    ///   refused with [`VaultError::InsecureKeyFile`] when group or others
    ///   have any permission on it.
    /// * if the file does not exist, `data_dir` is created (new directories
    ///   get mode `0700`) and a fresh key is written to the file with mode
    ///   `0600`. The file appears atomically with its full content (written
    ///   to a private temporary file, then hard-linked into place without
    ///   replacing an existing file), so concurrent first starts agree on
    ///   one key.
    pub fn load_or_create(
        env_value: Option<&str>,
        data_dir: &Path,
    ) -> Result<MasterKey, VaultError> {
        if let Some(value) = env_value {
            return MasterKey::from_base64(value);
        }
        let path = data_dir.join(KEY_FILE_NAME);
        if let Some(key) = read_key_file(&path)? {
            return Ok(key);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)?;
        if let Some(key) = create_key_file(data_dir, &path)? {
            return Ok(key);
        }
        // Another process created the file between our read and our create.
        match read_key_file(&path)? {
            Some(key) => Ok(key),
            None => Err(VaultError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} vanished while it was being created", path.display()),
            ))),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// `Ok(None)` when the file does not exist.
fn read_key_file(path: &Path) -> Result<Option<MasterKey>, VaultError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Check the opened file itself, so the check and the read see the same inode.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(VaultError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(VaultError::InsecureKeyFile {
            path: path.display().to_string(),
        });
    }
    let mut buf = Zeroizing::new([0u8; MAX_KEY_TEXT + 1]);
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            // Far longer than any valid key text.
            return Err(VaultError::InvalidMasterKey);
        }
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| VaultError::InvalidMasterKey)?;
    MasterKey::from_base64(text).map(Some)
}

/// Removes the temporary file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// `Ok(None)` when the key file already exists (another process won the race).
fn create_key_file(data_dir: &Path, path: &Path) -> Result<Option<MasterKey>, VaultError> {
    let key = MasterKey::generate();
    let mut text = Zeroizing::new(key.to_base64());
    text.push('\n');

    let mut suffix = [0u8; 8];
    OsRng.fill_bytes(&mut suffix);
    let tmp = TempFile(data_dir.join(format!(".{KEY_FILE_NAME}.{}.tmp", hex::encode(suffix))));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp.0)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    // A hard link never replaces an existing file, and the link appears with
    // the complete content.
    match fs::hard_link(&tmp.0, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    drop(tmp);
    // Best effort: make the new directory entry durable. Some file systems
    // do not support syncing a directory; the key is already on disk.
    if let Ok(dir) = File::open(data_dir) {
        let _ = dir.sync_all();
    }
    tracing::info!(key_id = key.id(), path = %path.display(), "created new master key file");
    Ok(Some(key))
}
