//! `Idempotency-Key` on the requests that create something: the first request with a key
//! claims it, and its answer is kept; a retry with the same key and the same request gets
//! that answer again and creates nothing; the same key with a different request is refused.
//!
//! One row per (workspace, key) in `idempotency_keys`. A claim is taken with an insert that
//! does nothing on conflict, so two concurrent first requests cannot both go through: the
//! loser is told the key is in use. A claim whose request never finished (the process died
//! in between) is taken over after [`ABANDONED_AFTER_MS`]; a kept answer is forgotten after
//! [`KEPT_FOR_MS`].

use sqlx::{AnyPool, Row};

use crate::error::EngineError;

/// How long a kept answer is replayed for a retry.
pub const KEPT_FOR_MS: i64 = 24 * 60 * 60 * 1000;
/// A claim without an answer older than this belongs to a request that never finished.
pub const ABANDONED_AFTER_MS: i64 = 2 * 60 * 1000;

/// What a request carrying a key may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's: run it, then [`complete`] or [`release`].
    Fresh,
    /// The same request ran before: answer this again.
    Replay { status: u16, body: String },
    /// The key was used for a different request.
    Mismatch,
    /// The same key's first request is still running.
    InFlight,
}

/// Claims `key` for the request whose fingerprint is `fingerprint`, at `now_ms`.
pub async fn claim(
    pool: &AnyPool,
    workspace_id: &str,
    key: &str,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Claim, EngineError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (workspace_id, key, fingerprint, claimed_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, key) DO NOTHING",
    )
    .bind(workspace_id)
    .bind(key)
    .bind(fingerprint)
    .bind(now_ms)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let Some(row) = sqlx::query(
        "SELECT fingerprint, status, response, claimed_at FROM idempotency_keys
          WHERE workspace_id = $1 AND key = $2",
    )
    .bind(workspace_id)
    .bind(key)
    .fetch_optional(pool)
    .await?
    else {
        // Released between the insert and the read: a fresh claim next time.
        return Ok(Claim::InFlight);
    };
    let claimed_at: i64 = row.try_get("claimed_at")?;
    let status: Option<i64> = row.try_get("status")?;
    let stale = match status {
        Some(_) => now_ms - claimed_at > KEPT_FOR_MS,
        None => now_ms - claimed_at > ABANDONED_AFTER_MS,
    };
    if stale {
        // Take it over, unless someone else just did (the claim time is the version).
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET fingerprint = $3, status = NULL, response = NULL,
                    claimed_at = $4
              WHERE workspace_id = $1 AND key = $2 AND claimed_at = $5",
        )
        .bind(workspace_id)
        .bind(key)
        .bind(fingerprint)
        .bind(now_ms)
        .bind(claimed_at)
        .execute(pool)
        .await?
        .rows_affected();
        return Ok(if taken == 1 {
            Claim::Fresh
        } else {
            Claim::InFlight
        });
    }
    let stored: String = row.try_get("fingerprint")?;
    if stored != fingerprint {
        return Ok(Claim::Mismatch);
    }
    Ok(match status {
        Some(status) => Claim::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body: row
                .try_get::<Option<String>, _>("response")?
                .unwrap_or_default(),
        },
        None => Claim::InFlight,
    })
}

/// Keeps the answer of the request that holds `key`.
pub async fn complete(
    pool: &AnyPool,
    workspace_id: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, response = $4
          WHERE workspace_id = $1 AND key = $2",
    )
    .bind(workspace_id)
    .bind(key)
    .bind(i64::from(status))
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives `key` back: the request created nothing (it was refused or failed), so a retry
/// with the same key runs again.
pub async fn release(pool: &AnyPool, workspace_id: &str, key: &str) -> Result<(), EngineError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND key = $2 AND status IS NULL",
    )
    .bind(workspace_id)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}
