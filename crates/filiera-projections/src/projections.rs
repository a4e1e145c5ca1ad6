//! [`Projections`]: the handle a process keeps — it runs the projection when it leads, and
//! answers metrics, audit and status queries from its cache whether it leads or not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filiera_domain::{
    AuditList, AuditQuery, MetricsQuery, StageCatalogue, TerritoryMetrics, TerritoryRegistry,
    Timeline, reiteration_audit, territory_metrics,
};
use filiera_store::{Leadership, Store};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cache::{Freshness, TimelineCache};
use crate::read_model::ReadModel;
use crate::runner::Runner;
use crate::status::{
    CacheStatus, ProjectionState, ProjectionStatus, RebuildStarted, RebuildStatus,
};
use crate::{ProjectionError, ProjectionSettings, TERRITORY_METRICS, leadership_job};

/// The projections of one process. Cheap to clone; clones share everything. Dropping the last
/// clone without [`Projections::shutdown`] aborts the background tasks, like a crash would.
#[derive(Clone)]
pub struct Projections {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

/// What the handle and its background tasks share.
struct Shared {
    store: Store,
    settings: ProjectionSettings,
    model: ReadModel,
    cache: Arc<TimelineCache>,
    /// This process runs the projection.
    leader: AtomicBool,
    /// [`Projections::shutdown`] was called.
    stopped: AtomicBool,
    /// The runner's last failure, cleared by its next successful step.
    last_error: Mutex<Option<String>>,
    /// Events this process applied, per generation.
    applied: Mutex<BTreeMap<i64, u64>>,
    /// Wakes the runner early (a rebuild was requested in this process).
    nudge: Notify,
}

/// The background tasks; aborted when the last handle goes.
struct Tasks {
    shutdown: watch::Sender<bool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in self
            .handles
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            handle.abort();
        }
    }
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("store", &self.shared.store)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl Projections {
    /// Starts the projections over `store` (already migrated): creates the first generation if
    /// there is none, then spawns the runner (which leads or waits to lead) and the cache's
    /// background refresh.
    pub async fn start(
        store: Store,
        settings: ProjectionSettings,
    ) -> Result<Self, ProjectionError> {
        let model = ReadModel::new(&store);
        model.initialize(TERRITORY_METRICS).await?;
        let shared = Arc::new(Shared {
            cache: Arc::new(TimelineCache::new(TERRITORY_METRICS, model.clone())),
            store,
            settings,
            model,
            leader: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            last_error: Mutex::new(None),
            applied: Mutex::new(BTreeMap::new()),
            nudge: Notify::new(),
        });
        let (shutdown, _) = watch::channel(false);
        let runner = tokio::spawn(run(Arc::clone(&shared), shutdown.subscribe()));
        let refresher = tokio::spawn(refresh_cache(Arc::clone(&shared), shutdown.subscribe()));
        Ok(Self {
            shared,
            tasks: Arc::new(Tasks {
                shutdown,
                handles: Mutex::new(vec![runner, refresher]),
            }),
        })
    }

    /// The settings the projections were started with.
    pub fn settings(&self) -> &ProjectionSettings {
        &self.shared.settings
    }

    /// The metrics document of SPEC 3 for `query` (its `threshold` is used as given), from the
    /// cache refreshed first.
    #[tracing::instrument(name = "projections.metrics", level = "debug", skip_all, fields(territory = ?query.territory))]
    pub async fn metrics(&self, query: MetricsQuery) -> Result<TerritoryMetrics, ProjectionError> {
        self.fold(move |timelines, catalogue, registry| {
            territory_metrics(timelines, &query, catalogue, registry)
        })
        .await
    }

    /// The reiteration audit list for `query`, from the cache refreshed first.
    #[tracing::instrument(name = "projections.audit", level = "debug", skip_all, fields(territory = ?query.territory))]
    pub async fn audit(&self, query: AuditQuery) -> Result<AuditList, ProjectionError> {
        self.fold(move |timelines, catalogue, registry| {
            reiteration_audit(timelines, &query, catalogue, registry)
        })
        .await
    }

    /// Refreshes the cache, then runs `f` over its timelines on the blocking pool.
    async fn fold<R, F>(&self, f: F) -> Result<R, ProjectionError>
    where
        F: FnOnce(
                std::collections::hash_map::Values<'_, String, Timeline>,
                &StageCatalogue,
                &TerritoryRegistry,
            ) -> R
            + Send
            + 'static,
        R: Send + 'static,
    {
        let shared = &self.shared;
        shared.cache.refresh(Freshness::Incremental).await?;
        let catalogue = Arc::clone(&shared.settings.catalogue);
        let registry = Arc::clone(&shared.settings.registry);
        shared
            .cache
            .read(move |state| f(state.timelines.values(), &catalogue, &registry))
            .await
    }

    /// Every projection's generation, checkpoint, lag and state, as seen from this process.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let shared = &self.shared;
        let generations = shared.model.generations(TERRITORY_METRICS).await?;
        let head = shared.store.head().await?;
        let (generation, position) = generations
            .active
            .as_ref()
            .map_or((0, 0), |g| (g.generation, g.position));
        let lag = feed_lag(&shared.store, position, head).await?;
        let rebuilding = match &generations.building {
            Some(b) => Some(RebuildStatus {
                generation: b.generation,
                position: b.position,
                lag: feed_lag(&shared.store, b.position, head).await?,
                started_at: b.started_at,
            }),
            None => None,
        };
        let error = shared.last_error.lock().map(|e| e.clone()).unwrap_or(None);
        let state = if shared.stopped.load(Ordering::Acquire) {
            ProjectionState::Stopped
        } else if error.is_some() {
            ProjectionState::Failing
        } else if rebuilding.is_some() {
            ProjectionState::Rebuilding
        } else if lag > 0 {
            ProjectionState::CatchingUp
        } else {
            ProjectionState::Live
        };
        let cache = match shared.cache.loaded().await {
            (Some(generation), position) => Some(CacheStatus {
                generation,
                position,
            }),
            (None, _) => None,
        };
        Ok(vec![ProjectionStatus {
            name: TERRITORY_METRICS.to_owned(),
            generation,
            position,
            head,
            lag,
            state,
            leader: shared.leader.load(Ordering::Acquire),
            rebuilding,
            cache,
            error,
        }])
    }

    /// Starts rebuilding projection `name` from the start of the feed into a new generation,
    /// which whichever process leads fills alongside the current one and swaps in once it has
    /// caught up. Queries keep answering from the current generation meanwhile.
    #[tracing::instrument(name = "projections.rebuild", skip(self))]
    pub async fn rebuild(&self, name: &str) -> Result<RebuildStarted, ProjectionError> {
        let name = crate::projection_name(name)?;
        match self.shared.model.start_rebuild(name).await? {
            Ok(generation) => {
                tracing::info!(projection = name, generation, "rebuild requested");
                self.shared.nudge.notify_one();
                Ok(RebuildStarted {
                    name: name.to_owned(),
                    generation,
                })
            }
            Err(generation) => Err(ProjectionError::AlreadyRebuilding {
                name: name.to_owned(),
                generation,
            }),
        }
    }

    /// Waits until the projection has applied every event committed before the call and this
    /// process's cache holds them (for tests, and for the CLI after a write).
    pub async fn wait_until_caught_up(&self, timeout: Duration) -> Result<(), ProjectionError> {
        let shared = &self.shared;
        let deadline = Instant::now() + timeout;
        let target = shared.store.head().await?;
        loop {
            let generations = shared.model.generations(TERRITORY_METRICS).await?;
            if generations.active.is_some_and(|g| g.position >= target) {
                shared.cache.refresh(Freshness::Current).await?;
                if shared.cache.loaded().await.1 >= target {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ProjectionError::Timeout {
                    name: TERRITORY_METRICS.to_owned(),
                    target,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this process runs the projection now.
    pub fn is_leader(&self) -> bool {
        self.shared.leader.load(Ordering::Acquire)
    }

    /// Events this process's runner applied since it started, per generation (for telemetry
    /// and tests: over every process, each event is applied once per generation).
    pub fn applied_events(&self) -> BTreeMap<i64, u64> {
        self.shared
            .applied
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Stops the background tasks, letting the runner finish its batch and give up
    /// leadership so another process takes over at once. Queries keep working (from the
    /// database through the cache) after it.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        let _ = self.tasks.shutdown.send(true);
        let handles = self
            .tasks
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for handle in handles {
            let _ = handle.await;
        }
    }
}

/// The runner task: lead when possible, run while leading, retry otherwise.
async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let job = leadership_job(TERRITORY_METRICS);
    while !*shutdown.borrow() {
        match shared.store.try_lead(&job).await {
            Ok(Some(leadership)) => {
                shared.leader.store(true, Ordering::Release);
                lead(&shared, leadership, &mut shutdown).await;
                shared.leader.store(false, Ordering::Release);
                continue;
            }
            // Another process runs it: nothing is failing here.
            Ok(None) => clear_error(&shared),
            Err(error) => record_error(&shared, &error.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(shared.settings.follower_retry) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs the projection while this process leads: steps as long as there is work, then waits
/// for a wake-up, a poll tick or a local rebuild request.
async fn lead(shared: &Shared, mut leadership: Leadership, shutdown: &mut watch::Receiver<bool>) {
    let settings = &shared.settings;
    let mut wakeups = shared.store.wakeups();
    let mut checked = Instant::now();
    let mut runner = match Runner::new(&shared.store, TERRITORY_METRICS, settings.batch_size) {
        Ok(runner) => runner,
        Err(error) => {
            record_error(shared, &error);
            leadership.release().await;
            return;
        }
    };
    loop {
        if *shutdown.borrow() {
            leadership.release().await;
            return;
        }
        if checked.elapsed() >= settings.leadership_check {
            if !leadership.check().await {
                return;
            }
            checked = Instant::now();
        }
        let more = match runner.step().await {
            Ok(report) => {
                clear_error(shared);
                let mut applied = shared.applied.lock().unwrap_or_else(|e| e.into_inner());
                for batch in [&report.active, &report.building].into_iter().flatten() {
                    if batch.committed && batch.events > 0 {
                        *applied.entry(batch.generation).or_default() += batch.events as u64;
                    }
                }
                report.more_to_do()
            }
            Err(error) => {
                record_error(shared, &error);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if more {
            // Let other tasks in between batches of a long catch-up.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = wakeups.changed() => {}
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = shared.nudge.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Keeps the query cache warm, so that a swapped-in generation is loaded in the background
/// before queries need it.
async fn refresh_cache(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(error) = shared.cache.refresh(Freshness::Incremental).await {
            tracing::debug!(error = %error, "background cache refresh failed");
        }
        tokio::select! {
            () = tokio::time::sleep(shared.settings.cache_refresh) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn record_error(shared: &Shared, error: &ProjectionError) {
    tracing::warn!(
        projection = TERRITORY_METRICS,
        error = %error,
        cause = ?std::error::Error::source(error),
        "projection runner failed; retrying"
    );
    if let Ok(mut last) = shared.last_error.lock() {
        *last = Some(filiera_store::error_chain(error));
    }
}

fn clear_error(shared: &Shared) {
    if let Ok(mut last) = shared.last_error.lock() {
        *last = None;
    }
}

/// Feed events after `position`: none when it is the head (the usual, live case, answered
/// without counting), else counted, since positions may have gaps.
pub(crate) async fn feed_lag(
    store: &Store,
    position: i64,
    head: i64,
) -> Result<u64, ProjectionError> {
    if position >= head {
        return Ok(0);
    }
    Ok(store.count_after(position).await?)
}
