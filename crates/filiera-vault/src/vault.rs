//! [`Vault`]: storing, reading (logged), finding, erasing identities, and rotating the master
//! key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use filiera_store::Database;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::access::{AccessAction, AccessEntry, AccessLogPage, AccessLogQuery, Reader};
use crate::crypto::{self, INDEX_KEY_LABEL, SecretKey, data_key_aad, person_aad};
use crate::sql::{self, on_reader, on_writer};
use crate::{KeyError, MasterKey, Person, VaultError, normalise_fiscal_code};

/// Identities are padded to a multiple of this many bytes before encryption, so that the
/// ciphertext's length tells little about the names' lengths.
const PAD_TO: usize = 128;

/// The personal-data vault over the database the store runs on. Cheap to clone.
///
/// Holds the master key and the unwrapped blind-index key in memory (wiped on drop), and the
/// master-key version it was opened with: after a rotation by another process, its operations
/// fail with [`VaultError::MasterKeyRotated`] until it is reopened with the new key.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    master: MasterKey,
    index_key: SecretKey,
    version: i64,
}

/// What [`Vault::erase`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The identity was erased now.
    Erased {
        /// When.
        at: DateTime<Utc>,
    },
    /// It had been erased before (nothing written).
    AlreadyErased {
        /// When it was.
        at: DateTime<Utc>,
    },
}

/// What [`Vault::rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The version of the new master key (the old one's plus one).
    pub version: i64,
    /// How many data keys were re-wrapped.
    pub data_keys: u64,
}

/// A `vault_people` row: wrapped key, nonce, ciphertext, key version, erased at.
type PersonRow = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<DateTime<Utc>>,
);

/// The `vault_keys` row: master version, master check value, wrapped index key.
type KeysRow = (i64, Vec<u8>, Vec<u8>);

/// A `vault_access_log` row.
type LogRow = (i64, DateTime<Utc>, String, Option<String>, String, String);

impl Vault {
    /// Applies the vault's pending migrations (its own, versions 1001…, in the ledger it shares
    /// with the store). Needs no key. Safe to run repeatedly, before or after the store's.
    pub async fn migrate(database: &Database) -> Result<(), VaultError> {
        database.migrate(&sql::MIGRATIONS).await?;
        Ok(())
    }

    /// Opens the vault with `master`. The first opening of a database draws the blind-index
    /// key and records `master`'s check value; every later one refuses, with
    /// [`VaultError::WrongMasterKey`], a key other than the one in force.
    #[tracing::instrument(name = "vault.open", skip_all, fields(fingerprint = %master.fingerprint()))]
    pub async fn open(database: Database, master: MasterKey) -> Result<Self, VaultError> {
        let row = match read_keys(&database).await? {
            Some(row) => row,
            None => {
                let index_key = SecretKey::random();
                let wrapped = master.key.wrap(INDEX_KEY_LABEL, &index_key);
                let check = master.check_value();
                on_writer!(&database, |pool, _sql| {
                    sqlx::query(sql::KEYS_INSERT)
                        .bind(&check[..])
                        .bind(&wrapped)
                        .bind(now())
                        .execute(pool)
                        .await?;
                });
                // Another process may have initialised it first: whatever is there now counts.
                read_keys(&database).await?.ok_or_else(|| {
                    VaultError::Corrupt("the vault_keys row vanished after its insert".into())
                })?
            }
        };
        let (version, check, wrapped_index_key) = row;
        check_master(&master, &check, version)?;
        let index_key = master
            .key
            .unwrap_key(INDEX_KEY_LABEL, &wrapped_index_key)
            .map_err(|_| VaultError::Tampered)?;
        tracing::info!(version, "personal-data vault open");
        Ok(Self {
            inner: Arc::new(Inner {
                database,
                master,
                index_key,
                version,
            }),
        })
    }

    /// The fingerprint of the master key in use.
    pub fn fingerprint(&self) -> String {
        self.inner.master.fingerprint()
    }

