//! [`ProjectionSettings`]: the configuration the projections need, passed in typed by the
//! binary (adapters never read the environment).

use std::sync::Arc;
use std::time::Duration;

use filiera_domain::{PathwayServices, StageCatalogue, TerritoryRegistry};

/// How the projections run and fold.
#[derive(Clone, Debug)]
pub struct ProjectionSettings {
    /// The configured `audit.reiteration_threshold` (SPEC 2.4), for callers building queries;
    /// [`filiera_domain::MetricsQuery::threshold`] is what the fold uses.
    pub threshold: u32,
    /// The stage catalogue: `time_in_stage_days` and `active_at_end` list its stages.
    pub catalogue: Arc<StageCatalogue>,
    /// The territory registry: a query's scope is a territory and its descendants.
    pub registry: Arc<TerritoryRegistry>,
    /// Feed events per batch. Larger batches catch up faster; on SQLite each batch holds the
    /// write connection while it commits.
    pub batch_size: u32,
    /// When a generation is behind (a page of `batch_size` came back full), its batch goes on
    /// reading the feed in one scan until it holds this many timelines, and writes each of
    /// them once (0: pages only). Bounds the memory of a catch-up (about 0.5 KiB per timeline,
    /// twice that while it is written) and, on SQLite, how long its commit holds the write
    /// connection.
    pub catch_up_timelines: usize,
    /// How long the leader waits for a wake-up before polling the feed anyway.
    pub poll_interval: Duration,
    /// How often a process that does not lead tries to take over.
    pub follower_retry: Duration,
    /// How often the leader re-checks (and, on SQLite, renews) its leadership. Must stay well
    /// below the SQLite lease of 5 s.
    pub leadership_check: Duration,
    /// How long the leader waits after a failed batch before trying again (a fixed delay: a
    /// [`filiera_store::jobs::Backoff`] whose initial wait is its longest).
    pub failure_retry: Duration,
    /// How often the query cache refreshes itself in the background (queries also refresh it
    /// before they fold), so that a rebuilt generation is loaded before anyone asks.
    pub cache_refresh: Duration,
}

impl ProjectionSettings {
    /// Settings with the default tuning.
    pub fn new(
        threshold: u32,
        catalogue: Arc<StageCatalogue>,
        registry: Arc<TerritoryRegistry>,
    ) -> Self {
        Self {
            threshold,
            catalogue,
            registry,
            batch_size: 2_000,
            catch_up_timelines: 250_000,
            poll_interval: Duration::from_millis(250),
            follower_retry: Duration::from_secs(1),
            leadership_check: Duration::from_secs(1),
            failure_retry: Duration::from_secs(1),
            cache_refresh: Duration::from_secs(1),
        }
    }

    /// Settings over the catalogue and registry the store decides commands with.
    pub fn from_services(services: &PathwayServices, threshold: u32) -> Self {
        Self::new(
            threshold,
            Arc::clone(&services.catalogue),
            Arc::clone(&services.territories),
        )
    }
}
