//! Test helpers: a migrated store and vault schema on a fresh database of either backend, raw
//! access to the vault's rows, and dumps of the whole database.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use filiera_domain::{PathwayServices, StageCatalogue, TerritoryRegistry};
use filiera_store::{Database, Store, on_pool};
use filiera_testkit::{Backend, TestDb};
use filiera_vault::{MasterKey, Person, Vault};
use tempfile::TempDir;
use uuid::Uuid;

fn services() -> PathwayServices {
    PathwayServices::new(
        Arc::new(StageCatalogue::default_catalogue()),
        Arc::new(TerritoryRegistry::sample()),
    )
}

/// A store and the vault's schema on a fresh database, removed when the harness is dropped.
pub struct Harness {
    /// Declared first so that it is dropped (and its pools closed) before the database.
    pub store: Store,
    pub database: Database,
    guard: Guard,
}

enum Guard {
    Sqlite {
        /// Kept for its drop, which removes the folder.
        _dir: TempDir,
        file: PathBuf,
    },
    Pg(TestDb),
}

impl Harness {
    /// A migrated store and vault on a new database of `backend`.
    pub async fn on(backend: Backend) -> anyhow::Result<Self> {
        Self::unmigrated(backend).await?.migrated().await
    }

    /// A store on a new database of `backend`, not migrated.
    pub async fn unmigrated(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite_unmigrated().await,
            Backend::Postgres => Self::postgres_unmigrated().await,
        }
    }

    /// A store on a new SQLite file, not migrated.
    pub async fn sqlite_unmigrated() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("data/filiera.db");
        let store = Store::connect(&format!("sqlite://{}", file.display()), services()).await?;
        Ok(Self {
            database: store.database(),
            store,
            guard: Guard::Sqlite { _dir: dir, file },
        })
    }

    /// A store on a new PostgreSQL database, not migrated.
    pub async fn postgres_unmigrated() -> anyhow::Result<Self> {
        let db = TestDb::create().await?;
        let store = Store::connect(&db.url, services()).await?;
        Ok(Self {
            database: store.database(),
            store,
            guard: Guard::Pg(db),
        })
    }

    /// The store's and the vault's migrations applied.
    pub async fn migrated(self) -> anyhow::Result<Self> {
        self.store.migrate().await?;
        Vault::migrate(&self.database).await?;
        Ok(self)
    }

    /// A vault opened with `key`.
    pub async fn open(&self, key: &MasterKey) -> anyhow::Result<Vault> {
        Ok(Vault::open(self.database.clone(), copy(key)).await?)
    }

    /// Runs a statement through the pool writes go through.
    pub async fn execute(&self, sql: &str, binds: &[Bind<'_>]) -> anyhow::Result<u64> {
        macro_rules! run {
            ($pool:expr) => {{
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = match bind {
                        Bind::Text(text) => query.bind(text.to_string()),
                        Bind::Bytes(bytes) => query.bind(bytes.to_vec()),
                    };
                }
                query.execute($pool).await?.rows_affected()
            }};
        }
        Ok(on_pool!(self.database.writer(), |pool| run!(pool)))
    }

    /// The beneficiary's `vault_people` row: wrapped key, nonce, ciphertext.
    pub async fn person_row(&self, beneficiary: Uuid) -> anyhow::Result<PersonBytes> {
        let sql =
            "SELECT wrapped_key, nonce, ciphertext FROM vault_people WHERE beneficiary_id = $1";
        type Row = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
        let row: Row = on_pool!(self.database.reader(), |pool| {
            sqlx::query_as(sql)
                .bind(beneficiary.to_string())
                .fetch_one(pool)
                .await?
        });
        Ok(PersonBytes {
            wrapped_key: row.0,
            nonce: row.1,
            ciphertext: row.2,
        })
    }

    /// The beneficiary's blind-index digest, if it has one.
    pub async fn digest_of(&self, beneficiary: Uuid) -> anyhow::Result<Option<Vec<u8>>> {
        let sql = "SELECT digest FROM vault_blind_index WHERE beneficiary_id = $1";
        Ok(on_pool!(self.database.reader(), |pool| {
            sqlx::query_scalar(sql)
                .bind(beneficiary.to_string())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The versions recorded in sqlx's migration ledger, in order.
    pub async fn ledger(&self) -> anyhow::Result<Vec<i64>> {
        let sql = "SELECT version FROM _sqlx_migrations ORDER BY version";
        Ok(on_pool!(self.database.reader(), |pool| {
            sqlx::query_scalar(sql).fetch_all(pool).await?
        }))
    }

    /// Everything the database holds, as an attacker with the files or a dump would see it:
    /// SQLite's database file and its `-wal` file byte for byte (after a checkpoint that leaves
    /// the WAL in place), or PostgreSQL's `pg_dump` of the test database (binary columns in
    /// hexadecimal, as `\x…`).
    pub async fn dump(&self) -> anyhow::Result<Dump> {
        match &self.guard {
            Guard::Sqlite { file, .. } => {
                on_pool!(self.database.writer(), |pool| {
                    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(pool)
                        .await
                        .map(drop)
                })?;
                let mut bytes = std::fs::read(file)?;
                let wal = PathBuf::from(format!("{}-wal", file.display()));
                if wal.exists() {
                    bytes.extend(std::fs::read(&wal)?);
                }
                Ok(Dump { bytes, hex: false })
            }
            Guard::Pg(db) => {
                let output = std::process::Command::new("pg_dump")
                    .arg("--no-owner")
                    .arg(&db.url)
                    .output()
                    .context("run pg_dump")?;
                ensure!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                ensure!(
                    String::from_utf8_lossy(&output.stdout).contains("vault_people"),
                    "the dump holds the vault's tables"
                );
                Ok(Dump {
                    bytes: output.stdout,
                    hex: true,
                })
            }
        }
    }
}

/// The encrypted columns of a `vault_people` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonBytes {
    pub wrapped_key: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
}

/// A value to bind in [`Harness::execute`].
pub enum Bind<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// The bytes of a database dump.
pub struct Dump {
    bytes: Vec<u8>,
    /// Whether binary values appear as hexadecimal text (a `pg_dump`).
    hex: bool,
}

impl Dump {
    /// Whether `text` appears, as it is or in upper or lower case.
    pub fn contains_text(&self, text: &str) -> bool {
        [text.to_owned(), text.to_uppercase(), text.to_lowercase()]
            .iter()
            .any(|needle| find(&self.bytes, needle.as_bytes()))
    }

    /// Whether the binary value `bytes` appears (raw, or in hexadecimal in a `pg_dump`).
    pub fn contains_bytes(&self, bytes: &[u8]) -> bool {
        if self.hex {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            find(&self.bytes, hex.as_bytes())
        } else {
            find(&self.bytes, bytes)
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The same key, a second value (keys are not `Clone`, on purpose).
pub fn copy(key: &MasterKey) -> MasterKey {
    MasterKey::from_base64(&key.to_base64()).expect("a key's own base64")
}

pub fn person(fiscal_code: &str, given_name: &str, family_name: &str) -> Person {
    Person {
        fiscal_code: fiscal_code.to_owned(),
        given_name: given_name.to_owned(),
        family_name: family_name.to_owned(),
        birth_date: None,
    }
}
