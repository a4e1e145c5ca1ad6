//! Why the store failed. A refused command is not an error here: see [`crate::Rejection`].

use std::path::PathBuf;

/// A failure of the store itself: the database, a migration, or data that cannot be read back.
/// Callers log the cause chain and answer a 500, or a 503/507 when [`StoreError::outage`] says
/// the database is out of reach or out of space for now.
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
    /// The PostgreSQL database named by the URL does not exist and could not be created (the
    /// role may not create databases, or the maintenance database `postgres` is out of reach).
    #[error(
        "the PostgreSQL database `{database}` does not exist and could not be created: create it \
         (`createdb {database}`) or give the role the CREATEDB privilege"
    )]
    CannotCreateDatabase {
        /// The database's name (never the URL, which may hold a password).
        database: String,
        /// Why `CREATE DATABASE` failed.
        #[source]
        source: sqlx::Error,
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
    /// The database did not answer within the configured query timeout.
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// A command whose outcome the store cannot tell: the connection died, or the deadline
    /// passed, while its transaction was committing (`stored: false`: it may or may not have
    /// been stored), or it was committed but could not be read back (`stored: true`). A retry
    /// with the same idempotency key answers the first outcome.
    #[error(
        "{}",
        if *stored {
            "the command was stored but could not be read back"
        } else {
            "the command may or may not have been stored"
        }
    )]
    OutcomeUnknown {
        /// Whether the commit is known to have succeeded.
        stored: bool,
        /// What failed.
        #[source]
        cause: Box<StoreError>,
    },
    /// One failure shared by the commands of a group commit (ADR 0011), each of which reports
    /// it.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
}

/// Why the store cannot serve for now: failures an operator fixes outside filiera (disk space,
/// a database server), after which the store recovers by itself. Anything else is a bug or
/// corrupt data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The disk holding the database is full (SQLite `SQLITE_FULL`, PostgreSQL `53100`).
    DiskFull,
    /// The storage refuses writes: a read-only file or file system, an I/O error, a database
    /// in recovery or read-only mode, other exhausted resources.
    StorageFailure,
    /// The database does not answer: refused or lost connections, no free connection in time.
    Unreachable,
}

impl Outage {
    /// A stable name for logs and problem documents: `disk_full`, `storage_failure`,
    /// `database_unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::StorageFailure => "storage_failure",
            Self::Unreachable => "database_unavailable",
        }
    }
}

impl StoreError {
    /// The outage behind this error, if it is one: a temporary condition of the database or its
    /// storage rather than a bug. Commands refused because of one wrote nothing.
    pub fn outage(&self) -> Option<Outage> {
        match self {
            Self::Database(error) => outage_of(error),
            Self::TimedOut(_) => Some(Outage::Unreachable),
            Self::Migration(sqlx::migrate::MigrateError::Execute(error)) => outage_of(error),
            Self::EventStore(error) => error.downcast_ref::<sqlx::Error>().and_then(outage_of),
            Self::Shared(error) => error.outage(),
            _ => None,
        }
    }
}

/// Whether a database error leaves the outcome of a transaction that was committing unknown:
/// the connection broke, so whether the server got and applied `COMMIT` cannot be told. An
/// error the server reported (a SQLSTATE, a SQLite result code) means the transaction did not
/// commit, and no connection at all (pool timeout) means it never started.
pub(crate) fn leaves_outcome_unknown(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// Classifies a database error by SQLite result code or PostgreSQL SQLSTATE.
pub(crate) fn outage_of(error: &sqlx::Error) -> Option<Outage> {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Outage::Unreachable),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // An extended result code; the primary code is its low byte.
                sqlite_outage(code.parse::<i32>().ok()? & 0xff)
            } else {
                postgres_outage(&code)
            }
        }
        _ => None,
    }
}

fn sqlite_outage(primary: i32) -> Option<Outage> {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    match primary {
        SQLITE_FULL => Some(Outage::DiskFull),
        // Another process held the write lock past the busy timeout.
        SQLITE_BUSY | SQLITE_LOCKED => Some(Outage::Unreachable),
        SQLITE_READONLY | SQLITE_IOERR | SQLITE_CANTOPEN => Some(Outage::StorageFailure),
        _ => None,
    }
}

fn postgres_outage(sqlstate: &str) -> Option<Outage> {
    match sqlstate {
        "53100" => Some(Outage::DiskFull),
        // Class 08: connection exceptions; 57P01-57P03: the server is shutting down,
        // crashed or not yet accepting connections.
        s if s.starts_with("08") || s.starts_with("57P") => Some(Outage::Unreachable),
        // Class 53: insufficient resources; class 58: system (I/O) errors; 25006: a read-only
        // transaction (a standby, or `default_transaction_read_only`).
        s if s.starts_with("53") || s.starts_with("58") || s == "25006" => {
            Some(Outage::StorageFailure)
        }
        _ => None,
    }
}

/// The error and its causes on one line, `a: b: c`, for logs and operator-facing details; a
/// cause whose text the previous one already ends with is not repeated. The one such helper of
/// the workspace.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection as _, Executor as _, SqliteConnection};

    use super::*;

    /// A real `SQLITE_FULL`, from a database capped at a few pages, is a full disk.
    #[tokio::test]
    async fn a_full_sqlite_database_is_a_disk_full_outage() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        conn.execute("CREATE TABLE t (b blob); PRAGMA max_page_count = 4;")
            .await
            .unwrap();
        let error = conn
            .execute("INSERT INTO t VALUES (zeroblob(1000000))")
            .await
            .unwrap_err();
        assert_eq!(StoreError::Database(error).outage(), Some(Outage::DiskFull));
        let error = conn.execute("SELECT * FROM missing").await.unwrap_err();
        assert_eq!(StoreError::Database(error).outage(), None);
    }

    /// Nothing listening, or a pool that waited in vain: the database is unreachable.
    #[tokio::test]
    async fn an_unreachable_postgres_is_an_outage() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = sqlx::PgConnection::connect(&format!("postgres://x@127.0.0.1:{port}/x"))
            .await
            .unwrap_err();
        assert_eq!(
            StoreError::Database(error).outage(),
            Some(Outage::Unreachable)
        );
        assert_eq!(
            StoreError::Database(sqlx::Error::PoolTimedOut).outage(),
            Some(Outage::Unreachable)
        );
        assert_eq!(postgres_outage("53100"), Some(Outage::DiskFull));
        assert_eq!(postgres_outage("57P01"), Some(Outage::Unreachable));
        assert_eq!(postgres_outage("23505"), None);
        assert_eq!(StoreError::Corrupt("x".into()).outage(), None);
    }
}
