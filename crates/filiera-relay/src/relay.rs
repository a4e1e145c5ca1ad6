//! [`NatsRelay`]: the handle a process keeps. Its background task leads the relay when it can
//! (`store.try_lead("relay:nats")`), publishes the feed from the checkpoint while it leads, and
//! otherwise retries every second so that a replica takes over within seconds.
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
use std::time::Duration;

use filiera_store::{Leadership, Store, StoredEvent};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checkpoint::Checkpoints;
use crate::envelope::message_id;
use crate::metrics::RelayMetrics;
use crate::publisher::{Publisher, backoff_delay};
use crate::{RelayError, RelaySettings};
use filiera_store::error_chain;

/// The relay's state as `/v1`-style status and telemetry show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// This process runs the relay (holds the `relay:nats` leadership).
    pub leading: bool,
    /// This process, as the leader, has a live connection to NATS. Always `false` when not
    /// leading: followers do not connect.
    pub connected: bool,
    /// The checkpoint: global position of the last event published and acknowledged (read
    /// from the database, so every replica reports the same).
    pub position: i64,
    /// The feed head: the highest global position stored.
    pub head: i64,
    /// `head − position`: feed positions not yet published (positions may have gaps, so this
    /// is an upper bound on the number of events).
    pub lag: i64,
    /// Messages this process published and saw acknowledged since it started.
    pub published_total: u64,
    /// Failed publish attempts (and failed connections) in this process since it started.
    pub publish_errors_total: u64,
    /// The latest failure, cleared by the next successful batch.
    pub last_error: Option<String>,
}

/// The NATS JetStream relay of one process. Cheap to clone; clones share the task. Dropping
/// the last clone without [`NatsRelay::shutdown`] aborts the task, as a crash would.
#[derive(Clone)]
pub struct NatsRelay {
    shared: Arc<Shared>,
    task: Arc<Task>,
}

struct Shared {
    store: Store,
    settings: RelaySettings,
    checkpoints: Checkpoints,
    metrics: RelayMetrics,
    /// The leader's NATS client, for `connected`.
    client: Mutex<Option<async_nats::Client>>,
    last_error: Mutex<Option<String>>,
}

