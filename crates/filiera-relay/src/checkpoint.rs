//! [`Checkpoints`]: the `relay_checkpoints` table (this crate's migrations) in the store's
//! database. The SQL is in `statements/`; writes go through the store's
//! [`Database::writer`].

use filiera_store::{Database, Migrations, PerBackend, Store, on_pool};

use crate::RelayError;

/// The relay's schema (version 4 in the ledger the store's migrations share).
pub(crate) static MIGRATIONS: Migrations = Migrations::new(
    || sqlx::migrate!("./migrations/sqlite"),
    || sqlx::migrate!("./migrations/postgres"),
);

const ENSURE: &str = include_str!("statements/ensure.sql");
const LOAD: &str = include_str!("statements/load.sql");
const ADVANCE: PerBackend<&str> = PerBackend {
    sqlite: include_str!("statements/sqlite/advance.sql"),
    postgres: include_str!("statements/postgres/advance.sql"),
};

/// Reads and advances relay checkpoints.
#[derive(Clone)]
pub(crate) struct Checkpoints {
    database: Database,
}

impl Checkpoints {
    pub(crate) fn new(store: &Store) -> Self {
        Self {
            database: store.database(),
        }
    }

    /// Creates the checkpoint row at position 0 if it is missing.
    pub(crate) async fn ensure(&self, name: &str) -> Result<(), RelayError> {
        on_pool!(self.database.writer(), |pool| {
            sqlx::query(ENSURE).bind(name).execute(pool).await.map(drop)
        })
        .map_err(RelayError::Checkpoint)
    }

    /// The checkpoint: the position of the last event known published and acknowledged.
    pub(crate) async fn load(&self, name: &str) -> Result<i64, RelayError> {
        let position: Option<i64> = on_pool!(self.database.reader(), |pool| {
            sqlx::query_scalar(LOAD)
                .bind(name)
                .fetch_optional(pool)
                .await
        })
        .map_err(RelayError::Checkpoint)?;
        Ok(position.unwrap_or(0))
    }

    /// Moves the checkpoint from `from` to `to`; `false` (nothing written) when it was not at
    /// `from` any more, i.e. another relay moved it.
    pub(crate) async fn advance(&self, name: &str, from: i64, to: i64) -> Result<bool, RelayError> {
        let writer = self.database.writer();
        let sql = writer.pick(&ADVANCE);
        let done = on_pool!(writer, |pool| {
            sqlx::query(sql)
                .bind(name)
                .bind(from)
                .bind(to)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(RelayError::Checkpoint)?;
        Ok(done == 1)
    }
}
