//! Table contents as plain strings, for comparing a table before and after an operation.

use sqlx::{AnyPool, Column, Row};

/// Every row of `table` ordered by `order_by`, each cell rendered as text (`NULL` for null,
/// booleans as 0 and 1).
pub async fn dump(pool: &AnyPool, table: &str, order_by: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order_by}"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(render_row).collect()
}

fn render_row(row: &sqlx::any::AnyRow) -> anyhow::Result<Vec<String>> {
    (0..row.columns().len())
        .map(|i| render_cell(row, i))
        .collect()
}

fn render_cell(row: &sqlx::any::AnyRow, i: usize) -> anyhow::Result<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.unwrap_or_else(|| "NULL".into()));
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map_or_else(|| "NULL".into(), |n| n.to_string()));
    }
    // PostgreSQL booleans read as SQLite stores them, so both backends compare equal.
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return Ok(v.map_or_else(|| "NULL".into(), |b| i64::from(b).to_string()));
    }
    let name = row.columns()[i].name();
    anyhow::bail!("column {name} is neither text, an integer nor a boolean")
}
