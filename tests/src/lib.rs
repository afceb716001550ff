//! Shared support for syncledger's integration tests.
//!
//! Every test gets its own database ([`db`]), waits by polling a condition with a deadline
//! ([`wait`]), and seeds data through the real command path ([`fixtures`]).

pub mod db;
pub mod fixtures;
pub mod hostile_cel;
pub mod own_pg;
pub mod rows;
pub mod wait;

pub use db::{
    postgres_store, require_ci_services, sqlite_store, with_postgres, with_sqlite, PgTestDb,
};
pub use wait::{feed_settled, wait_until};
