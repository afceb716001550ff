//! Files at rest: the data directory is created 0700 and the SQLite database, its `-wal`
//! and `-shm` and the key file 0600, whatever the umask; a data directory that other users
//! may read is refused at start, with a message saying how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use syncledger_testkit::binary::{describe, stderr, Server, TestEnv};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn files_are_private_even_under_a_permissive_umask() {
    let env = TestEnv::sqlite();
    let data = env.data_dir().join("fresh").join("data");
    let mut cmd = env.command_with_umask("000", &["serve", "--addr", "127.0.0.1:0"]);
    cmd.env("SYNCLEDGER_DATA_DIR", &data);
    let server = Server::start(cmd).await;
    // While the server runs, SQLite holds its write-ahead log and shared-memory index open.
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in [
        "syncledger.db",
        "syncledger.db-wal",
        "syncledger.db-shm",
        "master.key",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    server.stop_ok().await;
}

#[tokio::test]
async fn an_open_data_directory_is_refused_on_sqlite() {
    refuse_open_data_directory(TestEnv::sqlite()).await;
}

#[tokio::test]
async fn an_open_data_directory_is_refused_on_postgres() {
    let Some(env) = TestEnv::postgres().await else {
        return;
    };
    refuse_open_data_directory(env).await;
}

async fn refuse_open_data_directory(env: TestEnv) {
    let dir = env.data_dir();
    for open in [0o755, 0o750, 0o705] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(open)).expect("chmod");
        for args in [
            &["workspace", "create", "Acme"][..],
            &["serve", "--addr", "127.0.0.1:0"][..],
        ] {
            let out = env.run(args).await;
            assert!(!out.status.success(), "{args:?}: {}", describe(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{} is open to other users", dir.display()))
                    && err.contains(&format!("(mode {open:o})"))
                    && err.contains("chmod 700"),
                "{args:?}: {err}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir)
            .expect("read the data directory")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert!(left.is_empty(), "created in a refused directory: {left:?}");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    env.run_ok(&["workspace", "create", "Acme"]).await;
}
