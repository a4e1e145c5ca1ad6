//! A naive reference for the fold: SPEC 3 read literally from the raw stored events, without
//! timelines and without the shortcuts the fold takes. It recomputes visibility from the undos
//! known at `known_at`, attribution by folding the visible events, the territory at `to` by
//! filtering on `on <= to` (not by prefix), and the territory before each undo from the events
//! that were not voided when it was recorded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::catalogue::{StageCatalogue, StageCode};
use crate::event::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayEvent, Transition,
};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::super::{
    AssessmentCounts, Closures, Durations, ExitCounts, MetricsQuery, OccupabilityChange,
    OrderedMap, ProviderScore, ProviderScorecard, RecordedEvent, ReiterationDistribution,
    ReiterationSummary, Stats, TerritoryMetrics, TransitionCell, TransitionCounts,
    TransitionsByOccupability,
};

fn undone(event: &RecordedEvent) -> &[u64] {
    match &event.event {
        PathwayEvent::CommandUndone {
            undone_sequences, ..
        } => undone_sequences,
        _ => &[],
    }
}

fn is_undo(event: &RecordedEvent) -> bool {
    matches!(event.event, PathwayEvent::CommandUndone { .. })
}

/// The territory after applying `events` in order.
fn territory_after<'e>(events: impl Iterator<Item = &'e RecordedEvent>) -> Option<TerritoryCode> {
    let mut territory = None;
    for e in events {
        match &e.event {
            PathwayEvent::Enrolled { territory: t, .. } => territory = Some(t.clone()),
            PathwayEvent::TerritoryChanged { to, .. } => territory = Some(to.clone()),
            _ => {}
        }
    }
    territory
}

fn days(start: NaiveDate, end: NaiveDate) -> u32 {
    u32::try_from((end - start).num_days()).expect("no negative duration")
}

