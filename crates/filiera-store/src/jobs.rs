//! Leader-only background jobs: the one runner behind every job that must run in exactly one
//! process at a time (a projection's runner, the NATS relay).
//!
//! [`spawn_leader_job`] starts a task that leads or waits to lead (see [`Store::try_lead`]):
//! - while another process leads, it tries to take over every `follower_retry`, so a replica
//!   takes over within seconds when the leader dies;
//! - while leading, it runs the job's [`LeaderJob::step`]s, confirms (on SQLite, renews) its
//!   leadership every `leadership_check` — also while a long step is in flight — and ends the
//!   term when leadership is lost;
//! - after a failed step it waits with one retry policy, [`Backoff`] (exponential with a cap; a
//!   fixed delay is `initial = max`), keeping its leadership renewed meanwhile;
//! - on [`JobHandle::shutdown`] it lets the step in flight finish and gives leadership up, so
//!   that another process takes over at once. Dropping the last handle aborts it, as a crash
//!   would.
//!
//! The handle tells whether this process leads and the job's last failure (the error chain,
//! cleared by the next successful step), for status documents.
//!
//! This module also holds [`RelayStatus`] and [`StatusSource`], so that the HTTP layer can
//! show the NATS relay's state without depending on the NATS adapter.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Leadership, Store, StoreError, error_chain};

/// The retry policy after a failure: `initial`, doubled after each further consecutive
/// failure, up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after a first failure.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The same wait after every failure.
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            max: delay,
        }
    }

    /// The wait after `failures` consecutive failures (1 for the first): `initial ×
    /// 2^(failures−1)`, capped at `max`.
    pub fn delay(&self, failures: usize) -> Duration {
        let exponent = u32::try_from(failures.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }
}

/// What a feed-following job waits for when it has caught up: a wake-up from the store (a
/// commit, in this process or, on PostgreSQL, another), `poll` elapsed (a missed wake-up), or
/// `also` (e.g. a local request).
pub async fn wait_for_feed(
    wakeups: Option<&mut watch::Receiver<i64>>,
    poll: Duration,
    also: impl Future<Output = ()>,
) {
    let woken = async {
        match wakeups {
            Some(wakeups) => {
                let _ = wakeups.changed().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = woken => {}
        () = tokio::time::sleep(poll) => {}
        () = also => {}
    }
}

/// How a leader-only job leads, waits and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSettings {
    /// How often a process that does not lead tries to take over.
    pub follower_retry: Duration,
    /// How often the leader confirms (on SQLite, renews) its leadership. Must stay well below
    /// the SQLite lease of [`crate::lease::SQLITE_LEASE_TTL`].
    pub leadership_check: Duration,
    /// The wait after a failed step.
    pub backoff: Backoff,
}

/// What a step of a job did, telling the runner what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Work was done and more may be waiting: step again right away.
    Worked,
    /// Nothing left to do: wait for [`LeaderJob::wait`] before the next step.
    CaughtUp,
    /// Another process changed the job's shared state (a checkpoint it also writes): confirm
    /// leadership before the next step.
    Contended,
}

/// A job that runs only in the process leading it. The runner calls the hooks in this order:
/// [`LeaderJob::follow`] while another process leads; once leadership is won,
/// [`LeaderJob::lead`], then [`LeaderJob::step`]s (with [`LeaderJob::wait`] after a
/// [`Step::CaughtUp`] and [`LeaderJob::failed`] after an error), then [`LeaderJob::resign`]
/// when the term ends.
pub trait LeaderJob: Send + 'static {
    /// Why a step failed; a failure to lead (the store) converts into it.
    type Error: std::error::Error + From<StoreError> + Send + Sync + 'static;

    /// Leadership was won: a term begins (start from a clean state).
    fn lead(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// One unit of work while leading.
    fn step(&mut self) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Waits for more work after [`Step::CaughtUp`]: a wake-up, a poll tick. The runner also
    /// ends the wait on shutdown.
    fn wait(&mut self) -> impl Future<Output = ()> + Send;

    /// A step, or an attempt to lead, failed (the runner has logged and recorded it, and waits
    /// [`JobSettings::backoff`] next when leading). Returns whether leadership must be
    /// confirmed before the next step.
    fn failed(&mut self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The term ends: leadership was lost, or is given up (on shutdown) right after this.
    fn resign(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Another process leads: called after each attempt to take over that found it so.
    fn follow(&mut self, state: &JobState) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }
}

/// What a running job shows: whether this process leads it, and its last failure.
#[derive(Debug, Default)]
pub struct JobState {
    leading: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl JobState {
    /// Whether this process leads the job now.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// The job's last failure, as an error chain; cleared by its next successful step.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the last failure.
    pub fn clear_error(&self) {
        self.set_error(None);
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn record(&self, job: &str, error: &dyn std::error::Error) {
        let text = error_chain(error);
        tracing::warn!(job, error = %text, "job failed; retrying");
        self.set_error(Some(text));
    }
}

/// The shutdown signal a background task watches.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Whether shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown is asked for.
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `delay` unless shutdown comes first; false if it did.
    pub async fn sleep(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.is_stopping(),
            () = self.stopped() => false,
        }
    }
}

/// A background task of this process: stopped with [`TaskHandle::shutdown`], aborted (as a
/// crash would) when the last clone of its handle is dropped. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskHandle {
    inner: Arc<TaskInner>,
}

