//! [`Checkpoints`]: the `relay_checkpoints` table (migration 0004) in the store's database.
//! SQLite writes go through the store's single write connection.

use filiera_store::Store;
use sqlx::{PgPool, SqlitePool};

use crate::RelayError;

/// Reads and advances relay checkpoints, whichever the backend.
#[derive(Clone)]
pub(crate) enum Checkpoints {
    Postgres(PgPool),
    Sqlite { write: SqlitePool, read: SqlitePool },
}

impl Checkpoints {
    pub(crate) fn new(store: &Store) -> Self {
        if let Some(pool) = store.pg_pool() {
            return Self::Postgres(pool.clone());
        }
        let (write, read) = store
            .sqlite_pools()
            .expect("a store is either PostgreSQL or SQLite");
        Self::Sqlite {
            write: write.clone(),
            read: read.clone(),
        }
    }

    /// Creates the checkpoint row at position 0 if it is missing.
    pub(crate) async fn ensure(&self, name: &str) -> Result<(), RelayError> {
        let sql = "INSERT INTO relay_checkpoints (name, position) VALUES ($1, 0) \
                   ON CONFLICT (name) DO NOTHING";
        match self {
            Self::Postgres(pool) => sqlx::query(sql).bind(name).execute(pool).await.map(drop),
            Self::Sqlite { write, .. } => {
                sqlx::query(sql).bind(name).execute(write).await.map(drop)
            }
        }
        .map_err(RelayError::Checkpoint)?;
        Ok(())
    }

    /// The checkpoint: the position of the last event known published and acknowledged.
    pub(crate) async fn load(&self, name: &str) -> Result<i64, RelayError> {
        let sql = "SELECT position FROM relay_checkpoints WHERE name = $1";
        let position: Option<i64> = match self {
            Self::Postgres(pool) => {
                sqlx::query_scalar(sql)
                    .bind(name)
                    .fetch_optional(pool)
                    .await
            }
            Self::Sqlite { read, .. } => {
                sqlx::query_scalar(sql)
                    .bind(name)
                    .fetch_optional(read)
                    .await
            }
        }
        .map_err(RelayError::Checkpoint)?;
        Ok(position.unwrap_or(0))
    }

    /// Moves the checkpoint from `from` to `to`; `false` (nothing written) when it was not at
    /// `from` any more, i.e. another relay moved it.
    pub(crate) async fn advance(&self, name: &str, from: i64, to: i64) -> Result<bool, RelayError> {
        let done = match self {
            Self::Postgres(pool) => sqlx::query(
                "UPDATE relay_checkpoints SET position = $3, updated_at = clock_timestamp() \
                     WHERE name = $1 AND position = $2",
            )
            .bind(name)
            .bind(from)
            .bind(to)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Self::Sqlite { write, .. } => sqlx::query(
                "UPDATE relay_checkpoints \
                     SET position = ?3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE name = ?1 AND position = ?2",
            )
            .bind(name)
            .bind(from)
            .bind(to)
            .execute(write)
            .await
            .map(|r| r.rows_affected()),
        }
        .map_err(RelayError::Checkpoint)?;
        Ok(done == 1)
    }
}
