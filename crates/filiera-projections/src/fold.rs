//! The domain fold over the cache, skipping the timelines a scoped query cannot see.
//!
//! Every fact of a timeline, and its territory at `to`, is attributed to one of the territory
//! codes the timeline names (`Timeline::territories`). A timeline naming no territory of the
//! query's subtree therefore contributes nothing to the metrics nor to the audit list, and is
//! skipped before the fold walks it. The offline replay does not skip anything, so the tests
//! comparing the two also check this.

use std::collections::BTreeSet;

use filiera_domain::{
    AuditList, AuditQuery, MetricsQuery, StageCatalogue, TerritoryCode, TerritoryMetrics,
    TerritoryRegistry, Timeline, reiteration_audit, territory_metrics,
};

/// The territories a query can see; `None` for everything.
struct Scope(Option<BTreeSet<TerritoryCode>>);

impl Scope {
    fn new(territory: Option<&TerritoryCode>, registry: &TerritoryRegistry) -> Self {
        Self(territory.map(|code| registry.descendants_or_self(code)))
    }

    fn sees(&self, timeline: &Timeline) -> bool {
        match &self.0 {
            None => true,
            Some(codes) => timeline.territories().iter().any(|c| codes.contains(c)),
        }
    }
}

/// `territory_metrics` over the timelines the query can see.
pub fn metrics<'a>(
    timelines: impl IntoIterator<Item = &'a Timeline>,
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> TerritoryMetrics {
    let scope = Scope::new(query.territory.as_ref(), registry);
    let visible = timelines.into_iter().filter(|t| scope.sees(t));
    territory_metrics(visible, query, catalogue, registry)
}

/// `reiteration_audit` over the timelines the query can see.
pub fn audit<'a>(
    timelines: impl IntoIterator<Item = &'a Timeline>,
    query: &AuditQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> AuditList {
    let scope = Scope::new(query.territory.as_ref(), registry);
    let visible = timelines.into_iter().filter(|t| scope.sees(t));
    reiteration_audit(visible, query, catalogue, registry)
}
