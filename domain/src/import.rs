//! Records handed over for a CRM without an API: a CSV export uploaded by a person, or
//! JSON that Zapier or Make posts to the integration's inbound webhook. Here are the
//! pure parts: parsing within bounds (every refusal names the line or record), and the
//! rule that tells records apart, so a second import updates instead of duplicating.

use std::collections::BTreeMap;

use crate::entity::Entity;

/// The largest CSV file taken at once.
pub const MAX_CSV_BYTES: usize = 20 * 1024 * 1024;
/// The most data rows one CSV import takes (the header not counted).
pub const MAX_ROWS: usize = 100_000;
/// The most columns a CSV file may have.
pub const MAX_COLUMNS: usize = 500;
/// The largest inbound-webhook body.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;
/// The most records one inbound-webhook delivery (a JSON array) may carry.
pub const MAX_JSON_RECORDS: usize = 500;
/// The longest id a record may have.
pub const MAX_ID_CHARS: usize = 255;

/// One record as handed over: where it was (`place`: "line 4", "record 2") and its
/// values by the CRM's field (column) names; an empty cell is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub place: String,
    pub values: BTreeMap<String, Option<String>>,
}

/// A row with the id that tells it apart from every other record of the CRM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identified {
    pub remote_id: String,
    pub row: Row,
}

/// Why an import was refused; `place` names the line or record ("line 4"), or is
/// `None` when the whole input is at fault (too large, empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", place.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct ImportError {
    pub place: Option<String>,
    pub message: String,
}

fn at(place: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        place: Some(place.into()),
        message: message.into(),
    }
}

fn whole(message: impl Into<String>) -> ImportError {
    ImportError {
        place: None,
        message: message.into(),
    }
}

fn line(n: u64) -> String {
    format!("line {n}")
}

/// Parses a CSV file: a header line naming the columns (unique, not empty), then one
/// record per row with exactly as many fields; UTF-8 (a byte-order mark is skipped),
/// fields quoted as RFC 4180 says (a quoted field may hold commas, quotes and line
/// breaks). Blank lines are skipped.
pub fn parse_csv(bytes: &[u8]) -> Result<Vec<Row>, ImportError> {
    if bytes.len() > MAX_CSV_BYTES {
        return Err(whole(format!(
            "the file is {} bytes; at most {} MiB are taken at once (split it)",
            bytes.len(),
            MAX_CSV_BYTES / (1024 * 1024)
        )));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(whole(
                "the file is empty: it needs a header line naming the columns",
            ))
        }
        Some(record) => header_of(&record.map_err(csv_error)?)?,
    };
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(csv_error)?;
        let n = record.position().map_or(0, |p| start_line(bytes, p));
        if record.len() != header.len() {
            return Err(at(
                line(n),
                format!(
                    "{} field(s), but the header (line 1) names {} column(s)",
                    record.len(),
                    header.len()
                ),
            ));
        }
        if rows.len() == MAX_ROWS {
            return Err(at(
                line(n),
                format!("more than {MAX_ROWS} rows; split the file"),
            ));
        }
        let mut values = BTreeMap::new();
        for (name, field) in header.iter().zip(record.iter()) {
            let text = std::str::from_utf8(field).map_err(|_| {
                at(
                    line(n),
                    format!("column {name:?} is not UTF-8 text; save the file as CSV UTF-8"),
                )
            })?;
            values.insert(name.clone(), (!text.is_empty()).then(|| text.to_owned()));
        }
        rows.push(Row {
            place: line(n),
            values,
        });
    }
    if rows.is_empty() {
        return Err(at(line(1), "a header but no rows"));
    }
    Ok(rows)
}

/// The line a record starts on: the reader's position is taken before the blank lines
/// it skips.
fn start_line(bytes: &[u8], position: &csv::Position) -> u64 {
    let from = usize::try_from(position.byte()).unwrap_or(usize::MAX);
    let skipped = bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|b| **b == b'\n')
        .count();
    position.line().saturating_add(skipped as u64)
}

fn csv_error(e: csv::Error) -> ImportError {
    let n = e.position().map_or(0, csv::Position::line);
    at(line(n), "could not be read as CSV")
}

