//! The one home of syncledger's test support, used by the end-to-end tests (`tests/`) and
//! by `api`'s integration tests (`api/tests/{cli,workers}`).
//!
//! - Databases: one per test, per backend: [`db::sqlite_store`] (a SQLite file in a private
//!   temporary directory) and [`db::PgTestDb`] (a PostgreSQL database dropped when done);
//!   [`own_pg::OwnPg`], a PostgreSQL server a test may kill.
//! - Servers: in this process, [`app::TestApp::spawn_with`] (a server, a workspace and its
//!   admin token on a fresh database); as the `syncledger` binary,
//!   [`binary::TestEnv::serve_with`] (a child process on a fresh installation), with the
//!   `worker` child beside it ([`binary::Worker`]).
//! - Sandboxes: [`sandbox::hubspot`] starts a HubSpot simulator, [`sandbox::approve`]
//!   grants its OAuth consent.
//! - Browsers: [`browser::Browser`], a headless Chromium driven through chromedriver,
//!   for the dashboard as a person uses it.
//! - Waiting: [`wait::poll_until`] (and [`wait::wait_until`]) poll a condition with a
//!   deadline; no test sleeps in place of a condition.
//! - Data: events seeded through the real command path ([`fixtures`]), table dumps
//!   ([`rows`]), the projection checks ([`projections`]), hostile CEL ([`hostile_cel`]).
//!
//! Nothing here is a test itself, and no production crate depends on it.

pub mod app;
pub mod binary;
pub mod browser;
pub mod conflicts;
pub mod db;
pub mod fixtures;
pub mod hostile_cel;
pub mod nats;
pub mod own_pg;
pub mod projections;
pub mod rows;
pub mod sandbox;
pub mod wait;

pub use db::{
    postgres_store, require_ci_services, sqlite_store, with_postgres, with_sqlite, PgTestDb,
};
pub use wait::{feed_settled, poll_until, wait_until};

/// 32 random hex digits, e.g. for secrets the tests then look for.
pub fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
