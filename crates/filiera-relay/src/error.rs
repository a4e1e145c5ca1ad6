//! [`RelayError`]: why publishing, tailing or reading the checkpoint failed.

use filiera_store::StoreError;

/// A boxed cause from the NATS client.
pub type NatsCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the relay or the tail. The relay logs it, records it as `last_error`, and
/// retries with backoff; the tail returns it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The event store failed (reading the feed or the head).
    #[error("event store failed")]
    Store(#[from] StoreError),
    /// The checkpoint table could not be read or written (were the relay's migrations run?).
    #[error("relay checkpoint query failed")]
    Checkpoint(#[source] sqlx::Error),
    /// Connecting to NATS failed.
    #[error("cannot connect to NATS")]
    Connect(#[source] NatsCause),
    /// A JetStream request (stream info, create, get message, consumer) failed.
    #[error("JetStream request failed: {what}")]
    JetStream {
        /// What was asked.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: NatsCause,
    },
    /// Publishing the event at `position` failed or was not acknowledged in time.
    #[error("publishing the event at position {position} failed")]
    Publish {
        /// Its global position.
        position: i64,
        /// Why.
        #[source]
        source: NatsCause,
    },
    /// The stream's last message does not match the event at its position in this store's
    /// feed: the stream was filled from another database (or the database was restored from
    /// an older backup and recorded other events since). The relay refuses to guess where to
    /// continue; an operator has to delete or purge the stream, or point the relay at another
    /// one.
    #[error(
        "stream {stream} holds message `{id}` at position {position}, which is not this store's \
         event there ({found}): the stream was filled from another database, or this store was \
         restored from an older backup"
    )]
    ForeignStream {
        /// The stream.
        stream: String,
        /// The message id found.
        id: String,
        /// The position the message claims.
        position: i64,
        /// What the feed has at that position.
        found: String,
    },
    /// The stream holds events up to `position`, but this store's feed ends at `head`: the
    /// store was restored from a backup older than the stream (or is another, younger
    /// database). Publishing would put new events under positions the stream already holds,
    /// so the relay publishes nothing until an operator decides (docs/operations.md, "Backup
    /// and restore").
    #[error(
        "stream {stream} already holds events up to position {position}, but this store's feed \
         ends at position {head}: the store was restored from a backup older than the stream \
         (or is another database); nothing is published until the stream is purged or replaced \
         (docs/operations.md, \"Backup and restore\")"
    )]
    StoreBehindStream {
        /// The stream.
        stream: String,
        /// The position of the stream's last message.
        position: i64,
        /// This store's feed head.
        head: i64,
    },
    /// The stream's last message is not a filiera CloudEvent: something else publishes on
    /// `filiera.events.>`.
    #[error(
        "the last message of stream {stream} (sequence {sequence}) is not a filiera CloudEvent: \
         only the relay may publish on filiera.events.>"
    )]
    ForeignMessage {
        /// The stream.
        stream: String,
        /// The stream sequence of the message.
        sequence: u64,
    },
    /// An existing stream does not capture the relay's subjects.
    #[error(
        "stream {stream} exists but does not capture filiera.events.> (subjects: {subjects:?})"
    )]
    StreamSubjects {
        /// The stream.
        stream: String,
        /// Its subjects.
        subjects: Vec<String>,
    },
    /// Another process moved the relay checkpoint meanwhile (two relays ran at once, e.g.
    /// after a lease expired during a pause): the relay re-synchronises.
    #[error("the relay checkpoint was moved by another process")]
    Contended,
    /// A tail filter is not valid.
    #[error("invalid filter: {0}")]
    Filter(String),
    /// A durable consumer of that name exists with another filter subject.
    #[error(
        "durable consumer `{name}` exists with filter `{existing}`, not `{wanted}`: choose another \
         name or delete it"
    )]
    DurableMismatch {
        /// The durable name.
        name: String,
        /// Its filter subject.
        existing: String,
        /// The filter subject asked for.
        wanted: String,
    },
    /// Registering the Prometheus metrics failed (e.g. already registered in that registry).
    #[error("cannot register the relay metrics")]
    Metrics(#[from] prometheus::Error),
}

impl RelayError {
    /// Wraps a JetStream client error.
    pub(crate) fn jetstream(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::JetStream {
            what,
            source: Box::new(source),
        }
    }
}
