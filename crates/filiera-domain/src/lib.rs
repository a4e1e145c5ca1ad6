//! The domain of filiera, free of I/O: what a pathway is, which commands it accepts, which
//! events it records, how stage entries are classified, and how metrics are folded from events.
//!
//! # Layout
//! - [`catalogue`]: the stage catalogue (codes, labels, levels).
//! - [`territory`]: the territory registry, a tree of codes.
//! - [`provider`]: the optional provider registry stage entries name.
//! - [`event`]: [`PathwayEvent`] and its value types, including [`Transition`].
//! - [`evolution`]: the versions of the stored events, the upcasters from older versions, and
//!   the decoder every reader of stored rows goes through.
//! - [`command`]: [`PathwayCommand`], what operators ask for.
//! - [`date`]: the one written form of a date (`YYYY-MM-DD`), with errors naming it.
//! - [`state`]: [`PathwayState`], the fold of a stream's non-voided events.
//! - [`aggregate`]: the [`Pathway`] aggregate (cqrs-es) enforcing the rules.
//! - [`error`]: [`PathwayError`] (a refused command) and [`ConfigError`].
//! - [`metrics`]: the metric fold over per-beneficiary [`Timeline`]s, and the reiteration audit.

pub mod aggregate;
pub mod catalogue;
pub mod command;
pub mod date;
pub mod error;
pub mod event;
pub mod evolution;
pub mod metrics;
pub mod provider;
pub mod state;
pub mod territory;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod aggregate_tests;

pub use aggregate::{
    Clock, EARLIEST_DATE, FixedClock, MAX_DAYS_AHEAD, MAX_TEXT_CHARS, Pathway, PathwayServices,
    SystemClock, TEXT_PATTERN,
};
pub use catalogue::{Stage, StageCatalogue, StageCode};
pub use command::PathwayCommand;
pub use error::{ConfigError, PathwayError, Refusal};
pub use event::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayEvent, Referral, SupportBand,
    TeamMember, Transition, snake_case,
};
pub use metrics::{
    AuditList, AuditQuery, MetricsBreakdown, MetricsQuery, MetricsSeries, ProviderScorecard,
    RecordedEvent, RegionalDocuments, TerritoryMetrics, Timeline, TimelineIndex, TimelineView,
    provider_scorecard, regional_documents, reiteration_audit, territory_metrics,
    territory_metrics_many,
};
pub use provider::{Provider, ProviderCode, ProviderDef, ProviderRegistry};
pub use state::{PathwayCounts, PathwayState, PathwayStatus};
pub use territory::{TerritoryCode, TerritoryDef, TerritoryNode, TerritoryRegistry};
