//! [`Database`]: the narrow handle that crates owning tables of their own (the read model, the
//! relay's checkpoints, the vault) get from the store, instead of its connection pools.
//!
//! It gives them three things and nothing else:
//! - **migrations**: [`Database::migrate`] runs a crate's own [`Migrations`], recorded in the
//!   ledger the store's share;
//! - **the single-writer rule**: [`Database::writer`] is the [`Pool`] every statement that
//!   writes goes through (on SQLite, the one write connection of the whole process, so that
//!   writers queue instead of failing with "database is locked"), [`Database::reader`] the one
//!   reads go through. The rule lives here and nowhere else;
//! - **one statement text for both backends**: [`on_pool!`](crate::on_pool) runs the same
//!   body on whichever pool it is given, and [`PerBackend`] holds the few statements a backend
//!   writes differently.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{PgPool, SqlitePool};

/// The database the store runs on. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    pools: Pools,
}

#[derive(Clone, Debug)]
enum Pools {
    Sqlite {
        /// The one connection every write goes through.
        write: SqlitePool,
        /// The pool reads go through.
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// A pool to run statements on, as [`Database::writer`] or [`Database::reader`] hand it out.
/// Match it with [`on_pool!`](crate::on_pool) to run one text on both backends, or directly
/// where the statements differ.
#[derive(Clone, Copy, Debug)]
pub enum Pool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

impl Pool<'_> {
    /// The value for this pool's backend.
    pub fn pick<T: Copy>(self, per_backend: &PerBackend<T>) -> T {
        match self {
            Self::Sqlite(_) => per_backend.sqlite,
            Self::Postgres(_) => per_backend.postgres,
        }
    }
}

/// Something written once per backend: a statement whose SQL differs, a set of statements.
#[derive(Clone, Copy, Debug)]
pub struct PerBackend<T> {
    pub sqlite: T,
    pub postgres: T,
}

/// Runs `$body` with `$pool` bound to the `sqlx` pool inside a [`Pool`], whichever the
/// backend: one statement text with `$1, $2…` placeholders serves both (sqlx binds SQLite's
/// `$n` to the n-th argument, as PostgreSQL does).
///
/// ```no_run
/// # async fn example(database: filiera_store::Database) -> Result<(), sqlx::Error> {
/// let n: i64 = filiera_store::on_pool!(database.reader(), |pool| {
///     sqlx::query_scalar("SELECT count(*) FROM relay_checkpoints")
///         .fetch_one(pool)
///         .await
/// })?;
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! on_pool {
    ($pool:expr, |$name:ident| $body:expr) => {
        match $pool {
            $crate::Pool::Sqlite($name) => $body,
            $crate::Pool::Postgres($name) => $body,
        }
    };
}

/// The schema migrations of one crate, for both backends (`sqlx::migrate!` of its
/// `migrations/sqlite` and `migrations/postgres` folders).
///
/// Every crate records its versions in sqlx's one ledger, so the numbers are allotted by crate
/// (ARCHITECTURE.md): the store 1–999 (3 and 4 are the projections' and the relay's, which
/// the store ran before each crate owned its tables), the vault 1001–1999, the projections
/// 2001–2999, the relay 3001–3999. Each crate's migrator leaves the others' versions alone.
pub struct Migrations {
    sqlite: fn() -> Migrator,
    postgres: fn() -> Migrator,
}

impl Migrations {
    /// ```no_run
    /// use filiera_store::Migrations;
    ///
    /// static MIGRATIONS: Migrations = Migrations::new(
    ///     || sqlx::migrate!("./migrations/sqlite"),
    ///     || sqlx::migrate!("./migrations/postgres"),
    /// );
    /// ```
    pub const fn new(sqlite: fn() -> Migrator, postgres: fn() -> Migrator) -> Self {
        Self { sqlite, postgres }
    }
}

impl Database {
    pub(crate) fn sqlite(write: SqlitePool, read: SqlitePool) -> Self {
        Self {
            pools: Pools::Sqlite { write, read },
        }
    }

    pub(crate) fn postgres(pool: PgPool) -> Self {
        Self {
            pools: Pools::Postgres(pool),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    /// The pool for statements that write, and for every transaction that writes: on SQLite
    /// the single write connection, so that writers of every crate queue behind each other.
    pub fn writer(&self) -> Pool<'_> {
        match &self.pools {
            Pools::Sqlite { write, .. } => Pool::Sqlite(write),
            Pools::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    /// The pool for reads, which never queue behind writers.
    pub fn reader(&self) -> Pool<'_> {
        match &self.pools {
            Pools::Sqlite { read, .. } => Pool::Sqlite(read),
            Pools::Postgres(pool) => Pool::Postgres(pool),
        }
    }

    /// Applies the pending migrations of `migrations`. Safe to run repeatedly, and on
    /// PostgreSQL concurrently (sqlx takes an advisory lock); versions of other crates in the
    /// ledger are left alone.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), MigrateError> {
        let mut migrator = match self.pools {
            Pools::Sqlite { .. } => (migrations.sqlite)(),
            Pools::Postgres(_) => (migrations.postgres)(),
        };
        migrator.set_ignore_missing(true);
        on_pool!(self.writer(), |pool| migrator.run(pool).await)
    }
}
