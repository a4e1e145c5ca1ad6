//! [`Projections`]: the handle a process keeps — it runs the projection when it leads, and
//! answers metrics, audit and status queries from its cache whether it leads or not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filiera_domain::metrics::series::{breakdown_queries, series_queries};
use filiera_domain::{
    AuditList, AuditQuery, MetricsBreakdown, MetricsQuery, MetricsSeries, ProviderScorecard,
    StageCatalogue, TerritoryMetrics, TerritoryRegistry, TimelineIndex, provider_scorecard,
    reiteration_audit,
};
use filiera_store::Store;
use filiera_store::jobs::{
    self, Backoff, JobHandle, JobSettings, JobState, LeaderJob, Shutdown, Step, TaskHandle,
};
use tokio::sync::{Notify, watch};
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
    /// The runner, a leader-only job.
    runner: JobHandle,
    /// The cache's background refresh.
    refresher: TaskHandle,
}

/// What the handle and its background tasks share.
struct Shared {
    store: Store,
    settings: ProjectionSettings,
    model: ReadModel,
    cache: Arc<TimelineCache>,
    /// [`Projections::shutdown`] was called.
    stopped: AtomicBool,
    /// Events this process applied, per generation.
    applied: Mutex<BTreeMap<i64, u64>>,
    /// Wakes the runner early (a rebuild was requested in this process).
    nudge: Notify,
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
            stopped: AtomicBool::new(false),
            applied: Mutex::new(BTreeMap::new()),
            nudge: Notify::new(),
        });
        let settings = &shared.settings;
        let job = JobSettings {
            follower_retry: settings.follower_retry,
            leadership_check: settings.leadership_check,
            backoff: Backoff::fixed(settings.failure_retry),
        };
        let runner = jobs::spawn_leader_job(
            shared.store.clone(),
            leadership_job(TERRITORY_METRICS),
            job,
            RunnerJob {
                shared: Arc::clone(&shared),
                runner: None,
                wakeups: None,
            },
        );
        let refresher = jobs::spawn_task({
            let shared = Arc::clone(&shared);
            move |shutdown| refresh_cache(shared, shutdown)
        });
        Ok(Self {
            shared,
            runner,
            refresher,
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
            timelines.territory_metrics(&query, catalogue, registry)
        })
        .await
    }

    /// The metrics documents of several queries (a series' months, a breakdown's children), all
    /// from one refresh of the cache and one snapshot of it, so that they agree with each other
    /// whatever is written meanwhile, folded in one pass over the timelines.
    #[tracing::instrument(name = "projections.metrics_many", level = "debug", skip_all, fields(queries = queries.len()))]
    pub async fn metrics_many(
        &self,
        queries: Vec<MetricsQuery>,
    ) -> Result<Vec<TerritoryMetrics>, ProjectionError> {
        self.fold(move |timelines, catalogue, registry| {
            timelines.territory_metrics_many(&queries, catalogue, registry)
        })
        .await
    }

    /// The monthly series of `query` (SPEC 3.2): every month from one snapshot of the cache.
    pub async fn series(&self, query: &MetricsQuery) -> Result<MetricsSeries, ProjectionError> {
        let documents = self.metrics_many(series_queries(query)).await?;
        Ok(MetricsSeries::assemble(documents))
    }

    /// The breakdown of `query`'s territory into its direct children (SPEC 3.2): every child
    /// from one snapshot of the cache.
    pub async fn breakdown(
        &self,
        query: &MetricsQuery,
    ) -> Result<MetricsBreakdown, ProjectionError> {
        let queries = breakdown_queries(query, &self.shared.settings.registry);
        let documents = self.metrics_many(queries).await?;
        Ok(MetricsBreakdown::assemble(
            query.territory.clone(),
            documents,
        ))
    }

    /// The provider scorecard for `query` (SPEC 3.1), from the cache refreshed first.
    #[tracing::instrument(name = "projections.scorecard", level = "debug", skip_all, fields(territory = ?query.territory))]
    pub async fn scorecard(
        &self,
        query: MetricsQuery,
    ) -> Result<ProviderScorecard, ProjectionError> {
        self.fold(move |timelines, catalogue, registry| {
            provider_scorecard(timelines.views(), &query, catalogue, registry)
        })
        .await
    }

    /// The reiteration audit list for `query`, from the cache refreshed first.
    #[tracing::instrument(name = "projections.audit", level = "debug", skip_all, fields(territory = ?query.territory))]
    pub async fn audit(&self, query: AuditQuery) -> Result<AuditList, ProjectionError> {
        self.fold(move |timelines, catalogue, registry| {
            reiteration_audit(timelines.views(), &query, catalogue, registry)
        })
        .await
    }

    /// The printable regional report's documents for `query` (metrics, the series of its last
    /// months, the breakdown, the audit list), all from one snapshot of the cache, with the
    /// checkpoint of that snapshot.
    #[tracing::instrument(name = "projections.regional", level = "debug", skip_all, fields(territory = ?query.territory))]
    pub async fn regional(
        &self,
        query: MetricsQuery,
    ) -> Result<crate::RegionalSnapshot, ProjectionError> {
        let (documents, position) = self
            .fold_at(move |timelines, catalogue, registry| {
                filiera_domain::regional_documents(timelines.views(), &query, catalogue, registry)
            })
            .await?;
        crate::RegionalSnapshot::at(&self.shared.store, documents, position).await
    }

    /// Refreshes the cache, then runs `f` over its timelines on the blocking pool.
    async fn fold<R, F>(&self, f: F) -> Result<R, ProjectionError>
    where
        F: FnOnce(&TimelineIndex, &StageCatalogue, &TerritoryRegistry) -> R + Send + 'static,
        R: Send + 'static,
    {
        Ok(self.fold_at(f).await?.0)
    }

    /// [`Self::fold`], with the checkpoint of the snapshot folded.
    async fn fold_at<R, F>(&self, f: F) -> Result<(R, i64), ProjectionError>
    where
        F: FnOnce(&TimelineIndex, &StageCatalogue, &TerritoryRegistry) -> R + Send + 'static,
        R: Send + 'static,
    {
        let shared = &self.shared;
        shared.cache.refresh(Freshness::Incremental).await?;
        if shared.cache.is_outdated().await.is_some() {
            // A rebuilt generation may have been swapped in since: load it here rather than
            // answer from the outdated one.
            shared.cache.refresh(Freshness::Current).await?;
            if let Some((generation, format)) = shared.cache.is_outdated().await {
                return Err(ProjectionError::Outdated {
                    name: TERRITORY_METRICS.to_owned(),
                    generation,
                    format,
                    current: crate::read_model::FORMAT,
                });
            }
        }
        let catalogue = Arc::clone(&shared.settings.catalogue);
        let registry = Arc::clone(&shared.settings.registry);
        shared
            .cache
            .read(move |state| {
                // Checked again on the snapshot folded: a background reload may have installed
                // another generation since.
                if let Some(generation) = state.generation
                    && state.format < crate::read_model::FORMAT
                {
                    return Err(ProjectionError::Outdated {
                        name: TERRITORY_METRICS.to_owned(),
                        generation,
                        format: state.format,
                        current: crate::read_model::FORMAT,
                    });
                }
                Ok((f(&state.timelines, &catalogue, &registry), state.position))
            })
            .await?
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
        let error = self.runner.last_error();
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
            leader: self.runner.is_leading(),
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
        self.runner.is_leading()
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
        self.runner.shutdown().await;
        self.refresher.shutdown().await;
    }
}

