//! One fresh database per test: a SQLite file in a temporary directory, or a PostgreSQL
//! database with a random name that is dropped when the test is done.

use sqlx::{Connection, Executor, PgConnection};
use std::future::Future;
use std::time::Duration;
use syncledger_store::config::redact_url;
use syncledger_store::{Store, StoreConfig};
use tempfile::TempDir;

/// The server (and the database to connect to for `CREATE DATABASE`) the tests use.
pub const PG_URL_VAR: &str = "SYNCLEDGER_TEST_PG_URL";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// True when the environment says external services must be present (`CI=true`):
/// a test that cannot reach them then fails instead of skipping.
pub fn require_ci_services() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A migrated store on a SQLite file in a new temporary directory (removed on drop).
pub async fn sqlite_store() -> (Store, TempDir) {
    let dir = private_tempdir();
    let store = Store::open(&StoreConfig::sqlite(dir.path()))
        .await
        .expect("open a SQLite store");
    (store, dir)
}

/// A temporary data directory private to the owner (0700): the store refuses to keep its
/// database in a directory others may read.
pub fn private_tempdir() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("create a temporary directory")
}

/// A PostgreSQL database of its own for one test. Call [`PgTestDb::cleanup`] at the end, or
/// let it go: `Drop` drops the database too (blocking, best effort), also when the test
/// panicked or a process it started was killed with connections open.
#[derive(Debug)]
pub struct PgTestDb {
    admin_url: String,
    /// The URL of the test database itself.
    pub url: String,
    pub name: String,
    dropped: bool,
}

/// A migrated store on a new PostgreSQL database, or `None` (with a note on stderr) when
/// PostgreSQL is unreachable and `CI` is not `true`.
pub async fn postgres_store() -> Option<(Store, PgTestDb)> {
    let db = PgTestDb::create().await?;
    let store = Store::open(&StoreConfig::postgres(db.url.clone()))
        .await
        .unwrap_or_else(|e| panic!("open the store on {}: {e}", redact_url(&db.url)));
    Some((store, db))
}

fn unreachable_postgres<T>(url: &str, error: &anyhow::Error) -> Option<T> {
    let url = redact_url(url);
    if require_ci_services() {
        panic!("PostgreSQL is required when CI=true: cannot connect to {url}: {error:#}");
    }
    eprintln!("skipping: PostgreSQL is not reachable at {url} ({error:#}); set {PG_URL_VAR} to run this test");
    None
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await??;
    Ok(conn)
}

/// `postgres://u@h:5432/postgres?x=y` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = connect(admin_url).await?;
    // FORCE ends the store's pooled connections, which may still be open.
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    let _ = admin.close().await;
    Ok(())
}

impl PgTestDb {
    /// A new, empty database on the test server ([`PG_URL_VAR`]), or `None` (with a note on
    /// stderr) when PostgreSQL is unreachable and `CI` is not `true`.
    pub async fn create() -> Option<PgTestDb> {
        let admin_url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
        let mut admin = match connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => return unreachable_postgres(&admin_url, &e),
        };
        let name = format!("sltest_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = admin.close().await;
        Some(PgTestDb {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
            dropped: false,
        })
    }

    /// Drop the database now (its pooled connections are ended with it).
    pub async fn cleanup(mut self) {
        if let Err(e) = drop_database(&self.admin_url, &self.name).await {
            eprintln!("could not drop test database {}: {e:#}", self.name);
        }
        self.dropped = true;
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Reached without cleanup (a test that panicked, or one that lets the database go
        // with its value). Drop cannot await and may run inside the test's runtime, so a
        // thread with a runtime of its own does the work.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(drop_database(&url, &name)).ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("test database {} was left behind", self.name);
        }
    }
}

/// Run `test` on a fresh SQLite store.
pub async fn with_sqlite<F, Fut>(test: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (store, _dir) = sqlite_store().await;
    let result = test(store.clone()).await;
    store.close().await;
    result
}

/// Run `test` on a fresh PostgreSQL database, dropped afterwards; skipped (Ok) when
/// PostgreSQL is unreachable outside CI.
pub async fn with_postgres<F, Fut>(test: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let Some((store, db)) = postgres_store().await else {
        return Ok(());
    };
    let result = test(store.clone()).await;
    store.close().await;
    db.cleanup().await;
    result
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:p@h", "t1"),
            "postgres://u:p@h/t1"
        );
    }
}
