//! The audit trail as stored in `audit_log`: filters, entries, keyset pages, and the
//! JSONL / CSV export that the API streams and the CLI writes, one page at a time.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
pub use syncledger_projections::audit::query::Filter;
use syncledger_projections::audit::query::{AuditRow, Query};

/// An RFC 3339 time in the stored form (UTC, microseconds).
pub fn parse_time(value: Option<&str>) -> Result<Option<String>, chrono::ParseError> {
    value
        .map(|s| DateTime::parse_from_rfc3339(s).map(|t| stored_time(t.with_timezone(&Utc))))
        .transpose()
}

fn stored_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One app field a record event changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChangeView {
    pub field: String,
    /// `null`: the field had no value.
    pub before: Option<String>,
    /// `null`: the field has no value now.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The event's global position.
    pub position: i64,
    /// Place in this workspace's hash chain, from 1.
    pub chain_seq: i64,
    pub time: String,
    pub workspace_id: String,
    /// The integration the event is about: the integration's own events, its sync runs'
    /// and the record events a sync with it caused.
    pub integration_id: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub actor: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub action: String,
    pub summary: String,
    /// The app fields a record event changed, with their values before and after (empty
    /// for every other event).
    pub changes: Vec<FieldChangeView>,
    pub prev_hash: String,
    pub hash: String,
    /// The `x-request-id` the client sent with the request that caused the event, if any
    /// (the correlation id is always the server's own).
    pub request_id: Option<String>,
    /// The end user the token acted for (`X-Acting-For`), if the app named one. Part of
    /// the event's metadata, so the hash chain covers it.
    pub acting_for: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            position: r.position,
            chain_seq: r.chain_seq,
            time: r.time,
            workspace_id: r.workspace_id,
            integration_id: r.integration_id,
            aggregate_type: r.aggregate_type,
            aggregate_id: r.aggregate_id,
            actor: r.actor,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            action: r.action,
            summary: r.summary,
            changes: r
                .changes
                .into_iter()
                .map(|c| FieldChangeView {
                    field: c.field,
                    before: c.before,
                    after: c.after,
                })
                .collect(),
            prev_hash: r.prev_hash,
            hash: r.hash,
            request_id: r.request_id,
            acting_for: r.acting_for,
        }
    }
}

