//! [`Publisher`]: one connection to NATS JetStream while leading — ensuring the stream,
//! reading back what it last stored, and publishing a batch of feed events in order.
//!
//! Every message carries `Nats-Msg-Id` (the CloudEvent id, for the server's duplicate window)
//! and `Nats-Expected-Last-Sequence` (the stream sequence the previous message of the batch
//! got). The second header is what makes pipelining safe: if a message is lost in flight (a
//! connection drops) the server refuses every later message of the batch instead of storing
//! them out of order, and the relay re-synchronises from the stream's last message. It also
//! makes two relays publishing at once (a lease expired during a pause) unable to interleave.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{ContextBuilder, GetStreamErrorKind, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{
    self, DiscardPolicy, RawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::{Client, ConnectOptions, HeaderMap};
use filiera_store::StoredEvent;
use filiera_store::jobs::Backoff;

use crate::envelope::{
    CONTENT_TYPE, PublishedEvent, STREAM_SUBJECTS, cloud_event, message_id, parse_published,
    subject_for,
};
use crate::{NatsUrl, RelayError, RelaySettings, StreamSettings};

/// Connects to the NATS server(s) of `url` with the relay's reconnection policy: the client
/// reconnects by itself, to any server of the list (or one the cluster announced), waiting as
/// `backoff` says between attempts, forever. A user and
/// password in the URL (`nats://filiera-relay:PASSWORD@host:4222`, the first server that has
/// them) are the credentials: async-nats does not read them from the URL by itself.
pub(crate) async fn connect(
    url: &NatsUrl,
    name: &str,
    backoff: Backoff,
) -> Result<Client, RelayError> {
    let mut options = ConnectOptions::new();
    if let Some((user, password)) = url.credentials() {
        options = options.user_and_password(user, password);
    }
    let servers = url
        .addresses()
        .map_err(|e| RelayError::Connect(Box::new(e)))?;
    options
        .name(name)
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| backoff.delay(attempts))
        .connect(servers)
        .await
        .map_err(|e| RelayError::Connect(Box::new(e)))
}

/// The JetStream side of a leadership term.
pub(crate) struct Publisher {
    client: Client,
    js: async_nats::jetstream::Context,
    stream_name: String,
    source: String,
}

/// Where the stream stands: the sequence of its last message and which feed event that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamTail {
    /// The stream's last sequence (0 when nothing was ever stored); the next message must
    /// expect it.
    pub(crate) last_sequence: u64,
    /// The feed event the last message carries, `None` if the stream holds no message (never
    /// filled, purged, or every message expired).
    pub(crate) last: Option<PublishedEvent>,
}

/// What publishing a batch did.
pub(crate) struct BatchOutcome {
    /// How many events at the head of the batch were acknowledged, in order.
    pub(crate) acknowledged: usize,
    /// The stream sequence after the last acknowledged one.
    pub(crate) last_sequence: u64,
    /// Of those, how many the server reported as duplicates (already stored).
    pub(crate) duplicates: usize,
    /// Why the batch stopped early, if it did.
    pub(crate) error: Option<RelayError>,
}

impl Publisher {
    /// Connects and makes sure the stream exists (created with `settings.stream` if missing).
    pub(crate) async fn open(settings: &RelaySettings) -> Result<Self, RelayError> {
        let client = connect(&settings.url, "filiera-relay", settings.backoff()).await?;
        let js = ContextBuilder::new()
            .timeout(settings.ack_timeout)
            .build(client.clone());
        let publisher = Self {
            client,
            js,
            stream_name: settings.stream.name.clone(),
            source: settings.source.clone(),
        };
        publisher.ensure_stream(&settings.stream).await?;
        Ok(publisher)
    }

    /// A clone of the client, for status queries.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates the stream if it is missing; checks that an existing one captures the
    /// relay's subjects (its other settings are left as operators set them).
    async fn ensure_stream(&self, settings: &StreamSettings) -> Result<(), RelayError> {
        match self.js.get_stream(&settings.name).await {
            Ok(existing) => {
                let subjects = existing.cached_info().config.subjects.clone();
                if !subjects
                    .iter()
                    .any(|s| s == STREAM_SUBJECTS || s == ">" || s == "filiera.>")
                {
                    return Err(RelayError::StreamSubjects {
                        stream: settings.name.clone(),
                        subjects,
                    });
                }
                Ok(())
            }
            Err(error)
                if matches!(
                    error.kind(),
                    GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                tracing::info!(stream = %settings.name, "creating the JetStream stream");
                self.js
                    .create_stream(stream_config(settings))
                    .await
                    .map_err(|e| RelayError::jetstream("create stream", e))?;
                Ok(())
            }
            Err(error) => Err(RelayError::jetstream("get stream", error)),
        }
    }

