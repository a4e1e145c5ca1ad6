//! [`Database`]: the narrow handle that crates owning tables of their own get from the store.

use sqlx::{PgPool, SqlitePool};

/// The database the store runs on, handed to crates that own tables (and migrations) of their
/// own, so that they need neither the store's internals nor a backend `expect`.
///
/// SQLite has a single writer: every statement that writes, and every transaction holding
/// one, must go through `write` (one connection for the whole process), so that writers queue
/// instead of failing with "database is locked"; reads go through `read`. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Database {
    /// An embedded SQLite file.
    Sqlite {
        /// The one connection every write goes through.
        write: SqlitePool,
        /// The pool reads go through.
        read: SqlitePool,
    },
    /// A PostgreSQL server: one pool for reads and writes.
    Postgres(PgPool),
}

impl Database {
    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}
