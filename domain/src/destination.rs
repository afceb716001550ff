//! Postgres destinations: an app's own database that syncledger writes records into, as
//! table mappings (which table, which key, which columns from which app fields, with
//! which type and normalisation), and the aggregate that holds them.
//!
//! Everything here is pure: what a record's row is ([`TableMapping::plan`]), what a
//! value becomes in a column of a type ([`ColumnType::normalise`]), whether a mapping
//! fits a table as the target's catalogue describes it ([`TableMapping::check`]). The
//! sink (`engine::sink`) does the IO: lookups, `COPY`, upserts, the checkpoint.
//!
//! The database URL is kept as vault ciphertext only (it carries a password).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::integration::EncryptedSecret;
use crate::merge::Fields;
use crate::Entity;

/// The column types a mapping may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "integer")]
    Integer,
    #[serde(rename = "numeric")]
    Numeric,
    #[serde(rename = "boolean")]
    Boolean,
    #[serde(rename = "date")]
    Date,
    #[serde(rename = "timestamptz")]
    Timestamptz,
    #[serde(rename = "uuid")]
    Uuid,
    #[serde(rename = "jsonb")]
    Jsonb,
    #[serde(rename = "text[]")]
    TextArray,
}

impl ColumnType {
    pub const ALL: [ColumnType; 9] = [
        ColumnType::Text,
        ColumnType::Integer,
        ColumnType::Numeric,
        ColumnType::Boolean,
        ColumnType::Date,
        ColumnType::Timestamptz,
        ColumnType::Uuid,
        ColumnType::Jsonb,
        ColumnType::TextArray,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Numeric => "numeric",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamptz => "timestamptz",
            ColumnType::Uuid => "uuid",
            ColumnType::Jsonb => "jsonb",
            ColumnType::TextArray => "text[]",
        }
    }

    /// The type a created table gives the column.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Integer => "bigint",
            ColumnType::Timestamptz => "timestamp with time zone",
            t => t.as_str(),
        }
    }

    /// Whether a column the catalogue describes as `data_type` (information_schema's
    /// name; `udt` the underlying type's name) can hold values of this type. An enum
    /// column (`is_enum`) holds text the target casts to one of its labels.
    pub fn fits(self, data_type: &str, udt: &str, is_enum: bool) -> bool {
        match self {
            ColumnType::Text => {
                matches!(data_type, "text" | "character varying" | "character")
                    || (data_type == "USER-DEFINED" && (is_enum || udt == "citext"))
            }
            ColumnType::Integer => matches!(data_type, "integer" | "bigint" | "smallint"),
            ColumnType::Numeric => {
                matches!(data_type, "numeric" | "double precision" | "real")
            }
            ColumnType::Boolean => data_type == "boolean",
            ColumnType::Date => data_type == "date",
            ColumnType::Timestamptz => data_type == "timestamp with time zone",
            ColumnType::Uuid => data_type == "uuid",
            ColumnType::Jsonb => data_type == "jsonb",
            ColumnType::TextArray => data_type == "ARRAY" && matches!(udt, "_text" | "_varchar"),
        }
    }

    /// `value` as the text PostgreSQL reads as this type, or why it cannot be one.
    /// Checked here so that one bad value holds one record instead of failing a batch.
    pub fn normalise(self, value: &str) -> Result<String, String> {
        let v = value.trim();
        let bad = |what: &str| Err(format!("{value:?} is not {what}"));
        match self {
            ColumnType::Text => Ok(value.to_owned()),
            ColumnType::Integer => match v.parse::<i64>() {
                Ok(n) => Ok(n.to_string()),
                Err(_) => bad("an integer"),
            },
            ColumnType::Numeric => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && v.chars().all(|c| "+-.eE0123456789".contains(c)) => {
                    Ok(v.to_owned())
                }
                _ => bad("a number"),
            },
            ColumnType::Boolean => match v.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "on" => Ok("true".into()),
                "false" | "f" | "no" | "n" | "0" | "off" => Ok("false".into()),
                _ => bad("a boolean"),
            },
            ColumnType::Date => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .or_else(|_| DateTime::parse_from_rfc3339(v).map(|t| t.date_naive()))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .or_else(|_| bad("a date (YYYY-MM-DD)")),
            ColumnType::Timestamptz => DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc).to_rfc3339())
                .or_else(|_| bad("an RFC 3339 time with an offset")),
            ColumnType::Uuid => {
                let hex: String = v.chars().filter(|c| *c != '-').collect();
                if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) && v.len() == 36 {
                    Ok(v.to_ascii_lowercase())
                } else {
                    bad("a UUID")
                }
            }
            ColumnType::Jsonb => Ok(match serde_json::from_str::<serde_json::Value>(v) {
                Ok(json) => json.to_string(),
                Err(_) => serde_json::Value::String(value.to_owned()).to_string(),
            }),
            ColumnType::TextArray => {
                let items: Vec<String> = match serde_json::from_str::<Vec<String>>(v) {
                    Ok(items) => items,
                    Err(_) if v.is_empty() => vec![],
                    Err(_) => v.split(',').map(|s| s.trim().to_owned()).collect(),
                };
                Ok(array_literal(&items))
            }
        }
    }
}