pub(super) fn oracle(
    streams: &[Vec<RecordedEvent>],
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> TerritoryMetrics {
    let known_at = query.known_at;
    let in_scope = |t: Option<&TerritoryCode>| match &query.territory {
        None => true,
        Some(root) => t.is_some_and(|t| registry.is_within(t, root)),
    };
    let in_period = |on: NaiveDate| query.from <= on && on <= query.to;
    let known_stage = |s: &StageCode| catalogue.level(s).is_some();

    let mut enrolments = 0;
    let mut reopenings = 0;
    let mut transitions = TransitionCounts::default();
    let mut matrix: BTreeMap<(Option<StageCode>, StageCode), u64> = BTreeMap::new();
    let mut distribution = ReiterationDistribution::default();
    let mut flagged = 0;
    let mut pathway_closed = Vec::new();
    let mut pathway_open = Vec::new();
    let mut stage_closed: BTreeMap<StageCode, Vec<u32>> = BTreeMap::new();
    let mut stage_open: BTreeMap<StageCode, Vec<u32>> = BTreeMap::new();
    let mut active: BTreeMap<StageCode, u64> = BTreeMap::new();
    let mut waiting = 0;
    let mut closures: BTreeMap<CloseOutcome, u64> = BTreeMap::new();
    let mut corrections = 0;
    let mut assessed = Assessed::default();

    for events in streams {
        let known: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| e.recorded_at <= known_at)
            .collect();
        let voided: BTreeSet<u64> = known.iter().flat_map(|e| undone(e)).copied().collect();
        let Some(first) = events.first() else {
            continue;
        };
        if first.recorded_at > known_at {
            continue;
        }
        // Each known undo, attributed to the territory in force when it was recorded.
        for undo in known.iter().filter(|e| is_undo(e)) {
            if !in_period(undo.recorded_at.date_naive()) {
                continue;
            }
            let earlier = || events.iter().filter(|e| e.sequence < undo.sequence);
            let voided_then: BTreeSet<u64> = earlier().flat_map(undone).copied().collect();
            let before = territory_after(
                earlier().filter(|e| !is_undo(e) && !voided_then.contains(&e.sequence)),
            );
            corrections += u64::from(in_scope(before.as_ref()));
        }
        // A voided beneficiary contributes nothing else.
        if voided.contains(&first.sequence) {
            continue;
        }
        let visible: Vec<&RecordedEvent> = known
            .iter()
            .filter(|e| !is_undo(e) && !voided.contains(&e.sequence))
            .copied()
            .collect();
        let attributed = attribute(&visible, query);
        assessment_fields(&visible, &attributed, &in_period, &in_scope, &mut assessed);

        let mut spell: Option<(NaiveDate, Option<TerritoryCode>)> = None;
        let mut episode: Option<(StageCode, NaiveDate, Option<TerritoryCode>)> = None;
        for (e, attribution) in &attributed {
            let on = e.event.on();
            let counted = in_period(on) && in_scope(attribution.as_ref());
            match &e.event {
                PathwayEvent::Enrolled { .. } => {
                    spell = Some((on, attribution.clone()));
                    enrolments += u64::from(counted);
                }
                PathwayEvent::PathwayReopened { .. } => {
                    spell = Some((on, attribution.clone()));
                    reopenings += u64::from(counted);
                }
                PathwayEvent::StageEntered {
                    stage,
                    from_stage,
                    transition,
                    ..
                } => {
                    episode = Some((stage.clone(), on, attribution.clone()));
                    if counted {
                        match transition {
                            Transition::Entry => transitions.entry += 1,
                            Transition::Progression => transitions.progression += 1,
                            Transition::Reiteration => transitions.reiteration += 1,
                            Transition::Regression => transitions.regression += 1,
                        }
                        *matrix
                            .entry((from_stage.clone(), stage.clone()))
                            .or_default() += 1;
                    }
                }
                PathwayEvent::StageExited { .. } => {
                    if let Some((stage, entered, at)) = episode.take()
                        && in_period(on)
                        && in_scope(at.as_ref())
                        && known_stage(&stage)
                    {
                        stage_closed
                            .entry(stage)
                            .or_default()
                            .push(days(entered, on));
                    }
                }
                PathwayEvent::PathwayClosed { outcome, .. } => {
                    if let Some((start, at)) = spell.take()
                        && in_period(on)
                        && in_scope(at.as_ref())
                    {
                        *closures.entry(*outcome).or_default() += 1;
                        pathway_closed.push(days(start, on));
                    }
                }
                _ => {}
            }
        }
        if let Some((start, at)) = &spell
            && in_scope(at.as_ref())
        {
            pathway_open.push(days(*start, query.to));
        }
        if let Some((stage, entered, at)) = &episode
            && in_scope(at.as_ref())
            && known_stage(stage)
        {
            stage_open
                .entry(stage.clone())
                .or_default()
                .push(days(*entered, query.to));
        }
        let territory_at_to =
            territory_after(visible.iter().copied().filter(|e| e.event.on() <= query.to));
        if in_scope(territory_at_to.as_ref()) {
            let entries: Vec<Transition> = attributed
                .iter()
                .filter_map(|(e, _)| match &e.event {
                    PathwayEvent::StageEntered { transition, .. } => Some(*transition),
                    _ => None,
                })
                .collect();
            if !entries.is_empty() {
                let reiterations = |ts: &[Transition]| {
                    ts.iter().filter(|t| **t == Transition::Reiteration).count() as u32
                };
                let total = reiterations(&entries);
                let since = entries
                    .iter()
                    .rposition(|t| *t == Transition::Progression)
                    .map_or(0, |i| i + 1);
                let stalled = reiterations(&entries[since..]);
                match total {
                    0 => distribution.none += 1,
                    1 => distribution.once += 1,
                    2 => distribution.twice += 1,
                    _ => distribution.three_or_more += 1,
                }
                flagged += u64::from(stalled >= query.threshold);
            }
            if spell.is_some() {
                match &episode {
                    None => waiting += 1,
                    Some((stage, _, _)) => *active.entry(stage.clone()).or_default() += 1,
                }
            }
        }
    }

    let denominator = transitions.progression + transitions.reiteration + transitions.regression;
    let progressivity_index = (denominator > 0).then(|| {
        (transitions.progression as f64 - transitions.regression as f64) / denominator as f64
    });
    let per_stage = |map: &mut BTreeMap<StageCode, Vec<u32>>, code: &StageCode| {
        Stats::from_days(map.get_mut(code).map(Vec::as_mut_slice).unwrap_or_default())
    };
    let time_in_stage_days = catalogue
        .stages()
        .iter()
        .map(|s| {
            let durations = Durations {
                closed: per_stage(&mut stage_closed, &s.code),
                open: per_stage(&mut stage_open, &s.code),
            };
            (s.code.to_string(), durations)
        })
        .collect();
    let mut active_at_end: Vec<(String, u64)> = catalogue
        .stages()
        .iter()
        .map(|s| {
            (
                s.code.to_string(),
                active.get(&s.code).copied().unwrap_or(0),
            )
        })
        .collect();
    active_at_end.push(("waiting".to_owned(), waiting));
    let closure = |o| closures.get(&o).copied().unwrap_or(0);
    TerritoryMetrics {
        query: query.echo(),
        enrolments,
        reopenings,
        transitions,
        transition_matrix: matrix
            .into_iter()
            .map(|((from, to), count)| TransitionCell { from, to, count })
            .collect(),
        progressivity_index,
        reiteration: ReiterationSummary {
            distribution,
            flagged,
            threshold: query.threshold,
        },
        time_in_pathway_days: Durations {
            closed: Stats::from_days(&mut pathway_closed),
            open: Stats::from_days(&mut pathway_open),
        },
        time_in_stage_days: OrderedMap(time_in_stage_days),
        active_at_end: OrderedMap(active_at_end),
        closures: Closures {
            employed: closure(CloseOutcome::Employed),
            dropped_out: closure(CloseOutcome::DroppedOut),
            moved_away: closure(CloseOutcome::MovedAway),
            deceased: closure(CloseOutcome::Deceased),
            other: closure(CloseOutcome::Other),
        },
        corrections,
        assessments: assessed.counts,
        time_to_assessment_days: Stats::from_days(&mut assessed.days),
        spells_without_assessment: assessed.without,
        transitions_by_occupability: assessed.by_occupability,
    }
}

