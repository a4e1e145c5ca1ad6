//! SQLite set-up: one file in WAL mode, a write pool of exactly one connection (every write,
//! including sqlite-es commits and migrations, goes through it, so writers queue in-process
//! instead of failing with "database is locked") and a separate pool for reads.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::store::StoreOptions;

/// The SQLite schema.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's extended result code for `RAISE(ABORT, …)` in a trigger (SQLITE_CONSTRAINT_TRIGGER).
pub(crate) const CONSTRAINT_TRIGGER: &str = "1811";

/// Opens (creating if needed, parent folders too) the database file and returns the write pool
/// and the read pool.
pub(crate) async fn connect(
    url: &str,
    options: &StoreOptions,
) -> Result<(SqlitePool, SqlitePool), StoreError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::InMemorySqlite);
    }
    let connect = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    if let Some(folder) = connect
        .get_filename()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(folder)
            .await
            .map_err(|source| StoreError::DataDir {
                path: folder.to_owned(),
                source,
            })?;
    }
    // The write pool connects first: it creates the file and switches it to WAL.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect.create_if_missing(false))
        .await?;
    Ok((write, read))
}
