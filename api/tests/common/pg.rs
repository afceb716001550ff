//! A PostgreSQL database of its own for each test, dropped when the test is done
//! (also when it panics).

use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;

const ADMIN_URL_VAR: &str = "SYNCLEDGER_TEST_PG_URL";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct PgDb {
    admin_url: String,
    name: String,
    /// The URL of the test database.
    pub url: String,
}

impl PgDb {
    /// A new empty database, or `None` with a note when PostgreSQL cannot be reached
    /// (a panic instead when `CI=true`).
    pub async fn create() -> Option<PgDb> {
        let admin_url =
            std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let mut admin = match connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => return unreachable(&e),
        };
        let name = format!("sltest_cli_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(PgDb {
            admin_url,
            name,
            url,
        })
    }
}

fn unreachable(error: &str) -> Option<PgDb> {
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        panic!("PostgreSQL is required when CI=true: {error}");
    }
    eprintln!(
        "skipping: PostgreSQL is not reachable ({error}); set {ADMIN_URL_VAR} to run this test"
    );
    None
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// `postgres://u@h:5432/postgres?x=y` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let mut admin = connect(admin_url).await?;
    // FORCE ends connections a stopped (or killed) server may have left behind.
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    Ok(())
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside the test's runtime: use a thread with
        // a runtime of its own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(drop_database(&url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database {} was left behind: {e}", self.name),
            Err(_) => eprintln!("test database {} was left behind", self.name),
        }
    }
}
