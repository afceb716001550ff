//! The publisher's own row in `projection_checkpoints`.

use chrono::{SecondsFormat, Utc};
use sqlx::AnyPool;
use syncledger_store::Position;

/// How far a reader of the feed has got, and how many events it has handled in total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub events: i64,
}

/// The checkpoint named `name`, or `None` if it was never written.
pub async fn load_checkpoint(
    pool: &AnyPool,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT tx, position, events FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(tx, pos, events)| Checkpoint {
        position: Position { tx, pos },
        events,
    }))
}

/// Insert or overwrite the checkpoint named `name`.
pub async fn save_checkpoint(
    pool: &AnyPool,
    name: &str,
    cp: Checkpoint,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, tx, position, events, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (projection) DO UPDATE
            SET tx = excluded.tx, position = excluded.position,
                events = excluded.events, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(cp.position.tx)
    .bind(cp.position.pos)
    .bind(cp.events)
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true))
    .execute(pool)
    .await?;
    Ok(())
}
