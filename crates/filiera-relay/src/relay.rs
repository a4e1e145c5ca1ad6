//! [`NatsRelay`]: the handle a process keeps. Its background task, a leader-only job of
//! [`filiera_store::jobs`], leads the relay when it can (`store.try_lead("relay:nats")`),
//! publishes the feed from the checkpoint while it leads, and otherwise retries every second so
//! that a replica takes over within seconds.
//!
//! One leadership term:
//! 1. connect and ensure the stream ([`Publisher::open`]);
//! 2. re-synchronise: read the checkpoint and the stream's last message; if the stream is
//!    ahead (a crash between publish and checkpoint), check that its last message is this
//!    store's event at that position, and move the checkpoint up to it (compare-and-set);
//! 3. read a batch of the feed after the checkpoint, publish it pipelined, wait for the
//!    acknowledgements in order, and advance the checkpoint (compare-and-set) over the
//!    acknowledged prefix; repeat, waiting for a wake-up or a poll tick when caught up.
//!
//! Any failure drops the connection and the synchronised state, waits (exponential backoff up
//! to `backoff_max`) and starts again at 1: nothing is ever checkpointed that the server did
//! not acknowledge, and nothing acknowledged is ever sent again.

use std::sync::{Arc, Mutex};

use filiera_store::jobs::{
    self, Backoff, BoxError, JobHandle, JobSettings, LeaderJob, StatusSource, Step,
};
use filiera_store::{Store, StoredEvent};
use tokio::sync::watch;

use crate::checkpoint::Checkpoints;
use crate::envelope::{PublishedEvent, event_time, message_id};
use crate::metrics::RelayMetrics;
use crate::publisher::Publisher;
use crate::{RelayError, RelaySettings};

/// The relay's state as `/v1`-style status and telemetry show it (defined in
/// `filiera_store::jobs` so that the HTTP layer need not depend on this crate).
pub use filiera_store::jobs::RelayStatus;

/// The NATS JetStream relay of one process. Cheap to clone; clones share the task. Dropping
/// the last clone without [`NatsRelay::shutdown`] aborts the task, as a crash would.
#[derive(Clone)]
pub struct NatsRelay {
    shared: Arc<Shared>,
    job: JobHandle,
}

struct Shared {
    store: Store,
    settings: RelaySettings,
    checkpoints: Checkpoints,
    metrics: RelayMetrics,
    /// The leader's NATS client, for `connected`.
    client: Mutex<Option<async_nats::Client>>,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("stream", &self.shared.settings.stream.name)
            .field("leading", &self.is_leading())
            .finish_non_exhaustive()
    }
}

impl NatsRelay {
    /// Starts the relay over `store` (already migrated, [`crate::migrate`] included): creates
    /// its checkpoint row if missing, registers its metrics in `registry`, and spawns the task
    /// that leads or waits to lead. Does not need NATS to be up: it connects (and retries) in
    /// the background.
    pub async fn start(
        store: Store,
        settings: RelaySettings,
        registry: &prometheus::Registry,
    ) -> Result<Self, RelayError> {
        let checkpoints = Checkpoints::new(&store);
        checkpoints.ensure(&settings.checkpoint_name).await?;
        let metrics = RelayMetrics::register(registry)?;
        let shared = Arc::new(Shared {
            store,
            settings,
            checkpoints,
            metrics,
            client: Mutex::new(None),
        });
        shared.refresh_gauges(None).await;
        let settings = &shared.settings;
        let job = jobs::spawn_leader_job(
            shared.store.clone(),
            settings.leadership_job(),
            JobSettings {
                follower_retry: settings.follower_retry,
                leadership_check: settings.leadership_check,
                backoff: settings.backoff(),
            },
            RelayJob {
                shared: Arc::clone(&shared),
                publisher: None,
                cursor: None,
                wakeups: None,
            },
        );
        Ok(Self { shared, job })
    }

    /// The settings the relay was started with.
    pub fn settings(&self) -> &RelaySettings {
        &self.shared.settings
    }

    /// Whether this process runs the relay right now.
    pub fn is_leading(&self) -> bool {
        self.job.is_leading()
    }

