//! Rebuild a projection from position zero into shadow tables, then swap them in.
//!
//! While the rebuild runs, the live tables keep serving queries and the live runner keeps
//! them current. The swap takes the live checkpoint's lock (so the live runner waits),
//! applies the last events into the shadow tables, replaces the live tables and moves
//! the checkpoint, all in one transaction: readers see the old tables or the new, never
//! a partial one.

use crate::checkpoint::{self, Checkpoint};
use crate::runner::Runner;
use crate::statistics::{self, Growth};
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
    let applied = rebuild_all(store, &[p], batch, progress).await?;
    Ok(applied.first().map_or(0, |(_, n)| *n))
}

/// Rebuild every projection of `projections` from the beginning of the feed, reading the
/// feed once: each batch is read once and applied to every projection's shadow tables, in
/// one transaction that also moves every rebuild checkpoint. Then each projection is
/// swapped in, each swap atomic on its own (readers see a projection's old tables or its
/// new ones, never a mix). `progress(events_read_so_far)` is called after every batch.
/// Returns, per projection, the number of events it applied (the feed's length, as the
/// swap applies what arrived meanwhile).
pub async fn rebuild_all(
    store: &Store,
    projections: &[&dyn Projection],
    batch: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<Vec<(&'static str, i64)>, ProjectionError> {
    let mut seen = std::collections::HashSet::new();
    let projections: Vec<&dyn Projection> = projections
        .iter()
        .copied()
        .filter(|p| seen.insert(p.name()))
        .collect();
    let keys: Vec<String> = projections.iter().map(|p| rebuild_key(*p)).collect();
    let shadows: Vec<Tables> = projections
        .iter()
        .map(|p| Tables::shadow(p.tables()))
        .collect();
    {
        let mut conn = store.any.acquire().await?;
        for key in &keys {
            checkpoint::delete(&mut conn, key).await?;
        }
    }
    for p in &projections {
        create_shadows(store, *p).await?;
    }
    let mut applied: i64 = 0;
    // Shadow tables start empty: without fresh statistics a look-up by a list of ids keeps
    // being planned as a scan of the whole (growing) table (`statistics`).
    let mut growth = Growth::default();
    loop {
        let n = step_all(store, &projections, &keys, &shadows, batch).await?;
        if n == 0 {
            break;
        }
        applied += n as i64;
        progress(applied);
        if growth.add(n) {
            let names: Vec<String> = projections
                .iter()
                .flat_map(|p| p.tables().iter().map(|t| shadow_name(t)))
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            statistics::analyze(store, &names).await?;
        }
    }
    let mut out = Vec::with_capacity(projections.len());
    let mut tails = 0;
    for ((p, key), shadow) in projections.iter().zip(&keys).zip(&shadows) {
        let tail = swap(store, *p, key, shadow).await?;
        tails = tails.max(tail);
        out.push((p.name(), applied + tail));
    }
    progress(applied + tails);
    Ok(out)
}

/// One batch of the feed, read once, applied to every projection's shadow tables in one
/// transaction with their checkpoints. The checkpoints start together and move together;
/// if another process moved one (a second rebuild of the same projection), this one stops
/// with an error rather than apply a batch twice.
async fn step_all(
    store: &Store,
    projections: &[&dyn Projection],
    keys: &[String],
    shadows: &[Tables],
    batch: i64,
) -> Result<usize, ProjectionError> {
    if let [p] = projections {
        return Runner::step_into(store, *p, &keys[0], &shadows[0], batch).await;
    }
    let mut tx = store.any.begin().await?;
    let mut at = None;
    // Locked in one order by every rebuild, so two never wait on each other in a circle.
    let mut in_order: Vec<&String> = keys.iter().collect();
    in_order.sort();
    for key in in_order {
        let cp = checkpoint::lock(&mut tx, key).await?;
        match at {
            None => at = Some(cp),
            Some(first) if first == cp => {}
            Some(_) => return Err(ProjectionError::Interrupted(key.clone())),
        }
    }
    let Some(cp) = at else { return Ok(0) };
    let events = store.feed().read(cp.position, batch).await?;
    let Some(last) = events.last() else {
        tx.rollback().await?;
        return Ok(0);
    };
    for (p, shadow) in projections.iter().zip(shadows) {
        p.apply(&mut tx, shadow, &events).await?;
    }
    let next = Checkpoint {
        position: last.position,
        events: cp.events + events.len() as i64,
    };
    for key in keys {
        checkpoint::save(&mut tx, key, next).await?;
    }
    tx.commit().await?;
    Ok(events.len())
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