#[derive(Debug)]
struct TaskInner {
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for TaskInner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Spawns `task`, which must end soon after its [`Shutdown`] says so.
pub fn spawn_task<F, Fut>(task: F) -> TaskHandle
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (shutdown, receiver) = watch::channel(false);
    let task = tokio::spawn(task(Shutdown(receiver)));
    TaskHandle {
        inner: Arc::new(TaskInner {
            shutdown,
            task: Mutex::new(Some(task)),
        }),
    }
}

impl TaskHandle {
    /// Asks the task to stop and waits until it has.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// A running leader-only job (see [`spawn_leader_job`]). Cheap to clone; dropping the last
/// clone without [`JobHandle::shutdown`] aborts the job, as a crash would.
#[derive(Clone, Debug)]
pub struct JobHandle {
    task: TaskHandle,
    state: Arc<JobState>,
}

impl JobHandle {
    /// Whether this process leads the job now.
    pub fn is_leading(&self) -> bool {
        self.state.is_leading()
    }

    /// The job's last failure (an error chain), cleared by its next successful step.
    pub fn last_error(&self) -> Option<String> {
        self.state.last_error()
    }

    /// Stops the job: the step in flight finishes, then leadership is given up so that another
    /// process takes over at once.
    pub async fn shutdown(&self) {
        self.task.shutdown().await;
    }
}

/// Starts `job` under the leadership `name` of `store`: a background task that leads or waits
/// to lead, runs the job while leading and retries after failures, as `settings` say.
pub fn spawn_leader_job<J: LeaderJob>(
    store: Store,
    name: impl Into<String>,
    settings: JobSettings,
    job: J,
) -> JobHandle {
    let name = name.into();
    let state = Arc::new(JobState::default());
    let shared = Arc::clone(&state);
    let task = spawn_task(move |shutdown| run(store, name, settings, job, shared, shutdown));
    JobHandle { task, state }
}

/// The task: lead when possible, run while leading, retry otherwise.
async fn run<J: LeaderJob>(
    store: Store,
    name: String,
    settings: JobSettings,
    mut job: J,
    state: Arc<JobState>,
    mut shutdown: Shutdown,
) {
    while !shutdown.is_stopping() {
        match store.try_lead(&name).await {
            Ok(Some(leadership)) => {
                state.leading.store(true, Ordering::Release);
                job.lead().await;
                Term {
                    name: &name,
                    settings: &settings,
                    state: &state,
                    leadership: Some(leadership),
                    checked: Instant::now(),
                    confirm: false,
                    shutdown: &mut shutdown,
                }
                .run(&mut job)
                .await;
                state.leading.store(false, Ordering::Release);
                continue;
            }
            Ok(None) => job.follow(&state).await,
            Err(error) => {
                let error = J::Error::from(error);
                state.record(&name, &error);
                job.failed(&error);
            }
        }
        shutdown.sleep(settings.follower_retry).await;
    }
}

/// One leadership term.
struct Term<'a> {
    name: &'a str,
    settings: &'a JobSettings,
    state: &'a JobState,
    /// `None` once leadership was found lost.
    leadership: Option<Leadership>,
    /// When leadership was last confirmed.
    checked: Instant,
    /// Confirm leadership before the next step, whenever it was last confirmed.
    confirm: bool,
    shutdown: &'a mut Shutdown,
}

