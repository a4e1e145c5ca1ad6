//! The metric fold (SPEC 3) and the reiteration audit, over per-beneficiary [`Timeline`]s.
//!
//! Each beneficiary's stream is digested into a [`Timeline`] (one read-model row, updated one
//! event at a time by the projection runner, or built in one go by the offline report); the
//! fold then reads any number of timelines "as known at" an instant, without replaying the
//! aggregate. The module docs of [`timeline`] explain why that is sound; the decisions the fold
//! makes where SPEC 3 leaves room are listed on [`territory_metrics`].
//!
//! # Layout
//! - [`timeline`]: [`RecordedEvent`] (a stored event) and [`Timeline`] (its digest).
//! - `walk`: the single pass over a timeline shared by the fold and the audit.
//! - [`fold`]: [`MetricsQuery`], [`TerritoryMetrics`] and [`territory_metrics`].
//! - [`index`]: [`TimelineIndex`], timelines kept for many folds with their codes resolved once.
//! - [`audit`]: [`AuditQuery`], [`AuditList`] and [`reiteration_audit`].
//! - [`stats`]: [`Stats`] (count, mean, median, p90) and [`OrderedMap`].
//! - [`scorecard`]: [`ProviderScorecard`] and [`provider_scorecard`] (SPEC 3.1).
//! - [`series`]: [`MetricsSeries`] and [`MetricsBreakdown`] (SPEC 3.2), split into one
//!   [`MetricsQuery`] per month or child, folded together by [`territory_metrics_many`].
//! - [`csv`]: [`metrics_to_csv`], the flat rendering for `filiera report --format csv`.
//! - [`event_log`]: [`event_log()`], a beneficiary's events as a query sees them, for the
//!   process-mining exports.
//! - [`regional`]: [`RegionalDocuments`], every document of the printable regional report
//!   folded together by [`regional_documents`].

pub mod audit;
pub mod csv;
pub mod event_log;
pub mod fold;
pub mod index;
pub mod regional;
pub mod scorecard;
pub mod series;
pub mod stats;
pub mod timeline;
mod walk;

#[cfg(test)]
mod tests;

pub use audit::{
    AuditEntry, AuditList, AuditQuery, AuditQueryEcho, AuditTransition, reiteration_audit,
};
pub use csv::metrics_to_csv;
pub use event_log::{Activity, LogScope, LoggedEvent, event_log};
pub use fold::{
    AssessmentCounts, Closures, Durations, MetricsQuery, QueryEcho, ReiterationDistribution,
    ReiterationSummary, TerritoryMetrics, TransitionCell, TransitionCounts,
    TransitionsByOccupability, WAITING, territory_metrics, territory_metrics_many,
};
pub use index::TimelineIndex;
pub use regional::{
    REGIONAL_SERIES_MONTHS, RegionalDocuments, regional_documents, regional_series_query,
};
pub use scorecard::{
    ExitCounts, OccupabilityChange, PLACEMENT_WINDOW_DAYS, ProviderScore, ProviderScorecard,
    provider_scorecard, scorecard_to_csv,
};
pub use series::{
    BreakdownChild, MAX_SERIES_POINTS, MetricsBreakdown, MetricsSeries, SeriesPoint,
    breakdown_to_csv, series_to_csv,
};
pub use stats::{OrderedMap, Stats, percentile};
pub use timeline::{EntryKind, LocalId, RecordedEvent, Timeline, TimelineEntry, TimelineView};
