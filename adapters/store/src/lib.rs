//! The event store and the tables shared by every layer.
//!
//! Commands are decided by cqrs-es over postgres-es or sqlite-es (see [`es`]). Events are
//! read back in global commit order through the [`feed`]. Read models, tokens, data keys and
//! checkpoints live in the same database and are reached through an `sqlx::AnyPool`, with
//! SQL written once for both dialects (TEXT and BIGINT columns, `$N` placeholders).
//!
//! Lives here: the event log (append, load, feed, point-in-time reads) and migrations.
//! Must not: SQL against a read model (that is `syncledger-projections`), or the tables an
//! engine module or adapter owns (`api_tokens` and `oauth_states`: the engine's
//! `workspaces` and `oauth`; `data_keys`: the vault).

pub mod append;
pub mod config;
pub mod es;
pub mod feed;
pub mod files;
pub mod history;
pub mod meta;
pub mod written;

pub use config::{Backend, StoreConfig};
pub use es::{CommandError, Cqrs};
pub use feed::{Feed, Position, StoredEvent};
pub use meta::Metadata;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AnyPool, PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the database")]
    Connect(#[source] sqlx::Error),
    #[error(transparent)]
    Files(#[from] files::FilesError),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The native pool the event-store crate needs.
#[derive(Clone, Debug)]
pub enum EventPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Connections to one syncledger database.
#[derive(Clone, Debug)]
pub struct Store {
    pub events: EventPool,
    /// Feed readers get their own connections: on SQLite a projection batch holds the write
    /// lock while it reads the feed, and command writers waiting on that lock must not be
    /// able to take every connection the reader needs.
    feed_pool: EventPool,
    /// Read models, tokens, keys and checkpoints, in SQL common to both dialects.
    pub any: AnyPool,
}

static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The SQLite schema, for a database made outside a [`Store`] (a replay's target file).
pub fn sqlite_migrations() -> &'static sqlx::migrate::Migrator {
    &SQLITE_MIGRATIONS
}

impl Store {
    /// Open (creating if needed) and migrate the database the configuration names.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let store = match config.backend() {
            Backend::Postgres(url) => Self::open_postgres(&url, config.max_connections).await?,
            Backend::Sqlite(path) => Self::open_sqlite(&path).await?,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn open_postgres(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let opts = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pg = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(StoreError::Connect)?;
        let any = sqlx::any::AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        let feed = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(PgConnectOptions::from_str(url).map_err(StoreError::Connect)?)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Store {
            events: EventPool::Postgres(pg),
            feed_pool: EventPool::Postgres(feed),
            any,
        })
    }

    async fn open_sqlite(path: &std::path::Path) -> Result<Store, StoreError> {
        // Private to the owner: the database holds ciphertext, token hashes and records.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        files::private_dir(dir)?;
        files::create_private_file(path)?;
        files::restrict_sqlite_files(path)?;
        // synchronous=FULL: a commit is on disk before it is acknowledged (nothing lost on
        // a machine crash), at a modest cost over NORMAL in WAL mode.
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let sqlite = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone())
            .await
            .map_err(StoreError::Connect)?;
        // WAL readers never wait for the writer.
        let feed = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(StoreError::Connect)?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let any = sqlx::any::AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 30000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        // The write-ahead log and its index exist now; SQLite gave them the database
        // file's mode, which this makes sure of.
        files::restrict_sqlite_files(path)?;
        Ok(Store {
            events: EventPool::Sqlite(sqlite),
            feed_pool: EventPool::Sqlite(feed),
            any,
        })
    }

    /// Apply every embedded migration not yet applied. Safe to run again.
    ///
    /// PostgreSQL serialises concurrent migrators with an advisory lock. SQLite has no such
    /// lock in sqlx: two processes starting on a fresh file can race to record the same
    /// migration, and the loser simply tries again, finding it applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            let result = match &self.events {
                EventPool::Postgres(pool) => PG_MIGRATIONS.run(pool).await,
                EventPool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            };
            match result {
                Err(e) if attempt < 5 && !self.is_postgres() => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                }
                other => return Ok(other?),
            }
        }
    }

    /// This database's random id, made with its schema (migration 0013). It tells this
    /// database's messages apart from another database's on a shared bus.
    pub async fn store_id(&self) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_one(&self.any)
            .await
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.events, EventPool::Postgres(_))
    }

    /// Whether the database answers a trivial query now (on the pool the event log is
    /// written through): how a writer tells an outage from an error that persists.
    pub async fn answers(&self) -> bool {
        match &self.events {
            EventPool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
            EventPool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
        }
    }

    pub fn feed(&self) -> Feed {
        Feed::new(self.feed_pool.clone())
    }

    pub fn cqrs<A: syncledger_domain::Aggregate + 'static>(&self) -> Cqrs<A> {
        Cqrs::new(&self.events)
    }

    pub async fn close(&self) {
        self.any.close().await;
        for pool in [&self.events, &self.feed_pool] {
            match pool {
                EventPool::Postgres(p) => p.close().await,
                EventPool::Sqlite(p) => p.close().await,
            }
        }
    }

    /// How each of the store's connection pools is used right now (for metrics): the
    /// event writers' (`events`), the feed readers' (`feed`) and the read models' (`any`).
    pub fn pool_use(&self) -> [PoolUse; 3] {
        fn of_events(name: &'static str, pool: &EventPool) -> PoolUse {
            match pool {
                EventPool::Postgres(p) => PoolUse::of(name, p),
                EventPool::Sqlite(p) => PoolUse::of(name, p),
            }
        }
        [
            of_events("events", &self.events),
            of_events("feed", &self.feed_pool),
            PoolUse::of("any", &self.any),
        ]
    }
}

/// One connection pool's use at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: &'static str,
    /// Connections open (idle or lent out).
    pub open: u32,
    pub idle: u32,
    /// The most it may open.
    pub max: u32,
}

impl PoolUse {
    fn of<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> PoolUse {
        let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
        PoolUse {
            pool,
            open: p.size(),
            idle,
            max: p.options().get_max_connections(),
        }
    }

    /// Connections lent out.
    pub fn in_use(&self) -> u32 {
        self.open.saturating_sub(self.idle)
    }
}
