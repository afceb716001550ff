//! The SQL a destination runs in the app's database: its catalogue, the sink's own
//! tables there (schema `_syncledger`: `checkpoints`, `held`, a rebuild's fresh tables), a
//! batch applied with a constant number of statements per table (`COPY` into a temporary
//! table, one `INSERT … ON CONFLICT`, one `DELETE`/`UPDATE` for archived records) together
//! with the checkpoint in one transaction, and a rebuild's swap.
//!
//! The sink's tables live in a schema of their own so that an API over the app's schema
//! (Supabase's, over `public`) never exposes them: held records' reasons name values, and
//! a rebuild's copy holds every row. A swap replaces the live table's contents, not the
//! table, so its grants, row-level security policies, triggers and the foreign keys that
//! point at it stay as the app made them.
//!
//! Not read-model SQL (that lives in `projections/`): this is the app's database, whose
//! tables the app owns. Every identifier is a checked one ([`valid_identifier`]) and quoted.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgPool, Postgres, Row as _, Transaction};
use syncledger_crm::outbound::{first_forbidden, lookup};
use syncledger_domain::destination::{
    quoted, CatalogueColumn, CatalogueTable, LookupBy, Normalise, OnArchive, Row, TableMapping,
};
use syncledger_domain::outbound::OutboundPolicy;
use syncledger_store::Position;

use crate::error::EngineError;

/// The slot of the table being written: the live one, or a rebuild's fresh copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Live,
    Rebuild,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Live => "live",
            Slot::Rebuild => "rebuild",
        }
    }

    /// The table (schema-qualified, quoted) a mapping's rows go to in this slot.
    pub fn table(self, schema: &str, id: &str, mapping: &TableMapping) -> String {
        match self {
            Slot::Live => format!("{}.{}", quoted(schema), quoted(&mapping.table)),
            Slot::Rebuild => rebuild_table(id, &mapping.table),
        }
    }
}

/// The sink's own schema in the target.
const STATE: &str = "\"_syncledger\"";

/// A rebuild's fresh copy of `table`, in the sink's schema, named for its destination.
fn rebuild_table(id: &str, table: &str) -> String {
    let short: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    format!("{STATE}.{}", quoted(&format!("r{short}_{table}")))
}

/// How far a slot has applied the feed, and for which rebuild generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub generation: i64,
    pub position: Position,
}

/// A failure talking to the target, said without the URL or its password.
fn target_error(what: &str, e: &sqlx::Error) -> EngineError {
    let detail = match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "no connection within the time limit".into(),
        sqlx::Error::Io(io) => format!("connection failed ({})", io.kind()),
        sqlx::Error::Tls(_) => "the TLS handshake failed".into(),
        sqlx::Error::Configuration(_) => "the database URL is not usable".into(),
        _ => "the database answered unexpectedly".into(),
    };
    EngineError::Unavailable {
        code: "destination_unavailable",
        message: format!("{what}: {detail}"),
    }
}

/// What a database URL points at, for people: `host:port/database` (no user, no password).
pub fn describe(url: &str) -> Result<String, EngineError> {
    let options = parse(url)?;
    Ok(format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    ))
}

fn parse(url: &str) -> Result<PgConnectOptions, EngineError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(EngineError::invalid(
            "database_url",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| EngineError::invalid("database_url", "is not a PostgreSQL connection URL"))?;
    if options.get_host().starts_with('/') {
        return Err(EngineError::invalid(
            "database_url",
            "a Unix socket is not a destination; name a host",
        ));
    }
    Ok(options)
}

