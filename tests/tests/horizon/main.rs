//! Tests that hold a PostgreSQL transaction open. The feed horizon (`pg_snapshot_xmin`) is
//! server-wide, so such a test stalls every other test's feed while it runs: it gets a test
//! binary of its own, which cargo runs after the others, never alongside them.

mod read_your_writes;
