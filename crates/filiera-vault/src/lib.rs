//! The personal-data vault of filiera (SPEC 5.2): who a beneficiary is, kept apart from the
//! events (which hold only pseudonymous ids), and never in clear in any column.
//!
//! # Keys
//! - The **master key** ([`MasterKey`], 32 bytes: `FILIERA_MASTER_KEY`, or a 0600 file in the
//!   embedded data folder) is never stored in the database; `vault_keys` keeps only its check
//!   value (an HMAC of a fixed label) and version, so that [`Vault::open`] refuses another key.
//! - Each beneficiary's identity is sealed with AES-256-GCM under a **data key** of its own,
//!   stored wrapped (AES-256-GCM) by the master key. The beneficiary id is associated data of
//!   both, so neither can be moved to another row.
//! - The **blind-index key** turns a normalised fiscal code into an HMAC-SHA-256 digest, the
//!   only form in which fiscal codes are stored; it is random and stored wrapped by the master
//!   key, so that rotating the master key re-wraps it without recomputing the index.
//!
//! Erasure destroys the data key and the index entry (crypto-shredding) and keeps a tombstone;
//! rotation re-wraps every data key and the index key in one transaction.
//!
//! # Tables
//! The vault owns its tables (`vault_keys`, `vault_people`, `vault_blind_index`,
//! `vault_access_log`) and their migrations (`migrations/{postgres,sqlite}`, versions 1001…,
//! in the ledger shared with the store), and reaches the database only through the store's
//! narrow [`filiera_store::Database`] handle.
//!
//! # Layout
//! - [`vault`]: [`Vault`], opening, storing, reading (logged), finding, erasing, rotating.
//! - [`person`]: [`Person`] and its validation ([`PersonError`], [`normalise_fiscal_code`]).
//! - [`key`]: [`MasterKey`], parsed, loaded or generated ([`KeyError`]).
//! - [`access`]: the access log's [`Reader`], entries and pages.
//! - [`error`]: [`VaultError`], every way an operation can fail.
//! - `crypto`: AES-256-GCM sealing and key wrapping, HMAC, self-wiping keys.
//! - `sql`: the statements (in `src/sql/`), the migrators and the backend seam.

pub mod access;
mod crypto;
pub mod error;
pub mod key;
pub mod person;
mod sql;
pub mod vault;

pub use access::{AccessAction, AccessEntry, AccessLogPage, AccessLogQuery, Reader};
pub use error::VaultError;
pub use key::{KeyError, MasterKey};
pub use person::{MAX_NAME_CHARS, Person, PersonError, normalise_fiscal_code};
pub use vault::{Erasure, Rotation, Vault};