/// Connects to a destination's database: its host passes the outbound policy (resolved
/// here, and connected to by the address checked, unless the URL asks to verify the
/// server's certificate by name).
pub async fn connect(url: &str, policy: OutboundPolicy) -> Result<PgPool, EngineError> {
    let options = parse(url)?;
    let host = options.get_host().to_owned();
    let addrs = lookup(&host)
        .await
        .map_err(|_| EngineError::invalid("database_url", format!("{host} does not resolve")))?;
    if let Some(class) = first_forbidden(policy, &addrs) {
        return Err(EngineError::invalid(
            "database_url",
            format!("{host} resolves to a {class} address, which the server's outbound policy refuses for destinations"),
        ));
    }
    let verifies_name = matches!(options.get_ssl_mode(), PgSslMode::VerifyFull);
    let options = match addrs.first() {
        // Connect to the address that was checked: a name that resolves elsewhere a
        // moment later (DNS rebinding) reaches nothing new.
        Some(addr) if !verifies_name => options.host(&addr.ip().to_string()),
        _ => options,
    };
    let options = options
        .application_name("syncledger-destination")
        .statement_cache_capacity(64);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| target_error("the destination database cannot be reached", &e))
}

const CATALOGUE: &str = "
SELECT a.attname AS name,
       c.data_type,
       c.udt_name,
       c.is_nullable = 'YES' AS nullable,
       (c.column_default IS NOT NULL OR c.is_identity = 'YES' OR c.is_generated = 'ALWAYS') AS has_default,
       format_type(a.atttypid, a.atttypmod) AS sql_type,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
          FROM pg_enum e WHERE e.enumtypid = a.atttypid) AS labels
  FROM information_schema.columns c
  JOIN pg_namespace n ON n.nspname = c.table_schema
  JOIN pg_class t ON t.relnamespace = n.oid AND t.relname = c.table_name
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = c.column_name
 WHERE c.table_schema = $1 AND c.table_name = $2
 ORDER BY c.ordinal_position";

const UNIQUE: &str = "
SELECT array_agg(a.attname::text ORDER BY k.ord) AS columns
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
 WHERE n.nspname = $1 AND t.relname = $2 AND i.indisunique AND i.indpred IS NULL
 GROUP BY i.indexrelid";