    /// The version of the master key in use (1, plus one per rotation).
    pub fn master_version(&self) -> i64 {
        self.inner.version
    }

    /// Stores a beneficiary's identity (validated and normalised first), under a new data key,
    /// and indexes its fiscal code. Once per beneficiary: again is
    /// [`VaultError::AlreadyStored`] (or [`VaultError::Erased`] after an erasure), and a fiscal
    /// code already indexed for another beneficiary is [`VaultError::FiscalCodeTaken`]; nothing
    /// is written then.
    #[tracing::instrument(name = "vault.store_person", skip_all, fields(beneficiary = %beneficiary))]
    pub async fn store_person(&self, beneficiary: Uuid, person: &Person) -> Result<(), VaultError> {
        let person = person.clone().validated()?;
        let inner = &*self.inner;
        let digest = crypto::fiscal_code_digest(&inner.index_key, &person.fiscal_code);
        let data_key = SecretKey::random();
        let wrapped_key = inner.master.key.wrap(&data_key_aad(beneficiary), &data_key);
        let (nonce, ciphertext) = data_key.seal(&person_aad(beneficiary), &encode(&person)?);
        let id = beneficiary.to_string();
        on_writer!(&inner.database, |pool, sql| {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(sql.keys_version_shared)
                .fetch_one(&mut *tx)
                .await?;
            self.check_version(version)?;
            let inserted = sqlx::query(sql::PERSON_INSERT)
                .bind(&id)
                .bind(&wrapped_key)
                .bind(&nonce[..])
                .bind(&ciphertext)
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                let row: Option<PersonRow> = sqlx::query_as(sql::PERSON_SELECT)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(match row.and_then(|row| row.4) {
                    Some(at) => VaultError::Erased { at },
                    None => VaultError::AlreadyStored,
                });
            }
            let indexed = sqlx::query(sql::INDEX_INSERT)
                .bind(&digest[..])
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if indexed == 0 {
                return Err(VaultError::FiscalCodeTaken);
            }
            tx.commit().await?;
        });
        tracing::debug!("personal data stored");
        Ok(())
    }

    /// The beneficiary's identity, decrypted for `reader`: `Ok(None)` if none was ever stored,
    /// [`VaultError::Erased`] if it was erased. An identity is handed out only once the access
    /// log row recording the read (who, when, whose) is committed, in the same transaction as
    /// the row it was decrypted from was read.
    #[tracing::instrument(name = "vault.read_person", skip_all, fields(beneficiary = %beneficiary, subject = %reader.subject))]
    pub async fn read_person(
        &self,
        beneficiary: Uuid,
        reader: &Reader,
    ) -> Result<Option<Person>, VaultError> {
        let inner = &*self.inner;
        let id = beneficiary.to_string();
        // SQLite: through the write connection, since the log row is written in the same
        // transaction.
        let person = on_writer!(&inner.database, |pool, _sql| {
            let mut tx = pool.begin().await?;
            let row: Option<PersonRow> = sqlx::query_as(sql::PERSON_SELECT)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let person = self.decrypt(beneficiary, row)?;
            sqlx::query(sql::LOG_INSERT)
                .bind(now())
                .bind(&reader.subject)
                .bind(Some(&reader.role))
                .bind(&id)
                .bind(AccessAction::Read.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            person
        });
        tracing::debug!("personal data read");
        Ok(Some(person))
    }

    /// The beneficiary whose identity has this fiscal code (normalised first: case and spaces
    /// do not matter), through the blind index; `None` if none, or if it was erased.
    #[tracing::instrument(name = "vault.find_by_fiscal_code", skip_all)]
    pub async fn find_by_fiscal_code(&self, fiscal_code: &str) -> Result<Option<Uuid>, VaultError> {
        let code = Zeroizing::new(normalise_fiscal_code(fiscal_code)?);
        let digest = crypto::fiscal_code_digest(&self.inner.index_key, &code);
        let found: Option<String> = on_reader!(&self.inner.database, |pool| {
            sqlx::query_scalar(sql::INDEX_FIND)
                .bind(&digest[..])
                .fetch_optional(pool)
                .await?
        });
        found.map(|id| parse_id(&id)).transpose()
    }

    /// Crypto-shredding: destroys the beneficiary's wrapped data key, its ciphertext and its
    /// blind-index entry, keeps a tombstone so that later reads answer
    /// [`VaultError::Erased`], and logs the erasure by `subject`, all in one transaction.
    /// [`VaultError::NotFound`] if no identity was ever stored.
    ///
    /// On SQLite the freed bytes are overwritten (`secure_delete`) and the WAL is checkpointed
    /// afterwards, so that the destroyed key is not left in the file either. PostgreSQL keeps
    /// the old row version until it is vacuumed, and its WAL and backups keep it longer: see
    /// the security documentation.
    #[tracing::instrument(name = "vault.erase", skip_all, fields(beneficiary = %beneficiary, subject = %subject))]
    pub async fn erase(&self, beneficiary: Uuid, subject: &str) -> Result<Erasure, VaultError> {
        let id = beneficiary.to_string();
        let at = now();
        let erasure = on_writer!(&self.inner.database, |pool, sql| {
            let mut tx = pool.begin().await?;
            if let Some(pragma) = sql.before_shredding {
                sqlx::query(pragma).execute(&mut *tx).await?;
            }
            let erased = sqlx::query(sql::PERSON_ERASE)
                .bind(&id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if erased == 0 {
                let row: Option<PersonRow> = sqlx::query_as(sql::PERSON_SELECT)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return match row.and_then(|row| row.4) {
                    Some(at) => Ok(Erasure::AlreadyErased { at }),
                    None => Err(VaultError::NotFound),
                };
            }
            sqlx::query(sql::INDEX_DELETE)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::LOG_INSERT)
                .bind(at)
                .bind(subject)
                .bind(None::<String>)
                .bind(&id)
                .bind(AccessAction::Erase.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            if let Some(checkpoint) = sql.after_shredding
                && let Err(error) = sqlx::query(checkpoint).execute(pool).await
            {
                // The next checkpoint completes it.
                tracing::warn!(%error, "WAL checkpoint after shredding failed");
            }
            Erasure::Erased { at }
        });
        tracing::info!("personal data erased");
        Ok(erasure)
    }

    /// A page of the access log, newest first (for administrators).
    pub async fn access_log(&self, query: &AccessLogQuery) -> Result<AccessLogPage, VaultError> {
        let limit = query.limit();
        let rows: Vec<LogRow> = on_reader!(&self.inner.database, |pool| {
            sqlx::query_as(sql::LOG_PAGE)
                .bind(query.before.unwrap_or(i64::MAX))
                .bind(query.beneficiary.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        let entries = rows
            .into_iter()
            .map(|(id, at, subject, role, beneficiary, action)| {
                Ok(AccessEntry {
                    id,
                    at,
                    subject,
                    role,
                    beneficiary_id: parse_id(&beneficiary)?,
                    action: AccessAction::parse(&action).ok_or_else(|| {
                        VaultError::Corrupt(format!("unknown access-log action `{action}`"))
                    })?,
                })
            })
            .collect::<Result<Vec<_>, VaultError>>()?;
        let next_before = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(AccessLogPage {
            entries,
            next_before,
        })
    }

    /// Master-key rotation: re-wraps every data key and the blind-index key from `old` to
    /// `new`, in one transaction (nothing else changes: ciphertexts, the blind index and the
    /// events stay as they are). Refused with [`VaultError::WrongMasterKey`] if `old` is not
    /// the key in force, and rolled back whole if any data key does not unwrap.
    ///
    /// Vaults opened before with `old` fail with [`VaultError::MasterKeyRotated`] afterwards:
    /// rotate with the service stopped, or restart it with `new`.
    #[tracing::instrument(name = "vault.rotate", skip_all, fields(old = %old.fingerprint(), new = %new.fingerprint()))]
    pub async fn rotate(
        database: &Database,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<Rotation, VaultError> {
        if old.check_value() == new.check_value() {
            return Err(VaultError::SameMasterKey);
        }
        let rotation = on_writer!(database, |pool, sql| {
            let mut tx = pool.begin().await?;
            if let Some(pragma) = sql.before_shredding {
                sqlx::query(pragma).execute(&mut *tx).await?;
            }
            let locked: Option<i64> = sqlx::query_scalar(sql.keys_version_exclusive)
                .fetch_optional(&mut *tx)
                .await?;
            if locked.is_none() {
                return Err(VaultError::Corrupt(
                    "the vault holds no keys yet: there is nothing to rotate".into(),
                ));
            }
            let (version, check, wrapped_index_key): KeysRow =
                sqlx::query_as(sql::KEYS_SELECT).fetch_one(&mut *tx).await?;
            check_master(old, &check, version)?;
            let index_key = old
                .key
                .unwrap_key(INDEX_KEY_LABEL, &wrapped_index_key)
                .map_err(|_| VaultError::Tampered)?;
            let new_version = version + 1;
            let rows: Vec<(String, Option<Vec<u8>>, Option<i64>)> =
                sqlx::query_as(sql::PEOPLE_WRAPPED_KEYS)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut data_keys = 0_u64;
            for (id, wrapped, key_version) in rows {
                let beneficiary = parse_id(&id)?;
                let (Some(wrapped), Some(key_version)) = (wrapped, key_version) else {
                    return Err(VaultError::Corrupt(format!(
                        "{id}: a live row without a key"
                    )));
                };
                if key_version != version {
                    return Err(VaultError::Corrupt(format!(
                        "{id}: data key wrapped with master-key version {key_version}, not \
                         {version}"
                    )));
                }
                let aad = data_key_aad(beneficiary);
                let data_key = old
                    .key
                    .unwrap_key(&aad, &wrapped)
                    .map_err(|_| VaultError::Tampered)?;
                // Zero rows: erased meanwhile (PostgreSQL), nothing left to re-wrap.
                data_keys += sqlx::query(sql::PERSON_REWRAP)
                    .bind(&id)
                    .bind(new.key.wrap(&aad, &data_key))
                    .bind(new_version)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            let updated = sqlx::query(sql::KEYS_ROTATE)
                .bind(new_version)
                .bind(&new.check_value()[..])
                .bind(new.key.wrap(INDEX_KEY_LABEL, &index_key))
                .bind(now())
                .bind(version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated != 1 {
                return Err(VaultError::Corrupt(
                    "the vault_keys row changed during rotation".into(),
                ));
            }
            tx.commit().await?;
            if let Some(checkpoint) = sql.after_shredding
                && let Err(error) = sqlx::query(checkpoint).execute(pool).await
            {
                // The next checkpoint completes it.
                tracing::warn!(%error, "WAL checkpoint after shredding failed");
            }
            Rotation {
                version: new_version,
                data_keys,
            }
        });
        tracing::info!(
            version = rotation.version,
            data_keys = rotation.data_keys,
            "master key rotated"
        );
        Ok(rotation)
    }

    /// [`Vault::rotate`] for a master key kept in a file (the embedded set-up of
    /// [`MasterKey::load_or_generate`]): generates the new key and writes it beside the old
    /// one, as `<file>.new` (0600, synced), before the database changes; rotates; then renames
    /// it over the old file. The new key is never only in memory: stopped halfway, the
    /// rotation leaves both files, and the next one refuses to start
    /// ([`VaultError::UnfinishedRotation`]).
    #[tracing::instrument(name = "vault.rotate_key_file", skip_all, fields(path = %path.display()))]
    pub async fn rotate_key_file(database: &Database, path: &Path) -> Result<Rotation, VaultError> {
        let old = MasterKey::load(path)?;
        let pending = pending_key_path(path);
        if pending.exists() {
            return Err(VaultError::UnfinishedRotation { path: pending });
        }
        let new = MasterKey::generate();
        new.write_new(&pending)?;
        let rotation = match Self::rotate(database, &old, &new).await {
            Ok(rotation) => rotation,
            // A database failure may have hit the commit itself: the new key may be in force,
            // so its file stays.
            Err(error @ VaultError::Database(_)) => return Err(error),
            Err(error) => {
                let _ = std::fs::remove_file(&pending);
                return Err(error);
            }
        };
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::rename(&pending, path).map_err(io)?;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(folder)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
        }
        Ok(rotation)
    }

    /// Refuses to write or read with a master key that is no longer in force.
    fn check_version(&self, stored: i64) -> Result<(), VaultError> {
        if stored == self.inner.version {
            Ok(())
        } else {
            Err(VaultError::MasterKeyRotated {
                opened: self.inner.version,
                stored,
            })
        }
    }

    /// The identity in a live row, or why not.
    fn decrypt(&self, beneficiary: Uuid, row: PersonRow) -> Result<Person, VaultError> {
        let (wrapped_key, nonce, ciphertext, key_version, erased_at) = row;
        if let Some(at) = erased_at {
            return Err(VaultError::Erased { at });
        }
        let (Some(wrapped_key), Some(nonce), Some(ciphertext), Some(key_version)) =
            (wrapped_key, nonce, ciphertext, key_version)
        else {
            return Err(VaultError::Corrupt(format!(
                "{beneficiary}: a live row without its key or ciphertext"
            )));
        };
        self.check_version(key_version)?;
        let data_key = self
            .inner
            .master
            .key
            .unwrap_key(&data_key_aad(beneficiary), &wrapped_key)
            .map_err(|_| VaultError::Tampered)?;
        let plaintext = data_key
            .open(&person_aad(beneficiary), &nonce, &ciphertext)
            .map_err(|_| VaultError::Tampered)?;
        serde_json::from_slice(&plaintext)
            .map_err(|_| VaultError::Corrupt(format!("{beneficiary}: undecodable identity")))
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("backend", &self.inner.database.backend_name())
            .field("master", &self.inner.master)
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

/// The `vault_keys` row, if the vault was initialised.
async fn read_keys(database: &Database) -> Result<Option<KeysRow>, VaultError> {
    let row = on_reader!(database, |pool| {
        sqlx::query_as(sql::KEYS_SELECT).fetch_optional(pool).await
    });
    row.map_err(|error| {
        // PostgreSQL's undefined_table; SQLite has only a message for it.
        let missing = error.as_database_error().is_some_and(|db| {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        });
        if missing {
            VaultError::NotMigrated
        } else {
            error.into()
        }
    })
}

/// Whether `master` is the key whose check value is `stored`.
fn check_master(master: &MasterKey, stored: &[u8], version: i64) -> Result<(), VaultError> {
    if master.check_value().as_slice() == stored {
        Ok(())
    } else {
        Err(VaultError::WrongMasterKey {
            expected: crypto::hex(&stored[..stored.len().min(8)]),
            given: master.fingerprint(),
            version,
        })
    }
}

/// The identity as encrypted: JSON, padded with spaces to a multiple of [`PAD_TO`] bytes.
fn encode(person: &Person) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut plaintext = Zeroizing::new(Vec::with_capacity(4 * PAD_TO));
    serde_json::to_writer(&mut *plaintext, person)
        .map_err(|error| VaultError::Corrupt(format!("identity not serialisable: {error}")))?;
    let padded = plaintext.len().div_ceil(PAD_TO) * PAD_TO;
    plaintext.resize(padded, b' ');
    Ok(plaintext)
}

/// Where [`Vault::rotate_key_file`] writes the new key before it is in force.
fn pending_key_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".new");
    path.with_file_name(name)
}

fn parse_id(id: &str) -> Result<Uuid, VaultError> {
    Uuid::parse_str(id).map_err(|_| VaultError::Corrupt(format!("`{id}` is not a beneficiary id")))
}

/// The time now, to the microsecond: what PostgreSQL keeps, so that a time handed back equals
/// the one stored on both backends.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    Utc::now().trunc_subsecs(6)
}
