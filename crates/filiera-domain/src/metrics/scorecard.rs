//! The provider scorecard (SPEC 3.1): [`provider_scorecard`] over many [`Timeline`]s, with the
//! same query, visibility and attribution rules as the metrics document.

use foldhash::HashMap;
use std::fmt::Write as _;

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::catalogue::StageCatalogue;
use crate::event::{CloseOutcome, ExitOutcome, Occupability};
use crate::territory::TerritoryRegistry;

use super::fold::{LocalMaps, MetricsQuery, QueryEcho, Scope, StageIndex, TransitionCounts};
use super::stats::Stats;
use super::timeline::{LocalId, Timeline, TimelineView};
use super::walk::{Fact, Horizon, days_between, walk};

/// How long after an episode's exit a placement still counts for it.
pub const PLACEMENT_WINDOW_DAYS: u64 = 180;

/// The scorecard document: one item per provider with an episode in scope, sorted by code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderScorecard {
    pub query: QueryEcho,
    pub providers: Vec<ProviderScore>,
}

/// Exited episodes by outcome (every outcome present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExitCounts {
    pub completed: u64,
    pub interrupted: u64,
    pub moved_on: u64,
    pub pathway_closed: u64,
}

impl ExitCounts {
    fn count(&mut self, outcome: ExitOutcome) {
        match outcome {
            ExitOutcome::Completed => self.completed += 1,
            ExitOutcome::Interrupted => self.interrupted += 1,
            ExitOutcome::MovedOn => self.moved_on += 1,
            ExitOutcome::PathwayClosed => self.pathway_closed += 1,
        }
    }

    /// Every exit, whatever the outcome.
    pub fn total(&self) -> u64 {
        self.completed + self.interrupted + self.moved_on + self.pathway_closed
    }
}

/// Exited episodes by how the occupability of the latest assessment before the entry compares
/// with the first assessment after the exit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OccupabilityChange {
    pub improved: u64,
    pub unchanged: u64,
    pub worsened: u64,
    /// No assessment before the entry, or none after the exit by `to`.
    pub unknown: u64,
}

impl OccupabilityChange {
    fn count(&mut self, before: Option<Occupability>, after: Option<Occupability>) {
        match (before, after) {
            (Some(b), Some(a)) if a > b => self.improved += 1,
            (Some(b), Some(a)) if a < b => self.worsened += 1,
            (Some(_), Some(_)) => self.unchanged += 1,
            _ => self.unknown += 1,
        }
    }
}

/// One provider's line of the scorecard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderScore {
    pub provider: String,
    /// Episodes entered in the period.
    pub episodes: u64,
    /// Those episodes by classification.
    pub transitions: TransitionCounts,
    /// `transitions.reiteration / episodes`, `null` when there is no episode.
    pub reiteration_rate: Option<f64>,
    /// Episodes exited in the period, by outcome.
    pub exits: ExitCounts,
    /// `exit − entry` over the exited episodes.
    pub time_in_stage_days: Stats,
    /// Exited episodes followed within 180 days (and by `to`) by an entry into a stage of the
    /// catalogue's highest level or a closure `employed`.
    pub placements_within_180_days: u64,
    /// `placements_within_180_days / exited episodes`, `null` when none exited.
    pub placement_rate: Option<f64>,
    pub occupability_change: OccupabilityChange,
}

