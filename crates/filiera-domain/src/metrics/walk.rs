//! The one pass over a [`Timeline`] that both the metric fold and the audit list use: it keeps
//! the entries visible at `known_at` with `on <= to`, reports each fact with its attribution,
//! and returns where the beneficiary stands at `to`.

use chrono::{DateTime, NaiveDate, Utc};

use crate::event::{AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Transition};

use super::timeline::{EntryKind, LocalId, NO_ID, Timeline};

/// The horizon of a query: what is known at `known_at`, effective up to `to`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Horizon {
    pub known_at: DateTime<Utc>,
    pub to: NaiveDate,
}

/// A fact the walk reports, with its attribution territory (a [`LocalId`] of the timeline).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fact {
    /// A spell starts (`Enrolled`, or `PathwayReopened` when `reopened`).
    SpellStarted {
        on: NaiveDate,
        territory: LocalId,
        reopened: bool,
    },
    /// A stage entry, attributed at itself.
    StageEntered {
        on: NaiveDate,
        territory: LocalId,
        stage: LocalId,
        from_stage: Option<LocalId>,
        transition: Transition,
        provider: Option<LocalId>,
        /// The occupability of the latest assessment before the entry, in any spell.
        occupability: Option<Occupability>,
    },
    /// An episode ends on `on`; attributed at its `StageEntered`.
    EpisodeClosed {
        on: NaiveDate,
        entered_on: NaiveDate,
        territory: LocalId,
        stage: LocalId,
        outcome: ExitOutcome,
    },
    /// A needs assessment, attributed at itself.
    Assessed {
        on: NaiveDate,
        territory: LocalId,
        kind: AssessmentKind,
        occupability: Occupability,
    },
    /// The first `multidisciplinary` assessment of the open spell; attributed at the spell's
    /// start, like the spell.
    SpellAssessed { on: NaiveDate, spell: Opened },
    /// A spell ends on `on`; attributed at its start.
    SpellClosed {
        on: NaiveDate,
        started_on: NaiveDate,
        territory: LocalId,
        outcome: CloseOutcome,
    },
    /// An undo known at `known_at` (whatever `to` is), attributed just before it.
    Undone {
        recorded_at: DateTime<Utc>,
        territory: LocalId,
    },
}

/// An open spell or episode: when it started and where it is attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    pub on: NaiveDate,
    pub territory: LocalId,
}

/// Where the beneficiary stands at `to`, as known at `known_at`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EndState {
    /// The territory after every visible event with `on <= to` ([`NO_ID`] before enrolment).
    pub territory: LocalId,
    /// The spell open at `to`.
    pub spell: Option<Opened>,
    /// The episode open at `to`, with its stage.
    pub episode: Option<(LocalId, Opened)>,
    /// Whether any stage was entered by `to`.
    pub entered_any: bool,
    /// Reiterations up to `to`, in every spell.
    pub total_reiterations: u32,
    /// Reiterations since the most recent progression (or the first entry) up to `to`.
    pub stalled_reiterations: u32,
    /// The occupability of the latest assessment up to `to`, in any spell.
    pub occupability: Option<Occupability>,
}