/// A table as the catalogue describes it, with each column's exact SQL type (what values
/// are cast to); `None` when it does not exist.
pub async fn table(
    pool: &PgPool,
    schema: &str,
    table: &str,
) -> Result<Option<(CatalogueTable, HashMap<String, String>)>, EngineError> {
    let rows = sqlx::query(CATALOGUE)
        .bind(schema)
        .bind(table)
        .fetch_all(pool)
        .await
        .map_err(|e| target_error("reading the destination's catalogue", &e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut types = HashMap::new();
    let mut columns = Vec::new();
    for r in rows {
        let name: String = r
            .try_get("name")
            .map_err(|e| target_error("catalogue", &e))?;
        let sql_type: String = r
            .try_get("sql_type")
            .map_err(|e| target_error("catalogue", &e))?;
        types.insert(name.clone(), sql_type);
        columns.push(CatalogueColumn {
            name,
            data_type: r
                .try_get("data_type")
                .map_err(|e| target_error("catalogue", &e))?,
            udt: r
                .try_get("udt_name")
                .map_err(|e| target_error("catalogue", &e))?,
            nullable: r
                .try_get("nullable")
                .map_err(|e| target_error("catalogue", &e))?,
            has_default: r
                .try_get("has_default")
                .map_err(|e| target_error("catalogue", &e))?,
            enum_labels: r
                .try_get("labels")
                .map_err(|e| target_error("catalogue", &e))?,
        });
    }
    let unique = sqlx::query_scalar::<_, Vec<String>>(UNIQUE)
        .bind(schema)
        .bind(table)
        .fetch_all(pool)
        .await
        .map_err(|e| target_error("reading the destination's indexes", &e))?;
    Ok(Some((CatalogueTable { columns, unique }, types)))
}

/// Creates the sink's own schema and tables when missing (nobody but their owner may read
/// them).
pub async fn prepare(pool: &PgPool) -> Result<(), EngineError> {
    let exists = || async {
        sqlx::query_scalar::<_, bool>(&format!(
            "SELECT to_regclass('{STATE}.checkpoints') IS NOT NULL
                AND to_regclass('{STATE}.held') IS NOT NULL"
        ))
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    };
    if exists().await {
        return Ok(());
    }
    for sql in [
        format!("CREATE SCHEMA IF NOT EXISTS {STATE}"),
        format!("REVOKE ALL ON SCHEMA {STATE} FROM PUBLIC"),
        format!(
            "CREATE TABLE IF NOT EXISTS {STATE}.checkpoints (
                destination_id text NOT NULL,
                slot           text NOT NULL,
                generation     bigint NOT NULL,
                tx             bigint NOT NULL,
                pos            bigint NOT NULL,
                last_error     text,
                updated_at     timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (destination_id, slot))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {STATE}.held (
                destination_id text NOT NULL,
                slot           text NOT NULL,
                record_id      text NOT NULL,
                entity         text NOT NULL,
                reason         text NOT NULL,
                held_at        timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (destination_id, slot, record_id))"
        ),
    ] {
        // Two servers creating them at once: one wins, the other's error is harmless.
        if let Err(e) = sqlx::query(&sql).execute(pool).await {
            if !exists().await {
                return Err(target_error(
                    "creating the sink's tables (schema _syncledger)",
                    &e,
                ));
            }
        }
    }
    Ok(())
}

/// The slot's checkpoint, if it has one.
pub async fn checkpoint(
    pool: &PgPool,
    id: &str,
    slot: Slot,
) -> Result<Option<Checkpoint>, EngineError> {
    let row = sqlx::query(&format!(
        "SELECT generation, tx, pos FROM {STATE}.checkpoints
          WHERE destination_id = $1 AND slot = $2"
    ))
    .bind(id)
    .bind(slot.as_str())
    .fetch_optional(pool)
    .await
    .map_err(|e| target_error("reading the checkpoint", &e))?;
    row.map(|r| {
        Ok(Checkpoint {
            generation: r.try_get("generation")?,
            position: Position {
                tx: r.try_get("tx")?,
                pos: r.try_get("pos")?,
            },
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| target_error("reading the checkpoint", &e))
}

/// The live slot starts at the beginning of the feed (a backfill), unless it exists.
pub async fn start(pool: &PgPool, id: &str, generation: i64) -> Result<(), EngineError> {
    sqlx::query(&format!(
        "INSERT INTO {STATE}.checkpoints (destination_id, slot, generation, tx, pos)
         VALUES ($1, 'live', $2, 0, 0) ON CONFLICT DO NOTHING"
    ))
    .bind(id)
    .bind(generation)
    .execute(pool)
    .await
    .map_err(|e| target_error("starting the checkpoint", &e))?;
    Ok(())
}

/// Notes why the sink cannot go on (`None`: it can again), for the API to show.
pub async fn set_error(pool: &PgPool, id: &str, error: Option<&str>) -> Result<(), EngineError> {
    sqlx::query(&format!(
        "UPDATE {STATE}.checkpoints SET last_error = $2
          WHERE destination_id = $1 AND slot = 'live' AND last_error IS DISTINCT FROM $2"
    ))
    .bind(id)
    .bind(error)
    .execute(pool)
    .await
    .map_err(|e| target_error("noting the sink's error", &e))?;
    Ok(())
}

/// How a destination stands, as its database tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub live: Option<Checkpoint>,
    pub rebuilding: Option<Checkpoint>,
    pub last_error: Option<String>,
    pub held: i64,
}

pub async fn standing(pool: &PgPool, id: &str) -> Result<Standing, EngineError> {
    let rows = sqlx::query(&format!(
        "SELECT slot, generation, tx, pos, last_error FROM {STATE}.checkpoints
          WHERE destination_id = $1"
    ))
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(|e| target_error("reading the checkpoint", &e))?;
    let mut out = Standing::default();
    for r in rows {
        let read = || -> Result<(String, Checkpoint, Option<String>), sqlx::Error> {
            Ok((
                r.try_get("slot")?,
                Checkpoint {
                    generation: r.try_get("generation")?,
                    position: Position {
                        tx: r.try_get("tx")?,
                        pos: r.try_get("pos")?,
                    },
                },
                r.try_get("last_error")?,
            ))
        };
        let (slot, cp, error) = read().map_err(|e| target_error("reading the checkpoint", &e))?;
        if slot == "live" {
            out.live = Some(cp);
            out.last_error = error;
        } else {
            out.rebuilding = Some(cp);
        }
    }
    out.held = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {STATE}.held WHERE destination_id = $1 AND slot = 'live'"
    ))
    .bind(id)
    .fetch_one(pool)
    .await
    .map_err(|e| target_error("counting held records", &e))?;
    Ok(out)
}

/// A record held back, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub record_id: String,
    pub entity: String,
    pub reason: String,
    pub held_at: chrono::DateTime<chrono::Utc>,
}