struct Task {
    shutdown: watch::Sender<bool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.get_mut().ok().and_then(Option::take) {
            handle.abort();
        }
    }
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
    /// Starts the relay over `store` (already migrated, including migration 0004): creates
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
            last_error: Mutex::new(None),
        });
        shared.refresh_gauges(None).await;
        let (shutdown, receiver) = watch::channel(false);
        let handle = tokio::spawn(run(Arc::clone(&shared), receiver));
        Ok(Self {
            shared,
            task: Arc::new(Task {
                shutdown,
                handle: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The settings the relay was started with.
    pub fn settings(&self) -> &RelaySettings {
        &self.shared.settings
    }

    /// Whether this process runs the relay right now.
    pub fn is_leading(&self) -> bool {
        self.shared.metrics.leader.get() == 1
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
            last_error: shared.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }

    /// Stops the task: the leader finishes the batch in flight, gives leadership up (so a
    /// replica takes over at once) and closes its connection.
    pub async fn shutdown(&self) {
        let _ = self.task.shutdown.send(true);
        let handle = self.task.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
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

    fn record_error(&self, error: &RelayError) {
        let text = error_chain(error);
        tracing::warn!(error = %text, "NATS relay failed; retrying");
        self.metrics.errors.inc();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(text);
        }
    }

    fn clear_error(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
    }
}

/// The task: lead when possible, run while leading, retry otherwise.
async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let job = shared.settings.leadership_job();
    while !*shutdown.borrow() {
        match shared.store.try_lead(&job).await {
            Ok(Some(leadership)) => {
                shared.set_leading(true);
                Term::new(&shared, leadership, shutdown.clone()).run().await;
                shared.set_leading(false);
                if let Ok(mut client) = shared.client.lock() {
                    *client = None;
                }
                continue;
            }
            Ok(None) => shared.refresh_gauges(None).await,
            Err(error) => shared.record_error(&error.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.settings.follower_retry) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Why a wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// Time to go on.
    Go,
    /// Shutdown was asked for, or leadership was lost: end the term.
    Stop,
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

/// One leadership term.
struct Term<'a> {
    shared: &'a Shared,
    leadership: Option<Leadership>,
    shutdown: watch::Receiver<bool>,
    checked: Instant,
    failures: usize,
}

impl<'a> Term<'a> {
    fn new(shared: &'a Shared, leadership: Leadership, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            shared,
            leadership: Some(leadership),
            shutdown,
            checked: Instant::now(),
            failures: 0,
        }
    }

    async fn run(mut self) {
        let shared = self.shared;
        let mut wakeups = shared.store.wakeups();
        let mut publisher: Option<Publisher> = None;
        let mut cursor: Option<Cursor> = None;
        loop {
            if self.keep_leading().await == Wake::Stop {
                break;
            }
            let step = async {
                let publisher = match &publisher {
                    Some(p) => p,
                    None => {
                        let opened = Publisher::open(&shared.settings).await?;
                        if let Ok(mut client) = shared.client.lock() {
                            *client = Some(opened.client());
                        }
                        publisher.insert(opened)
                    }
                };
                let current = match cursor {
                    Some(c) => c,
                    None => *cursor.insert(self.synchronise(publisher).await?),
                };
                self.batch(publisher, current).await
            };
            match step.await {
                Ok(Step::Published(next)) => {
                    cursor = Some(next);
                    self.failures = 0;
                    shared.clear_error();
                }
                Ok(Step::CaughtUp) => {
                    self.failures = 0;
                    shared.clear_error();
                    tokio::select! {
                        _ = wakeups.changed() => {}
                        () = tokio::time::sleep(shared.settings.poll_interval) => {}
                        _ = self.shutdown.changed() => {}
                    }
                }
                Ok(Step::Contended) => {
                    // Another relay moved the checkpoint: re-check leadership and resync.
                    tracing::warn!("the relay checkpoint was moved by another process");
                    cursor = None;
                    self.check_leadership_now();
                }
                Err(error) => {
                    shared.record_error(&error);
                    if matches!(error, RelayError::Contended) {
                        self.check_leadership_now();
                    }
                    publisher = None;
                    cursor = None;
                    if let Ok(mut client) = shared.client.lock() {
                        *client = None;
                    }
                    self.failures += 1;
                    let delay = backoff_delay(
                        shared.settings.backoff_initial,
                        shared.settings.backoff_max,
                        self.failures,
                    );
                    if self.idle(delay).await == Wake::Stop {
                        break;
                    }
                }
            }
        }
        drop(publisher);
        if let Some(leadership) = self.leadership.take() {
            leadership.release().await;
        }
    }

    /// Renews leadership when due; `Stop` on shutdown or when it was lost.
    async fn keep_leading(&mut self) -> Wake {
        if *self.shutdown.borrow() || self.leadership.is_none() {
            return Wake::Stop;
        }
        if self.checked.elapsed() >= self.shared.settings.leadership_check {
            let Some(leadership) = self.leadership.as_mut() else {
                return Wake::Stop;
            };
            if !leadership.check().await {
                self.leadership = None;
                return Wake::Stop;
            }
            self.checked = Instant::now();
        }
        Wake::Go
    }

    /// Makes the next [`Term::keep_leading`] confirm leadership with the store.
    fn check_leadership_now(&mut self) {
        let interval = self.shared.settings.leadership_check;
        self.checked = Instant::now().checked_sub(interval).unwrap_or(self.checked);
    }

    /// Waits `delay`, renewing leadership meanwhile.
    async fn idle(&mut self, delay: Duration) -> Wake {
        let until = Instant::now() + delay;
        loop {
            if self.keep_leading().await == Wake::Stop {
                return Wake::Stop;
            }
            let now = Instant::now();
            if now >= until {
                return Wake::Go;
            }
            let nap = (until - now).min(self.shared.settings.leadership_check);
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Re-synchronises with the stream: the start-up check of docs/adr/0004-nats-relay.md.
    async fn synchronise(&self, publisher: &Publisher) -> Result<Cursor, RelayError> {
        let shared = self.shared;
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
                Some(event) if event.position == last.position && message_id(event) == last.id => {}
                other => {
                    return Err(RelayError::ForeignStream {
                        stream: shared.settings.stream.name.clone(),
                        id: last.id.clone(),
                        position: last.position,
                        found: other.map_or_else(
                            || "nothing".to_owned(),
                            |e| format!("`{}` at position {}", message_id(e), e.position),
                        ),
                    });
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

    /// Publishes one batch after `cursor` and checkpoints its acknowledged prefix.
    async fn batch(&mut self, publisher: &Publisher, cursor: Cursor) -> Result<Step, RelayError> {
        let shared = self.shared;
        let events = shared
            .store
            .read_feed(cursor.position, shared.settings.batch_size)
            .await?;
        if events.is_empty() {
            shared.refresh_gauges(Some(cursor.position)).await;
            return Ok(Step::CaughtUp);
        }
        // Keep the lease renewed while waiting for acknowledgements.
        let outcome = {
            let publish = publisher.publish(&events, cursor.last_sequence);
            tokio::pin!(publish);
            loop {
                tokio::select! {
                    outcome = &mut publish => break outcome,
                    () = tokio::time::sleep(shared.settings.leadership_check) => {
                        // A lost leadership ends the term after this batch.
                        let _ = self.keep_leading().await;
                    }
                }
            }
        };
        let acknowledged: &[StoredEvent] = &events[..outcome.acknowledged];
        let mut next = cursor;
        if let Some(last) = acknowledged.last() {
            let name = &shared.settings.checkpoint_name;
            if !shared
                .checkpoints
                .advance(name, cursor.position, last.position)
                .await?
            {
                return Ok(Step::Contended);
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
            None => Ok(Step::Published(next)),
        }
    }
}

/// What one step of a term did.
enum Step {
    /// A batch was published and checkpointed; the cursor after it.
    Published(Cursor),
    /// Nothing to publish.
    CaughtUp,
    /// Another relay moved the checkpoint.
    Contended,
}
