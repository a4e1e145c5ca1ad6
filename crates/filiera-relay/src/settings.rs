//! [`RelaySettings`] and [`StreamSettings`]: what the binary configures, with the documented
//! defaults (docs/events.md).

use std::time::Duration;

use crate::NatsUrl;
use crate::envelope::{DEFAULT_SOURCE, STREAM_NAME};

/// How the relay publishes. Build it with [`RelaySettings::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: NatsUrl,
    /// The CloudEvents `source` of every message (default `/filiera`).
    pub source: String,
    /// The name of this relay's checkpoint row in `relay_checkpoints` (default `nats`).
    pub checkpoint_name: String,
    /// The stream created when it is missing.
    pub stream: StreamSettings,
    /// Feed events read and published (pipelined) per batch.
    pub batch_size: u32,
    /// How long to wait for the server's acknowledgement of one publish (or any JetStream
    /// request) before counting it as failed.
    pub ack_timeout: Duration,
    /// How often the leader reads the feed when no wake-up arrives.
    pub poll_interval: Duration,
    /// How often a process that does not lead tries to take over.
    pub follower_retry: Duration,
    /// How often the leader confirms (renews) its leadership.
    pub leadership_check: Duration,
    /// First wait after a failure; doubled after each further failure...
    pub backoff_initial: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
}

impl RelaySettings {
    /// The defaults for a relay to the NATS server(s) at `url`.
    pub fn new(url: impl Into<NatsUrl>) -> Self {
        Self {
            url: url.into(),
            source: DEFAULT_SOURCE.to_owned(),
            checkpoint_name: "nats".to_owned(),
            stream: StreamSettings::default(),
            batch_size: 256,
            ack_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            follower_retry: Duration::from_secs(1),
            leadership_check: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// The leadership job of this relay (`relay:nats` with the default checkpoint name).
    pub fn leadership_job(&self) -> String {
        format!("relay:{}", self.checkpoint_name)
    }
}

/// The configuration of the stream when the relay has to create it. An existing stream is
/// used as it is (operators may tune it); only its subjects are checked.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// The stream name (default `FILIERA_EVENTS`, SPEC 4.3).
    pub name: String,
    /// How long the server remembers a `Nats-Msg-Id` to drop a republished message (default
    /// 2 hours): covers any realistic outage plus retry, on top of the relay's start-up check.
    pub duplicate_window: Duration,
    /// How long messages are kept (default 90 days; limits retention). Older history is in the
    /// HTTP feed, which keeps everything.
    pub max_age: Duration,
    /// Maximum total size in bytes, -1 for no limit (the default).
    pub max_bytes: i64,
    /// Replicas in a clustered JetStream (default 1).
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: STREAM_NAME.to_owned(),
            duplicate_window: Duration::from_secs(2 * 60 * 60),
            max_age: Duration::from_secs(90 * 24 * 60 * 60),
            max_bytes: -1,
            replicas: 1,
        }
    }
}
