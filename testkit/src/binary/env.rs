//! One test's installation: a temporary data directory, optionally a PostgreSQL database
//! and a master key in the environment, and the `syncledger` binary run against them.

use super::{describe, stdout, Server};
use crate::db::{private_tempdir, PgTestDb};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use syncledger_store::{Store, StoreConfig};
use tempfile::TempDir;
use tokio::process::Command;

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Variables of the test's own environment that would change what the binary does.
const INHERITED: [&str; 3] = ["DATABASE_URL", "NATS_URL", "RUST_LOG"];

pub struct TestEnv {
    dir: TempDir,
    pg: Option<PgTestDb>,
    master_key: Option<String>,
}

/// What `workspace create` printed.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    pub token: String,
}

impl TestEnv {
    /// SQLite in a fresh data directory.
    pub fn sqlite() -> TestEnv {
        TestEnv {
            dir: private_tempdir(),
            pg: None,
            master_key: None,
        }
    }

    /// PostgreSQL on a fresh database (and a fresh data directory for the key file);
    /// `None` when PostgreSQL is unreachable and this is not CI.
    pub async fn postgres() -> Option<TestEnv> {
        let pg = PgTestDb::create().await?;
        Some(TestEnv {
            pg: Some(pg),
            ..TestEnv::sqlite()
        })
    }

    /// Pass the master key through `SYNCLEDGER_MASTER_KEY` instead of the key file.
    pub fn set_master_key(&mut self, base64: &str) {
        self.master_key = Some(base64.to_string());
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// The binary with this installation's environment and nothing inherited that
    /// would point it elsewhere.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.command_in(Command::new(binary()), args)
    }

    /// [`TestEnv::command`], started by `sh` after `umask {mask}` (the tests cannot set
    /// a child's umask themselves without unsafe code).
    pub fn command_with_umask<S: AsRef<OsStr>>(&self, mask: &str, args: &[S]) -> Command {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
            .arg(binary());
        self.command_in(sh, args)
    }

    fn command_in<S: AsRef<OsStr>>(&self, mut cmd: Command, args: &[S]) -> Command {
        for (name, _) in std::env::vars_os() {
            let name_str = name.to_string_lossy();
            if name_str.starts_with("SYNCLEDGER_") || INHERITED.contains(&name_str.as_ref()) {
                cmd.env_remove(&name);
            }
        }
        // Tests drive the sandboxes on loopback with the sandbox OAuth apps: they opt in
        // to the development default explicitly (a database URL would mean production).
        cmd.current_dir(self.dir.path())
            .env("SYNCLEDGER_DATA_DIR", self.dir.path())
            .env("SYNCLEDGER_ENVIRONMENT", "development");
        if let Some(pg) = &self.pg {
            cmd.env("SYNCLEDGER_DATABASE_URL", &pg.url);
        }
        if let Some(key) = &self.master_key {
            cmd.env("SYNCLEDGER_MASTER_KEY", key);
        }
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Run a command to completion (bounded by a timeout).
    pub async fn run(&self, args: &[&str]) -> Output {
        let output = tokio::time::timeout(CLI_TIMEOUT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("syncledger {args:?} did not finish in {CLI_TIMEOUT:?}"));
        output.unwrap_or_else(|e| panic!("run syncledger {args:?}: {e}"))
    }

    /// Run a command that must succeed; its stdout.
    pub async fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "syncledger {args:?} failed: {}",
            describe(&output)
        );
        stdout(&output)
    }

    pub async fn create_workspace(&self, name: &str) -> Workspace {
        let out = self.run_ok(&["workspace", "create", name]).await;
        let v: serde_json::Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("workspace create printed {out:?}: {e}"));
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no {k} in {out:?}"))
                .to_string()
        };
        Workspace {
            id: field("workspace_id"),
            token: field("admin_token"),
        }
    }

    /// `serve` on a free port; waits for its listening line.
    pub async fn serve(&self) -> Server {
        self.serve_with(&[], &[]).await
    }

    /// `serve` with extra global arguments (before the subcommand) and variables.
    pub async fn serve_with(&self, global: &[&str], vars: &[(&str, &str)]) -> Server {
        let args: Vec<&str> = global
            .iter()
            .copied()
            .chain(["serve", "--addr", "127.0.0.1:0"])
            .collect();
        let mut cmd = self.command(&args);
        cmd.envs(vars.iter().copied());
        Server::start(cmd).await
    }

    /// The same database, opened in this process (migrations are idempotent).
    pub async fn store(&self) -> Store {
        let config = StoreConfig {
            database_url: self.pg.as_ref().map(|pg| pg.url.clone()),
            data_dir: self.dir.path().to_path_buf(),
            max_connections: 2,
        };
        Store::open(&config).await.expect("open the test's store")
    }

    /// Everything the installation has stored: the bytes of every file in the data
    /// directory, and on PostgreSQL a text dump of every row of every public table.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        let mut bytes = files_under(self.dir.path());
        if self.pg.is_some() {
            bytes.extend(self.dump_tables().await.into_bytes());
        }
        bytes
    }

    async fn dump_tables(&self) -> String {
        let store = self.store().await;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                .fetch_all(&store.any)
                .await
                .expect("list tables");
        assert!(tables.iter().any(|t| t == "events"), "tables: {tables:?}");
        let mut dump = String::new();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                    .fetch_all(&store.any)
                    .await
                    .unwrap_or_else(|e| panic!("dump {table}: {e}"));
            dump.push_str(&rows.join("\n"));
        }
        store.close().await;
        dump
    }
}

fn files_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            bytes.extend(files_under(&path));
        } else if let Ok(content) = std::fs::read(&path) {
            // A file may vanish between listing and reading (e.g. -shm at close).
            bytes.extend(content);
        }
    }
    bytes
}

/// The `syncledger` binary cargo built for the integration test being run: cargo names it
/// in `CARGO_BIN_EXE_syncledger` (when building and running a test of the `api` package);
/// otherwise it sits beside the test's own `deps/` directory.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_syncledger") {
        return PathBuf::from(path);
    }
    let test = std::env::current_exe().expect("the test binary's path");
    let path = test
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("syncledger"))
        .filter(|path| path.exists());
    path.unwrap_or_else(|| {
        panic!(
            "no syncledger binary beside {}: run the tests of the api package",
            test.display()
        )
    })
}