    /// Reads the stream's last sequence and the feed event its last message carries.
    pub(crate) async fn tail(&self) -> Result<StreamTail, RelayError> {
        let stream = self
            .js
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| RelayError::jetstream("get stream", e))?;
        let state = &stream.cached_info().state;
        let last_sequence = state.last_sequence;
        if state.messages == 0 {
            return Ok(StreamTail {
                last_sequence,
                last: None,
            });
        }
        let message = match stream.get_raw_message(last_sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() != RawMessageErrorKind::NoMessageFound => {
                // A timeout or an unavailable stream leader (an election in a cluster): not an
                // answer about the message, so try again rather than guess.
                return Err(RelayError::jetstream(
                    "get the stream's last message",
                    error,
                ));
            }
            Err(error) => {
                // The last message was deleted by hand: fall back on the checkpoint and the
                // duplicate window.
                tracing::warn!(
                    stream = %self.stream_name,
                    sequence = last_sequence,
                    error = %error,
                    "cannot read the stream's last message; relying on the checkpoint"
                );
                return Ok(StreamTail {
                    last_sequence,
                    last: None,
                });
            }
        };
        let last = parse_published(&message.payload).ok_or_else(|| RelayError::ForeignMessage {
            stream: self.stream_name.clone(),
            sequence: last_sequence,
        })?;
        Ok(StreamTail {
            last_sequence,
            last: Some(last),
        })
    }

    /// Publishes `events` (in feed order) after the stream's `last_sequence`, pipelined, and
    /// waits for the acknowledgements in order. Stops at the first failure: only the
    /// acknowledged prefix counts.
    pub(crate) async fn publish(&self, events: &[StoredEvent], last_sequence: u64) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            acknowledged: 0,
            last_sequence,
            duplicates: 0,
            error: None,
        };
        let mut pending: Vec<(i64, PublishAckFuture)> = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            match self.send(event, last_sequence + offset as u64).await {
                Ok(ack) => pending.push((event.position, ack)),
                Err(error) => {
                    outcome.error = Some(error);
                    break;
                }
            }
        }
        for (position, ack) in pending {
            match ack.await {
                Ok(ack) => {
                    outcome.acknowledged += 1;
                    if ack.duplicate {
                        outcome.duplicates += 1;
                        tracing::debug!(position, sequence = ack.sequence, "already in the stream");
                    }
                    outcome.last_sequence = outcome.last_sequence.max(ack.sequence);
                }
                Err(error) => {
                    // An earlier send error is superseded: this one happened first in order.
                    outcome.error = Some(RelayError::Publish {
                        position,
                        source: Box::new(error),
                    });
                    break;
                }
            }
        }
        outcome
    }

    /// Sends one event, expecting the stream's last sequence to be `expected`.
    async fn send(
        &self,
        event: &StoredEvent,
        expected: u64,
    ) -> Result<PublishAckFuture, RelayError> {
        let document = cloud_event(event, &self.source);
        let body = serde_json::to_vec(&document).expect("a JSON value serialises");
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", CONTENT_TYPE);
        let message = PublishMessage::build()
            .headers(headers)
            .payload(body.into())
            .message_id(message_id(event))
            .expected_last_sequence(expected);
        self.js
            .send_publish(subject_for(event), message)
            .await
            .map_err(|e| RelayError::Publish {
                position: event.position,
                source: Box::new(e),
            })
    }
}

/// The stream configuration used to create `FILIERA_EVENTS`: file storage, limits retention
/// with `max_age`, discard old, the duplicate window, subjects `filiera.events.>`.
pub(crate) fn stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: settings.name.clone(),
        description: Some(
            "filiera pathway events as CloudEvents 1.0 (see docs/events.md)".to_owned(),
        ),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age: settings.max_age,
        max_bytes: settings.max_bytes,
        max_messages: -1,
        max_messages_per_subject: -1,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas.max(1),
        allow_direct: true,
        ..Default::default()
    }
}