impl Term<'_> {
    async fn run<J: LeaderJob>(mut self, job: &mut J) {
        let mut failures = 0;
        while self.keep_leading().await {
            let outcome = self.renewing(job.step()).await;
            match outcome {
                Ok(Step::Worked) => {
                    failures = 0;
                    self.state.clear_error();
                    // Let other tasks in between the steps of a long catch-up.
                    tokio::task::yield_now().await;
                }
                Ok(Step::CaughtUp) => {
                    failures = 0;
                    self.state.clear_error();
                    if self.leadership.is_some() {
                        tokio::select! {
                            () = job.wait() => {}
                            () = self.shutdown.stopped() => {}
                        }
                    }
                }
                Ok(Step::Contended) => self.confirm = true,
                Err(error) => {
                    self.state.record(self.name, &error);
                    if job.failed(&error) {
                        self.confirm = true;
                    }
                    failures += 1;
                    self.idle(self.settings.backoff.delay(failures)).await;
                }
            }
        }
        job.resign().await;
        // Still held only on shutdown: give it up so that another process takes over at once.
        if let Some(leadership) = self.leadership.take() {
            leadership.release().await;
        }
    }

    /// Confirms leadership when due; false on shutdown or once it is lost.
    async fn keep_leading(&mut self) -> bool {
        if self.shutdown.is_stopping() {
            return false;
        }
        let Some(leadership) = self.leadership.as_mut() else {
            return false;
        };
        if self.confirm || self.checked.elapsed() >= self.settings.leadership_check {
            let still = leadership.check().await;
            self.confirmed(still);
        }
        self.leadership.is_some()
    }

    fn confirmed(&mut self, still: bool) {
        self.confirm = false;
        if still {
            self.checked = Instant::now();
        } else {
            self.leadership = None;
        }
    }

    /// Runs `work`, confirming leadership every `leadership_check` while it is in flight (a
    /// lost leadership ends the term after it). Both are polled together: on SQLite the check
    /// may wait for the connection the work holds.
    async fn renewing<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(self.settings.leadership_check) => {}
            }
            let Some(leadership) = self.leadership.as_mut() else {
                return work.await;
            };
            let (done, still) = {
                let mut check = pin!(leadership.check());
                tokio::select! {
                    still = &mut check => (None, still),
                    out = &mut work => (Some(out), check.await),
                }
            };
            self.confirmed(still);
            if let Some(out) = done {
                return out;
            }
        }
    }

    /// Waits `delay` (after a failure), confirming leadership meanwhile.
    async fn idle(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        while self.keep_leading().await {
            let now = Instant::now();
            if now >= until {
                return;
            }
            let nap = (until - now).min(self.settings.leadership_check);
            self.shutdown.sleep(nap).await;
        }
    }
}

// Defined here, beside the runner the relay runs on, so that the HTTP layer shows it without
// depending on the NATS adapter; `filiera-relay` fills it. (Not a `///` comment: the doc comment
// is the OpenAPI description.)
/// The NATS relay's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelayStatus {
    /// This process runs the relay (holds the `relay:nats` leadership).
    pub leading: bool,
    /// This process, as the leader, has a live connection to NATS; `false` when not leading.
    pub connected: bool,
    /// The checkpoint: global position of the last event published and acknowledged.
    pub position: i64,
    /// The feed head: the highest global position stored.
    pub head: i64,
    /// `head − position`: an upper bound on the events not yet published.
    pub lag: i64,
    /// Messages this process published and saw acknowledged since it started.
    pub published_total: u64,
    /// Failed publish attempts (and failed connections) in this process since it started.
    pub publish_errors_total: u64,
    /// The latest failure, cleared by the next successful batch.
    pub last_error: Option<String>,
}

/// A boxed error, for [`StatusSource`]s of any crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something whose status document of type `T` can be read, for layers that show it without
/// depending on the crate that produces it (the HTTP layer and the NATS relay's
/// [`RelayStatus`]).
pub trait StatusSource<T>: Send + Sync + 'static {
    /// The current status.
    fn status(&self) -> Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + '_>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let delays: Vec<u128> = (1..=8).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.delay(usize::MAX), Duration::from_secs(5));
        let fixed = Backoff::fixed(Duration::from_secs(1));
        assert!((1..10).all(|n| fixed.delay(n) == Duration::from_secs(1)));
    }
}
