//! The delivery worker's own tables: each endpoint's checkpoint and lease
//! (`webhook_checkpoints`) and every attempt (`webhook_deliveries`). Times are
//! milliseconds since the epoch.

use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};
use syncledger_projections::statement::Statement;
use syncledger_store::Position;

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// How far an endpoint has delivered, and the replay generation that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub position: Position,
    pub generation: i64,
    pub failing_since: Option<DateTime<Utc>>,
}

/// Takes (or renews) the right to deliver `endpoint` until `until`; false while another
/// holder's lease is live, or when the endpoint has no checkpoint (it was never created).
pub(crate) async fn lease(
    pool: &AnyPool,
    endpoint: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        "UPDATE webhook_checkpoints SET holder = $2, lease_until = $3
          WHERE endpoint_id = $1 AND (holder IS NULL OR holder = $2 OR lease_until < $4)",
    )
    .bind(endpoint)
    .bind(holder)
    .bind(millis(until))
    .bind(millis(now))
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// A new endpoint's checkpoint: it delivers what comes after `position`.
pub(crate) async fn start_at(
    pool: &AnyPool,
    endpoint: &str,
    position: Position,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_checkpoints (endpoint_id, tx, position, generation)
         VALUES ($1, $2, $3, 0)
         ON CONFLICT (endpoint_id) DO NOTHING",
    )
    .bind(endpoint)
    .bind(position.tx)
    .bind(position.pos)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives the lease up (at shutdown, or when the endpoint is turned off).
pub(crate) async fn release(
    pool: &AnyPool,
    endpoint: &str,
    holder: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_checkpoints SET holder = NULL, lease_until = NULL
          WHERE endpoint_id = $1 AND holder = $2",
    )
    .bind(endpoint)
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn checkpoint(
    pool: &AnyPool,
    endpoint: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tx, position, generation, failing_since FROM webhook_checkpoints
          WHERE endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Checkpoint {
            position: Position {
                tx: r.try_get("tx")?,
                pos: r.try_get("position")?,
            },
            generation: r.try_get("generation")?,
            failing_since: r.try_get::<Option<i64>, _>("failing_since")?.map(instant),
        })
    })
    .transpose()
}

/// Moves the checkpoint to `position`, unless a replay moved it since `generation` was
/// read (false: read it again).
pub(crate) async fn advance(
    pool: &AnyPool,
    endpoint: &str,
    generation: i64,
    position: Position,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_checkpoints SET tx = $3, position = $4
          WHERE endpoint_id = $1 AND generation = $2",
    )
    .bind(endpoint)
    .bind(generation)
    .bind(position.tx)
    .bind(position.pos)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends the endpoint back to `position` (a replay): its worker starts from there.
pub(crate) async fn rewind(
    pool: &AnyPool,
    endpoint: &str,
    position: Position,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_checkpoints (endpoint_id, tx, position, generation)
         VALUES ($1, $2, $3, 1)
         ON CONFLICT (endpoint_id) DO UPDATE SET tx = excluded.tx, position = excluded.position,
           generation = webhook_checkpoints.generation + 1",
    )
    .bind(endpoint)
    .bind(position.tx)
    .bind(position.pos)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records whether the endpoint's last attempt failed (`Some(now)` keeps an earlier
/// start of the failing streak).
pub(crate) async fn set_failing(
    pool: &AnyPool,
    endpoint: &str,
    failing: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let sql = match failing {
        Some(_) => {
            "UPDATE webhook_checkpoints SET failing_since = COALESCE(failing_since, $2)
              WHERE endpoint_id = $1"
        }
        None => "UPDATE webhook_checkpoints SET failing_since = $2 WHERE endpoint_id = $1",
    };
    sqlx::query(sql)
        .bind(endpoint)
        .bind(failing.map(millis))
        .execute(pool)
        .await?;
    Ok(checkpoint(pool, endpoint)
        .await?
        .and_then(|c| c.failing_since))
}

/// One attempt of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub message_id: String,
    pub attempt: i64,
    pub position: Position,
    pub event_type: String,
    /// `delivered`, `retrying` (`next_attempt_at` says when), or `failed` (given up, or
    /// refused by the receiver with a 4xx other than 408 and 429).
    pub status: String,
    pub response_code: Option<i64>,
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Records an attempt, numbered after the message's earlier ones; returns its number.
pub(crate) async fn record(
    pool: &AnyPool,
    endpoint: &str,
    workspace_id: &str,
    a: &Attempt,
) -> Result<i64, sqlx::Error> {
    let number: Option<i64> = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (endpoint_id, message_id, attempt, workspace_id, tx, position,
                                         event_type, status, response_code, error, attempted_at,
                                         next_attempt_at)
         SELECT $1, $2, COALESCE(MAX(attempt), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11
           FROM webhook_deliveries WHERE endpoint_id = $1 AND message_id = $2
         ON CONFLICT (endpoint_id, message_id, attempt) DO NOTHING
         RETURNING attempt",
    )
    .bind(endpoint)
    .bind(&a.message_id)
    .bind(workspace_id)
    .bind(a.position.tx)
    .bind(a.position.pos)
    .bind(&a.event_type)
    .bind(&a.status)
    .bind(a.response_code)
    .bind(a.error.clone())
    .bind(millis(a.attempted_at))
    .bind(a.next_attempt_at.map(millis))
    .fetch_optional(pool)
    .await?;
    Ok(number.unwrap_or(a.attempt))
}