/// Folds `timelines` into the provider scorecard of SPEC 3.1 for `query` (its `threshold` is
/// not used).
///
/// Decisions where SPEC 3.1 leaves room (copied into `docs/metrics.md`):
/// - An episode of `p` is a visible `StageEntered` naming `p` with `on <= to`, attributed at
///   the territory in force at it; every count below is of episodes attributed in scope. A
///   provider is listed when it has such an episode, even if nothing of it falls in the period.
/// - Placements and the assessment after an exit are looked for later in stream order, in any
///   spell, among visible events with `on <= to`.
/// - A stage outside the catalogue is never of its highest level.
pub fn provider_scorecard<'a, T: Into<TimelineView<'a>>>(
    timelines: impl IntoIterator<Item = T>,
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> ProviderScorecard {
    let scope = Scope::new(query.territory.as_ref(), registry);
    let stages = StageIndex::new(catalogue);
    let top_level = top_level(catalogue);
    let horizon = Horizon {
        known_at: query.known_at,
        to: query.to,
    };
    let mut local = LocalMaps::default();
    let mut card = Card::default();
    let mut episodes = Episodes::default();
    for view in timelines {
        let TimelineView { timeline, entries } = view.into();
        if timeline.providers().is_empty() || !local.prepare(timeline, &scope, Some(&stages)) {
            continue;
        }
        episodes.reset(timeline.providers().len());
        walk(entries, horizon, |fact| {
            episodes.fact(fact, query, &local, &top_level, timeline, &mut card);
        });
        episodes.finish(&mut card);
    }
    card.finish(query)
}

/// For each catalogue position, whether the stage is of the catalogue's highest level.
fn top_level(catalogue: &StageCatalogue) -> Vec<bool> {
    let highest = catalogue.stages().iter().map(|s| s.level).max();
    catalogue
        .stages()
        .iter()
        .map(|s| Some(s.level) == highest)
        .collect()
}

/// Running totals of one provider.
#[derive(Default)]
struct Tally {
    episodes: u64,
    transitions: TransitionCounts,
    exits: ExitCounts,
    durations: Vec<u32>,
    placements: u64,
    occupability_change: OccupabilityChange,
}

/// Every provider's tally, by code.
#[derive(Default)]
struct Card {
    index: HashMap<String, usize>,
    tallies: Vec<(String, Tally)>,
}

impl Card {
    fn tally(&mut self, code: &str) -> usize {
        if let Some(&i) = self.index.get(code) {
            return i;
        }
        let i = self.tallies.len();
        self.index.insert(code.to_owned(), i);
        self.tallies.push((code.to_owned(), Tally::default()));
        i
    }

    fn finish(self, query: &MetricsQuery) -> ProviderScorecard {
        let mut providers: Vec<ProviderScore> = self
            .tallies
            .into_iter()
            .map(|(provider, mut t)| {
                let exited = t.exits.total();
                ProviderScore {
                    provider,
                    episodes: t.episodes,
                    reiteration_rate: ratio(t.transitions.reiteration, t.episodes),
                    transitions: t.transitions,
                    exits: t.exits,
                    time_in_stage_days: Stats::from_days(&mut t.durations),
                    placements_within_180_days: t.placements,
                    placement_rate: ratio(t.placements, exited),
                    occupability_change: t.occupability_change,
                }
            })
            .collect();
        providers.sort_by(|a, b| a.provider.cmp(&b.provider));
        ProviderScorecard {
            query: query.echo(),
            providers,
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The open episode of a provider, attributed in scope.
#[derive(Clone, Copy)]
struct OpenEpisode {
    tally: usize,
    entered_on: NaiveDate,
    /// The occupability of the latest assessment before the entry.
    before: Option<Occupability>,
}

/// One timeline's episodes as the walk reports them: the open one, and the exited ones still
/// waiting for a placement or for their next assessment.
#[derive(Default)]
struct Episodes {
    /// Timeline provider ids resolved to tallies, on first use.
    tallies: Vec<Option<usize>>,
    open: Option<OpenEpisode>,
    /// Exited in the period: tally and exit date.
    awaiting_placement: Vec<(usize, NaiveDate)>,
    /// Exited in the period with an assessment before the entry: tally and that occupability.
    awaiting_assessment: Vec<(usize, Occupability)>,
}

impl Episodes {
    fn reset(&mut self, providers: usize) {
        self.tallies.clear();
        self.tallies.resize(providers, None);
        self.open = None;
        self.awaiting_placement.clear();
        self.awaiting_assessment.clear();
    }

    fn fact(
        &mut self,
        fact: Fact,
        query: &MetricsQuery,
        local: &LocalMaps,
        top_level: &[bool],
        timeline: &Timeline,
        card: &mut Card,
    ) {
        let in_period = |on: NaiveDate| query.from <= on && on <= query.to;
        match fact {
            Fact::StageEntered {
                on,
                territory,
                stage,
                transition,
                provider,
                occupability,
                ..
            } => {
                let top = local.catalogue_stage(stage).is_some_and(|i| top_level[i]);
                if top {
                    self.placed(on, card);
                }
                self.open = None;
                let Some(provider) = provider else { return };
                if !local.in_scope(territory) {
                    return;
                }
                let Some(tally) = self.resolve(provider, timeline, card) else {
                    return;
                };
                if in_period(on) {
                    let t = &mut card.tallies[tally].1;
                    t.episodes += 1;
                    t.transitions.count(transition);
                }
                self.open = Some(OpenEpisode {
                    tally,
                    entered_on: on,
                    before: occupability,
                });
            }
            Fact::EpisodeClosed { on, outcome, .. } => {
                let Some(episode) = self.open.take() else {
                    return;
                };
                if !in_period(on) {
                    return;
                }
                let t = &mut card.tallies[episode.tally].1;
                t.exits.count(outcome);
                t.durations.push(days_between(episode.entered_on, on));
                self.awaiting_placement.push((episode.tally, on));
                match episode.before {
                    Some(before) => self.awaiting_assessment.push((episode.tally, before)),
                    None => t.occupability_change.count(None, None),
                }
            }
            Fact::SpellClosed {
                on,
                outcome: CloseOutcome::Employed,
                ..
            } => self.placed(on, card),
            Fact::Assessed { occupability, .. } => {
                for (tally, before) in self.awaiting_assessment.drain(..) {
                    let change = &mut card.tallies[tally].1.occupability_change;
                    change.count(Some(before), Some(occupability));
                }
            }
            Fact::SpellStarted { .. }
            | Fact::SpellClosed { .. }
            | Fact::SpellAssessed { .. }
            | Fact::Undone { .. } => {}
        }
    }

    /// A placement on `on`: every exited episode still within its window counts it. Dates only
    /// move forward along the walk, so the others never will and are dropped too.
    fn placed(&mut self, on: NaiveDate, card: &mut Card) {
        for (tally, exited) in self.awaiting_placement.drain(..) {
            let deadline = exited
                .checked_add_days(Days::new(PLACEMENT_WINDOW_DAYS))
                .unwrap_or(NaiveDate::MAX);
            if on <= deadline {
                card.tallies[tally].1.placements += 1;
            }
        }
    }

    /// The tally of timeline provider `id`.
    fn resolve(&mut self, id: LocalId, timeline: &Timeline, card: &mut Card) -> Option<usize> {
        let slot = self.tallies.get_mut(usize::from(id))?;
        if slot.is_none() {
            *slot = Some(card.tally(timeline.provider(id)?));
        }
        *slot
    }

    /// The end of the walk: episodes with no assessment after their exit by `to` are unknown.
    fn finish(&mut self, card: &mut Card) {
        for (tally, _) in self.awaiting_assessment.drain(..) {
            card.tallies[tally].1.occupability_change.count(None, None);
        }
        self.awaiting_placement.clear();
    }
}

/// The scorecard as CSV: columns `provider,metric,value`, dotted names following the JSON
/// document; a `null` is an empty value. A provider code is quoted if it holds a comma, a quote
/// or a line end (codes outside a registry are free text).
pub fn scorecard_to_csv(card: &ProviderScorecard) -> String {
    let mut out = String::from("provider,metric,value\n");
    for p in &card.providers {
        let provider = if p.provider.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", p.provider.replace('"', "\"\""))
        } else {
            p.provider.clone()
        };
        let mut row = |metric: &str, value: &dyn std::fmt::Display| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{provider},{metric},{value}");
        };
        let float = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        row("episodes", &p.episodes);
        let t = &p.transitions;
        row("transitions.entry", &t.entry);
        row("transitions.progression", &t.progression);
        row("transitions.reiteration", &t.reiteration);
        row("transitions.regression", &t.regression);
        row("reiteration_rate", &float(p.reiteration_rate));
        let e = &p.exits;
        row("exits.completed", &e.completed);
        row("exits.interrupted", &e.interrupted);
        row("exits.moved_on", &e.moved_on);
        row("exits.pathway_closed", &e.pathway_closed);
        let s = &p.time_in_stage_days;
        row("time_in_stage_days.count", &s.count);
        row("time_in_stage_days.mean", &float(s.mean));
        row("time_in_stage_days.median", &float(s.median));
        row("time_in_stage_days.p90", &float(s.p90));
        row("placements_within_180_days", &p.placements_within_180_days);
        row("placement_rate", &float(p.placement_rate));
        let c = &p.occupability_change;
        row("occupability_change.improved", &c.improved);
        row("occupability_change.unchanged", &c.unchanged);
        row("occupability_change.worsened", &c.worsened);
        row("occupability_change.unknown", &c.unknown);
    }
    out
}

impl ProviderScorecard {
    /// The flat CSV rendering, see [`scorecard_to_csv`].
    pub fn to_csv(&self) -> String {
        scorecard_to_csv(self)
    }
}