/// Walks `timeline` as known at `horizon.known_at`, reporting facts with `on <= to` (and every
/// undo recorded by `known_at`) to `on_fact`. `None` when the beneficiary is not visible: not
/// yet enrolled as known at `known_at`, or its enrolment was voided. A voided beneficiary
/// still reports its undos: SPEC 3 counts every `CommandUndone` (undos are never voided), and
/// undoing an enrolment is a correction evaluators must see.
#[inline]
pub(crate) fn walk(
    timeline: &Timeline,
    horizon: Horizon,
    mut on_fact: impl FnMut(Fact),
) -> Option<EndState> {
    let entries = timeline.entries();
    let known_at = horizon.known_at;
    // The first entry is the enrolment: if it is invisible, so is the beneficiary.
    let enrolment = entries.first()?;
    if !enrolment.visible_at(known_at) {
        if enrolment.recorded_at <= known_at {
            // Voided: only its corrections count.
            for entry in entries {
                if entry.kind == EntryKind::CommandUndone && entry.recorded_at <= known_at {
                    on_fact(Fact::Undone {
                        recorded_at: entry.recorded_at,
                        territory: entry.territory,
                    });
                }
            }
        }
        return None;
    }
    let mut end = EndState {
        territory: NO_ID,
        spell: None,
        episode: None,
        entered_any: false,
        total_reiterations: 0,
        stalled_reiterations: 0,
        occupability: None,
    };
    // Whether the open spell has had its first multidisciplinary assessment.
    let mut spell_assessed = false;
    for entry in entries {
        // Recorded after `known_at`: unknown. Not a `break`, so that a clock step back
        // between writers cannot hide later entries.
        if entry.recorded_at > known_at {
            continue;
        }
        if entry.kind == EntryKind::CommandUndone {
            on_fact(Fact::Undone {
                recorded_at: entry.recorded_at,
                territory: entry.territory,
            });
            continue;
        }
        if entry.voided_at.is_some_and(|v| v <= known_at) || entry.on > horizon.to {
            continue;
        }
        let on = entry.on;
        match entry.kind {
            EntryKind::Enrolled | EntryKind::PathwayReopened => {
                if entry.kind == EntryKind::Enrolled {
                    end.territory = entry.territory;
                }
                end.spell = Some(Opened {
                    on,
                    territory: entry.territory,
                });
                spell_assessed = false;
                on_fact(Fact::SpellStarted {
                    on,
                    territory: entry.territory,
                    reopened: entry.kind == EntryKind::PathwayReopened,
                });
            }
            EntryKind::StageEntered {
                stage,
                from_stage,
                transition,
                provider,
            } => {
                end.entered_any = true;
                match transition {
                    Transition::Progression => end.stalled_reiterations = 0,
                    Transition::Reiteration => {
                        end.total_reiterations += 1;
                        end.stalled_reiterations += 1;
                    }
                    Transition::Entry | Transition::Regression => {}
                }
                end.episode = Some((
                    stage,
                    Opened {
                        on,
                        territory: entry.territory,
                    },
                ));
                on_fact(Fact::StageEntered {
                    on,
                    territory: entry.territory,
                    stage,
                    from_stage,
                    transition,
                    provider: (provider != NO_ID).then_some(provider),
                    occupability: end.occupability,
                });
            }
            EntryKind::StageExited { outcome, .. } => {
                if let Some((stage, opened)) = end.episode.take() {
                    on_fact(Fact::EpisodeClosed {
                        on,
                        entered_on: opened.on,
                        territory: opened.territory,
                        stage,
                        outcome,
                    });
                }
            }
            EntryKind::NeedsAssessed { kind, occupability } => {
                end.occupability = Some(occupability);
                on_fact(Fact::Assessed {
                    on,
                    territory: entry.territory,
                    kind,
                    occupability,
                });
                if kind == AssessmentKind::Multidisciplinary
                    && !spell_assessed
                    && let Some(spell) = end.spell
                {
                    spell_assessed = true;
                    on_fact(Fact::SpellAssessed { on, spell });
                }
            }
            EntryKind::TerritoryChanged { to } => end.territory = to,
            EntryKind::PathwayClosed { outcome } => {
                if let Some(opened) = end.spell.take() {
                    on_fact(Fact::SpellClosed {
                        on,
                        started_on: opened.on,
                        territory: opened.territory,
                        outcome,
                    });
                }
            }
            EntryKind::CommandUndone => {}
        }
    }
    Some(end)
}

/// Whole days from `start` to `end` (never negative).
#[inline]
pub(crate) fn days_between(start: NaiveDate, end: NaiveDate) -> u32 {
    u32::try_from((end - start).num_days()).unwrap_or(0)
}
