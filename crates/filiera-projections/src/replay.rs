//! The offline replay behind `filiera report`: the whole feed read straight from the store
//! into fresh timelines, then folded — no read model, no server. It gives the same documents
//! as the online projection for the same inputs, since both fold timelines built with
//! [`Timeline::apply`] from the same events in the same per-stream order.

use std::collections::HashMap;

use filiera_domain::metrics::series::{breakdown_queries, series_queries};
use filiera_domain::{
    AuditList, AuditQuery, MetricsBreakdown, MetricsQuery, MetricsSeries, ProviderScorecard,
    RecordedEvent, StageCatalogue, TerritoryMetrics, TerritoryRegistry, Timeline,
    provider_scorecard, reiteration_audit, territory_metrics, territory_metrics_many,
};
use filiera_store::Store;

use crate::ProjectionError;

/// Every beneficiary's timeline, built from the feed.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    timelines: HashMap<String, Timeline>,
    position: i64,
}

impl Replay {
    /// Reads the whole feed of `store`, in one scan ([`Store::scan_feed`]: the events are
    /// decoded while earlier ones are applied).
    pub async fn load(store: &Store) -> Result<Self, ProjectionError> {
        let mut replay = Self::default();
        let mut scan = store.scan_feed(replay.position, u64::MAX);
        while let Some(chunk) = scan.next_chunk().await {
            for stored in chunk? {
                replay.position = stored.position;
                let (beneficiary, recorded) = stored.into_recorded();
                replay.apply(beneficiary.to_string(), &recorded);
            }
        }
        Ok(replay)
    }

    /// Applies one event of `beneficiary`'s stream (events of a stream in sequence order).
    pub fn apply(&mut self, beneficiary: String, event: &RecordedEvent) {
        self.timelines
            .entry(beneficiary)
            .or_insert_with_key(|id| Timeline::new(id.clone()))
            .apply(event);
    }

    /// The feed position of the last event read, 0 for an empty feed.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The timelines, by beneficiary id.
    pub fn timelines(&self) -> &HashMap<String, Timeline> {
        &self.timelines
    }

    /// The metrics document for `query`.
    pub fn metrics(
        &self,
        query: &MetricsQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> TerritoryMetrics {
        territory_metrics(self.timelines.values(), query, catalogue, registry)
    }

    /// The monthly series of `query` (SPEC 3.2).
    pub fn series(
        &self,
        query: &MetricsQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> MetricsSeries {
        let queries = series_queries(query);
        MetricsSeries::assemble(self.metrics_many(&queries, catalogue, registry))
    }

    /// The breakdown of `query`'s territory into its direct children (SPEC 3.2).
    pub fn breakdown(
        &self,
        query: &MetricsQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> MetricsBreakdown {
        let queries = breakdown_queries(query, registry);
        let documents = self.metrics_many(&queries, catalogue, registry);
        MetricsBreakdown::assemble(query.territory.clone(), documents)
    }

    /// The documents of several queries, in one pass over the timelines.
    pub fn metrics_many(
        &self,
        queries: &[MetricsQuery],
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> Vec<TerritoryMetrics> {
        territory_metrics_many(self.timelines.values(), queries, catalogue, registry)
    }

    /// The provider scorecard for `query` (SPEC 3.1).
    pub fn scorecard(
        &self,
        query: &MetricsQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> ProviderScorecard {
        provider_scorecard(self.timelines.values(), query, catalogue, registry)
    }

    /// The reiteration audit list for `query`.
    pub fn audit(
        &self,
        query: &AuditQuery,
        catalogue: &StageCatalogue,
        registry: &TerritoryRegistry,
    ) -> AuditList {
        reiteration_audit(self.timelines.values(), query, catalogue, registry)
    }
}

/// `filiera report`: the metrics document for `query`, replayed from the store's feed with the
/// store's catalogue and registry.
pub async fn replay_report(
    store: &Store,
    query: &MetricsQuery,
) -> Result<TerritoryMetrics, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    Ok(replay.metrics(query, &services.catalogue, &services.territories))
}

/// The monthly series of `query` (SPEC 3.2), every point folded from one replay of the
/// store's feed: the document of `GET /v1/metrics/series`.
pub async fn replay_series(
    store: &Store,
    query: &MetricsQuery,
) -> Result<MetricsSeries, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    Ok(replay.series(query, &services.catalogue, &services.territories))
}

/// The breakdown of `query`'s territory into its direct children (SPEC 3.2), every child
/// folded from one replay: the document of `GET /v1/metrics/breakdown`.
pub async fn replay_breakdown(
    store: &Store,
    query: &MetricsQuery,
) -> Result<MetricsBreakdown, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    Ok(replay.breakdown(query, &services.catalogue, &services.territories))
}

/// The provider scorecard for `query` (SPEC 3.1), replayed from the store's feed: the
/// document of `GET /v1/providers/scorecard`.
pub async fn replay_scorecard(
    store: &Store,
    query: &MetricsQuery,
) -> Result<ProviderScorecard, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    Ok(replay.scorecard(query, &services.catalogue, &services.territories))
}

/// The reiteration audit list for `query`, replayed from the store's feed.
pub async fn replay_audit(store: &Store, query: &AuditQuery) -> Result<AuditList, ProjectionError> {
    let replay = Replay::load(store).await?;
    let services = store.services();
    Ok(replay.audit(query, &services.catalogue, &services.territories))
}
