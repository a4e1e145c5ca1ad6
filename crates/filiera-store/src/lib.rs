//! The event store of filiera: where `Pathway` streams are persisted, in PostgreSQL through
//! `postgres-es` or in an embedded SQLite file through `sqlite-es`, and where the global feed
//! (SPEC 4.2) is read from.
//!
//! The store owns the schema (sqlx migrations under `migrations/postgres` and
//! `migrations/sqlite`): the `events` table the cqrs-es adapters expect, plus a commit-order-safe
//! global `position`, the server `recorded_at`, and the `idempotency_keys` table filled by a
//! trigger so that a retried request with the same `Idempotency-Key` never writes twice.
//!
//! Commands are executed by [`Store::execute`], which keeps "the command was refused"
//! ([`Rejection`]) apart from "the store failed" ([`StoreError`]).
//!
//! # Global position
//! Every event gets a `position` from a trigger, in commit order, so that a feed reader that
//! checkpoints position P never later finds a committed event below P:
//! - PostgreSQL: a BEFORE INSERT trigger takes a transaction-scoped advisory lock, then draws
//!   the position from a sequence and stamps `recorded_at`. The lock is held to commit, so
//!   event writers are serialised from their first insert to their commit (other readers and
//!   writers of other tables are not). Aborted transactions leave gaps. The trigger also
//!   `pg_notify`s `filiera_events`, which [`Store::wakeups`] turns into a hint. A batch write
//!   ([`Store::execute_batch`]) does the trigger's work itself, once per statement, under the
//!   same lock (ADR 0010); the triggers stand aside for its transaction only.
//! - SQLite: all writes go through one connection; an AFTER INSERT trigger sets the position
//!   to one more than the highest so far.
//!
//! # Idempotency
//! The metadata of each command (see [`metadata`]) may carry the client's idempotency key. A
//! trigger binds the key to the first command that writes it, in the same transaction as its
//! events; another command writing the same key aborts, and [`Store::execute`] then answers
//! with the first execution. A batch write on PostgreSQL binds its keys with one statement
//! instead, and aborts the same way. Refused commands bind nothing.
//!
//! # Stored forms
//! Rows keep the form and version they were written in. Every read turns them into today's
//! events through the upcasters of `filiera_domain::evolution` (ADR 0007): cqrs-es's stream
//! loads (`with_upcasters`) and the rows the store decodes itself (the feed, histories,
//! replays), so no reader ever sees an older form.
//!
//! # Layout
//! - [`store`]: [`Store`], connecting, migrating, executing commands and reading streams and
//!   the feed.
//! - [`backup`]: [`Store::backup_into`], a consistent online copy of the embedded database.
//! - [`database`]: [`Database`], the handle crates owning tables of their own get.
//! - [`model`]: what callers pass and get back: [`CommandContext`], [`IdempotencyKey`],
//!   [`Executed`], [`Rejection`], [`StoredEvent`].
//! - [`metadata`]: the keys of the metadata stored with every event.
//! - `group`: group commit (ADR 0011), concurrent commands of [`Store::execute`] sharing one
//!   transaction.
//! - `batch`: [`Store::execute_batch`], many commands decided in memory and written in one
//!   transaction; [`Store::decide_batch`] and [`Store::spawn_write`] pipeline batches, each
//!   decided on a [`StreamCache`] while the one before is written (`filiera import`).
//! - [`error`]: [`StoreError`], a failed database, migration or unreadable row.
//! - [`lease`]: [`Leadership`], one runner per job across processes.
//! - [`jobs`]: [`jobs::spawn_leader_job`], the one runner of leader-only background jobs.
//! - `sqlite`, `postgres`: backend-specific connection set-up (pools, pragmas, LISTEN).
//! - `rows`: decoding stored rows into [`StoredEvent`]s, through the domain's upcasters.

pub mod backup;
mod batch;
mod bulk;
pub mod database;
pub mod error;
mod group;
pub mod jobs;
pub mod lease;
pub mod metadata;
pub mod model;
mod postgres;
mod rows;
mod scan;
mod sqlite;
pub mod store;

pub use backup::{BackupError, BackupSummary};
pub use batch::{
    BatchCommand, BatchOutcome, BatchWrite, BoundKey, DecidedBatch, StreamCache, Written,
};
pub use database::{Database, Migrations, PerBackend, Pool};
pub use error::{Outage, StoreError, error_chain};
pub use lease::Leadership;
pub use model::{CommandContext, Executed, IdempotencyKey, Rejection, StoredEvent, WriteScope};
pub use scan::{FeedPart, FeedScan};
pub use store::{NotReady, Store, StoreOptions};