/// Up to `limit` held records of the live table after `after` (record id order).
pub async fn held(
    pool: &PgPool,
    id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<Held>, EngineError> {
    let rows = sqlx::query(&format!(
        "SELECT record_id, entity, reason, held_at FROM {STATE}.held
          WHERE destination_id = $1 AND slot = 'live' AND record_id > $2
          ORDER BY record_id LIMIT $3"
    ))
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(|e| target_error("listing held records", &e))?;
    rows.iter()
        .map(|r| {
            Ok(Held {
                record_id: r.try_get("record_id")?,
                entity: r.try_get("entity")?,
                reason: r.try_get("reason")?,
                held_at: r.try_get("held_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| target_error("listing held records", &e))
}

/// One table's part of a batch.
#[derive(Clone, Debug, Default)]
pub struct TableBatch {
    pub writes: Vec<(String, Row)>,
    pub archived: Vec<String>,
}

/// What a batch does: per mapping (index into the destination's mappings) its rows, the
/// records it holds (record id → entity, reason), and every record it looked at (their
/// earlier holds are cleared first).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tables: BTreeMap<usize, TableBatch>,
    pub held: BTreeMap<String, (String, String)>,
    pub touched: Vec<String>,
}

/// Column types as the target has them, per table: what values are cast to.
pub type Types = HashMap<String, String>;

/// What applying a batch came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written; the checkpoint is at the batch's end.
    Done { rows: usize },
    /// Another process moved the checkpoint first: nothing written.
    Moved,
}

/// A batch's effects and the checkpoint's move from `from` to `to`, in one transaction.
/// A value the target refuses (a constraint, a length) fails the set-based statement; the
/// batch is then written row by row and each refused record held with the target's reason.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    pool: &PgPool,
    schema: &str,
    id: &str,
    slot: Slot,
    mappings: &[TableMapping],
    types: &[Types],
    mut batch: Batch,
    from: Checkpoint,
    to: Position,
) -> Result<Applied, EngineError> {
    match apply_once(
        pool, schema, id, slot, mappings, types, &mut batch, from, to, false,
    )
    .await
    {
        Err(Failure::Data) => {
            match apply_once(
                pool, schema, id, slot, mappings, types, &mut batch, from, to, true,
            )
            .await
            {
                Ok(a) => Ok(a),
                Err(Failure::Data) => Err(EngineError::Internal("a row refused twice".into())),
                Err(Failure::Other(e)) => Err(e),
            }
        }
        Ok(a) => Ok(a),
        Err(Failure::Other(e)) => Err(e),
    }
}

enum Failure {
    /// The target refused a value (SQLSTATE class 22 or 23).
    Data,
    Other(EngineError),
}

fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")))
}

fn failure(what: &str, e: sqlx::Error) -> Failure {
    if is_data_error(&e) {
        Failure::Data
    } else {
        Failure::Other(target_error(what, &e))
    }
}

/// A CSV field: quoted, or empty for null (PostgreSQL's CSV `COPY` reads an unquoted
/// empty field as null and a quoted one as the empty string).
fn csv_field(out: &mut String, value: Option<&str>) {
    if let Some(v) = value {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_once(
    pool: &PgPool,
    schema: &str,
    id: &str,
    slot: Slot,
    mappings: &[TableMapping],
    types: &[Types],
    batch: &mut Batch,
    from: Checkpoint,
    to: Position,
    row_by_row: bool,
) -> Result<Applied, Failure> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| failure("opening a transaction", e))?;
    let now: Option<(i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT generation, tx, pos FROM {STATE}.checkpoints
          WHERE destination_id = $1 AND slot = $2 FOR UPDATE"
    ))
    .bind(id)
    .bind(slot.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| failure("locking the checkpoint", e))?;
    if now != Some((from.generation, from.position.tx, from.position.pos)) {
        return Ok(Applied::Moved);
    }
    resolve_lookups(&mut tx, schema, mappings, batch).await?;
    let mut rows = 0;
    for (&m, part) in &batch.tables {
        let mapping = &mappings[m];
        let table = slot.table(schema, id, mapping);
        let types = &types[m];
        let ty = |column: &str| types.get(column).cloned().unwrap_or_else(|| "text".into());
        let key = quoted(&mapping.key.column);
        let key_type = ty(&mapping.key.column);
        let writes: Vec<&(String, Row)> = part
            .writes
            .iter()
            .filter(|(record, _)| !batch.held.contains_key(record))
            .collect();
        if !writes.is_empty() {
            let cols: Vec<String> = mapping.columns.iter().map(|c| quoted(&c.column)).collect();
            let stage_cols: Vec<String> = (0..mapping.columns.len())
                .map(|i| format!("c{i} text"))
                .collect();
            sqlx::query(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS _syncledger_stage_{m} (k text, {}) ON COMMIT DELETE ROWS",
                stage_cols.join(", ")
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| failure("staging rows", e))?;
            let casts: Vec<String> = mapping
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("c{i}::{}", ty(&c.column)))
                .collect();
            let updates: Vec<String> = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
            let upsert = format!(
                "INSERT INTO {table} ({key}, {}) SELECT k::{key_type}, {} FROM _syncledger_stage_{m}
                 ON CONFLICT ({key}) DO UPDATE SET {}",
                cols.join(", "),
                casts.join(", "),
                updates.join(", ")
            );
            if row_by_row {
                for (record, row) in writes {
                    sqlx::query("SAVEPOINT syncledger_row")
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failure("writing a row", e))?;
                    copy_rows(&mut tx, m, std::slice::from_ref(row)).await?;
                    let written = sqlx::query(&upsert).execute(&mut *tx).await;
                    match written {
                        Ok(_) => {
                            rows += 1;
                            sqlx::query("RELEASE SAVEPOINT syncledger_row")
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| failure("writing a row", e))?;
                        }
                        Err(e) if is_data_error(&e) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT syncledger_row")
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| failure("writing a row", e))?;
                            let reason = match &e {
                                sqlx::Error::Database(db) => {
                                    format!("the database refused the row: {}", db.message())
                                }
                                _ => "the database refused the row".into(),
                            };
                            batch.held.insert(
                                record.clone(),
                                (mapping.entity.as_str().to_owned(), reason),
                            );
                        }
                        Err(e) => return Err(Failure::Other(target_error("writing a row", &e))),
                    }
                    sqlx::query(&format!("TRUNCATE _syncledger_stage_{m}"))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| failure("writing a row", e))?;
                }
            } else {
                let all: Vec<Row> = writes.iter().map(|(_, r)| r.clone()).collect();
                copy_rows(&mut tx, m, &all).await?;
                let done = sqlx::query(&upsert)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| failure("writing rows", e))?;
                rows += usize::try_from(done.rows_affected()).unwrap_or(0);
            }
        }
        if !part.archived.is_empty() {
            let sql = match &mapping.on_archive {
                OnArchive::Delete => {
                    format!("DELETE FROM {table} WHERE {key} = ANY($1::text[]::{key_type}[])")
                }
                OnArchive::Set { column, .. } => format!(
                    "UPDATE {table} SET {} = $2::{} WHERE {key} = ANY($1::text[]::{key_type}[])",
                    quoted(column),
                    ty(column)
                ),
            };
            let mut q = sqlx::query(&sql).bind(&part.archived);
            if let OnArchive::Set { value, .. } = &mapping.on_archive {
                q = q.bind(value);
            }
            let done = q
                .execute(&mut *tx)
                .await
                .map_err(|e| failure("archiving rows", e))?;
            rows += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        if let OnArchive::Set {
            column,
            restored: Some(restored),
            ..
        } = &mapping.on_archive
        {
            // Rows of records not archived (any more) carry the restored value.
            let live: Vec<&str> = part
                .writes
                .iter()
                .filter(|(record, row)| !row.archived && !batch.held.contains_key(record))
                .map(|(_, row)| row.key.as_str())
                .collect();
            if !live.is_empty() {
                let col = quoted(column);
                let col_type = ty(column);
                sqlx::query(&format!(
                    "UPDATE {table} SET {col} = $2::{col_type}
                      WHERE {key} = ANY($1::text[]::{key_type}[]) AND {col} IS DISTINCT FROM $2::{col_type}"
                ))
                .bind(&live)
                .bind(restored)
                .execute(&mut *tx)
                .await
                .map_err(|e| failure("restoring rows", e))?;
            }
        }
    }
    // Earlier holds of the batch's records are cleared (those still held are held again
    // below); mostly there are none, which one probe tells.
    let any_held = !batch.touched.is_empty()
        && sqlx::query_scalar::<_, bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM {STATE}.held WHERE destination_id = $1 AND slot = $2)"
        ))
        .bind(id)
        .bind(slot.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| failure("reading held records", e))?;
    if any_held {
        sqlx::query(&format!(
            "DELETE FROM {STATE}.held
              WHERE destination_id = $1 AND slot = $2 AND record_id = ANY($3)"
        ))
        .bind(id)
        .bind(slot.as_str())
        .bind(&batch.touched)
        .execute(&mut *tx)
        .await
        .map_err(|e| failure("clearing held records", e))?;
    }
    if !batch.held.is_empty() {
        let ids: Vec<&String> = batch.held.keys().collect();
        let entities: Vec<&String> = batch.held.values().map(|(e, _)| e).collect();
        let reasons: Vec<&String> = batch.held.values().map(|(_, r)| r).collect();
        sqlx::query(&format!(
            "INSERT INTO {STATE}.held (destination_id, slot, record_id, entity, reason)
             SELECT $1, $2, r, e, why FROM unnest($3::text[], $4::text[], $5::text[]) AS h(r, e, why)
             ON CONFLICT (destination_id, slot, record_id)
             DO UPDATE SET reason = EXCLUDED.reason, entity = EXCLUDED.entity"
        ))
        .bind(id)
        .bind(slot.as_str())
        .bind(ids)
        .bind(entities)
        .bind(reasons)
        .execute(&mut *tx)
        .await
        .map_err(|e| failure("holding records", e))?;
    }
    sqlx::query(&format!(
        "UPDATE {STATE}.checkpoints SET tx = $3, pos = $4, updated_at = now(), last_error = NULL
          WHERE destination_id = $1 AND slot = $2"
    ))
    .bind(id)
    .bind(slot.as_str())
    .bind(to.tx)
    .bind(to.pos)
    .execute(&mut *tx)
    .await
    .map_err(|e| failure("moving the checkpoint", e))?;
    crate::crashpoint::reach("sink:applied");
    tx.commit()
        .await
        .map_err(|e| failure("committing a batch", e))?;
    Ok(Applied::Done { rows })
}

