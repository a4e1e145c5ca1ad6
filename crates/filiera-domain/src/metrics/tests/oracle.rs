//! A naive reference for the fold: SPEC 3 read literally from the raw stored events, without
//! timelines and without the shortcuts the fold takes. It recomputes visibility from the undos
//! known at `known_at`, attribution by folding the visible events, the territory at `to` by
//! filtering on `on <= to` (not by prefix), and the territory before each undo from the events
//! that were not voided when it was recorded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::catalogue::{StageCatalogue, StageCode};
use crate::event::{CloseOutcome, PathwayEvent, Transition};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::super::{
    Closures, Durations, MetricsQuery, OrderedMap, RecordedEvent, ReiterationDistribution,
    ReiterationSummary, Stats, TerritoryMetrics, TransitionCell, TransitionCounts,
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

        // Attribution: the territory after every earlier visible event.
        let attributed: Vec<(&RecordedEvent, Option<TerritoryCode>)> = visible
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
            .collect();

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
    }
}