/// A PostgreSQL array literal of text items, each quoted.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// What an enum map does with a CRM value it has no entry for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// The column gets no value (null).
    #[default]
    Null,
    /// The record is held until a later change gives it a mapped value.
    Hold,
}

/// How a lookup finds the row whose id the column gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupBy {
    /// Compared trimmed and lower-cased.
    Email,
    Uuid,
}

/// How a value is changed before it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalise {
    /// CRM value → app value.
    Enum {
        map: BTreeMap<String, String>,
        #[serde(default)]
        unknown: Unknown,
    },
    /// A local time without offset (`2024-03-01 14:30[:00]` or `…T…`), in `zone`, to UTC.
    LocalTime { zone: String },
    /// Trimmed and lower-cased.
    Email,
    /// The id of the row of `table` whose `match_column` equals the value.
    Lookup {
        table: String,
        by: LookupBy,
        match_column: String,
        #[serde(default = "default_id_column")]
        id_column: String,
    },
}

fn default_id_column() -> String {
    "id".into()
}

/// One column of a table mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    pub column: String,
    /// The app field whose value it gets.
    pub field: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// A record without a value here is held instead of written.
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalise: Option<Normalise>,
}

/// Where the key column's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// syncledger's record id.
    RecordId,
    /// The record's id in the CRM of the key's `integration_id`.
    CrmId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMapping {
    pub column: String,
    pub source: KeySource,
    /// The integration whose CRM id is the key (with `source: crm_id` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(rename = "type", default = "text")]
    pub ty: ColumnType,
}

fn text() -> ColumnType {
    ColumnType::Text
}

/// What an archived (or deleted) record does to its row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum OnArchive {
    #[default]
    Delete,
    /// `column` is set to `value` (text the column's type reads) and the row kept; when
    /// the record is restored (a rollback undoing its archive), to `restored` if given.
    Set {
        column: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restored: Option<String>,
    },
}

/// Where one entity's records go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    pub entity: Entity,
    pub table: String,
    pub key: KeyMapping,
    pub columns: Vec<ColumnMapping>,
    #[serde(default)]
    pub on_archive: OnArchive,
}

/// One column as the target's catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogueColumn {
    pub name: String,
    /// information_schema's `data_type`.
    pub data_type: String,
    pub udt: String,
    pub nullable: bool,
    pub has_default: bool,
    /// The labels, when the column's type is an enum.
    pub enum_labels: Option<Vec<String>>,
}

/// A table as the target's catalogue describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogueTable {
    pub columns: Vec<CatalogueColumn>,
    /// Column sets with a unique index or constraint (what `ON CONFLICT` can use).
    pub unique: Vec<Vec<String>>,
}

/// A row as the sink writes it: the key, then one value per mapped column (in the
/// mapping's order); lookups still to resolve name the column index and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub values: Vec<Option<String>>,
    pub lookups: Vec<(usize, String)>,
    /// The record is archived and the mapping keeps its row, marked.
    pub archived: bool,
}

/// What a record comes to in its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    Write(Row),
    /// Archived: its row (if any) is deleted, or marked when it cannot be written again.
    Archive {
        key: String,
    },
    /// Archived before it ever had a key: nothing to do.
    Nothing,
    /// Cannot be written now; `reason` says why.
    Hold {
        reason: String,
    },
}