/// The visible events of a stream as known at `query.known_at` (undos left out), or `None`
/// when the beneficiary is unknown or voided.
fn visible<'e>(
    events: &'e [RecordedEvent],
    query: &MetricsQuery,
) -> Option<Vec<&'e RecordedEvent>> {
    let known: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.recorded_at <= query.known_at)
        .collect();
    let voided: BTreeSet<u64> = known.iter().flat_map(|e| undone(e)).copied().collect();
    let first = known.first()?;
    if voided.contains(&first.sequence) {
        return None;
    }
    Some(
        known
            .into_iter()
            .filter(|e| !is_undo(e) && !voided.contains(&e.sequence))
            .collect(),
    )
}

/// The visible events with `on <= to`, each with its attribution: the territory after every
/// earlier visible event (an enrolment's own territory).
fn attribute<'e>(
    visible: &[&'e RecordedEvent],
    query: &MetricsQuery,
) -> Vec<(&'e RecordedEvent, Option<TerritoryCode>)> {
    visible
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let before = match &e.event {
                PathwayEvent::Enrolled { territory, .. } => Some(territory.clone()),
                _ => territory_after(visible[..i].iter().copied()),
            };
            (*e, before)
        })
        .filter(|(e, _)| e.event.on() <= query.to)
        .collect()
}

/// The assessment fields' running totals.
#[derive(Default)]
struct Assessed {
    counts: AssessmentCounts,
    days: Vec<u32>,
    without: u64,
    by_occupability: TransitionsByOccupability,
}

/// The occupability of the latest visible assessment before `event` in stream order.
fn latest_before(visible: &[&RecordedEvent], event: &RecordedEvent) -> Option<Occupability> {
    visible
        .iter()
        .filter(|e| e.sequence < event.sequence)
        .filter_map(|e| match &e.event {
            PathwayEvent::NeedsAssessed { occupability, .. } => Some(*occupability),
            _ => None,
        })
        .next_back()
}

fn assessment_fields(
    visible: &[&RecordedEvent],
    attributed: &[(&RecordedEvent, Option<TerritoryCode>)],
    in_period: &impl Fn(NaiveDate) -> bool,
    in_scope: &impl Fn(Option<&TerritoryCode>) -> bool,
    totals: &mut Assessed,
) {
    let starts_spell = |e: &RecordedEvent| {
        matches!(
            e.event,
            PathwayEvent::Enrolled { .. } | PathwayEvent::PathwayReopened { .. }
        )
    };
    for (i, (e, attribution)) in attributed.iter().enumerate() {
        let on = e.event.on();
        let counted = in_period(on) && in_scope(attribution.as_ref());
        match &e.event {
            PathwayEvent::NeedsAssessed { kind, .. } if counted => match kind {
                AssessmentKind::Initial => totals.counts.initial += 1,
                AssessmentKind::Multidisciplinary => totals.counts.multidisciplinary += 1,
                AssessmentKind::Review => totals.counts.review += 1,
            },
            PathwayEvent::StageEntered { transition, .. } if counted => {
                let row = match latest_before(visible, e) {
                    Some(Occupability::Low) => &mut totals.by_occupability.low,
                    Some(Occupability::Medium) => &mut totals.by_occupability.medium,
                    Some(Occupability::High) => &mut totals.by_occupability.high,
                    None => &mut totals.by_occupability.unassessed,
                };
                match transition {
                    Transition::Entry => row.entry += 1,
                    Transition::Progression => row.progression += 1,
                    Transition::Reiteration => row.reiteration += 1,
                    Transition::Regression => row.regression += 1,
                }
            }
            _ if counted && starts_spell(e) => {
                // The same spell: up to the next spell start.
                let first = attributed[i + 1..]
                    .iter()
                    .take_while(|(later, _)| !starts_spell(later))
                    .find(|(later, _)| {
                        matches!(
                            later.event,
                            PathwayEvent::NeedsAssessed {
                                kind: AssessmentKind::Multidisciplinary,
                                ..
                            }
                        )
                    });
                match first {
                    Some((assessment, _)) => totals.days.push(days(on, assessment.event.on())),
                    None => totals.without += 1,
                }
            }
            _ => {}
        }
    }
}

