//! [`VaultError`]: a refused request, the wrong key, or a failed database.

use chrono::{DateTime, Utc};
use filiera_store::{Outage, StoreError};

use crate::{KeyError, PersonError};

/// Why a vault operation did not happen. The first variants are answers to the caller (the
/// HTTP status each maps to is named); the last ones are failures to log with their cause
/// chain. No variant carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The identity (or the fiscal code to look up) is malformed (422, field named).
    #[error(transparent)]
    InvalidPerson(#[from] PersonError),
    /// This beneficiary's identity was stored already: it is stored once (409).
    #[error("the beneficiary's personal data is already stored")]
    AlreadyStored,
    /// Another beneficiary has this fiscal code (409).
    #[error("another beneficiary has this fiscal code")]
    FiscalCodeTaken,
    /// The identity was erased (410); it can be neither read nor stored again.
    #[error("the beneficiary's personal data was erased at {at}")]
    Erased {
        /// When.
        at: DateTime<Utc>,
    },
    /// No identity was ever stored for this beneficiary (404).
    #[error("no personal data is stored for this beneficiary")]
    NotFound,
    /// The master key given is not the one the vault's data is wrapped with (refuse to start).
    #[error(
        "wrong master key: the vault's data is wrapped with the key of fingerprint {expected} \
         (version {version}), the key given has fingerprint {given}"
    )]
    WrongMasterKey {
        /// Fingerprint of the key the data needs.
        expected: String,
        /// Fingerprint of the key given.
        given: String,
        /// The version of the master key in force (1, plus one per rotation).
        version: i64,
    },
    /// The master key was rotated after this vault was opened: restart with the new key.
    #[error(
        "the master key was rotated (version {stored}) after this process opened the vault \
         with version {opened}: restart it with the new key"
    )]
    MasterKeyRotated {
        /// The version this vault was opened with.
        opened: i64,
        /// The version now in force.
        stored: i64,
    },
    /// A master key file could not be read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A rotation of the key file found the new key's file of an earlier rotation: that one
    /// may have committed, so its key may be the one in force.
    #[error(
        "{path} exists: an earlier rotation stopped halfway. The vault refuses every key but \
         the one in force as the wrong master key: keep that one as the key file, remove the \
         other, then rotate again"
    )]
    UnfinishedRotation {
        /// The new key's file left by the earlier rotation.
        path: std::path::PathBuf,
    },
    /// Rotation to the key already in force.
    #[error("the new master key is the one already in force")]
    SameMasterKey,
    /// A ciphertext or wrapped key did not open under the right key: altered or moved bytes.
    #[error("the stored personal data of a beneficiary fails its integrity check")]
    Tampered,
    /// The vault's tables are not there: `Vault::migrate` (`filiera migrate`) has not run.
    #[error("the personal-data vault's tables are missing: run the migrations (`filiera migrate`)")]
    NotMigrated,
    /// A row the vault cannot have written.
    #[error("unreadable vault data: {0}")]
    Corrupt(String),
    /// The database failed or refused a query, or the migrations failed.
    #[error("vault database error")]
    Database(#[source] StoreError),
}

impl VaultError {
    /// The outage behind this error, if it is one (503/507, as for the store).
    pub fn outage(&self) -> Option<Outage> {
        match self {
            Self::Database(error) => error.outage(),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for VaultError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(StoreError::Database(error))
    }
}

impl From<sqlx::migrate::MigrateError> for VaultError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Database(StoreError::Migration(error))
    }
}