/// Up to `limit` entries matching `f` with `after < chain_seq <= until`, in chain order.
pub async fn page(
    pool: &sqlx::AnyPool,
    f: &Filter,
    after: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, syncledger_projections::ProjectionError> {
    let rows = Query(pool).page(f, after, until, limit).await?;
    Ok(rows.into_iter().map(AuditEntry::from).collect())
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line, as `GET /v1/audit` lists them.
    #[default]
    Jsonl,
    /// A header line, then one line per entry; `changes` holds its JSON text. Safe to
    /// open in a spreadsheet: a cell that would start with `=`, `+`, `-`, `@`, a tab or a
    /// carriage return starts with `'` instead (JSONL is left byte-faithful).
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// The CSV header line.
pub const CSV_COLUMNS: [&str; 17] = [
    "position",
    "chain_seq",
    "time",
    "workspace_id",
    "integration_id",
    "aggregate_type",
    "aggregate_id",
    "actor",
    "correlation_id",
    "causation_id",
    "action",
    "summary",
    "changes",
    "prev_hash",
    "hash",
    "request_id",
    "acting_for",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Db(#[from] syncledger_projections::ProjectionError),
    #[error("encoding an entry: {0}")]
    Json(#[from] serde_json::Error),
    #[error("encoding a CSV line: {0}")]
    Csv(#[from] csv::Error),
}

/// Rows read from the database per chunk of the export.
pub const EXPORT_CHUNK: i64 = 500;

/// An export in progress: every entry matching the filter up to the chain's head when it
/// started (entries appended meanwhile are left for the next export), produced one chunk
/// of encoded lines at a time, so memory stays bounded whatever the trail's length.
pub struct Export {
    pool: sqlx::AnyPool,
    filter: Filter,
    format: Format,
    after: i64,
    until: i64,
    started: bool,
    done: bool,
    rows: u64,
}

impl Export {
    pub async fn start(
        pool: sqlx::AnyPool,
        filter: Filter,
        format: Format,
    ) -> Result<Export, syncledger_projections::ProjectionError> {
        let until = Query(&pool).head(&filter.workspace_id).await?;
        Ok(Export {
            pool,
            filter,
            format,
            after: 0,
            until,
            started: false,
            done: false,
            rows: 0,
        })
    }

    /// Entries produced so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next chunk of encoded lines; `None` once every entry has been produced.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        if self.done {
            return Ok(None);
        }
        let entries = page(
            &self.pool,
            &self.filter,
            self.after,
            self.until,
            EXPORT_CHUNK,
        )
        .await?;
        self.done = (entries.len() as i64) < EXPORT_CHUNK;
        if let Some(last) = entries.last() {
            self.after = last.chain_seq;
        }
        let header = !std::mem::replace(&mut self.started, true);
        self.rows += entries.len() as u64;
        if entries.is_empty() && !(header && self.format == Format::Csv) {
            return Ok(None);
        }
        Ok(Some(encode(self.format, &entries, header)?))
    }
}

/// Lines for `entries` (with the CSV header line first when `header`).
pub fn encode(
    format: Format,
    entries: &[AuditEntry],
    header: bool,
) -> Result<Vec<u8>, ExportError> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::with_capacity(entries.len() * 512);
            for e in entries {
                serde_json::to_writer(&mut out, e)?;
                out.push(b'\n');
            }
            Ok(out)
        }
        Format::Csv => {
            let mut w = SpreadsheetCsv::new(Vec::with_capacity(entries.len() * 512));
            if header {
                w.write_record(CSV_COLUMNS)?;
            }
            for e in entries {
                let changes = serde_json::to_string(&e.changes)?;
                w.write_record([
                    e.position.to_string().as_str(),
                    &e.chain_seq.to_string(),
                    &e.time,
                    &e.workspace_id,
                    e.integration_id.as_deref().unwrap_or(""),
                    &e.aggregate_type,
                    &e.aggregate_id,
                    &e.actor,
                    &e.correlation_id,
                    e.causation_id.as_deref().unwrap_or(""),
                    &e.action,
                    &e.summary,
                    &changes,
                    &e.prev_hash,
                    &e.hash,
                    e.request_id.as_deref().unwrap_or(""),
                    e.acting_for.as_deref().unwrap_or(""),
                ])?;
            }
            w.into_inner()
                .map_err(|e| ExportError::Csv(e.into_error().into()))
        }
    }
}

/// A CSV writer for exports that people open in spreadsheets: every cell goes through
/// [`safe_cell`](syncledger_domain::spreadsheet::safe_cell), so no text from a tenant or a
/// provider is read as a formula.
struct SpreadsheetCsv(csv::Writer<Vec<u8>>);

/// A CSV writer whose buffered lines could not be flushed.
type UnflushedCsv = csv::IntoInnerError<csv::Writer<Vec<u8>>>;

impl SpreadsheetCsv {
    fn new(buf: Vec<u8>) -> Self {
        SpreadsheetCsv(csv::Writer::from_writer(buf))
    }

    fn write_record<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> csv::Result<()> {
        use syncledger_domain::spreadsheet::safe_cell;
        let cells: Vec<_> = cells.into_iter().map(safe_cell).collect();
        self.0.write_record(cells.iter().map(|c| c.as_bytes()))
    }

    /// The encoded lines (the error boxed: it carries the whole writer back).
    fn into_inner(self) -> Result<Vec<u8>, Box<UnflushedCsv>> {
        self.0.into_inner().map_err(Box::new)
    }
}