/// Binary-safe `COPY … FROM STDIN (FORMAT csv)` of rows into the mapping's stage table.
async fn copy_rows(
    tx: &mut Transaction<'_, Postgres>,
    m: usize,
    rows: &[Row],
) -> Result<(), Failure> {
    let mut data = String::new();
    for row in rows {
        csv_field(&mut data, Some(&row.key));
        for v in &row.values {
            data.push(',');
            csv_field(&mut data, v.as_deref());
        }
        data.push('\n');
    }
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY _syncledger_stage_{m} FROM STDIN (FORMAT csv)"
        ))
        .await
        .map_err(|e| failure("staging rows", e))?;
    copy.send(data.into_bytes())
        .await
        .map_err(|e| failure("staging rows", e))?;
    copy.finish()
        .await
        .map_err(|e| failure("staging rows", e))?;
    Ok(())
}

/// Fills each pending lookup with the id of the row it finds (one query per lookup
/// column), or holds the record when none is found.
async fn resolve_lookups(
    tx: &mut Transaction<'_, Postgres>,
    schema: &str,
    mappings: &[TableMapping],
    batch: &mut Batch,
) -> Result<(), Failure> {
    for (&m, part) in batch.tables.iter_mut() {
        let mapping = &mappings[m];
        for (i, c) in mapping.columns.iter().enumerate() {
            let Some(Normalise::Lookup {
                table,
                by,
                match_column,
                id_column,
            }) = &c.normalise
            else {
                continue;
            };
            let mut probes: Vec<&str> = part
                .writes
                .iter()
                .flat_map(|(_, r)| {
                    r.lookups
                        .iter()
                        .filter(|(at, _)| *at == i)
                        .map(|(_, p)| p.as_str())
                })
                .collect();
            probes.sort_unstable();
            probes.dedup();
            if probes.is_empty() {
                continue;
            }
            let matched = match by {
                LookupBy::Email => format!("lower(btrim({}::text))", quoted(match_column)),
                LookupBy::Uuid => format!("lower({}::text)", quoted(match_column)),
            };
            let found: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT DISTINCT ON (m) m, id FROM (
                   SELECT {matched} AS m, {}::text AS id FROM {}.{} WHERE {matched} = ANY($1)
                 ) f ORDER BY m, id",
                quoted(id_column),
                quoted(schema),
                quoted(table)
            ))
            .bind(&probes)
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| failure("looking up related rows", e))?;
            let found: HashMap<String, String> = found.into_iter().collect();
            for (record, row) in part.writes.iter_mut() {
                let Some(probe) = row
                    .lookups
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map(|(_, p)| p.clone())
                else {
                    continue;
                };
                match found.get(&probe) {
                    Some(id) => row.values[i] = Some(id.clone()),
                    None => {
                        let reason =
                            format!("{}: no {table} row has {match_column} {probe:?}", c.column);
                        batch
                            .held
                            .entry(record.clone())
                            .or_insert((mapping.entity.as_str().to_owned(), reason));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Starts rebuild `generation`: a fresh, empty copy of each mapped table (its columns,
/// defaults, checks and indexes) in the sink's schema, and a rebuild checkpoint at the
/// feed's beginning.
pub async fn begin_rebuild(
    pool: &PgPool,
    schema: &str,
    id: &str,
    mappings: &[TableMapping],
    generation: i64,
) -> Result<(), EngineError> {
    let err = |e: sqlx::Error| target_error("starting a rebuild", &e);
    let mut tx = pool.begin().await.map_err(err)?;
    for m in mappings {
        let fresh = rebuild_table(id, &m.table);
        for sql in [
            format!("DROP TABLE IF EXISTS {fresh}"),
            format!(
                "CREATE TABLE {fresh} (LIKE {}.{} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                   INCLUDING INDEXES INCLUDING GENERATED INCLUDING IDENTITY)",
                quoted(schema),
                quoted(&m.table)
            ),
            format!("REVOKE ALL ON {fresh} FROM PUBLIC"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await.map_err(err)?;
        }
    }
    sqlx::query(&format!(
        "DELETE FROM {STATE}.held WHERE destination_id = $1 AND slot = 'rebuild'"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    sqlx::query(&format!(
        "INSERT INTO {STATE}.checkpoints (destination_id, slot, generation, tx, pos)
         VALUES ($1, 'rebuild', $2, 0, 0)
         ON CONFLICT (destination_id, slot) DO UPDATE SET generation = $2, tx = 0, pos = 0, updated_at = now()"
    ))
    .bind(id)
    .bind(generation)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)?;
    Ok(())
}

/// Swaps a caught-up rebuild in, in one transaction (readers see the old rows or the new
/// ones, never a mix): each live table's rows become its fresh copy's (rows whose key the
/// copy lacks are deleted, the others written), the copies are dropped, and the
/// rebuild's held records and checkpoint become the live ones. `false`: another process
/// moved the rebuild first.
pub async fn swap(
    pool: &PgPool,
    schema: &str,
    id: &str,
    mappings: &[TableMapping],
    rebuilt: Checkpoint,
) -> Result<bool, EngineError> {
    let err = |e: sqlx::Error| target_error("swapping the rebuilt tables in", &e);
    let mut tx = pool.begin().await.map_err(err)?;
    let now: Option<(i64, i64, i64)> = sqlx::query_as(&format!(
        "SELECT generation, tx, pos FROM {STATE}.checkpoints
          WHERE destination_id = $1 AND slot = 'rebuild' FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(err)?;
    if now
        != Some((
            rebuilt.generation,
            rebuilt.position.tx,
            rebuilt.position.pos,
        ))
    {
        return Ok(false);
    }
    for m in mappings {
        let live = format!("{}.{}", quoted(schema), quoted(&m.table));
        let fresh = rebuild_table(id, &m.table);
        let key = quoted(&m.key.column);
        let mut cols: Vec<String> = m.columns.iter().map(|c| quoted(&c.column)).collect();
        if let OnArchive::Set { column, .. } = &m.on_archive {
            if !m.columns.iter().any(|c| &c.column == column) {
                cols.push(quoted(column));
            }
        }
        let updates: Vec<String> = cols.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        for sql in [
            format!(
                "DELETE FROM {live} t WHERE t.{key} IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM {fresh} f WHERE f.{key} = t.{key})"
            ),
            format!(
                "INSERT INTO {live} ({key}, {cols}) SELECT {key}, {cols} FROM {fresh}
                 ON CONFLICT ({key}) DO UPDATE SET {updates}",
                cols = cols.join(", "),
                updates = updates.join(", ")
            ),
            format!("DROP TABLE {fresh}"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await.map_err(err)?;
        }
    }
    for sql in [
        format!("DELETE FROM {STATE}.held WHERE destination_id = $1 AND slot = 'live'"),
        format!(
            "UPDATE {STATE}.held SET slot = 'live' WHERE destination_id = $1 AND slot = 'rebuild'"
        ),
        format!("DELETE FROM {STATE}.checkpoints WHERE destination_id = $1 AND slot = 'live'"),
        format!(
            "UPDATE {STATE}.checkpoints SET slot = 'live', updated_at = now()
              WHERE destination_id = $1 AND slot = 'rebuild'"
        ),
    ] {
        sqlx::query(&sql)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(true)
}

/// Creates the mapping's table (the caller asked for it at creation).
pub async fn create_table(
    pool: &PgPool,
    schema: &str,
    mapping: &TableMapping,
) -> Result<(), EngineError> {
    sqlx::query(&mapping.create_table_sql(schema))
        .execute(pool)
        .await
        .map_err(|e| target_error(&format!("creating table {}", mapping.table), &e))?;
    Ok(())
}
