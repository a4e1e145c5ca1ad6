//! The per-beneficiary [`Timeline`]: a compact, serializable digest of one stream that the
//! metric fold reads instead of the raw events.
//!
//! # Why "as known at K" is a filter
//!
//! The fold must answer "as known at `known_at`" (K) without replaying the aggregate. Three
//! facts of the pathway rules (SPEC 2.3) make that a per-entry filter:
//!
//! 1. **Undo walks back from the end.** An undo voids the latest command not yet undone, so the
//!    events recorded by K minus those voided by undos recorded by K are exactly the stream's
//!    non-voided set at time K. A stored entry is therefore visible at K iff
//!    `recorded_at <= K && !(voided_at <= K)`, where `voided_at` is the `recorded_at` of the
//!    undo that voided it.
//! 2. **Effective dates are non-decreasing in that set.** A command's `on` may not be earlier
//!    than the latest `on` of the non-voided events when it is recorded, and an event that is
//!    still non-voided at K had every earlier event of K's non-voided set non-voided when it
//!    was itself recorded (voiding is permanent, and an earlier command cannot be undone while
//!    a later one stands). So "visible at K with `on <= to`" is a prefix of the visible events
//!    in sequence order, and "the territory at `to`" is the territory after that prefix.
//! 3. **Attribution does not change after the fact.** By the same argument, the non-voided
//!    events before a visible event are the same at K as when it was recorded, so the territory
//!    in force before it (its *attribution*) can be computed once, in [`Timeline::apply`], and
//!    holds for every K at which the event is visible.
//!
//! `CommandUndone` has no effective date (its `on` is the recording date); it is never voided
//! and is attributed to the territory in force just before it was recorded.
//!
//! Within a stream `recorded_at` is non-decreasing with `sequence`; the fold does not depend on
//! it for correctness (it filters every entry) but the facts above do.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::StageCode;
use crate::event::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayEvent, Transition,
};
use crate::territory::TerritoryCode;

/// One stored event of a beneficiary's stream, as the store gives it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the stream, from 1, without gaps.
    pub sequence: u64,
    /// Server time at which the event was stored.
    pub recorded_at: DateTime<Utc>,
    pub event: PathwayEvent,
}

/// An index into one timeline's own table of codes ([`Timeline::territories`],
/// [`Timeline::stages`] or [`Timeline::providers`]). A stream names few distinct codes, so two bytes are plenty.
pub type LocalId = u16;

/// The [`LocalId`] meaning "no territory" (only for malformed streams that do not start with
/// `Enrolled`), also used if a table would overflow.
pub const NO_ID: LocalId = LocalId::MAX;

/// What an entry is, with the fields the metrics need (codes as [`LocalId`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A spell starts; the entry's territory is the enrolment territory.
    Enrolled,
    /// An episode starts; `transition` is the classification recorded in the event.
    StageEntered {
        stage: LocalId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_stage: Option<LocalId>,
        transition: Transition,
        /// The provider running the episode, [`NO_ID`] when the entry named none (not an
        /// `Option`, which would make every entry 8 bytes larger).
        #[serde(default = "no_id", skip_serializing_if = "is_no_id")]
        provider: LocalId,
    },
    /// The open episode ends.
    StageExited {
        stage: LocalId,
        outcome: ExitOutcome,
    },
    /// The beneficiary moves; the entry's territory is the one moved from.
    TerritoryChanged { to: LocalId },
    /// The spell ends.
    PathwayClosed { outcome: CloseOutcome },
    /// A new spell starts.
    PathwayReopened,
    /// An undo; the events it voided carry its `recorded_at` as their `voided_at`.
    CommandUndone,
    /// A needs assessment (the team is not needed by any metric).
    NeedsAssessed {
        kind: AssessmentKind,
        occupability: Occupability,
    },
}

/// One event of the stream, digested at apply time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The event's sequence in its stream.
    pub sequence: u64,
    /// The effective date (for `CommandUndone`, the date it was recorded).
    pub on: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    /// When an undo voided this event; the event is invisible to queries known at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<DateTime<Utc>>,
    /// The attribution territory: the territory in force after every earlier non-voided event
    /// (for `Enrolled`, its own territory; for `CommandUndone`, the territory just before it).
    pub territory: LocalId,
    pub kind: EntryKind,
}