/// A name PostgreSQL takes unquoted, short enough for the rebuild table's suffix.
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `name` quoted for SQL (it is a [`valid_identifier`] anyway).
pub fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const MAX_COLUMNS: usize = 100;
const MAX_ENUM_ENTRIES: usize = 1_000;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DestinationError {
    DestinationError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A local time read in `zone`: UTC, or why it names no instant there.
pub fn local_to_utc(value: &str, zone: &str) -> Result<String, String> {
    let tz: chrono_tz::Tz = zone
        .parse()
        .map_err(|_| format!("{zone:?} is not a time zone"))?;
    let v = value.trim();
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
    .ok_or_else(|| format!("{value:?} is not a local time (YYYY-MM-DD HH:MM[:SS])"))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc).to_rfc3339()),
        // A time the clocks pass twice (autumn): the first of the two.
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc).to_rfc3339()),
        LocalResult::None => Err(format!(
            "{value:?} does not exist in {zone} (the clocks skip it)"
        )),
    }
}

impl TableMapping {
    /// The rules a mapping must follow, before any catalogue is seen; `at` is its place
    /// in the request (`mappings[0]`).
    pub fn validate(&self, at: &str) -> Result<(), DestinationError> {
        let ident = |field: String, name: &str| {
            if valid_identifier(name) {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("{name:?} is not a plain lower-case identifier of at most 40 characters (a-z, 0-9, _)"),
                ))
            }
        };
        ident(format!("{at}.table"), &self.table)?;
        ident(format!("{at}.key.column"), &self.key.column)?;
        match (self.key.source, &self.key.integration_id) {
            (KeySource::CrmId, None) => {
                return Err(invalid(
                    format!("{at}.key.integration_id"),
                    "a CRM id key names the integration whose id it is",
                ))
            }
            (KeySource::RecordId, Some(_)) => {
                return Err(invalid(
                    format!("{at}.key.integration_id"),
                    "only a crm_id key names an integration",
                ))
            }
            _ => {}
        }
        if !matches!(
            self.key.ty,
            ColumnType::Text | ColumnType::Uuid | ColumnType::Integer
        ) {
            return Err(invalid(
                format!("{at}.key.type"),
                "a key is text, uuid or integer",
            ));
        }
        if self.columns.is_empty() || self.columns.len() > MAX_COLUMNS {
            return Err(invalid(
                format!("{at}.columns"),
                format!("map 1 to {MAX_COLUMNS} columns"),
            ));
        }
        let mut seen = BTreeSet::from([self.key.column.as_str()]);
        for (i, c) in self.columns.iter().enumerate() {
            let here = format!("{at}.columns[{i}]");
            ident(format!("{here}.column"), &c.column)?;
            if !seen.insert(&c.column) {
                return Err(invalid(
                    format!("{here}.column"),
                    format!("{:?} is mapped twice (or is the key)", c.column),
                ));
            }
            if c.field.is_empty() || c.field.len() > 200 {
                return Err(invalid(
                    format!("{here}.field"),
                    "must be 1 to 200 characters",
                ));
            }
            match &c.normalise {
                Some(Normalise::Enum { map, .. }) => {
                    if map.len() > MAX_ENUM_ENTRIES {
                        return Err(invalid(
                            format!("{here}.normalise.map"),
                            format!("at most {MAX_ENUM_ENTRIES} entries"),
                        ));
                    }
                    if c.ty != ColumnType::Text {
                        return Err(invalid(
                            format!("{here}.normalise"),
                            "an enum map writes a text or enum column",
                        ));
                    }
                }
                Some(Normalise::LocalTime { zone }) => {
                    if zone.parse::<chrono_tz::Tz>().is_err() {
                        return Err(invalid(
                            format!("{here}.normalise.zone"),
                            format!("{zone:?} is not an IANA time zone name"),
                        ));
                    }
                    if c.ty != ColumnType::Timestamptz {
                        return Err(invalid(
                            format!("{here}.normalise"),
                            "a local time writes a timestamptz column",
                        ));
                    }
                }
                Some(Normalise::Email) if c.ty != ColumnType::Text => {
                    return Err(invalid(
                        format!("{here}.normalise"),
                        "an email writes a text column",
                    ));
                }
                Some(Normalise::Email) => {}
                Some(Normalise::Lookup {
                    table,
                    match_column,
                    id_column,
                    ..
                }) => {
                    ident(format!("{here}.normalise.table"), table)?;
                    ident(format!("{here}.normalise.match_column"), match_column)?;
                    ident(format!("{here}.normalise.id_column"), id_column)?;
                    if !matches!(
                        c.ty,
                        ColumnType::Text | ColumnType::Uuid | ColumnType::Integer
                    ) {
                        return Err(invalid(
                            format!("{here}.type"),
                            "a lookup writes a text, uuid or integer id",
                        ));
                    }
                }
                None => {}
            }
        }
        if let OnArchive::Set {
            column,
            value,
            restored,
        } = &self.on_archive
        {
            ident(format!("{at}.on_archive.column"), column)?;
            if column == &self.key.column {
                return Err(invalid(
                    format!("{at}.on_archive.column"),
                    "the key cannot be what archiving sets",
                ));
            }
            if value.len() > 1_000 || restored.as_ref().is_some_and(|r| r.len() > 1_000) {
                return Err(invalid(
                    format!("{at}.on_archive.value"),
                    "at most 1000 characters",
                ));
            }
        }
        Ok(())
    }

    /// Every way the mapping does not fit `table` as the target describes it (empty: it
    /// fits); `None`: the table does not exist.
    pub fn check(&self, table: Option<&CatalogueTable>) -> Vec<String> {
        let Some(table) = table else {
            return vec![format!("table {:?} does not exist", self.table)];
        };
        let mut problems = Vec::new();
        let col = |name: &str| table.columns.iter().find(|c| c.name == name);
        let mut fits = |name: &str, ty: ColumnType, what: &str| match col(name) {
            None => problems.push(format!(
                "{}: column {name:?} ({what}) does not exist",
                self.table
            )),
            Some(c) if !ty.fits(&c.data_type, &c.udt, c.enum_labels.is_some()) => {
                problems.push(format!(
                    "{}: column {name:?} is {} ({}), which cannot hold {}",
                    self.table,
                    c.data_type,
                    c.udt,
                    ty.as_str()
                ))
            }
            Some(_) => {}
        };
        fits(&self.key.column, self.key.ty, "the key");
        for c in &self.columns {
            fits(&c.column, c.ty, "mapped");
        }
        for c in &self.columns {
            let (Some(Normalise::Enum { map, .. }), Some(cat)) = (&c.normalise, col(&c.column))
            else {
                continue;
            };
            if let Some(labels) = &cat.enum_labels {
                for v in map.values().collect::<BTreeSet<_>>() {
                    if !labels.contains(v) {
                        problems.push(format!(
                            "{}: column {:?} has no enum label {v:?} (it has {})",
                            self.table,
                            c.column,
                            labels.join(", ")
                        ));
                    }
                }
            }
        }
        if col(&self.key.column).is_some()
            && !table
                .unique
                .iter()
                .any(|u| u == std::slice::from_ref(&self.key.column))
        {
            problems.push(format!(
                "{}: the key column {:?} has no unique index or primary key",
                self.table, self.key.column
            ));
        }
        if let OnArchive::Set { column, .. } = &self.on_archive {
            if col(column).is_none() {
                problems.push(format!(
                    "{}: column {column:?} (set on archive) does not exist",
                    self.table
                ));
            }
        }
        let written: BTreeSet<&str> = self
            .columns
            .iter()
            .map(|c| c.column.as_str())
            .chain([self.key.column.as_str()])
            .collect();
        for c in &table.columns {
            if !c.nullable && !c.has_default && !written.contains(c.name.as_str()) {
                problems.push(format!(
                    "{}: column {:?} is NOT NULL without a default and is not mapped",
                    self.table, c.name
                ));
            }
        }
        problems
    }

    /// `CREATE TABLE` for a table that fits the mapping; `schema` and the table name are
    /// checked identifiers. Enum-mapped columns are text.
    pub fn create_table_sql(&self, schema: &str) -> String {
        let mut cols = vec![format!(
            "{} {} PRIMARY KEY",
            quoted(&self.key.column),
            self.key.ty.sql()
        )];
        for c in &self.columns {
            let not_null = if c.required { " NOT NULL" } else { "" };
            cols.push(format!("{} {}{not_null}", quoted(&c.column), c.ty.sql()));
        }
        if let OnArchive::Set { column, .. } = &self.on_archive {
            if !self.columns.iter().any(|c| &c.column == column) {
                cols.push(format!("{} text", quoted(column)));
            }
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} ({})",
            quoted(schema),
            quoted(&self.table),
            cols.join(", ")
        )
    }

    /// What a record comes to: `crm_id` is its id in the key's CRM when it has one.
    pub fn plan(
        &self,
        record_id: &str,
        crm_id: Option<&str>,
        values: &Fields,
        archived: bool,
    ) -> Planned {
        let key = match self.key.source {
            KeySource::RecordId => Some(record_id.to_owned()),
            KeySource::CrmId => crm_id.map(str::to_owned),
        };
        let key = match key.map(|k| self.key.ty.normalise(&k)) {
            Some(Ok(k)) => k,
            Some(Err(why)) => {
                return Planned::Hold {
                    reason: format!("key {}: {why}", self.key.column),
                }
            }
            None if archived => return Planned::Nothing,
            None => {
                return Planned::Hold {
                    reason: "the record has no id in the CRM the key comes from yet".into(),
                }
            }
        };
        if archived && self.on_archive == OnArchive::Delete {
            return Planned::Archive { key };
        }
        match self.row(key.clone(), values, archived) {
            Planned::Hold { .. } if archived => Planned::Archive { key },
            planned => planned,
        }
    }

    fn row(&self, key: String, values: &Fields, archived: bool) -> Planned {
        let mut row = Row {
            key,
            values: Vec::with_capacity(self.columns.len()),
            lookups: Vec::new(),
            archived,
        };
        for (i, c) in self.columns.iter().enumerate() {
            let raw = values
                .get(&c.field)
                .and_then(|v| v.as_deref())
                .filter(|v| !v.trim().is_empty());
            let value = match (raw, &c.normalise) {
                (None, _) => None,
                (Some(v), None) => Some(v.to_owned()),
                (Some(v), Some(Normalise::Email)) => Some(v.trim().to_lowercase()),
                (Some(v), Some(Normalise::Enum { map, unknown })) => {
                    match (map.get(v.trim()), unknown) {
                        (Some(mapped), _) => Some(mapped.clone()),
                        (None, Unknown::Null) => None,
                        (None, Unknown::Hold) => {
                            return Planned::Hold {
                                reason: format!(
                                    "{}: the value {v:?} has no enum mapping",
                                    c.column
                                ),
                            }
                        }
                    }
                }
                (Some(v), Some(Normalise::LocalTime { zone })) => match local_to_utc(v, zone) {
                    Ok(t) => Some(t),
                    Err(why) => {
                        return Planned::Hold {
                            reason: format!("{}: {why}", c.column),
                        }
                    }
                },
                (Some(v), Some(Normalise::Lookup { by, .. })) => {
                    let probe = match by {
                        LookupBy::Email => v.trim().to_lowercase(),
                        LookupBy::Uuid => match ColumnType::Uuid.normalise(v) {
                            Ok(u) => u,
                            Err(why) => {
                                return Planned::Hold {
                                    reason: format!("{}: {why}", c.column),
                                }
                            }
                        },
                    };
                    row.lookups.push((i, probe));
                    None
                }
            };
            let value = match value {
                Some(v) if !matches!(c.normalise, Some(Normalise::Lookup { .. })) => {
                    match c.ty.normalise(&v) {
                        Ok(v) => Some(v),
                        Err(why) => {
                            return Planned::Hold {
                                reason: format!("{}: {why}", c.column),
                            }
                        }
                    }
                }
                v => v,
            };
            let looked_up = row.lookups.last().is_some_and(|(at, _)| *at == i);
            if c.required && value.is_none() && !looked_up {
                return Planned::Hold {
                    reason: format!("{}: required, and the record has no {}", c.column, c.field),
                };
            }
            row.values.push(value);
        }
        Planned::Write(row)
    }
}

