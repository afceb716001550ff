//! Files at rest: the embedded database, its `-wal` and `-shm` and the key file are the
//! owner's alone (0600) in a directory only the owner may enter (0700); a data directory
//! that others may read is refused at start. (The same under a permissive umask, on the
//! real binary: `api/tests/cli/files.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use syncledger_store::{Store, StoreConfig};
use syncledger_testkit::app::{Backend, TestApp};
use syncledger_testkit::db::private_tempdir;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
}

fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_keeps_its_files_to_its_owner() -> anyhow::Result<()> {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await? else {
        return Ok(());
    };
    app.create_integration(&app.admin, "Billing").await?;
    let dir = app.data_dir.path();
    assert_eq!(mode(dir), 0o700);
    for name in [
        "syncledger.db",
        "syncledger.db-wal",
        "syncledger.db-shm",
        "master.key",
    ] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    app.finish().await
}

#[tokio::test]
async fn a_data_directory_others_may_read_is_refused() -> anyhow::Result<()> {
    let dir = private_tempdir();
    for open in [0o755, 0o750, 0o711, 0o702] {
        chmod(dir.path(), open)?;
        let err = Store::open(&StoreConfig::sqlite(dir.path()))
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("mode {open:o} was accepted"))?
            .to_string();
        assert!(
            err.contains(&format!(
                "{} is open to other users (mode {open:o})",
                dir.path().display()
            )) && err.contains("chmod 700"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path())?.count(),
            0,
            "a file was created"
        );
    }
    chmod(dir.path(), 0o700)?;
    Store::open(&StoreConfig::sqlite(dir.path()))
        .await?
        .close()
        .await;
    Ok(())
}

#[tokio::test]
async fn a_new_data_directory_is_private_and_old_loose_files_are_restricted() -> anyhow::Result<()>
{
    let root = private_tempdir();
    let dir = root.path().join("nested").join("data");
    let store = Store::open(&StoreConfig::sqlite(&dir)).await?;
    assert_eq!(mode(&dir), 0o700);
    store.close().await;
    // A database left readable by an older version is made private when opened.
    let db = dir.join("syncledger.db");
    chmod(&db, 0o644)?;
    let store = Store::open(&StoreConfig::sqlite(&dir)).await?;
    for name in ["syncledger.db", "syncledger.db-wal", "syncledger.db-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    store.close().await;
    Ok(())
}
