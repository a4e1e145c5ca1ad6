//! Why the store failed. A refused command is not an error here: see [`crate::Rejection`].

use std::path::PathBuf;

/// A failure of the store itself: the database, a migration, or data that cannot be read back.
/// Callers answer it with a 500 and log the cause chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL has a scheme other than `sqlite:` or `postgres:` (the URL itself is not
    /// repeated, since it may hold a password).
    #[error("unsupported database URL scheme `{scheme}`: use sqlite://FILE or postgres://…")]
    UnsupportedUrl {
        /// What came before the first `:`.
        scheme: String,
    },
    /// An in-memory SQLite database was asked for; the store needs a file shared by its write
    /// and read pools.
    #[error("an in-memory SQLite database cannot be used: give a file, e.g. sqlite://filiera.db")]
    InMemorySqlite,
    /// The folder of the SQLite file could not be created.
    #[error("cannot create the database folder {path}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database failed or refused a query.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The cqrs-es event store failed for a reason other than a conflict.
    #[error("event store error")]
    EventStore(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A stored row cannot be decoded (bad JSON, unknown event, malformed id).
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
}
