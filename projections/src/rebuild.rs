//! Rebuild a projection from position zero into shadow tables, then swap them in.
//!
//! While the rebuild runs, the live tables keep serving queries and the live runner keeps
//! them current. The swap takes the live checkpoint's lock (so the live runner waits),
//! applies the last events into the shadow tables, replaces the live tables and moves
//! the checkpoint, all in one transaction: readers see the old tables or the new, never
//! a partial one.

use crate::checkpoint::{self, Checkpoint};
use crate::runner::Runner;
use crate::{shadow_name, Projection, ProjectionError, Tables};
use sqlx::Row;
use syncledger_store::Store;

fn rebuild_key(p: &dyn Projection) -> String {
    format!("{}#rebuild", p.name())
}

/// Create empty shadow tables shaped like the live ones (which migrations define).
async fn create_shadows(store: &Store, p: &dyn Projection) -> Result<(), ProjectionError> {
    let mut conn = store.any.acquire().await?;
    for table in p.tables() {
        let shadow = shadow_name(table);
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *conn)
            .await?;
        if store.is_postgres() {
            sqlx::query(&format!(
                "CREATE TABLE {shadow} (LIKE {table} INCLUDING ALL)"
            ))
            .execute(&mut *conn)
            .await?;
        } else {
            let sql: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(*table)
            .fetch_one(&mut *conn)
            .await?;
            let sql = rename_create(&sql, table, &shadow);
            sqlx::query(&sql).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Events applied before the shadow tables are first analyzed; then at each doubling.
const ANALYZE_FIRST: i64 = 2000;

/// PostgreSQL plans a statement it runs again and again once, for the table as it was
/// then: shadow tables start empty, so without fresh statistics a look-up by a list of
/// ids keeps scanning the whole (growing) table, and a rebuild slows quadratically.
/// `ANALYZE` gives the planner the table's real size and drops the stale plans.
async fn analyze_shadows(store: &Store, p: &dyn Projection) -> Result<(), ProjectionError> {
    if !store.is_postgres() {
        return Ok(());
    }
    let mut conn = store.any.acquire().await?;
    for table in p.tables() {
        sqlx::query(&format!("ANALYZE {}", shadow_name(table)))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `CREATE TABLE name (` → `CREATE TABLE shadow (` (only the table name is replaced).
fn rename_create(sql: &str, table: &str, shadow: &str) -> String {
    match sql.find(table) {
        Some(i) => format!("{}{}{}", &sql[..i], shadow, &sql[i + table.len()..]),
        None => sql.to_string(),
    }
}

/// Rebuild `p` from the beginning of the feed. `progress(applied_so_far)` is called after
/// every batch. Returns the number of events applied.
pub async fn rebuild(
    store: &Store,
    p: &dyn Projection,
    batch: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let key = rebuild_key(p);
    let shadow = Tables::shadow(p.tables());
    {
        let mut conn = store.any.acquire().await?;
        checkpoint::delete(&mut conn, &key).await?;
    }
    create_shadows(store, p).await?;
    let mut applied: i64 = 0;
    let mut analyze_at: i64 = ANALYZE_FIRST;
    loop {
        let n = Runner::step_into(store, p, &key, &shadow, batch).await?;
        if n == 0 {
            break;
        }
        applied += n as i64;
        progress(applied);
        if applied >= analyze_at {
            analyze_shadows(store, p).await?;
            analyze_at = applied.saturating_mul(2);
        }
    }
    applied += swap(store, p, &key, &shadow).await?;
    progress(applied);
    Ok(applied)
}

async fn swap(
    store: &Store,
    p: &dyn Projection,
    key: &str,
    shadow: &Tables,
) -> Result<i64, ProjectionError> {
    let mut tx = store.any.begin().await?;
    // The live checkpoint's lock first: the live runner for this projection now waits.
    checkpoint::lock(&mut tx, p.name()).await?;
    let mut cp = checkpoint::lock(&mut tx, key).await?;
    let mut tail = 0;
    loop {
        let events = store.feed().read(cp.position, 1000).await?;
        let Some(last) = events.last() else { break };
        p.apply(&mut tx, shadow, &events).await?;
        tail += events.len() as i64;
        cp = Checkpoint {
            position: last.position,
            events: cp.events + events.len() as i64,
        };
    }
    let mut index_sql = Vec::new();
    if !store.is_postgres() {
        for table in p.tables() {
            let rows = sqlx::query(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
            )
            .bind(*table)
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                index_sql.push(r.try_get::<String, _>("sql")?);
            }
        }
    }
    let pg_index_names = if store.is_postgres() {
        live_index_names(&mut tx, p.tables()).await?
    } else {
        Vec::new()
    };
    for table in p.tables() {
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "ALTER TABLE {} RENAME TO {table}",
            shadow_name(table)
        ))
        .execute(&mut *tx)
        .await?;
    }
    for sql in index_sql {
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    restore_index_names(&mut tx, pg_index_names).await?;
    checkpoint::save(&mut tx, p.name(), cp).await?;
    checkpoint::delete(&mut tx, key).await?;
    tx.commit().await?;
    Ok(tail)
}

/// An index of a live table: its name and its definition with the names taken out.
type IndexName = (String, String, String);

/// `(table, index name, shape)` for each index of the live tables (PostgreSQL).
async fn live_index_names(
    conn: &mut sqlx::AnyConnection,
    tables: &[&'static str],
) -> Result<Vec<IndexName>, ProjectionError> {
    let mut out = Vec::new();
    for table in tables {
        let rows = sqlx::query("SELECT indexname::text AS indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1")
            .bind(*table)
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let name: String = r.try_get("indexname")?;
            let def: String = r.try_get("indexdef")?;
            out.push((
                table.to_string(),
                name.clone(),
                index_shape(&def, &name, table),
            ));
        }
    }
    Ok(out)
}

/// The definition without the index and table names, to match an index with its copy.
fn index_shape(def: &str, index: &str, table: &str) -> String {
    def.replacen(index, "", 1).replace(table, "")
}

/// `CREATE TABLE … (LIKE … INCLUDING ALL)` names the copied indexes after the shadow
/// table; once swapped in, give them back the names the migrations chose.
async fn restore_index_names(
    conn: &mut sqlx::AnyConnection,
    live: Vec<IndexName>,
) -> Result<(), ProjectionError> {
    for (table, name, shape) in live {
        let shadow = shadow_name(&table);
        let rows = sqlx::query("SELECT indexname::text AS indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1")
            .bind(&table)
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let current: String = r.try_get("indexname")?;
            let def: String = r.try_get("indexdef")?;
            let copied_shape = index_shape(&def, &current, &table).replace(&shadow, "");
            if current != name && copied_shape == shape {
                sqlx::query(&format!("ALTER INDEX {current} RENAME TO {name}"))
                    .execute(&mut *conn)
                    .await?;
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rename_create;

    #[test]
    fn only_the_table_name_is_renamed() {
        assert_eq!(
            rename_create(
                "CREATE TABLE audit_log (audit_log_x TEXT)",
                "audit_log",
                "audit_log_rebuild"
            ),
            "CREATE TABLE audit_log_rebuild (audit_log_x TEXT)"
        );
    }
}