impl TimelineEntry {
    /// Whether the entry is part of the stream as known at `known_at`.
    #[inline]
    pub fn visible_at(&self, known_at: DateTime<Utc>) -> bool {
        self.recorded_at <= known_at && self.voided_at.is_none_or(|v| v > known_at)
    }
}

/// A beneficiary's stream digested for the metric fold. Built one event at a time with
/// [`Timeline::apply`] (the online projection persists it as one row per beneficiary) or in
/// one go with [`Timeline::from_events`] (the offline report); both give the same value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The opaque beneficiary id, for audit lists.
    beneficiary_id: String,
    /// Territory codes named by this stream; entries refer to them by [`LocalId`].
    territories: Vec<TerritoryCode>,
    /// Stage codes named by this stream; entries refer to them by [`LocalId`].
    stages: Vec<StageCode>,
    /// Provider codes named by this stream's stage entries; entries refer to them by
    /// [`LocalId`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    providers: Vec<String>,
    /// Every event, voided or not, in sequence order.
    entries: Vec<TimelineEntry>,
}

impl Timeline {
    /// The version of what a timeline digests. A read model built by an older version lacks
    /// facts this one reads (format 1 left needs assessments and providers out), so the
    /// projection rebuilds a generation whose format is older than this one.
    pub const FORMAT: u32 = 2;

    /// An empty timeline for one beneficiary.
    pub fn new(beneficiary_id: impl Into<String>) -> Self {
        Self {
            beneficiary_id: beneficiary_id.into(),
            ..Self::default()
        }
    }