/// SPEC 3.1 read literally: every episode of a provider found by scanning the stream forward
/// for its exit, its placement and the assessments around it.
pub(super) fn scorecard_oracle(
    streams: &[Vec<RecordedEvent>],
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> ProviderScorecard {
    let in_scope = |t: Option<&TerritoryCode>| match &query.territory {
        None => true,
        Some(root) => t.is_some_and(|t| registry.is_within(t, root)),
    };
    let in_period = |on: NaiveDate| query.from <= on && on <= query.to;
    let highest = catalogue.stages().iter().map(|s| s.level).max();
    let top = |s: &StageCode| catalogue.level(s).is_some() && catalogue.level(s) == highest;
    #[derive(Default)]
    struct Tally {
        episodes: u64,
        transitions: TransitionCounts,
        exits: ExitCounts,
        days: Vec<u32>,
        placements: u64,
        change: OccupabilityChange,
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for events in streams {
        let Some(visible) = visible(events, query) else {
            continue;
        };
        let attributed = attribute(&visible, query);
        for (i, (e, attribution)) in attributed.iter().enumerate() {
            let PathwayEvent::StageEntered {
                provider: Some(provider),
                transition,
                ..
            } = &e.event
            else {
                continue;
            };
            if !in_scope(attribution.as_ref()) {
                continue;
            }
            let entered = e.event.on();
            let tally = tallies.entry(provider.clone()).or_default();
            if in_period(entered) {
                tally.episodes += 1;
                match transition {
                    Transition::Entry => tally.transitions.entry += 1,
                    Transition::Progression => tally.transitions.progression += 1,
                    Transition::Reiteration => tally.transitions.reiteration += 1,
                    Transition::Regression => tally.transitions.regression += 1,
                }
            }
            let exit = attributed[i + 1..]
                .iter()
                .position(|(later, _)| matches!(later.event, PathwayEvent::StageExited { .. }));
            let Some(exit) = exit.map(|j| i + 1 + j) else {
                continue;
            };
            let (exit_event, _) = &attributed[exit];
            let PathwayEvent::StageExited {
                on: exited,
                outcome,
                ..
            } = exit_event.event
            else {
                unreachable!("found as an exit");
            };
            if !in_period(exited) {
                continue;
            }
            match outcome {
                ExitOutcome::Completed => tally.exits.completed += 1,
                ExitOutcome::Interrupted => tally.exits.interrupted += 1,
                ExitOutcome::MovedOn => tally.exits.moved_on += 1,
                ExitOutcome::PathwayClosed => tally.exits.pathway_closed += 1,
            }
            tally.days.push(days(entered, exited));
            let after = &attributed[exit + 1..];
            let placed = after.iter().any(|(later, _)| {
                let placement = match &later.event {
                    PathwayEvent::StageEntered { stage, .. } => top(stage),
                    PathwayEvent::PathwayClosed { outcome, .. } => {
                        *outcome == CloseOutcome::Employed
                    }
                    _ => false,
                };
                placement && (later.event.on() - exited).num_days() <= 180
            });
            tally.placements += u64::from(placed);
            let before = latest_before(&visible, e);
            let next = after.iter().find_map(|(later, _)| match &later.event {
                PathwayEvent::NeedsAssessed { occupability, .. } => Some(*occupability),
                _ => None,
            });
            match (before, next) {
                (Some(b), Some(a)) if a > b => tally.change.improved += 1,
                (Some(b), Some(a)) if a < b => tally.change.worsened += 1,
                (Some(_), Some(_)) => tally.change.unchanged += 1,
                _ => tally.change.unknown += 1,
            }
        }
    }
    let rate = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    ProviderScorecard {
        query: query.echo(),
        providers: tallies
            .into_iter()
            .map(|(provider, mut t)| ProviderScore {
                provider,
                episodes: t.episodes,
                reiteration_rate: rate(t.transitions.reiteration, t.episodes),
                transitions: t.transitions,
                placement_rate: rate(t.placements, t.exits.total()),
                exits: t.exits,
                time_in_stage_days: Stats::from_days(&mut t.days),
                placements_within_180_days: t.placements,
                occupability_change: t.change,
            })
            .collect(),
    }
}
