//! A service that reacts when someone starts an internship: a copyable starting point for
//! teams consuming filiera's events from NATS JetStream (see docs/events.md).
//!
//! It binds a durable pull consumer on `filiera.events.*.stage_entered` (every territory; put a
//! territory code instead of `*` to get only yours), handles each CloudEvent idempotently, and
//! acknowledges it only once handled: after a crash or a restart the server redelivers what
//! was not acknowledged, and the durable resumes after the rest.
//!
//! Run (with filiera serving with `FILIERA_NATS_URL` set):
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 DURABLE=internships-started \
//!     cargo run -p filiera-relay --example consumer
//! ```
//!
//! Only `async-nats`, `futures`, `serde`, `serde_json` and `tokio` are used: nothing of
//! filiera's own code is needed to consume its events.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt as _;
use serde::Deserialize;

/// The CloudEvents envelope of every filiera message.
#[derive(Debug, Deserialize)]
struct CloudEvent {
    /// `<beneficiary_id>:<sequence>`: unique per event, the same if it is ever redelivered.
    id: String,
    /// `it.filiera.pathway.<event_type>.v1`.
    #[serde(rename = "type")]
    event_type: String,
    /// The beneficiary (an opaque UUID; events carry no personal data).
    subject: String,
    data: StageEntered,
}

/// The `data` of `it.filiera.pathway.stage_entered.v1`.
#[derive(Debug, Deserialize)]
struct StageEntered {
    stage: String,
    on: String,
    from_stage: Option<String>,
    transition: String,
    provider: Option<String>,
    territory: String,
    sequence: u64,
    position: i64,
}

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let durable = std::env::var("DURABLE").unwrap_or_else(|_| "internships-started".to_owned());

    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream("FILIERA_EVENTS").await?;
    // Created on first run, resumed afterwards: the server remembers what was acknowledged.
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: "filiera.events.*.stage_entered".to_owned(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                // Redeliver a message not acknowledged within 30 s (the handler crashed).
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    eprintln!("consuming filiera.events.*.stage_entered as durable `{durable}` at {url}");

    // Ids already handled. A real service keeps them (or the last `sequence` per beneficiary)
    // in its own database, in the same transaction as the effect, so that a redelivery after
    // a crash is recognised and skipped.
    let mut handled: HashSet<String> = HashSet::new();

    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                // E.g. missed heartbeats while NATS restarts: the stream recovers by itself.
                eprintln!("pull failed: {error}");
                continue;
            }
        };
        match serde_json::from_slice::<CloudEvent>(&message.payload) {
            Ok(event) if handled.contains(&event.id) => {
                eprintln!("already handled {}; skipping", event.id);
            }
            Ok(event) => {
                if event.event_type == "it.filiera.pathway.stage_entered.v1"
                    && event.data.stage == "internship"
                {
                    println!(
                        "internship started: beneficiary {} in {} on {} ({}, from {}, provider {}; \
                         sequence {}, position {})",
                        event.subject,
                        event.data.territory,
                        event.data.on,
                        event.data.transition,
                        event.data.from_stage.as_deref().unwrap_or("none"),
                        event.data.provider.as_deref().unwrap_or("none"),
                        event.data.sequence,
                        event.data.position,
                    );
                }
                handled.insert(event.id);
            }
            // Not for us (or a newer version we do not know): acknowledge and move on.
            Err(error) => eprintln!("skipping {}: {error}", message.subject),
        }
        // Acknowledge only after handling.
        message.ack().await?;
    }
    Ok(())
}
