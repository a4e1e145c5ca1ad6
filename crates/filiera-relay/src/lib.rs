//! The NATS adapter of filiera (SPEC 4.3): the relay that publishes every event of the global
//! feed to the JetStream stream `FILIERA_EVENTS` as a CloudEvent, and the tail that follows it.
//!
//! The relay is a transactional-outbox-style relay (docs/adr/0004-nats-relay.md): nothing in
//! the write path touches NATS; the relay reads the feed from its checkpoint, publishes in feed
//! order, and advances the checkpoint only over what the server acknowledged. While NATS is
//! down writes go on and the relay retries with exponential backoff; afterwards the backlog is
//! published. Each message carries `Nats-Msg-Id` (the CloudEvent id), so the server drops a
//! republication within the duplicate window, and on every (re)start the relay reads the
//! stream's last message and skips what the stream already holds, so a crash between publish
//! and checkpoint duplicates nothing even after the window. Delivery to the server is
//! at-least-once; the stream holds each event exactly once, in feed order.
//!
//! One process at a time runs the relay (`store.try_lead("relay:nats")`); the others retry
//! every second and take over within seconds.
//!
//! # Layout
//! - [`envelope`]: the message contract: [`subject_for`], [`cloud_event`], [`message_id`],
//!   [`filter_subject`], the stream and subject constants.
//! - [`settings`]: [`RelaySettings`] and [`StreamSettings`], with the documented defaults.
//! - [`relay`]: [`NatsRelay`], the process's handle (start, status, shutdown) and its task.
//! - `publisher`: one JetStream connection while leading: stream creation, the stream's last
//!   message, pipelined publishing with `Nats-Expected-Last-Sequence`.
//! - `checkpoint`: the `relay_checkpoints` table (this crate's migrations, SQL in
//!   `statements/`), compare-and-set.
//! - `metrics`: the Prometheus series.
//! - [`tail`]: [`tail_nats`], a durable pull consumer filtered by territory and event type.
//! - `url`: [`NatsUrl`], the server addresses, a secret since they may carry a password.
//! - [`error`]: [`RelayError`], what can go wrong.

mod checkpoint;
pub mod envelope;
pub mod error;
mod metrics;
mod publisher;
pub mod relay;
pub mod settings;
pub mod tail;
mod url;

pub use envelope::{
    DEFAULT_SOURCE, STREAM_NAME, STREAM_SUBJECTS, cloud_event, filter_subject, message_id,
    subject_for,
};
pub use error::RelayError;
pub use relay::{NatsRelay, RelayStatus};
pub use settings::{RelaySettings, StreamSettings};
pub use tail::{TailOptions, tail_nats, tail_nats_with};
pub use url::NatsUrl;

/// Applies the relay's migrations: its checkpoint table, recorded in the ledger the store's
/// migrations share (see [`filiera_store::Migrations`]). Run once before [`NatsRelay::start`];
/// safe to run repeatedly and from several processes.
pub async fn migrate(database: &filiera_store::Database) -> Result<(), RelayError> {
    database
        .migrate(&checkpoint::MIGRATIONS)
        .await
        .map_err(filiera_store::StoreError::from)?;
    Ok(())
}
