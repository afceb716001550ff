//! `syncledger replay --until T --into DIR`: projections as they were at instant `T`, each
//! written to a new SQLite file in `DIR` with a JSON manifest beside it, for an auditor.
//! The live database is only read.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use syncledger_projections::replay::{replay_until, Replayed};
use syncledger_projections::Projection;
use syncledger_store::Store;

/// `--until`: an RFC 3339 time, kept to the microsecond (the stores' precision).
pub fn parse_until(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map_err(|e| format!("{e}: expected an RFC 3339 time such as 2026-01-31T12:00:00Z"))?
        .with_timezone(&Utc);
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros).ok_or_else(|| "time out of range".to_string())
}

/// The projections named (`all`, or none at all, means every one), without repeats.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(syncledger_projections::all());
    }
    let mut out: Vec<Arc<dyn Projection>> = Vec::new();
    for name in names {
        let p = syncledger_projections::by_name(name)?;
        if !out.iter().any(|q| q.name() == p.name()) {
            out.push(p);
        }
    }
    Ok(out)
}

/// What one replay wrote.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub projection: String,
    pub until: String,
    pub events_applied: i64,
    pub last_position: LastPosition,
    pub source_backend: String,
    pub created_at: String,
    /// The database file, relative to the manifest.
    pub file: String,
    pub tables: Vec<String>,
    /// SHA-256 of the database file as written.
    pub sha256: String,
    pub syncledger_version: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LastPosition {
    /// PostgreSQL transaction id (0 on SQLite).
    pub tx: i64,
    pub position: i64,
}

/// The files one replay wrote.
#[derive(Debug)]
pub struct Written {
    pub database: PathBuf,
    pub manifest: PathBuf,
    pub replayed: Replayed,
}

/// `DIR/P-20260131T120000.000000Z.sqlite` and `.json`.
fn paths(dir: &Path, p: &dyn Projection, until: DateTime<Utc>) -> (PathBuf, PathBuf) {
    let stem = format!("{}-{}", p.name(), until.format("%Y%m%dT%H%M%S%.6fZ"));
    (
        dir.join(format!("{stem}.sqlite")),
        dir.join(format!("{stem}.json")),
    )
}

/// A new file, private to the owner (it holds customer data); an existing one is an error.
fn create_new(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            if path.exists() {
                format!("{} already exists; replay never overwrites", path.display())
            } else {
                format!("create {}", path.display())
            }
        })
}

/// Replay `p` up to `until` from `live` into a new SQLite database in `dir`.
pub async fn replay_into(
    live: &Store,
    p: &dyn Projection,
    until: DateTime<Utc>,
    dir: &Path,
    batch: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> anyhow::Result<Written> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create the directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("open {}", dir.display()))?;
    let (database, manifest) = paths(&dir, p, until);
    if manifest.exists() {
        anyhow::bail!(
            "{} already exists; replay never overwrites",
            manifest.display()
        );
    }
    create_new(&database)?;
    let result = build(live, p, until, &database, batch, progress).await;
    let replayed = match result {
        Ok(r) => r,
        Err(e) => {
            // A partial file must not pass for a replay.
            let _ = std::fs::remove_file(&database);
            return Err(e);
        }
    };
    let m = Manifest {
        projection: p.name().to_string(),
        until: until.to_rfc3339_opts(SecondsFormat::Micros, true),
        events_applied: replayed.events,
        last_position: LastPosition {
            tx: replayed.last_position.tx,
            position: replayed.last_position.pos,
        },
        source_backend: if live.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
        .to_string(),
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        file: database
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        tables: p.tables().iter().map(|t| t.to_string()).collect(),
        sha256: sha256_file(&database)?,
        syncledger_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut f = create_new(&manifest)?;
    f.write_all(serde_json::to_string_pretty(&m)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(Written {
        database,
        manifest,
        replayed,
    })
}

/// Migrate the new file (so the tables have their real shape), then replay into it, all
/// on one connection.
async fn build(
    live: &Store,
    p: &dyn Projection,
    until: DateTime<Utc>,
    database: &Path,
    batch: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> anyhow::Result<Replayed> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=rw", database.display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    // A crash mid-way leaves a file without a manifest, so no fsync per batch.
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut conn)
        .await?;
    syncledger_store::sqlite_migrations()
        .run(&mut conn)
        .await
        .context("create the replay database")?;
    let replayed = replay_until(live, p, until, &mut conn, batch, progress).await?;
    conn.close().await?;
    std::fs::File::open(database)?.sync_all()?;
    Ok(replayed)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut hash)?;
    Ok(hex::encode(hash.finalize()))
}
