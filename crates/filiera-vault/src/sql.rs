//! The vault's SQL, kept in `sql/*.sql` beside this file: one text for both backends, and in
//! `sql/postgres/` and `sql/sqlite/` the few statements that differ (row locks); the
//! migrations, and the seam that runs a body on the right pool of a [`Database`].

use filiera_store::{Migrations, PerBackend};

/// The statements a backend runs differently.
pub(crate) struct BackendSql {
    /// The master-key version, held against rotation until the transaction ends.
    pub(crate) keys_version_shared: &'static str,
    /// The master-key version, held against every writer of wrapped keys (rotation).
    pub(crate) keys_version_exclusive: &'static str,
    /// Run first in a transaction that destroys key material.
    pub(crate) before_shredding: Option<&'static str>,
    /// Run after such a transaction commits (a failure is only logged).
    pub(crate) after_shredding: Option<&'static str>,
}

pub(crate) static SQLITE: BackendSql = BackendSql {
    keys_version_shared: include_str!("sql/sqlite/keys_version_shared.sql"),
    keys_version_exclusive: include_str!("sql/sqlite/keys_version_exclusive.sql"),
    before_shredding: Some(include_str!("sql/sqlite/before_shredding.sql")),
    after_shredding: Some(include_str!("sql/sqlite/after_shredding.sql")),
};

pub(crate) static POSTGRES: BackendSql = BackendSql {
    keys_version_shared: include_str!("sql/postgres/keys_version_shared.sql"),
    keys_version_exclusive: include_str!("sql/postgres/keys_version_exclusive.sql"),
    // Old row versions go when vacuumed; WAL and backups are the operator's (docs/security.md).
    before_shredding: None,
    after_shredding: None,
};

pub(crate) const KEYS_SELECT: &str = include_str!("sql/keys_select.sql");
pub(crate) const KEYS_INSERT: &str = include_str!("sql/keys_insert.sql");
pub(crate) const KEYS_ROTATE: &str = include_str!("sql/keys_rotate.sql");
pub(crate) const PERSON_INSERT: &str = include_str!("sql/person_insert.sql");
pub(crate) const PERSON_SELECT: &str = include_str!("sql/person_select.sql");
pub(crate) const PERSON_ERASE: &str = include_str!("sql/person_erase.sql");
pub(crate) const PERSON_REWRAP: &str = include_str!("sql/person_rewrap.sql");
pub(crate) const PEOPLE_WRAPPED_KEYS: &str = include_str!("sql/people_wrapped_keys.sql");
pub(crate) const INDEX_INSERT: &str = include_str!("sql/index_insert.sql");
pub(crate) const INDEX_DELETE: &str = include_str!("sql/index_delete.sql");
pub(crate) const INDEX_FIND: &str = include_str!("sql/index_find.sql");
pub(crate) const LOG_INSERT: &str = include_str!("sql/log_insert.sql");
pub(crate) const LOG_PAGE: &str = include_str!("sql/log_page.sql");

/// The vault's schema, versions 1001… in the ledger it shares with the store.
pub(crate) static MIGRATIONS: Migrations = Migrations::new(
    || sqlx::migrate!("./migrations/sqlite"),
    || sqlx::migrate!("./migrations/postgres"),
);

/// The statements each backend runs differently.
pub(crate) static BACKEND_SQL: PerBackend<&BackendSql> = PerBackend {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// Runs `$body` with `$pool` bound to the pool writes go through (SQLite: the single write
/// connection) and `$sql` to the backend's [`BackendSql`].
macro_rules! on_writer {
    ($database:expr, |$pool:ident, $sql:ident| $body:expr) => {{
        let writer = $database.writer();
        let $sql: &$crate::sql::BackendSql = writer.pick(&$crate::sql::BACKEND_SQL);
        let _ = $sql;
        filiera_store::on_pool!(writer, |$pool| $body)
    }};
}

/// Runs `$body` with `$pool` bound to the pool reads go through.
macro_rules! on_reader {
    ($database:expr, |$pool:ident| $body:expr) => {
        filiera_store::on_pool!($database.reader(), |$pool| $body)
    };
}

pub(crate) use {on_reader, on_writer};
