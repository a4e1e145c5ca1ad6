//! A beneficiary's event log for process mining (`filiera export --format ocel2|xes`): the
//! events of a [`Timeline`] that a metrics query sees, with their codes resolved, the spell
//! each belongs to and the classification recorded with each stage entry.
//!
//! It reads the timeline with the fold's own rules (module docs of [`super::timeline`]): an
//! event is in the log when it was recorded by `known_at`, is not voided by an undo itself
//! recorded by `known_at`, and has `on <= to`; a beneficiary whose enrolment is not visible has
//! no log. Undos are never in a log (they are corrections, not pathway facts). The period and
//! the territory then keep the events with `on >= from` attributed in scope, each event
//! attributed like the fold attributes a stage entry: at the territory in force at it (for
//! `Enrolled`, its own; for `TerritoryChanged`, the one left).
//!
//! Because a stage entry's `from_stage` is the stage of the previous stage entry visible with
//! it (fact 3 of the timeline docs), the stage entries of a whole log, taken in order, directly
//! follow each other exactly as `transition_matrix` counts them without its `entry` rows.

use chrono::{DateTime, NaiveDate, Utc};

use crate::catalogue::StageCode;
use crate::event::{AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Transition};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::fold::{MetricsQuery, Scope};
use super::timeline::{EntryKind, Timeline};

/// The territories a log keeps: a query's territory and its descendants, or everything.
pub struct LogScope(Scope);

impl LogScope {
    /// The scope of `territory` (with its descendants in `registry`); `None`: everything.
    pub fn new(territory: Option<&TerritoryCode>, registry: &TerritoryRegistry) -> Self {
        Self(Scope::new(territory, registry))
    }

    fn contains(&self, territory: Option<&TerritoryCode>) -> bool {
        match (&self.0, territory) {
            (Scope::Everything, _) => true,
            (Scope::Subtree(_), None) => false,
            (scope, Some(code)) => scope.contains(code),
        }
    }
}

/// One event of a beneficiary's log, borrowing its codes from the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent<'t> {
    /// The event's sequence in its stream (the store maps it to the global position).
    pub sequence: u64,
    /// The effective date.
    pub on: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    /// The territory in force at the event, where the log attributes it.
    pub territory: Option<&'t TerritoryCode>,
    /// The spell the event belongs to: 1 from the enrolment, one more at each reopening.
    pub spell: u32,
    pub activity: Activity<'t>,
}

/// What happened, with the fields an analyst groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity<'t> {
    Enrolled,
    StageEntered {
        stage: Option<&'t StageCode>,
        /// The stage of the previous stage entry, in any spell (`None` for `entry`).
        from_stage: Option<&'t StageCode>,
        transition: Transition,
        provider: Option<&'t str>,
    },
    StageExited {
        stage: Option<&'t StageCode>,
        outcome: ExitOutcome,
        /// The provider of the episode it ends.
        provider: Option<&'t str>,
    },
    TerritoryChanged {
        to: Option<&'t TerritoryCode>,
    },
    PathwayClosed {
        outcome: CloseOutcome,
    },
    PathwayReopened,
    NeedsAssessed {
        kind: AssessmentKind,
        occupability: Occupability,
    },
}

impl Activity<'_> {
    /// The event name of SPEC 2.3 (as [`crate::PathwayEvent::name`] gives it).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Enrolled => "Enrolled",
            Self::StageEntered { .. } => "StageEntered",
            Self::StageExited { .. } => "StageExited",
            Self::TerritoryChanged { .. } => "TerritoryChanged",
            Self::PathwayClosed { .. } => "PathwayClosed",
            Self::PathwayReopened => "PathwayReopened",
            Self::NeedsAssessed { .. } => "NeedsAssessed",
        }
    }
}

/// The log of `timeline` for `query` (its `threshold` is not used), in stream order; empty
/// when the beneficiary is not visible as known at `query.known_at`.
pub fn event_log<'t>(
    timeline: &'t Timeline,
    query: &MetricsQuery,
    scope: &LogScope,
) -> Vec<LoggedEvent<'t>> {
    let known_at = query.known_at;
    let mut log = Vec::new();
    let entries = timeline.entries();
    // The first entry is the enrolment: if it is invisible, so is the beneficiary.
    match entries.first() {
        Some(enrolment) if enrolment.visible_at(known_at) => {}
        _ => return log,
    }
    let mut spell = 0;
    // The provider of the open episode, for its exit.
    let mut episode_provider = None;
    for entry in entries {
        // The same visibility as the fold's walk: not a `break` on a later `recorded_at`, so
        // that a clock step back between writers cannot hide later entries.
        if entry.kind == EntryKind::CommandUndone || !entry.visible_at(known_at) {
            continue;
        }
        if entry.on > query.to {
            continue;
        }
        let activity = match entry.kind {
            EntryKind::Enrolled => {
                spell = 1;
                Activity::Enrolled
            }
            EntryKind::PathwayReopened => {
                spell += 1;
                Activity::PathwayReopened
            }
            EntryKind::StageEntered {
                stage,
                from_stage,
                transition,
                provider,
            } => {
                // `NO_ID` (no provider) is outside the table.
                let provider = timeline.provider(provider);
                episode_provider = provider;
                Activity::StageEntered {
                    stage: timeline.stage(stage),
                    from_stage: from_stage.and_then(|s| timeline.stage(s)),
                    transition,
                    provider,
                }
            }
            EntryKind::StageExited { stage, outcome } => Activity::StageExited {
                stage: timeline.stage(stage),
                outcome,
                provider: episode_provider.take(),
            },
            EntryKind::TerritoryChanged { to } => Activity::TerritoryChanged {
                to: timeline.territory(to),
            },
            EntryKind::PathwayClosed { outcome } => Activity::PathwayClosed { outcome },
            EntryKind::NeedsAssessed { kind, occupability } => {
                Activity::NeedsAssessed { kind, occupability }
            }
            EntryKind::CommandUndone => continue,
        };
        let territory = timeline.territory(entry.territory);
        if entry.on < query.from || !scope.contains(territory) {
            continue;
        }
        log.push(LoggedEvent {
            sequence: entry.sequence,
            on: entry.on,
            recorded_at: entry.recorded_at,
            territory,
            spell,
            activity,
        });
    }
    log
}