    /// Builds a timeline from a whole stream in sequence order.
    pub fn from_events<'e>(
        beneficiary_id: impl Into<String>,
        events: impl IntoIterator<Item = &'e RecordedEvent>,
    ) -> Self {
        let mut timeline = Self::new(beneficiary_id);
        for event in events {
            timeline.apply(event);
        }
        timeline
    }

    /// The beneficiary this timeline belongs to.
    pub fn beneficiary_id(&self) -> &str {
        &self.beneficiary_id
    }

    /// Every entry, voided or not, in sequence order.
    pub fn entries(&self) -> &[TimelineEntry] {
        &self.entries
    }

    /// The territory codes that entries' [`LocalId`]s index.
    pub fn territories(&self) -> &[TerritoryCode] {
        &self.territories
    }

    /// The stage codes that entries' [`LocalId`]s index.
    pub fn stages(&self) -> &[StageCode] {
        &self.stages
    }

    /// The provider codes that entries' [`LocalId`]s index.
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// The provider code of a [`LocalId`], if any.
    pub fn provider(&self, id: LocalId) -> Option<&str> {
        self.providers.get(usize::from(id)).map(String::as_str)
    }

    /// The territory code of a [`LocalId`], if any.
    pub fn territory(&self, id: LocalId) -> Option<&TerritoryCode> {
        self.territories.get(usize::from(id))
    }

    /// The stage code of a [`LocalId`], if any.
    pub fn stage(&self, id: LocalId) -> Option<&StageCode> {
        self.stages.get(usize::from(id))
    }

    /// The sequence of the last applied event (0 when empty): the projection's checkpoint.
    pub fn last_sequence(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.sequence)
    }

    /// The territory in force now, after every non-voided event.
    pub fn current_territory(&self) -> Option<&TerritoryCode> {
        self.territory(self.current_territory_id())
    }

    /// Applies the next event of the stream. An event whose sequence is not after the last
    /// applied one is ignored (a redelivery), and `false` is returned.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> bool {
        if recorded.sequence <= self.last_sequence() && !self.entries.is_empty() {
            return false;
        }
        let before = self.current_territory_id();
        let (territory, kind) = match &recorded.event {
            PathwayEvent::Enrolled { territory, .. } => (
                intern(&mut self.territories, territory),
                EntryKind::Enrolled,
            ),
            PathwayEvent::StageEntered {
                stage,
                from_stage,
                transition,
                provider,
                ..
            } => {
                let stage = intern(&mut self.stages, stage);
                let from_stage = from_stage.as_ref().map(|s| intern(&mut self.stages, s));
                let provider = provider
                    .as_ref()
                    .map_or(NO_ID, |p| intern(&mut self.providers, p));
                let kind = EntryKind::StageEntered {
                    stage,
                    from_stage,
                    transition: *transition,
                    provider,
                };
                (before, kind)
            }
            PathwayEvent::StageExited { stage, outcome, .. } => {
                let stage = intern(&mut self.stages, stage);
                let kind = EntryKind::StageExited {
                    stage,
                    outcome: *outcome,
                };
                (before, kind)
            }
            PathwayEvent::TerritoryChanged { to, .. } => {
                let to = intern(&mut self.territories, to);
                (before, EntryKind::TerritoryChanged { to })
            }
            PathwayEvent::PathwayClosed { outcome, .. } => {
                (before, EntryKind::PathwayClosed { outcome: *outcome })
            }
            PathwayEvent::PathwayReopened { .. } => (before, EntryKind::PathwayReopened),
            PathwayEvent::CommandUndone {
                undone_sequences, ..
            } => {
                for sequence in undone_sequences {
                    let found = self.entries.binary_search_by_key(sequence, |e| e.sequence);
                    if let Ok(i) = found {
                        let entry = &mut self.entries[i];
                        // An undo is never voided, and an event is voided at most once.
                        if entry.kind != EntryKind::CommandUndone && entry.voided_at.is_none() {
                            entry.voided_at = Some(recorded.recorded_at);
                        }
                    }
                }
                (before, EntryKind::CommandUndone)
            }
            // Not a pathway fact: an erasure changes no metric.
            PathwayEvent::PersonalDataErased { .. } => return false,
            PathwayEvent::NeedsAssessed {
                kind, occupability, ..
            } => {
                let kind = EntryKind::NeedsAssessed {
                    kind: *kind,
                    occupability: *occupability,
                };
                (before, kind)
            }
        };
        self.entries.push(TimelineEntry {
            sequence: recorded.sequence,
            on: recorded.event.on(),
            recorded_at: recorded.recorded_at,
            voided_at: None,
            territory,
            kind,
        });
        true
    }

    /// The territory after every non-voided event. By fact 3 of the module docs, the territory
    /// after the last non-voided entry is its attribution, or where it moved to.
    fn current_territory_id(&self) -> LocalId {
        self.entries
            .iter()
            .rev()
            .filter(|e| e.voided_at.is_none() && e.kind != EntryKind::CommandUndone)
            .map(|e| match e.kind {
                EntryKind::TerritoryChanged { to } => to,
                _ => e.territory,
            })
            .next()
            .unwrap_or(NO_ID)
    }
}

/// A timeline as the folds read it: its tables of codes and its entries. A [`Timeline`] is its
/// own view; a [`TimelineIndex`](super::TimelineIndex) keeps the entries of its timelines apart
/// from them, one timeline after the other, and hands out views joining the two.
#[derive(Clone, Copy, Debug)]
pub struct TimelineView<'t> {
    /// The tables; its own entries are not read (the index has moved them out).
    pub(crate) timeline: &'t Timeline,
    pub(crate) entries: &'t [TimelineEntry],
}

impl<'t> From<&'t Timeline> for TimelineView<'t> {
    fn from(timeline: &'t Timeline) -> Self {
        Self {
            timeline,
            entries: timeline.entries(),
        }
    }
}

impl Timeline {
    /// Moves the entries out, leaving the tables (for an index that keeps entries apart).
    pub(crate) fn take_entries(&mut self) -> Vec<TimelineEntry> {
        std::mem::take(&mut self.entries)
    }
}

fn no_id() -> LocalId {
    NO_ID
}

fn is_no_id(id: &LocalId) -> bool {
    *id == NO_ID
}

/// The id of `code` in `table`, adding it if new.
fn intern<T: PartialEq + Clone>(table: &mut Vec<T>, code: &T) -> LocalId {
    if let Some(i) = table.iter().position(|c| c == code) {
        return LocalId::try_from(i).unwrap_or(NO_ID);
    }
    match LocalId::try_from(table.len()) {
        Ok(id) if id != NO_ID => {
            table.push(code.clone());
            id
        }
        _ => NO_ID,
    }
}
