//! [`tail_nats`]: follows the stream with a pull consumer filtered by territory and event
//! type, handing each CloudEvent to the caller and acknowledging it (`filiera tail --nats`).

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::ContextBuilder;
use filiera_store::jobs::Backoff;
use futures::StreamExt as _;
use serde_json::Value;

use crate::envelope::{STREAM_NAME, filter_subject, known_event_type};
use crate::publisher::connect;
use crate::{NatsUrl, RelayError};

/// How long the server keeps an ephemeral consumer (no durable name) after its tail stops.
const EPHEMERAL_INACTIVE: Duration = Duration::from_secs(30);

/// What to follow, for [`tail_nats_with`].
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// The NATS server(s).
    pub url: NatsUrl,
    /// The stream (default `FILIERA_EVENTS`).
    pub stream: String,
    /// A durable consumer name: the server remembers what was acknowledged, so the next tail
    /// with the same name resumes after it. `None`: an ephemeral consumer from the start of
    /// the stream, forgotten 30 s after the tail stops.
    pub durable_name: Option<String>,
    /// Only this territory's events (exact code; the territory after the event). `None`: all.
    pub territory: Option<String>,
    /// Only this event type (`StageEntered` or `stage_entered`). `None`: all.
    pub event_type: Option<String>,
}

impl TailOptions {
    /// Every event of `FILIERA_EVENTS` at `url`, with an ephemeral consumer.
    pub fn new(url: impl Into<NatsUrl>) -> Self {
        Self {
            url: url.into(),
            stream: STREAM_NAME.to_owned(),
            durable_name: None,
            territory: None,
            event_type: None,
        }
    }

    /// The consumer's filter subject, `filiera.events.<territory|*>.<type|*>`, after checking
    /// the filters.
    pub fn filter_subject(&self) -> Result<String, RelayError> {
        if let Some(territory) = &self.territory
            && filiera_domain::TerritoryCode::parse(territory).is_none()
        {
            return Err(RelayError::Filter(format!(
                "territory `{territory}` is not a territory code ([A-Za-z0-9_-], 1 to 64 characters)"
            )));
        }
        let event_type = match &self.event_type {
            Some(name) => Some(known_event_type(name).ok_or_else(|| {
                RelayError::Filter(format!(
                    "unknown event type `{name}`; one of {}",
                    filiera_domain::PathwayEvent::TYPES.join(", ")
                ))
            })?),
            None => None,
        };
        if let Some(name) = &self.durable_name
            && (name.is_empty()
                || name
                    .chars()
                    .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace()))
        {
            return Err(RelayError::Filter(format!(
                "durable name `{name}` must be non-empty, without '.', '*', '>' or spaces"
            )));
        }
        Ok(filter_subject(
            self.territory.as_deref(),
            event_type.as_deref(),
        ))
    }
}

/// Follows `FILIERA_EVENTS` at `url` with a pull consumer on
/// `filiera.events.<territory|*>.<event_type|*>` — durable when `durable_name` is given — and
/// calls `out` with each message's CloudEvent document, in stream order, acknowledging it once
/// `out` returns. Fails at once if NATS or the stream cannot be reached at start; afterwards a
/// NATS outage is waited out (the client reconnects). Runs until the connection is closed for
/// good or the caller drops the future (e.g. in a `select!` with Ctrl-C).
pub async fn tail_nats(
    url: impl Into<NatsUrl>,
    durable_name: Option<String>,
    territory: Option<String>,
    event_type: Option<String>,
    out: impl FnMut(Value),
) -> Result<(), RelayError> {
    tail_nats_with(
        TailOptions {
            durable_name,
            territory,
            event_type,
            ..TailOptions::new(url)
        },
        out,
    )
    .await
}

/// [`tail_nats`] with every option.
pub async fn tail_nats_with(
    options: TailOptions,
    mut out: impl FnMut(Value),
) -> Result<(), RelayError> {
    let filter = options.filter_subject()?;
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };
    let client = connect(&options.url, "filiera-tail", backoff).await?;
    let js = ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client);
    let stream = js
        .get_stream(&options.stream)
        .await
        .map_err(|e| RelayError::jetstream("get stream", e))?;
    let consumer = match &options.durable_name {
        Some(name) => match stream.get_consumer::<pull::Config>(name).await {
            Ok(existing) => {
                let existing_filter = existing.cached_info().config.filter_subject.clone();
                if existing_filter != filter {
                    return Err(RelayError::DurableMismatch {
                        name: name.clone(),
                        existing: existing_filter,
                        wanted: filter,
                    });
                }
                existing
            }
            Err(_) => stream
                .create_consumer(pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some("filiera tail".to_owned()),
                    filter_subject: filter.clone(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .map_err(|e| RelayError::jetstream("create durable consumer", e))?,
        },
        None => stream
            .create_consumer(pull::Config {
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                inactive_threshold: EPHEMERAL_INACTIVE,
                ..Default::default()
            })
            .await
            .map_err(|e| RelayError::jetstream("create consumer", e))?,
    };
    tracing::info!(filter = %filter, durable = ?options.durable_name, "tailing JetStream");
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| RelayError::jetstream("pull messages", e))?;
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                // Missed heartbeats while NATS is down and the like: the stream recovers.
                tracing::warn!(error = %error, "tail: pull failed; continuing");
                continue;
            }
        };
        match serde_json::from_slice::<Value>(&message.payload) {
            Ok(document) => out(document),
            Err(error) => tracing::warn!(
                subject = %message.subject,
                error = %error,
                "tail: skipping a message that is not JSON"
            ),
        }
        if let Err(error) = message.ack().await {
            tracing::warn!(error = %error, "tail: acknowledgement failed; the message may come again");
        }
    }
    Ok(())
}
