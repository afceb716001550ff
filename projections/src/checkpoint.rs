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
    Ok(Checkpoint {
        position: Position {
            tx: row.try_get("tx")?,
            pos: row.try_get("position")?,
        },
        events: row.try_get("events")?,
    })
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
    row.map(|r| {
        Ok(Checkpoint {
            position: Position {
                tx: r.try_get("tx")?,
                pos: r.try_get("position")?,
            },
            events: r.try_get("events")?,
        })
    })
    .transpose()
}

pub async fn delete(conn: &mut sqlx::AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
