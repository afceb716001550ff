//! The embedded database's files at rest: its directory private to the owner (0700), the
//! database and its `-wal`/`-shm` companions readable by the owner only (0600), whatever
//! the umask. They hold ciphertext, token hashes and every synced record.
//!
//! SQLite creates a new database file with 0644 less the umask, and gives the `-wal` and
//! `-shm` files the database file's mode. So the database file is made here, 0600, before
//! SQLite opens it; the companions then follow, and are checked after opening anyway.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the files could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(
        "the data directory {path} is open to other users (mode {mode:03o}); \
         it holds the database and keys: run `chmod 700 {path}` and start again"
    )]
    OpenDirectory { path: String, mode: u32 },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    #[error("could not prepare {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` (and missing parents) 0700, or checks that the existing `dir` is a
/// directory that neither group nor others may enter, read or write.
pub fn private_dir(dir: &Path) -> Result<(), FilesError> {
    match fs::metadata(dir) {
        Ok(meta) => check_private_dir(dir, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error(dir))?;
            // The mode given at creation is masked by the umask; this one is not.
            fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io_error(dir))
        }
        Err(e) => Err(io_error(dir)(e)),
    }
}

fn check_private_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), FilesError> {
    let path = dir.display().to_string();
    if !meta.is_dir() {
        return Err(FilesError::NotADirectory { path });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FilesError::OpenDirectory { path, mode });
    }
    Ok(())
}

/// The files SQLite keeps for the database at `db`: itself, its write-ahead log and
/// its shared-memory index.
pub fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Creates the database file empty and 0600 if it does not exist, so that SQLite (and
/// the companions it derives their mode from) never make it readable by others.
pub fn create_private_file(path: &Path) -> Result<(), FilesError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(io_error(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Takes group and other permissions away from each of the database's files that
/// exists (one left by an older version, or created under a lax umask).
pub fn restrict_sqlite_files(db: &Path) -> Result<(), FilesError> {
    for path in sqlite_files(db) {
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, Permissions::from_mode(mode & 0o700))
                .map_err(io_error(&path))?;
            tracing::info!(path = %path.display(), "database file made private to its owner");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .permissions(Permissions::from_mode(0o700))
            .tempdir()
            .expect("temporary directory")
    }

    #[test]
    fn a_new_directory_is_private_and_an_open_one_is_refused() {
        let root = scratch();
        let dir = root.path().join("a").join("data");
        private_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        private_dir(&dir).expect("an existing private directory is accepted");
        for open in [0o755, 0o750, 0o701, 0o770, 0o707] {
            fs::set_permissions(&dir, Permissions::from_mode(open)).expect("chmod");
            let err = private_dir(&dir).expect_err("open directory accepted");
            assert!(
                matches!(err, FilesError::OpenDirectory { mode, .. } if mode == open),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 700"), "{err}");
        }
        let file = root.path().join("file");
        fs::write(&file, b"").expect("write");
        assert!(matches!(
            private_dir(&file),
            Err(FilesError::NotADirectory { .. })
        ));
    }

    #[test]
    fn files_are_created_private_and_existing_ones_restricted() {
        let root = scratch();
        let db = root.path().join("x.db");
        create_private_file(&db).expect("create");
        assert_eq!(mode(&db), 0o600);
        let [_, wal, shm] = sqlite_files(&db);
        assert!(wal.ends_with("x.db-wal") && shm.ends_with("x.db-shm"));
        fs::write(&wal, b"").expect("write");
        fs::set_permissions(&wal, Permissions::from_mode(0o644)).expect("chmod");
        fs::set_permissions(&db, Permissions::from_mode(0o664)).expect("chmod");
        create_private_file(&db).expect("an existing file is left to the next step");
        restrict_sqlite_files(&db).expect("restrict");
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
        assert!(!shm.exists());
    }
}