    /// The relay's state: leadership, connection, checkpoint, head, lag and counters.
    pub async fn status(&self) -> Result<RelayStatus, RelayError> {
        let shared = &self.shared;
        let position = shared
            .checkpoints
            .load(&shared.settings.checkpoint_name)
            .await?;
        let head = shared.store.head().await?;
        let leading = self.is_leading();
        let connected = leading
            && shared
                .client
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(async_nats::Client::connection_state))
                == Some(async_nats::connection::State::Connected);
        Ok(RelayStatus {
            leading,
            connected,
            position,
            head,
            lag: (head - position).max(0),
            published_total: shared.metrics.published.get(),
            publish_errors_total: shared.metrics.errors.get(),
            last_error: self.job.last_error(),
        })
    }

    /// Stops the task: the leader finishes the batch in flight, gives leadership up (so a
    /// replica takes over at once) and closes its connection.
    pub async fn shutdown(&self) {
        self.job.shutdown().await;
    }
}

impl StatusSource<RelayStatus> for NatsRelay {
    fn status(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<RelayStatus, BoxError>> + Send + '_>> {
        Box::pin(async move { Ok(NatsRelay::status(self).await?) })
    }
}

impl Shared {
    /// Sets the position and lag gauges; reads the checkpoint when `position` is not given.
    async fn refresh_gauges(&self, position: Option<i64>) {
        let position = match position {
            Some(p) => Ok(p),
            None => self.checkpoints.load(&self.settings.checkpoint_name).await,
        };
        if let (Ok(position), Ok(head)) = (position, self.store.head().await) {
            self.metrics.position.set(position);
            self.metrics.lag.set((head - position).max(0));
        }
    }

    fn forget_client(&self) {
        if let Ok(mut client) = self.client.lock() {
            *client = None;
        }
    }
}

impl RelaySettings {
    /// The retry policy after a failure, [`RelaySettings::backoff_initial`] doubling up to
    /// [`RelaySettings::backoff_max`].
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.backoff_initial,
            max: self.backoff_max,
        }
    }
}

/// Where the relay stands within a term, once synchronised with the stream.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// The checkpoint, equal to the position of the last event known in the stream (or, if the
    /// stream lost its messages, the last one checkpointed).
    position: i64,
    /// The stream's last sequence: what the next message must expect.
    last_sequence: u64,
}

/// The relay as a leader-only job. One leadership term keeps a connection and a cursor,
/// both dropped after any failure.
struct RelayJob {
    shared: Arc<Shared>,
    /// The connection of this term, opened by its first step.
    publisher: Option<Publisher>,
    /// Where the relay stands, once synchronised with the stream.
    cursor: Option<Cursor>,
    /// The store's wake-ups, during a term.
    wakeups: Option<watch::Receiver<i64>>,
}

impl LeaderJob for RelayJob {
    type Error = RelayError;

    async fn lead(&mut self) {
        self.shared.metrics.leader.set(1);
        self.wakeups = Some(self.shared.store.wakeups());
    }

    async fn step(&mut self) -> Result<Step, RelayError> {
        let shared = Arc::clone(&self.shared);
        let publisher = match &self.publisher {
            Some(p) => p,
            None => {
                let opened = Publisher::open(&shared.settings).await?;
                if let Ok(mut client) = shared.client.lock() {
                    *client = Some(opened.client());
                }
                self.publisher.insert(opened)
            }
        };
        let current = match self.cursor {
            Some(c) => c,
            None => *self.cursor.insert(synchronise(&shared, publisher).await?),
        };
        match batch(&shared, publisher, current).await? {
            Batch::Published(next) => {
                self.cursor = Some(next);
                Ok(Step::Worked)
            }
            Batch::CaughtUp => Ok(Step::CaughtUp),
            Batch::Contended => {
                // Another relay moved the checkpoint: re-check leadership and resync.
                tracing::warn!("the relay checkpoint was moved by another process");
                self.cursor = None;
                Ok(Step::Contended)
            }
        }
    }

    async fn wait(&mut self) {
        jobs::wait_for_feed(
            self.wakeups.as_mut(),
            self.shared.settings.poll_interval,
            std::future::pending(),
        )
        .await;
    }

    fn failed(&mut self, error: &RelayError) -> bool {
        self.shared.metrics.errors.inc();
        self.publisher = None;
        self.cursor = None;
        self.shared.forget_client();
        matches!(error, RelayError::Contended)
    }

    async fn resign(&mut self) {
        self.publisher = None;
        self.cursor = None;
        self.wakeups = None;
        self.shared.forget_client();
        self.shared.metrics.leader.set(0);
    }

    async fn follow(&mut self, _: &jobs::JobState) {
        self.shared.refresh_gauges(None).await;
    }
}