/// Why a destination cannot be created or changed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("destination not found")]
    NotFound,
    #[error("destination already exists")]
    AlreadyExists,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// The rules of a destination as a whole.
pub fn validate(
    name: &str,
    schema: &str,
    mappings: &[TableMapping],
) -> Result<(), DestinationError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be 1 to 100 characters, without control characters",
        ));
    }
    if !valid_identifier(schema) {
        return Err(invalid(
            "schema",
            format!("{schema:?} is not a plain lower-case identifier"),
        ));
    }
    if mappings.is_empty() || mappings.len() > Entity::ALL.len() {
        return Err(invalid(
            "mappings",
            "map each entity at most once, at least one",
        ));
    }
    let mut entities = BTreeSet::new();
    let mut tables = BTreeSet::new();
    for (i, m) in mappings.iter().enumerate() {
        m.validate(&format!("mappings[{i}]"))?;
        if !entities.insert(m.entity) {
            return Err(invalid(format!("mappings[{i}].entity"), "mapped twice"));
        }
        if !tables.insert(&m.table) {
            return Err(invalid(
                format!("mappings[{i}].table"),
                "used by another mapping",
            ));
        }
    }
    Ok(())
}

/// A destination as its events leave it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub id: Option<String>,
    pub workspace_id: String,
    pub name: String,
    /// The database URL, vault ciphertext.
    pub url: Option<EncryptedSecret>,
    /// Where the URL points, without user or password (for people to read).
    pub target: String,
    pub schema: String,
    pub mappings: Vec<TableMapping>,
    /// Rebuilds asked for so far: the sink refills when the target's is lower.
    pub generation: i64,
    pub deleted: bool,
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub version: i64,
}

