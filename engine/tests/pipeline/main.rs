//! The run pipeline at the engine level, without HTTP: the engine's `SyncRuns` executing
//! pull runs against an in-memory CRM (served on loopback to the custom-provider adapter)
//! on a real store, SQLite in a temporary directory and PostgreSQL
//! (`SYNCLEDGER_TEST_PG_URL`; with `CI=true` a missing server fails the test).
//!
//! To shape the committer's groups, a test holds the store's write lock from a connection
//! of its own while the run is at its first page, and lets go once the CRM has been asked
//! for the last page. By then every page but the last two has been decided and handed to
//! the committer (the feeder asks for page n + 2 only after page n is handed over), so
//! they wait behind the first commit and the next commit takes them all. Which pages the
//! first commit takes is not fixed: page 0 and whatever was decided before the committer,
//! which shares its task with the feeder, was first polled (on a loaded machine, a page or
//! two more); the tests' assertions hold for any such split.

mod conflict;
mod crm;
mod group_commit;
mod resume;
mod support;
mod wake;