/// Re-synchronises with the stream: the start-up check of docs/adr/0004-nats-relay.md.
async fn synchronise(shared: &Shared, publisher: &Publisher) -> Result<Cursor, RelayError> {
    let name = &shared.settings.checkpoint_name;
    let checkpoint = shared.checkpoints.load(name).await?;
    let tail = publisher.tail().await?;
    let mut position = checkpoint;
    if let Some(last) = &tail.last {
        let found = shared
            .store
            .read_feed(last.position.saturating_sub(1), 1)
            .await?;
        match found.first() {
            Some(event) if is_published_as(event, last) => {}
            other => {
                let stream = shared.settings.stream.name.clone();
                let head = shared.store.head().await?;
                let error = if head < last.position {
                    RelayError::StoreBehindStream {
                        stream,
                        position: last.position,
                        head,
                    }
                } else {
                    RelayError::ForeignStream {
                        stream,
                        id: last.id.clone(),
                        position: last.position,
                        found: other.map_or_else(
                            || "nothing".to_owned(),
                            |e| format!("`{}` at position {}", message_id(e), e.position),
                        ),
                    }
                };
                // Not a passing outage: nothing is published until an operator acts.
                tracing::error!(
                    error = %error,
                    "the NATS relay publishes nothing: the stream does not continue this \
                     store's feed (see docs/operations.md, \"Backup and restore\")"
                );
                return Err(error);
            }
        }
        if last.position > checkpoint {
            tracing::info!(
                checkpoint,
                published = last.position,
                "the stream is ahead of the checkpoint (publish acknowledged, checkpoint \
                     not written): skipping what it already holds"
            );
            if !shared
                .checkpoints
                .advance(name, checkpoint, last.position)
                .await?
            {
                // Moved meanwhile by another relay: read everything again next time.
                return Err(RelayError::Contended);
            }
            position = last.position;
        }
    }
    tracing::info!(
        position,
        stream_sequence = tail.last_sequence,
        "NATS relay synchronised"
    );
    shared.refresh_gauges(Some(position)).await;
    Ok(Cursor {
        position,
        last_sequence: tail.last_sequence,
    })
}

/// Whether the stream message `published` carries `event`: the same position, id and
/// recording time. The time tells the event apart from another one recorded under the same id
/// and position by a store restored from an older backup (a beneficiary's next event, at the
/// next position: both can repeat after a restore).
fn is_published_as(event: &StoredEvent, published: &PublishedEvent) -> bool {
    event.position == published.position
        && message_id(event) == published.id
        && published
            .time
            .as_ref()
            .is_none_or(|time| *time == event_time(event))
}

/// Publishes one batch after `cursor` and checkpoints its acknowledged prefix. (The runner
/// keeps the lease renewed while it waits for acknowledgements.)
async fn batch(
    shared: &Shared,
    publisher: &Publisher,
    cursor: Cursor,
) -> Result<Batch, RelayError> {
    let events = shared
        .store
        .read_feed(cursor.position, shared.settings.batch_size)
        .await?;
    if events.is_empty() {
        shared.refresh_gauges(Some(cursor.position)).await;
        return Ok(Batch::CaughtUp);
    }
    let outcome = publisher.publish(&events, cursor.last_sequence).await;
    let acknowledged: &[StoredEvent] = &events[..outcome.acknowledged];
    let mut next = cursor;
    if let Some(last) = acknowledged.last() {
        let name = &shared.settings.checkpoint_name;
        if !shared
            .checkpoints
            .advance(name, cursor.position, last.position)
            .await?
        {
            return Ok(Batch::Contended);
        }
        let fresh = (acknowledged.len() - outcome.duplicates) as u64;
        shared.metrics.published.inc_by(fresh);
        next = Cursor {
            position: last.position,
            last_sequence: outcome.last_sequence,
        };
        shared.refresh_gauges(Some(next.position)).await;
        tracing::debug!(
            events = acknowledged.len(),
            duplicates = outcome.duplicates,
            position = next.position,
            "published"
        );
    }
    match outcome.error {
        Some(error) => Err(error),
        None => Ok(Batch::Published(next)),
    }
}

/// What one batch did.
enum Batch {
    /// A batch was published and checkpointed; the cursor after it.
    Published(Cursor),
    /// Nothing to publish.
    CaughtUp,
    /// Another relay moved the checkpoint.
    Contended,
}