impl Destination {
    pub fn mapping(&self, entity: Entity) -> Option<&TableMapping> {
        self.mappings.iter().find(|m| m.entity == entity)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DestinationEvent {
    DestinationCreated {
        destination_id: String,
        workspace_id: String,
        name: String,
        url: EncryptedSecret,
        target: String,
        schema: String,
        mappings: Vec<TableMapping>,
        at: DateTime<Utc>,
    },
    DestinationRebuildRequested {
        generation: i64,
        actor: String,
        at: DateTime<Utc>,
    },
    DestinationDeleted {
        at: DateTime<Utc>,
    },
}

impl DomainEvent for DestinationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            DestinationEvent::DestinationCreated { .. } => "DestinationCreated",
            DestinationEvent::DestinationRebuildRequested { .. } => "DestinationRebuildRequested",
            DestinationEvent::DestinationDeleted { .. } => "DestinationDeleted",
        }
    }

    fn summary(&self) -> String {
        match self {
            DestinationEvent::DestinationCreated {
                name,
                target,
                mappings,
                ..
            } => format!(
                "destination {name:?} created: {target} ({}; database URL redacted)",
                mappings
                    .iter()
                    .map(|m| format!("{} → {}", m.entity.as_str(), m.table))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DestinationEvent::DestinationRebuildRequested {
                generation, actor, ..
            } => {
                format!("destination rebuild {generation} asked for by {actor}")
            }
            DestinationEvent::DestinationDeleted { .. } => "destination deleted".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DestinationCommand {
    Create {
        destination_id: String,
        workspace_id: String,
        name: String,
        url: EncryptedSecret,
        target: String,
        schema: String,
        mappings: Vec<TableMapping>,
        at: DateTime<Utc>,
    },
    Rebuild {
        actor: String,
        at: DateTime<Utc>,
    },
    Delete {
        at: DateTime<Utc>,
    },
}

impl Aggregate for Destination {
    const TYPE: &'static str = "destination";
    type Command = DestinationCommand;
    type Event = DestinationEvent;
    type Error = DestinationError;

    fn decide(
        &self,
        command: DestinationCommand,
    ) -> Result<Vec<DestinationEvent>, DestinationError> {
        use DestinationCommand as C;
        use DestinationEvent as E;
        if let C::Create {
            destination_id,
            workspace_id,
            name,
            url,
            target,
            schema,
            mappings,
            at,
        } = command
        {
            if self.id.is_some() {
                return Err(DestinationError::AlreadyExists);
            }
            validate(&name, &schema, &mappings)?;
            return Ok(vec![E::DestinationCreated {
                destination_id,
                workspace_id,
                name,
                url,
                target,
                schema,
                mappings,
                at,
            }]);
        }
        if self.id.is_none() || self.deleted {
            return Err(DestinationError::NotFound);
        }
        Ok(match command {
            C::Create { .. } => return Err(DestinationError::AlreadyExists),
            C::Rebuild { actor, at } => vec![E::DestinationRebuildRequested {
                generation: self.generation + 1,
                actor,
                at,
            }],
            C::Delete { at } => vec![E::DestinationDeleted { at }],
        })
    }

    fn apply(&mut self, event: &DestinationEvent) {
        self.version += 1;
        match event {
            DestinationEvent::DestinationCreated {
                destination_id,
                workspace_id,
                name,
                url,
                target,
                schema,
                mappings,
                at,
            } => {
                self.id = Some(destination_id.clone());
                self.workspace_id = workspace_id.clone();
                self.name = name.clone();
                self.url = Some(url.clone());
                self.target = target.clone();
                self.schema = schema.clone();
                self.mappings = mappings.clone();
                self.created_at = Some(*at);
            }
            DestinationEvent::DestinationRebuildRequested { generation, .. } => {
                self.generation = *generation;
            }
            DestinationEvent::DestinationDeleted { .. } => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use proptest::prelude::*;

    fn mapping() -> TableMapping {
        serde_json::from_value(serde_json::json!({
            "entity": "contacts",
            "table": "clients",
            "key": {"column": "syncledger_id", "source": "record_id"},
            "columns": [
                {"column": "email", "field": "email", "type": "text", "required": true,
                 "normalise": {"kind": "email"}},
                {"column": "status", "field": "lifecycle", "type": "text",
                 "normalise": {"kind": "enum", "map": {"Lead": "lead", "Customer": "customer"}, "unknown": "hold"}},
                {"column": "first_contact_at", "field": "first_contact", "type": "timestamptz",
                 "normalise": {"kind": "local_time", "zone": "Europe/Berlin"}},
                {"column": "supplier_id", "field": "supplier_email", "type": "uuid",
                 "normalise": {"kind": "lookup", "table": "suppliers", "by": "email", "match_column": "email"}},
                {"column": "employees", "field": "employees", "type": "integer"}
            ],
            "on_archive": {"action": "set", "column": "archived", "value": "true"}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// PostgreSQL's reading of a quoted text array literal.
    fn read_array(lit: &str) -> Option<Vec<String>> {
        let inner = lit.strip_prefix('{')?.strip_suffix('}')?;
        let mut items = Vec::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    let mut item = String::new();
                    loop {
                        match chars.next()? {
                            '\\' => item.push(chars.next()?),
                            '"' => break,
                            c => item.push(c),
                        }
                    }
                    items.push(item);
                }
                ',' => {}
                _ => return None,
            }
        }
        Some(items)
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn a_record_becomes_a_normalised_row_with_its_lookups_pending() {
        let m = mapping();
        m.validate("m").unwrap_or_else(|e| panic!("{e}"));
        let planned = m.plan(
            "rec-1",
            None,
            &fields(&[
                ("email", "  Ada@Example.COM "),
                ("lifecycle", "Customer"),
                ("first_contact", "2024-07-01 14:30"),
                ("supplier_email", " Supply@Example.com"),
                ("employees", "12"),
            ]),
            false,
        );
        assert_eq!(
            planned,
            Planned::Write(Row {
                key: "rec-1".into(),
                values: vec![
                    Some("ada@example.com".into()),
                    Some("customer".into()),
                    Some("2024-07-01T12:30:00+00:00".into()),
                    None,
                    Some("12".into()),
                ],
                lookups: vec![(3, "supply@example.com".into())],
                archived: false,
            })
        );
    }

    #[test]
    fn what_cannot_be_written_is_held_with_its_reason() {
        let mut m = mapping();
        let hold = |pairs: &[(&str, &str)]| match m.plan("r", None, &fields(pairs), false) {
            Planned::Hold { reason } => reason,
            other => panic!("not held: {other:?}"),
        };
        assert!(hold(&[("lifecycle", "Lead")]).contains("email: required"));
        assert!(hold(&[("email", "a@b.c"), ("lifecycle", "Prospect")]).contains("no enum mapping"));
        assert!(hold(&[("email", "a@b.c"), ("employees", "twelve")]).contains("not an integer"));
        // 02:30 on the last Sunday of March does not exist in Berlin.
        assert!(
            hold(&[("email", "a@b.c"), ("first_contact", "2024-03-31 02:30")])
                .contains("does not exist")
        );
        // Archived: a writable row is written and marked, another marked by key; a CRM
        // key without a CRM id is held.
        assert_eq!(
            m.plan("r", None, &Fields::new(), true),
            Planned::Archive { key: "r".into() }
        );
        assert!(matches!(
            m.plan(
                "r",
                None,
                &fields(&[("email", "a@b.c"), ("first_name", "A")]),
                true
            ),
            Planned::Write(Row { archived: true, .. })
        ));
        m.key.source = KeySource::CrmId;
        m.key.integration_id = Some("i".into());
        assert!(matches!(
            m.plan("r", None, &fields(&[("email", "a@b.c")]), false),
            Planned::Hold { .. }
        ));
        assert_eq!(m.plan("r", None, &Fields::new(), true), Planned::Nothing);
    }

    #[test]
    fn the_catalogue_check_names_every_mismatch() {
        let m = mapping();
        let col = |name: &str, data_type: &str, udt: &str, nullable: bool| CatalogueColumn {
            name: name.into(),
            data_type: data_type.into(),
            udt: udt.into(),
            nullable,
            has_default: false,
            enum_labels: None,
        };
        let mut status = col("status", "USER-DEFINED", "client_status", true);
        status.enum_labels = Some(vec!["lead".into(), "active".into()]);
        let table = CatalogueTable {
            columns: vec![
                col("syncledger_id", "text", "text", false),
                col("email", "character varying", "varchar", false),
                status,
                col(
                    "first_contact_at",
                    "timestamp without time zone",
                    "timestamp",
                    true,
                ),
                col("supplier_id", "uuid", "uuid", true),
                col("phone", "text", "text", false),
                col("archived", "boolean", "bool", true),
            ],
            unique: vec![vec!["syncledger_id".into()]],
        };
        let problems = m.check(Some(&table));
        let all = problems.join("\n");
        assert_eq!(problems.len(), 4, "{all}");
        assert!(
            all.contains("\"first_contact_at\" is timestamp without time zone"),
            "{all}"
        );
        assert!(all.contains("no enum label \"customer\""), "{all}");
        assert!(
            all.contains("\"employees\" (mapped) does not exist"),
            "{all}"
        );
        assert!(all.contains("\"phone\" is NOT NULL"), "{all}");
        assert_eq!(
            m.check(None),
            vec!["table \"clients\" does not exist".to_owned()]
        );
        let no_unique = CatalogueTable {
            unique: vec![],
            ..table
        };
        assert!(m
            .check(Some(&no_unique))
            .join("\n")
            .contains("no unique index"));
    }

    #[test]
    fn a_destination_is_created_rebuilt_and_deleted() {
        let m = mapping();
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let sealed = EncryptedSecret {
            key_id: "k".into(),
            nonce: String::new(),
            ciphertext: String::new(),
        };
        let create = |mappings: Vec<TableMapping>| DestinationCommand::Create {
            destination_id: "d".into(),
            workspace_id: "w".into(),
            name: "app".into(),
            url: sealed.clone(),
            target: "db:5432/app".into(),
            schema: "public".into(),
            mappings,
            at,
        };
        assert!(Destination::default()
            .decide(create(vec![m.clone(), m.clone()]))
            .is_err());
        let d = given::<Destination>([]).when(create(vec![m]));
        let d = d.unwrap_or_else(|e| panic!("{e}"));
        let rebuilt = given::<Destination>(d)
            .when(DestinationCommand::Rebuild {
                actor: "a".into(),
                at,
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            rebuilt[..],
            [DestinationEvent::DestinationRebuildRequested { generation: 1, .. }]
        ));
    }

    proptest! {
        /// Whatever a CRM sends, normalising never panics and what it accepts is what
        /// PostgreSQL reads back as the type (here: integers and booleans round-trip).
        #[test]
        fn normalising_is_total(value in ".{0,40}") {
            for t in ColumnType::ALL {
                let _ = t.normalise(&value);
            }
            if let Ok(n) = ColumnType::Integer.normalise(&value) {
                prop_assert_eq!(n.parse::<i64>().ok(), value.trim().parse::<i64>().ok());
            }
            let _ = local_to_utc(&value, "America/New_York");
        }

        #[test]
        fn array_literals_read_back_as_their_items(items in proptest::collection::vec("[^\\x00]{0,8}", 0..5)) {
            prop_assert_eq!(read_array(&array_literal(&items)), Some(items));
        }
    }
}
