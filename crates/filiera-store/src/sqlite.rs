//! SQLite set-up: one file in WAL mode, a write pool of exactly one connection (every write,
//! including sqlite-es commits and migrations, goes through it, so writers queue in-process
//! instead of failing with "database is locked") and a separate pool for reads.
//!
//! A connection goes back to its pool only outside any transaction (see [`still_clean`]). After
//! a failed `COMMIT` (a full disk, an I/O error) SQLite may have rolled back on its own while
//! sqlx still counts a transaction. Later `begin()`s on that connection then become savepoints,
//! and after one more failure (`ROLLBACK TO` keeps SQLite's transaction open) every "commit"
//! only releases a savepoint of a transaction that never ends: acknowledged, never durable.

use std::str::FromStr;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Executor as _};

use crate::StoreError;
use crate::store::StoreOptions;

/// The folder of the database file of `url`, if it names a file.
pub(crate) fn folder(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let folder = options.get_filename().parent()?;
    Some(if folder.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        folder.to_owned()
    })
}

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
        // How long a write waits for another process's lock: as long as for a connection.
        .busy_timeout(options.acquire_timeout)
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
        .after_release(|conn, meta| Box::pin(still_clean(conn, meta)))
        .connect_with(connect.clone())
        .await?;
    let read = SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .after_release(|conn, meta| Box::pin(still_clean(conn, meta)))
        .connect_with(connect.create_if_missing(false))
        .await?;
    Ok((write, read))
}

/// Whether a released connection may be used again: only if neither SQLite nor sqlx thinks a
/// transaction is open on it. Otherwise the pool closes it (SQLite rolls back whatever was left
/// open) and opens a fresh one on the next acquire.
///
/// SQLite has no query for "is a transaction open"; `BEGIN` fails inside one, so a
/// `BEGIN; ROLLBACK` pair tells, for the price of two statements that touch no page. It runs
/// first: the connection's worker executes commands in order, so once it answers, a rollback
/// queued by a dropped transaction has run and sqlx's depth is settled.
async fn still_clean(
    conn: &mut SqliteConnection,
    _: PoolConnectionMetadata,
) -> Result<bool, sqlx::Error> {
    if let Err(error) = conn.execute("BEGIN").await {
        tracing::warn!(%error, "discarding a SQLite connection left inside a transaction");
        return Ok(false);
    }
    conn.execute("ROLLBACK").await?;
    if conn.is_in_transaction() {
        tracing::warn!("discarding a SQLite connection sqlx still counts inside a transaction");
        return Ok(false);
    }
    Ok(true)
}
