//! [`Store::backup_into`]: a consistent online copy of the embedded SQLite database, taken
//! while other processes read and write it.
//!
//! SQLite's `VACUUM INTO` reads the whole database inside one read transaction and writes a
//! compacted copy: under WAL, writers go on meanwhile (they append to the WAL, which the reader
//! does not block) and the copy is the database exactly as of the moment its read began: the
//! events, the read model with its checkpoints, the relay checkpoints and the vault, all at
//! one commit. The copy is then checked (`PRAGMA integrity_check`) and its feed head read back,
//! so that the caller can say which position it holds. PostgreSQL has its own tools
//! (`pg_dump`, base backups with WAL archiving); [`BackupError::NotEmbedded`] says so.

use std::path::{Path, PathBuf};

use cqrs_es::Aggregate as _;
use filiera_domain::Pathway;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::Store;

/// What a finished copy holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The feed head of the copy: the position of its last event (0 if none).
    pub position: i64,
    /// How many events it holds.
    pub events: i64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Why a backup failed. The partial copy, if any, is the caller's to remove.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store is PostgreSQL, which is backed up with its own tools.
    #[error(
        "this store is PostgreSQL: back it up with pg_dump (pg_dump -Fc) or a base backup with \
         WAL archiving (point-in-time recovery); see docs/operations.md, \"Backup and restore\""
    )]
    NotEmbedded,
    /// The destination file exists and is not empty (`VACUUM INTO` would refuse it anyway).
    #[error("{0} exists and is not empty: a backup is written to a new file")]
    DestinationExists(PathBuf),
    /// Reading the store or writing the copy failed.
    #[error("copying the database to {path} failed")]
    Copy {
        /// The destination.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The copy could not be opened or read back.
    #[error("cannot read the copy {path} back")]
    Verify {
        /// The copy.
        path: PathBuf,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// SQLite's integrity check found problems in the copy.
    #[error("the copy {path} fails SQLite's integrity check: {}", problems.join("; "))]
    Integrity {
        /// The copy.
        path: PathBuf,
        /// What `PRAGMA integrity_check` reported (at most a few lines).
        problems: Vec<String>,
    },
}

impl Store {
    /// Writes a consistent copy of the embedded database to `dest` (a new or empty file),
    /// while the store keeps serving, checks it with `PRAGMA integrity_check` and returns what
    /// it holds. SQLite does not sync the copy: the caller syncs it (and its folder) before
    /// counting on it. On PostgreSQL: [`BackupError::NotEmbedded`].
    #[tracing::instrument(name = "store.backup_into", skip(self))]
    pub async fn backup_into(&self, dest: &Path) -> Result<BackupSummary, BackupError> {
        let Some(read) = self.sqlite_read_pool() else {
            return Err(BackupError::NotEmbedded);
        };
        if std::fs::metadata(dest).is_ok_and(|m| m.len() > 0) {
            return Err(BackupError::DestinationExists(dest.to_owned()));
        }
        let copy_failed = |source| BackupError::Copy {
            path: dest.to_owned(),
            source,
        };
        // A connection of the read pool: it never queues behind the writer, and `VACUUM INTO`
        // only reads the source database.
        let mut conn = read.acquire().await.map_err(copy_failed)?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest.to_string_lossy().as_ref())
            .execute(&mut *conn)
            .await
            .map_err(copy_failed)?;
        drop(conn);
        verify(dest).await
    }
}

/// Checks the copy at `path` and reads its head, on a connection of its own that changes
/// nothing (no journal mode is set: the copy stays as `VACUUM INTO` wrote it).
async fn verify(path: &Path) -> Result<BackupSummary, BackupError> {
    let failed = |source| BackupError::Verify {
        path: path.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(true);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(failed)?;
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check(20)")
        .fetch_all(&mut conn)
        .await
        .map_err(failed)?;
    if problems != ["ok"] {
        return Err(BackupError::Integrity {
            path: path.to_owned(),
            problems,
        });
    }
    let position: i64 = sqlx::query_scalar(crate::rows::feed_head_sql(true))
        .bind(Pathway::TYPE)
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(Pathway::TYPE)
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
    conn.close().await.map_err(failed)?;
    let bytes = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| failed(sqlx::Error::Io(e)))?;
    Ok(BackupSummary {
        position,
        events,
        bytes,
    })
}