/// Rows per statement of [`record_all`] (9 parameters each).
const ROWS_PER_INSERT: usize = 100;

/// Records delivered attempts in as few statements as the chunking allows, each
/// numbered after its message's earlier ones (a replayed message has some).
pub(crate) async fn record_all(
    pool: &AnyPool,
    endpoint: &str,
    workspace_id: &str,
    attempts: &[Attempt],
) -> Result<(), sqlx::Error> {
    for chunk in attempts.chunks(ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let marks: Vec<String> = (1..=9).map(|c| format!("${}", r * 9 + c + 2)).collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        // `column1`…: the names both databases give a VALUES list's columns.
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint_id, message_id, attempt, workspace_id, tx,
                                             position, event_type, status, response_code, error,
                                             attempted_at, next_attempt_at)
             SELECT $1, v.column1,
                    COALESCE((SELECT MAX(d.attempt) FROM webhook_deliveries d
                               WHERE d.endpoint_id = $1 AND d.message_id = v.column1), 0) + 1,
                    $2, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7,
                    v.column8, v.column9
               FROM (VALUES {}) AS v
              WHERE TRUE
             ON CONFLICT (endpoint_id, message_id, attempt) DO NOTHING",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(endpoint).bind(workspace_id);
        for a in chunk {
            q = q
                .bind(&a.message_id)
                .bind(a.position.tx)
                .bind(a.position.pos)
                .bind(&a.event_type)
                .bind(&a.status)
                .bind(a.response_code)
                .bind(a.error.clone())
                .bind(millis(a.attempted_at))
                .bind(a.next_attempt_at.map(millis));
        }
        q.execute(pool).await?;
    }
    Ok(())
}

fn attempt_of(r: &sqlx::any::AnyRow) -> Result<Attempt, sqlx::Error> {
    Ok(Attempt {
        message_id: r.try_get("message_id")?,
        attempt: r.try_get("attempt")?,
        position: Position {
            tx: r.try_get("tx")?,
            pos: r.try_get("position")?,
        },
        event_type: r.try_get("event_type")?,
        status: r.try_get("status")?,
        response_code: r.try_get("response_code")?,
        error: r.try_get("error")?,
        attempted_at: instant(r.try_get("attempted_at")?),
        next_attempt_at: r.try_get::<Option<i64>, _>("next_attempt_at")?.map(instant),
    })
}

const COLUMNS: &str = "message_id, attempt, tx, position, event_type, status, response_code, error,
                       attempted_at, next_attempt_at";

/// The attempts of one message so far, oldest first.
pub(crate) async fn attempts_of(
    pool: &AnyPool,
    endpoint: &str,
    message_id: &str,
) -> Result<Vec<Attempt>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 AND message_id = $2
          ORDER BY attempt"
    ))
    .bind(endpoint)
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(attempt_of).collect()
}

/// What [`list`] runs: up to `limit` attempts of the endpoint, newest first, before
/// (`attempted_at`, `message_id`, `attempt`) = `before` when given. Served by the index on
/// `(endpoint_id, attempted_at, message_id, attempt)` read backwards (migration 0023): the
/// page seeks to `attempted_at <= before` and walks one page, however many attempts the
/// endpoint has; the query-plan test checks it beside the read models' lists.
pub fn list_statement(endpoint: &str, before: Option<(i64, String, i64)>, limit: i64) -> Statement {
    let (at, id, n) = before.unwrap_or((i64::MAX, String::new(), 0));
    let mut s = Statement::new(format!(
        "SELECT {COLUMNS} FROM webhook_deliveries
          WHERE endpoint_id = $1 AND attempted_at <= $2
            AND (attempted_at < $2 OR (attempted_at = $2 AND (message_id < $3
                 OR (message_id = $3 AND attempt < $4))))
          ORDER BY attempted_at DESC, message_id DESC, attempt DESC LIMIT $5"
    ));
    s.arg(endpoint);
    s.arg(at);
    s.arg(id);
    s.arg(n);
    s.arg(limit);
    s
}

/// Up to `limit` attempts of the endpoint, newest first (see [`list_statement`]).
pub(crate) async fn list(
    pool: &AnyPool,
    endpoint: &str,
    before: Option<(i64, String, i64)>,
    limit: i64,
) -> Result<Vec<Attempt>, sqlx::Error> {
    let statement = list_statement(endpoint, before, limit);
    let rows = statement.query().fetch_all(pool).await?;
    rows.iter().map(attempt_of).collect()
}
