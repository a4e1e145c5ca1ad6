//! The one pass over a [`Timeline`](super::Timeline)'s entries that both the metric fold and
//! the audit list use: it keeps the entries visible at `known_at` with `on <= to`, reports each
//! fact with its attribution, and returns where the beneficiary stands at `to`.

use chrono::{DateTime, NaiveDate, Utc};

use crate::event::{AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Transition};

use super::timeline::{EntryKind, LocalId, NO_ID, TimelineEntry};

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

impl Fact {
    /// The date by which a query's period counts the fact (`from <= date <= to`): its own
    /// date; an undo's recording date; for [`Fact::SpellAssessed`], its spell's start.
    #[inline]
    pub(crate) fn dated(&self) -> NaiveDate {
        match *self {
            Self::SpellStarted { on, .. }
            | Self::StageEntered { on, .. }
            | Self::EpisodeClosed { on, .. }
            | Self::SpellClosed { on, .. }
            | Self::Assessed { on, .. } => on,
            Self::Undone { recorded_at, .. } => recorded_at.date_naive(),
            Self::SpellAssessed { spell, .. } => spell.on,
        }
    }

    /// The attribution territory of the fact.
    #[inline]
    pub(crate) fn territory(&self) -> LocalId {
        match *self {
            Self::SpellStarted { territory, .. }
            | Self::StageEntered { territory, .. }
            | Self::EpisodeClosed { territory, .. }
            | Self::SpellClosed { territory, .. }
            | Self::Undone { territory, .. }
            | Self::Assessed { territory, .. } => territory,
            Self::SpellAssessed { spell, .. } => spell.territory,
        }
    }
}

/// What a walk over several horizons reports.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Walked<'e> {
    /// A fact with `on` up to the last horizon (or an undo known at `known_at`), for the
    /// queries of every horizon, or only of horizon `Some(index)` when the stream's dates are
    /// out of order and each horizon is walked on its own.
    Fact(Fact, Option<usize>),
    /// Where the beneficiary stands at horizon `index` (its `to`), reported once every fact
    /// up to it has been.
    End(usize, &'e EndState),
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

/// Walks a timeline's `entries` as known at `horizon.known_at`, reporting facts with
/// `on <= to` (and every undo recorded by `known_at`) to `on_fact`. `None` when the
/// beneficiary is not visible: not yet enrolled as known at `known_at`, or its enrolment was
/// voided. A voided beneficiary still reports its undos: SPEC 3 counts every `CommandUndone`
/// (undos are never voided), and undoing an enrolment is a correction evaluators must see.
#[inline]
pub(crate) fn walk(
    entries: &[TimelineEntry],
    horizon: Horizon,
    mut on_fact: impl FnMut(Fact),
) -> Option<EndState> {
    let mut end = None;
    walk_horizons(
        entries,
        horizon.known_at,
        &[horizon.to],
        &mut Vec::new(),
        |walked| match walked {
            Walked::Fact(fact, _) => on_fact(fact),
            Walked::End(_, state) => end = Some(*state),
        },
    );
    end
}

/// [`walk`] over a timeline's `entries` for several horizons at once (`tos`, ascending), as
/// known at `known_at`: one pass reports every fact with `on` up to the last horizon, then the
/// end state at each horizon. The state at a horizon is taken as the walk passes it, which is
/// sound because the visible events with `on <= to` are a prefix of the visible events (fact 2
/// of the timeline docs). A stream that breaks that order (writers whose clocks disagree can
/// make `recorded_at` go back) is walked once per horizon instead, each walk's facts marked
/// for its horizon only. Reports no end state when the beneficiary is not visible.
/// `snapshots` is a buffer for the states at the horizons, reused from one timeline to the
/// next so that a fold allocates nothing per beneficiary.
pub(crate) fn walk_horizons(
    entries: &[TimelineEntry],
    known_at: DateTime<Utc>,
    tos: &[NaiveDate],
    snapshots: &mut Vec<EndState>,
    mut report: impl FnMut(Walked<'_>),
) {
    let Some(&last) = tos.last() else { return };
    if tos.len() > 1 && !dates_in_order(entries, known_at) {
        for (index, &to) in tos.iter().enumerate() {
            let mut on_fact = |fact| report(Walked::Fact(fact, Some(index)));
            if let Some(state) = pass(entries, known_at, to, None, &mut on_fact) {
                report(Walked::End(index, &state));
            }
        }
        return;
    }
    let mut on_fact = |fact| report(Walked::Fact(fact, None));
    if tos.len() == 1 {
        // One horizon: entries after it are skipped, and the state at the end of the walk is
        // the state at it.
        if let Some(end) = pass(entries, known_at, last, None, &mut on_fact) {
            report(Walked::End(0, &end));
        }
        return;
    }
    snapshots.clear();
    if pass(
        entries,
        known_at,
        last,
        Some((tos, &mut *snapshots)),
        &mut on_fact,
    )
    .is_some()
    {
        for (index, state) in snapshots.iter().enumerate() {
            report(Walked::End(index, state));
        }
    }
}

/// Whether the effective dates of the entries visible at `known_at` never go back.
fn dates_in_order(entries: &[TimelineEntry], known_at: DateTime<Utc>) -> bool {
    let mut latest = NaiveDate::MIN;
    for entry in entries {
        if entry.kind == EntryKind::CommandUndone || !entry.visible_at(known_at) {
            continue;
        }
        if entry.on < latest {
            return false;
        }
        latest = entry.on;
    }
    true
}

/// One walk up to `last`: facts go to `on_fact`; with `horizons`, the state as the walk passes
/// each horizon is pushed to the vector. Answers the state at the end; `None` when the
/// beneficiary is not visible.
fn pass(
    entries: &[TimelineEntry],
    known_at: DateTime<Utc>,
    last: NaiveDate,
    mut horizons: Option<(&[NaiveDate], &mut Vec<EndState>)>,
    on_fact: &mut impl FnMut(Fact),
) -> Option<EndState> {
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
        if entry.voided_at.is_some_and(|v| v <= known_at) {
            continue;
        }
        let on = entry.on;
        if let Some((tos, snapshots)) = horizons.as_mut() {
            // Every horizon before this visible entry is passed: its state is final.
            while let Some(&to) = tos.get(snapshots.len())
                && to < on
            {
                snapshots.push(end);
            }
        }
        if on > last {
            continue;
        }
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
    if let Some((tos, snapshots)) = horizons {
        while snapshots.len() < tos.len() {
            snapshots.push(end);
        }
    }
    Some(end)
}

/// Whole days from `start` to `end` (never negative).
#[inline]
pub(crate) fn days_between(start: NaiveDate, end: NaiveDate) -> u32 {
    u32::try_from((end - start).num_days()).unwrap_or(0)
}