fn header_of(record: &csv::ByteRecord) -> Result<Vec<String>, ImportError> {
    if record.len() > MAX_COLUMNS {
        return Err(at(
            line(1),
            format!("{} columns; at most {MAX_COLUMNS} are taken", record.len()),
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| {
                at(
                    line(1),
                    "the header is not UTF-8 text; save the file as CSV UTF-8",
                )
            })?
            .trim();
        if name.is_empty() {
            return Err(at(
                line(1),
                format!(
                    "column {} has no name: the first line must be a header naming every column",
                    i + 1
                ),
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(at(line(1), format!("column {name:?} is named twice")));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Parses an inbound-webhook body: one record as a JSON object, or a JSON array of up
/// to [`MAX_JSON_RECORDS`] of them. Values are text, numbers, booleans (kept as their
/// text) or null; a nested object or array is refused.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<Row>, ImportError> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(whole(format!(
            "the body is {} bytes; at most {} KiB are taken at once",
            bytes.len(),
            MAX_JSON_BYTES / 1024
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        whole(format!(
            "the body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let objects = match value {
        serde_json::Value::Array(items) if items.is_empty() => {
            return Err(whole("an empty array: send at least one record"))
        }
        serde_json::Value::Array(items) if items.len() > MAX_JSON_RECORDS => {
            return Err(whole(format!(
                "{} records; at most {MAX_JSON_RECORDS} are taken at once",
                items.len()
            )))
        }
        serde_json::Value::Array(items) => items,
        object @ serde_json::Value::Object(_) => vec![object],
        _ => {
            return Err(whole(
                "send one record as a JSON object, or an array of such objects",
            ))
        }
    };
    objects
        .into_iter()
        .enumerate()
        .map(|(i, value)| json_row(format!("record {}", i + 1), value))
        .collect()
}

fn json_row(place: String, value: serde_json::Value) -> Result<Row, ImportError> {
    let serde_json::Value::Object(fields) = value else {
        return Err(at(place, "is not a JSON object"));
    };
    if fields.is_empty() {
        return Err(at(place, "has no fields"));
    }
    let mut values = BTreeMap::new();
    for (name, value) in fields {
        if name.trim().is_empty() {
            return Err(at(place, "has a field without a name"));
        }
        let text = match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) if s.is_empty() => None,
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                return Err(at(
                    place,
                    format!(
                    "field {name:?} is nested; send flat fields (text, numbers, booleans or null)"
                ),
                ))
            }
        };
        values.insert(name, text);
    }
    Ok(Row { place, values })
}

/// Gives each row the id that tells it apart: its value in `id_field` when it has
/// one, else its match key (email for contacts, domain for companies) read from
/// `match_column`, as `email:ada@example.com`. A row with neither, an id that is too
/// long or holds control characters, or an id another row of the same input has, is
/// refused naming its place: nothing of the input is taken then.
pub fn identify(
    rows: Vec<Row>,
    entity: Entity,
    id_field: &str,
    match_column: &str,
) -> Result<Vec<Identified>, ImportError> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let remote_id = identity(&row, entity, id_field, match_column)?;
        if let Some(first) = seen.get(&remote_id) {
            return Err(at(
                row.place.clone(),
                format!("the same record as {first} ({remote_id}); send each record once"),
            ));
        }
        seen.insert(remote_id.clone(), row.place.clone());
        out.push(Identified { remote_id, row });
    }
    Ok(out)
}

fn identity(
    row: &Row,
    entity: Entity,
    id_field: &str,
    match_column: &str,
) -> Result<String, ImportError> {
    let given = |field: &str| {
        row.values
            .get(field)
            .cloned()
            .flatten()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if let Some(id) = given(id_field) {
        if id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
            return Err(at(
                row.place.clone(),
                format!(
                    "the id in {id_field:?} must be at most {MAX_ID_CHARS} characters, without control characters"
                ),
            ));
        }
        return Ok(id);
    }
    match Entity::match_key(given(match_column).as_deref()) {
        Some(key) => Ok(format!("{}:{key}", entity.match_field())),
        None => Err(at(
            row.place.clone(),
            format!(
                "neither an id (field {id_field:?}) nor {} {} (field {match_column:?}): \
                 syncledger could not tell this record from the others",
                if entity == Entity::Contacts {
                    "an"
                } else {
                    "a"
                },
                entity.match_field()
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