/// How long the runner lets writes gather after it is woken, at most that much added to the
/// projection's lag.
const SETTLE: Duration = Duration::from_millis(10);

/// The runner as a leader-only job: while this process leads, steps as long as there is work,
/// then waits for a wake-up, a poll tick or a local rebuild request.
struct RunnerJob {
    shared: Arc<Shared>,
    /// The runner of this leadership term, created by its first step.
    runner: Option<Runner>,
    /// The store's wake-ups, during a term.
    wakeups: Option<watch::Receiver<i64>>,
}

impl LeaderJob for RunnerJob {
    type Error = ProjectionError;

    async fn lead(&mut self) {
        self.runner = None;
        self.wakeups = Some(self.shared.store.wakeups());
    }

    async fn step(&mut self) -> Result<Step, ProjectionError> {
        let shared = &self.shared;
        let runner = match &mut self.runner {
            Some(runner) => runner,
            None => self.runner.insert(
                Runner::new(&shared.store, TERRITORY_METRICS, shared.settings.batch_size)?
                    .catching_up_by(shared.settings.catch_up_timelines),
            ),
        };
        let report = runner.step().await?;
        let mut applied = shared.applied.lock().unwrap_or_else(|e| e.into_inner());
        for batch in [&report.active, &report.building].into_iter().flatten() {
            if batch.committed && batch.events > 0 {
                *applied.entry(batch.generation).or_default() += batch.events as u64;
            }
        }
        Ok(if report.more_to_do() {
            Step::Worked
        } else {
            Step::CaughtUp
        })
    }

    async fn wait(&mut self) {
        let shared = &self.shared;
        jobs::wait_for_feed(
            self.wakeups.as_mut(),
            shared.settings.poll_interval,
            shared.nudge.notified(),
        )
        .await;
        // Under a stream of writes one commit is followed by more within milliseconds: a
        // moment's wait lets one step (a feed page, a timeline load, an upsert, a commit) take
        // them together instead of one step per commit competing with the writers.
        tokio::time::sleep(SETTLE).await;
    }

    async fn resign(&mut self) {
        self.runner = None;
        self.wakeups = None;
    }

    async fn follow(&mut self, state: &JobState) {
        // Another process runs it: nothing is failing here.
        state.clear_error();
    }
}

/// Keeps the query cache warm, so that a swapped-in generation is loaded in the background
/// before queries need it.
async fn refresh_cache(shared: Arc<Shared>, mut shutdown: Shutdown) {
    while !shutdown.is_stopping() {
        if let Err(error) = shared.cache.refresh(Freshness::Incremental).await {
            tracing::debug!(error = %error, "background cache refresh failed");
        }
        shutdown.sleep(shared.settings.cache_refresh).await;
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
