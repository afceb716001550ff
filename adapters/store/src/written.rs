//! Which events one writer (a sync run) put in the log, for undoing its work.
//!
//! A writer's events carry its id as their correlation id, within its workspace. Events
//! written before correlation ids were minted by the server carry the writer's id in
//! their payload instead (`run_id`); those are looked for only within the span of the
//! writer's own aggregate's events.

use sqlx::Row;

use crate::Store;

/// How a writer's events are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marked {
    /// Under the writer's id as correlation id.
    Correlated,
    /// Also by the writer's id in the payload's `run_id`, for events between the
    /// writer's own first and last event (global positions).
    Span { first: i64, last: i64 },
}

/// A writer: its id (its own aggregate's id and its correlation id), its workspace, and
/// how its events are marked.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub marked: Marked,
}

/// One stored event's payload and metadata, as JSON.
#[derive(Debug)]
pub struct RawEvent {
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

impl Store {
    /// SQL for the text at `key` of the JSON in `column`, per backend.
    fn json_text(&self, column: &str, key: &str) -> String {
        if self.is_postgres() {
            format!("{column}->>'{key}'")
        } else {
            format!("json_extract({column}, '$.{key}')")
        }
    }

    /// How the writer whose own aggregate is `(aggregate_type, id)` marked its events,
    /// told by that aggregate's first event's correlation id.
    pub async fn marking(&self, aggregate_type: &str, id: &str) -> Result<Marked, sqlx::Error> {
        let sql = format!(
            "SELECT {} AS correlation, global_position AS first,
                    (SELECT MAX(global_position) FROM events
                      WHERE aggregate_type = $1 AND aggregate_id = $2) AS last
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence LIMIT 1",
            self.json_text("metadata", "correlation_id")
        );
        let row = sqlx::query(&sql)
            .bind(aggregate_type)
            .bind(id)
            .fetch_optional(&self.any)
            .await?;
        let Some(row) = row else {
            return Ok(Marked::Correlated);
        };
        let correlation: Option<String> = row.try_get("correlation")?;
        if correlation.as_deref() == Some(id) {
            return Ok(Marked::Correlated);
        }
        Ok(Marked::Span {
            first: row.try_get("first")?,
            last: row.try_get("last")?,
        })
    }

    /// SQL for "this event was written by writer `$param` of workspace `$param+1`".
    fn written_by(&self, param: usize, marked: Marked) -> String {
        let correlated = format!(
            "({} = ${} AND {} = ${param})",
            self.json_text("metadata", "workspace_id"),
            param + 1,
            self.json_text("metadata", "correlation_id")
        );
        match marked {
            Marked::Correlated => correlated,
            Marked::Span { first, last } => format!(
                "({correlated} OR (global_position BETWEEN {first} AND {last} AND {} = ${param}
                    AND {} = ${}))",
                self.json_text("payload", "run_id"),
                self.json_text("metadata", "workspace_id"),
                param + 1
            ),
        }
    }

    /// Up to `limit` ids of aggregates of `aggregate_type` the writer wrote events to,
    /// after `after`, in id order; with `first_has = (key, value)`, only aggregates whose
    /// first event's payload holds that text at that key.
    pub async fn written_to(
        &self,
        writer: &Writer<'_>,
        aggregate_type: &str,
        first_has: Option<(&str, &str)>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let of_first = match first_has {
            None => String::new(),
            Some((key, _)) => format!(
                "AND EXISTS (SELECT 1 FROM events f WHERE f.aggregate_type = $5
                     AND f.aggregate_id = events.aggregate_id AND f.sequence = 1
                     AND {} = $6)",
                self.json_text("f.payload", key)
            ),
        };
        let sql = format!(
            "SELECT DISTINCT aggregate_id FROM events
              WHERE aggregate_type = $5 AND {} AND aggregate_id > $3 {of_first}
              ORDER BY aggregate_id LIMIT $4",
            self.written_by(1, writer.marked)
        );
        let mut q = sqlx::query_scalar(&sql)
            .bind(writer.id)
            .bind(writer.workspace_id)
            .bind(after)
            .bind(limit)
            .bind(aggregate_type);
        if let Some((_, value)) = first_has {
            q = q.bind(value);
        }
        q.fetch_all(&self.any).await
    }

    /// Every event of the aggregates `ids` of `aggregate_type`, by id then sequence.
    pub async fn raw_events_of(
        &self,
        aggregate_type: &str,
        ids: &[String],
    ) -> Result<Vec<RawEvent>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT aggregate_id, sequence, CAST(payload AS TEXT) AS payload,
                    CAST(metadata AS TEXT) AS metadata
               FROM events WHERE aggregate_type = $1 AND aggregate_id IN ({})
              ORDER BY aggregate_id, sequence",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(aggregate_type);
        for id in ids {
            q = q.bind(id);
        }
        let decode = |text: String| {
            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        q.fetch_all(&self.any)
            .await?
            .into_iter()
            .map(|row| {
                Ok(RawEvent {
                    aggregate_id: row.try_get("aggregate_id")?,
                    sequence: row.try_get("sequence")?,
                    payload: decode(row.try_get("payload")?)?,
                    metadata: decode(row.try_get("metadata")?)?,
                })
            })
            .collect()
    }
}
