//! Checkpoints: how far a projection has read the feed.

use crate::rfc3339;
use sqlx::Row;
use syncledger_store::Position;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    /// Events applied so far.
    pub events: i64,
}

/// Take the checkpoint row's write lock and read it, creating the row at the start if
/// absent. It must be the first statement of the transaction: on SQLite that makes the
/// transaction a writer at once (so it waits on the lock instead of failing on upgrade),
/// and on PostgreSQL it serialises runners of the same projection.
pub async fn lock(conn: &mut sqlx::AnyConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO projection_checkpoints (projection, tx, position, events, updated_at)
         VALUES ($1, 0, 0, 0, $2)
         ON CONFLICT (projection) DO UPDATE SET projection = excluded.projection
         RETURNING tx, position, events",
    )
    .bind(name)
    .bind(rfc3339(chrono::Utc::now()))
    .fetch_one(&mut *conn)
    .await?;
    from_row(&row)
}

/// A checkpoint row's `tx`, `position` and `events`.
fn from_row(row: &sqlx::any::AnyRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        position: Position {
            tx: row.try_get("tx")?,
            pos: row.try_get("position")?,
        },
        events: row.try_get("events")?,
    })
}

/// As [`lock`], unless another transaction holds the checkpoint's lock (it is applying
/// a batch of the same projection): then `None` at once, instead of queueing behind it.
/// A queued transaction holds a transaction id while it waits, and on PostgreSQL that
/// holds back the feed for every reader (it hands out only events no open transaction
/// can precede); many waiters became a convoy, each in turn finding little to apply.
/// On SQLite, whose lock is the database's, the same as [`lock`].
pub async fn try_lock(
    conn: &mut sqlx::AnyConnection,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    if conn.backend_name() != "PostgreSQL" {
        return lock(conn, name).await.map(Some);
    }
    let free = sqlx::query(
        "SELECT tx, position, events FROM projection_checkpoints WHERE projection = $1
            FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = free {
        return from_row(&row).map(Some);
    }
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM projection_checkpoints WHERE projection = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    match exists {
        Some(_) => Ok(None),
        // The first batch ever: the row is created (and locked) as `lock` does.
        None => lock(conn, name).await.map(Some),
    }
}

pub async fn save(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    cp: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET tx = $2, position = $3, events = $4, updated_at = $5
          WHERE projection = $1",
    )
    .bind(name)
    .bind(cp.position.tx)
    .bind(cp.position.pos)
    .bind(cp.events)
    .bind(rfc3339(chrono::Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn read(pool: &sqlx::AnyPool, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tx, position, events FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn delete(conn: &mut sqlx::AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
