//! The metric fold (SPEC 3): [`territory_metrics`] over many [`Timeline`]s.

use std::collections::BTreeMap;
use std::ops::Range;

use foldhash::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::{StageCatalogue, StageCode};
use crate::event::{AssessmentKind, CloseOutcome, Occupability, Transition};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::index::{Codes, Resolved};
use super::stats::{OrderedMap, Stats};
use super::timeline::{LocalId, Timeline, TimelineView};
use super::walk::{EndState, Fact, Walked, days_between, walk_horizons};

/// The key of `active_at_end` for beneficiaries with an open spell and no open episode.
pub const WAITING: &str = "waiting";

/// What `GET /v1/metrics` and `filiera report` ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsQuery {
    /// The territory whose subtree is in scope; `None` for everything.
    pub territory: Option<TerritoryCode>,
    /// First day of the period, inclusive.
    pub from: NaiveDate,
    /// Last day of the period, inclusive; also the day "at the end" refers to.
    pub to: NaiveDate,
    /// Only what was recorded (and undone) by this instant counts.
    pub known_at: DateTime<Utc>,
    /// `stalled_reiterations >= threshold` flags a beneficiary (SPEC 2.4).
    pub threshold: u32,
}

impl MetricsQuery {
    /// The query as echoed in the document.
    pub fn echo(&self) -> QueryEcho {
        QueryEcho {
            territory: self.territory.clone(),
            from: self.from,
            to: self.to,
            known_at: self.known_at,
        }
    }
}

/// The query echoed at the top of the metrics document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryEcho {
    /// `null` when the query covers every territory.
    pub territory: Option<TerritoryCode>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// RFC 3339, UTC.
    pub known_at: DateTime<Utc>,
}

/// Stage entries by classification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionCounts {
    pub entry: u64,
    pub progression: u64,
    pub reiteration: u64,
    pub regression: u64,
}

impl std::ops::AddAssign<&TransitionCounts> for TransitionCounts {
    fn add_assign(&mut self, other: &TransitionCounts) {
        self.entry += other.entry;
        self.progression += other.progression;
        self.reiteration += other.reiteration;
        self.regression += other.regression;
    }
}

impl TransitionCounts {
    pub(crate) fn count(&mut self, transition: Transition) {
        match transition {
            Transition::Entry => self.entry += 1,
            Transition::Progression => self.progression += 1,
            Transition::Reiteration => self.reiteration += 1,
            Transition::Regression => self.regression += 1,
        }
    }

    /// `(progression − regression) / (progression + reiteration + regression)`, `None` when
    /// the denominator is 0 (entries do not count).
    pub fn progressivity_index(&self) -> Option<f64> {
        let denominator = self.progression + self.reiteration + self.regression;
        (denominator > 0)
            .then(|| (self.progression as f64 - self.regression as f64) / denominator as f64)
    }
}

/// Needs assessments by kind (docs/metrics.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssessmentCounts {
    pub initial: u64,
    pub multidisciplinary: u64,
    pub review: u64,
}

impl std::ops::AddAssign<&AssessmentCounts> for AssessmentCounts {
    fn add_assign(&mut self, other: &AssessmentCounts) {
        self.initial += other.initial;
        self.multidisciplinary += other.multidisciplinary;
        self.review += other.review;
    }
}

impl AssessmentCounts {
    fn count(&mut self, kind: AssessmentKind) {
        match kind {
            AssessmentKind::Initial => self.initial += 1,
            AssessmentKind::Multidisciplinary => self.multidisciplinary += 1,
            AssessmentKind::Review => self.review += 1,
        }
    }
}

/// The entries of `transitions` by the occupability of the latest assessment before each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionsByOccupability {
    pub low: TransitionCounts,
    pub medium: TransitionCounts,
    pub high: TransitionCounts,
    /// Entries with no assessment before them.
    pub unassessed: TransitionCounts,
}

impl std::ops::AddAssign<&TransitionsByOccupability> for TransitionsByOccupability {
    fn add_assign(&mut self, other: &TransitionsByOccupability) {
        self.low += &other.low;
        self.medium += &other.medium;
        self.high += &other.high;
        self.unassessed += &other.unassessed;
    }
}

impl TransitionsByOccupability {
    fn count(&mut self, occupability: Option<Occupability>, transition: Transition) {
        let row = match occupability {
            Some(Occupability::Low) => &mut self.low,
            Some(Occupability::Medium) => &mut self.medium,
            Some(Occupability::High) => &mut self.high,
            None => &mut self.unassessed,
        };
        row.count(transition);
    }

    /// The rows with their keys, in document order.
    pub fn rows(&self) -> [(&'static str, &TransitionCounts); 4] {
        [
            ("low", &self.low),
            ("medium", &self.medium),
            ("high", &self.high),
            ("unassessed", &self.unassessed),
        ]
    }
}

/// One cell of the transition matrix: entries into `to` coming from `from` (`None` for
/// `entry`, the first stage ever).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionCell {
    pub from: Option<StageCode>,
    pub to: StageCode,
    pub count: u64,
}

/// How many beneficiaries reiterated how often, keyed `"0"`, `"1"`, `"2"`, `"3+"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReiterationDistribution {
    #[serde(rename = "0")]
    pub none: u64,
    #[serde(rename = "1")]
    pub once: u64,
    #[serde(rename = "2")]
    pub twice: u64,
    #[serde(rename = "3+")]
    pub three_or_more: u64,
}

impl std::ops::AddAssign<&ReiterationDistribution> for ReiterationDistribution {
    fn add_assign(&mut self, other: &ReiterationDistribution) {
        self.none += other.none;
        self.once += other.once;
        self.twice += other.twice;
        self.three_or_more += other.three_or_more;
    }
}

impl ReiterationDistribution {
    fn add(&mut self, reiterations: u32) {
        match reiterations {
            0 => self.none += 1,
            1 => self.once += 1,
            2 => self.twice += 1,
            _ => self.three_or_more += 1,
        }
    }

    /// The buckets with their keys, in document order.
    pub fn buckets(&self) -> [(&'static str, u64); 4] {
        [
            ("0", self.none),
            ("1", self.once),
            ("2", self.twice),
            ("3+", self.three_or_more),
        ]
    }
}

/// The `reiteration` object of the document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReiterationSummary {
    pub distribution: ReiterationDistribution,
    /// Beneficiaries of the distribution with `stalled_reiterations >= threshold` at `to`.
    pub flagged: u64,
    pub threshold: u32,
}

/// Durations of what ended in the period and of what is still open at `to`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Durations {
    pub closed: Stats,
    pub open: Stats,
}

/// Spells closed in the period, by outcome (every outcome present).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Closures {
    pub employed: u64,
    pub dropped_out: u64,
    pub moved_away: u64,
    pub deceased: u64,
    pub other: u64,
}

impl std::ops::AddAssign<&Closures> for Closures {
    fn add_assign(&mut self, other: &Closures) {
        self.employed += other.employed;
        self.dropped_out += other.dropped_out;
        self.moved_away += other.moved_away;
        self.deceased += other.deceased;
        self.other += other.other;
    }
}

impl Closures {
    fn add(&mut self, outcome: CloseOutcome) {
        match outcome {
            CloseOutcome::Employed => self.employed += 1,
            CloseOutcome::DroppedOut => self.dropped_out += 1,
            CloseOutcome::MovedAway => self.moved_away += 1,
            CloseOutcome::Deceased => self.deceased += 1,
            CloseOutcome::Other => self.other += 1,
        }
    }

    /// The count of one outcome.
    pub fn get(&self, outcome: CloseOutcome) -> u64 {
        match outcome {
            CloseOutcome::Employed => self.employed,
            CloseOutcome::DroppedOut => self.dropped_out,
            CloseOutcome::MovedAway => self.moved_away,
            CloseOutcome::Deceased => self.deceased,
            CloseOutcome::Other => self.other,
        }
    }

    /// Every closure, whatever the outcome.
    pub fn total(&self) -> u64 {
        CloseOutcome::ALL.iter().map(|&o| self.get(o)).sum()
    }
}

/// The metrics document (docs/metrics.md), fields in document order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerritoryMetrics {
    pub query: QueryEcho,
    pub enrolments: u64,
    pub reopenings: u64,
    pub transitions: TransitionCounts,
    /// Non-zero cells, sorted by `(from, to)` as codes, `from: null` first.
    pub transition_matrix: Vec<TransitionCell>,
    pub progressivity_index: Option<f64>,
    pub reiteration: ReiterationSummary,
    pub time_in_pathway_days: Durations,
    /// Every catalogue stage, in catalogue order.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = std::collections::BTreeMap<String, Durations>)
    )]
    pub time_in_stage_days: OrderedMap<Durations>,
    /// Every catalogue stage in catalogue order, then `waiting`.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, u64>))]
    pub active_at_end: OrderedMap<u64>,
    pub closures: Closures,
    pub corrections: u64,
    pub assessments: AssessmentCounts,
    /// Spells started in the period with a `multidisciplinary` assessment by `to`: days from
    /// the start to the first one.
    pub time_to_assessment_days: Stats,
    /// Spells started in the period with no `multidisciplinary` assessment by `to`.
    pub spells_without_assessment: u64,
    pub transitions_by_occupability: TransitionsByOccupability,
}

/// Folds `timelines` into the metrics document of SPEC 3 for `query`.
///
/// Decisions where SPEC 3 leaves room (copied into `docs/metrics.md`):
/// - **Visibility.** An event counts if it was recorded by `known_at`, is not voided by an undo
///   itself recorded by `known_at`, and has `on <= to`. A voided enrolment (beneficiary voided
///   as known at `known_at`) contributes nothing but its corrections (its undos, which are
///   never voided, count in `corrections` like any other).
/// - **Scope.** `territory` and its descendants in `registry` (`None`: everything). Each fact is
///   attributed to the territory in force after every earlier non-voided event of the stream.
/// - `enrolments`, `reopenings`, `transitions`, `transition_matrix`: events with `on` in
///   `[from, to]`, attributed at the event itself (spell start, episode start). The matrix lists
///   non-zero cells sorted by `(from, to)` compared as codes, `from: null` (entries) first.
/// - `progressivity_index` = `(progression − regression) / (progression + reiteration +
///   regression)` over those transitions; `null` if the denominator is 0.
/// - `closures` (all five outcomes, zeros included) and `time_in_pathway_days.closed`:
///   `PathwayClosed` with `on` in the period, attributed at the start of the spell it closes,
///   so the closures total equals `time_in_pathway_days.closed.count`; duration `close − start`.
/// - `time_in_pathway_days.open`: spells started by `to` and not closed by `to`, attributed at
///   spell start: `to − start`.
/// - `time_in_stage_days.<stage>` for every catalogue stage, catalogue order: `closed` are
///   episodes whose exit `on` is in the period (attributed at their `StageEntered`):
///   `exit − entry`; `open` are episodes entered by `to` and still open at `to`: `to − entry`.
/// - `reiteration.distribution` (`"0"`, `"1"`, `"2"`, `"3+"`): beneficiaries whose territory at
///   `to` (after every visible event with `on <= to`) is in scope and who entered any stage by
///   `to`, by their reiterations up to `to` in every spell. `flagged`: those among them whose
///   reiterations since their most recent progression (or first entry) are `>= threshold`.
/// - `active_at_end`: beneficiaries with an open spell at `to` and territory at `to` in scope,
///   by the code of their open stage, or `waiting`; every catalogue stage and `waiting` present.
/// - `corrections`: `CommandUndone` recorded by `known_at` whose `recorded_at` UTC date is in
///   `[from, to]`, attributed to the territory in force just before the undo.
/// - Durations are whole days. Stats are `{count, mean, median, p90}`, with `null` statistics
///   when `count` is 0 and percentiles interpolated at rank `p·(n−1)` (numpy's default).
/// - Stages recorded in events but no longer in the catalogue count in `transitions` and the
///   matrix, but have no key in `time_in_stage_days` or `active_at_end`.
/// - `assessments`: `NeedsAssessed` with `on` in the period, by kind, attributed at itself.
/// - `time_to_assessment_days` and `spells_without_assessment` split the spells counted in
///   `enrolments + reopenings` (started in the period, attributed at their start): those with a
///   `multidisciplinary` assessment in the same spell by `to` (stats of first one − start) and
///   the others.
/// - `transitions_by_occupability`: the entries of `transitions`, by the occupability of the
///   latest visible assessment before each in stream order, in any spell (`unassessed` if none).
pub fn territory_metrics<'a, T: Into<TimelineView<'a>>>(
    timelines: impl IntoIterator<Item = T>,
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> TerritoryMetrics {
    let mut documents =
        territory_metrics_many(timelines, std::slice::from_ref(query), catalogue, registry);
    documents.pop().expect("one document per query")
}

/// The documents of several queries (a series' months, a breakdown's children) in one pass
/// over the timelines, each equal to [`territory_metrics`] of its query. Queries known at the
/// same instant share one walk of each timeline ([`walk_horizons`], one horizon per distinct
/// `to`); each fact goes only to the queries whose scope holds its attribution territory.
pub fn territory_metrics_many<'a, T: Into<TimelineView<'a>>>(
    timelines: impl IntoIterator<Item = T>,
    queries: &[MetricsQuery],
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> Vec<TerritoryMetrics> {
    let timelines: Vec<TimelineView<'_>> = timelines.into_iter().map(Into::into).collect();
    fold_timelines(&timelines, None, queries, catalogue, registry)
}

/// From this many timelines on, [`territory_metrics_many`] folds them on every core.
const PARALLEL_FROM: usize = 16_384;

/// [`territory_metrics_many`] with the timelines split into `parts` folded on threads of their
/// own, their totals added up before the statistics are taken (which read their samples in
/// value order, so the documents do not depend on the split).
#[doc(hidden)]
pub fn territory_metrics_in_parts(
    timelines: &[&Timeline],
    parts: usize,
    queries: &[MetricsQuery],
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> Vec<TerritoryMetrics> {
    let timelines: Vec<TimelineView<'_>> = timelines.iter().map(|&t| t.into()).collect();
    fold_timelines(&timelines, Some(parts), queries, catalogue, registry)
}

/// Resolves the codes of `timelines` for this fold alone, then folds them.
fn fold_timelines(
    timelines: &[TimelineView<'_>],
    parts: Option<usize>,
    queries: &[MetricsQuery],
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> Vec<TerritoryMetrics> {
    let mut codes = Codes::default();
    let (ids, starts) = codes.resolve_all(timelines);
    let resolved: Vec<Resolved<'_>> = timelines
        .iter()
        .zip(starts.windows(2))
        .map(|(&view, span)| Resolved::new(view, &ids[span[0]..span[1]]))
        .collect();
    let get = |i: usize| resolved[i];
    fold_resolved(
        &codes,
        resolved.len(),
        get,
        parts,
        queries,
        catalogue,
        registry,
    )
}

/// The documents of `queries` over `count` timelines, the `i`-th being `timeline(i)`, whose
/// codes are resolved in `codes`, folded in `parts` (by default, on every core from
/// [`PARALLEL_FROM`] timelines on).
pub(crate) fn fold_resolved<'t>(
    codes: &Codes,
    count: usize,
    timeline: impl Fn(usize) -> Resolved<'t> + Sync,
    parts: Option<usize>,
    queries: &[MetricsQuery],
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> Vec<TerritoryMetrics> {
    let parts = parts.unwrap_or_else(|| {
        if count < PARALLEL_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    });
    let stages = StageIndex::new(catalogue);
    let positions: Vec<Option<usize>> = codes
        .stages
        .codes()
        .iter()
        .map(|code| stages.0.get(code.as_str()).copied())
        .collect();
    let groups = Group::of(queries, codes, registry);
    let fold = |part: Range<usize>| {
        let timelines = part.map(&timeline);
        fold_part(timelines, queries, &groups, &positions, stages.len())
    };
    let parts = parts.clamp(1, count.max(1));
    let mut accumulators = if parts == 1 {
        fold(0..count)
    } else {
        let size = count.div_ceil(parts);
        std::thread::scope(|scope| {
            let folds: Vec<_> = (0..count)
                .step_by(size)
                .map(|start| {
                    let fold = &fold;
                    scope.spawn(move || fold(start..(start + size).min(count)))
                })
                .collect();
            let mut totals: Option<Vec<Accumulator>> = None;
            for fold in folds {
                let part = fold
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                match &mut totals {
                    None => totals = Some(part),
                    Some(totals) => {
                        for (total, part) in totals.iter_mut().zip(part) {
                            total.merge(part);
                        }
                    }
                }
            }
            totals.expect("at least one part")
        })
    };
    accumulators
        .drain(..)
        .zip(queries)
        .map(|(acc, query)| acc.finish(query, catalogue))
        .collect()
}

/// The running totals of every query over `timelines`. `positions` gives the catalogue
/// position of each shared stage id.
fn fold_part<'t>(
    timelines: impl Iterator<Item = Resolved<'t>>,
    queries: &[MetricsQuery],
    groups: &[Group],
    positions: &[Option<usize>],
    stage_count: usize,
) -> Vec<Accumulator> {
    let mut accumulators: Vec<Accumulator> = queries
        .iter()
        .map(|query| Accumulator::new(query, stage_count))
        .collect();
    let mut candidates: Vec<usize> = Vec::new();
    let mut snapshots = Vec::new();
    for resolved in timelines {
        let timeline = resolved.timeline;
        let territories = resolved.territories;
        let stages = Stages {
            ids: resolved.stages,
            positions,
        };
        for group in groups {
            let router = Routes {
                territories,
                by_id: &group.by_id,
            };
            if !router.any() {
                continue;
            }
            let mut on_walked = |walked: Walked<'_>| match walked {
                Walked::Fact(fact, only) => {
                    let holders = router.queries(fact.territory());
                    let counts =
                        |q: usize| only.is_none_or(|horizon| group.horizon_of[q] == Some(horizon));
                    match &group.periods {
                        // A series' months: only the month holding the fact's date counts it
                        // (every other one would check the date and drop it).
                        Some(periods) if holders.len() > FEW => {
                            if let Some(q) = periods.holding(fact.dated())
                                && holders.binary_search(&q).is_ok()
                                && counts(q)
                            {
                                accumulators[q].fact(fact, &stages, timeline);
                            }
                        }
                        _ => {
                            for &q in holders {
                                if counts(q) {
                                    accumulators[q].fact(fact, &stages, timeline);
                                }
                            }
                        }
                    }
                }
                Walked::End(horizon, end) => {
                    let at_horizon = &group.at_horizon[horizon];
                    if at_horizon.len() <= FEW {
                        for &q in at_horizon {
                            let in_scope = |id| router.queries(id).contains(&q);
                            accumulators[q].end(end, &in_scope, &stages, &queries[q]);
                        }
                        return;
                    }
                    // Many queries end here (a breakdown's hundreds of children): only
                    // those holding a territory the end state is attributed to count it.
                    let territories = [
                        Some(end.territory),
                        end.spell.map(|s| s.territory),
                        end.episode.map(|(_, e)| e.territory),
                    ];
                    candidates.clear();
                    for id in territories.into_iter().flatten() {
                        candidates.extend_from_slice(router.queries(id));
                    }
                    candidates.sort_unstable();
                    candidates.dedup();
                    for &q in &candidates {
                        if group.horizon_of[q] != Some(horizon) {
                            continue;
                        }
                        let in_scope = |id| router.queries(id).contains(&q);
                        accumulators[q].end(end, &in_scope, &stages, &queries[q]);
                    }
                }
            };
            walk_horizons(
                resolved.entries,
                group.known_at,
                &group.horizons,
                &mut snapshots,
                &mut on_walked,
            );
        }
    }
    accumulators
}

/// Up to this many queries ending at one horizon are each given the end state; beyond, only
/// those whose scope holds one of its territories. Likewise, a fact held by more queries than
/// this goes only to the one whose period holds its date, when the periods do not meet.
const FEW: usize = 8;

/// Queries known at the same instant: walked together.
struct Group {
    known_at: DateTime<Utc>,
    /// The distinct `to`s of the queries, ascending.
    horizons: Vec<NaiveDate>,
    /// For each horizon, the queries whose `to` it is.
    at_horizon: Vec<Vec<usize>>,
    /// For each query (of every group), the index of its `to` among `horizons` if it belongs
    /// to this group.
    horizon_of: Vec<Option<usize>>,
    /// For each shared territory id, the queries of the group whose scope holds it, in query
    /// order.
    by_id: Vec<Vec<usize>>,
    /// The group's periods, when no two of them meet (a series' months).
    periods: Option<Periods>,
}

/// Periods that do not meet, by start: which one holds a date.
struct Periods(Vec<(NaiveDate, NaiveDate, usize)>);

impl Periods {
    /// The periods `(from, to)` of `queries`, indexed as given, if no two of them meet.
    fn disjoint(queries: impl Iterator<Item = (usize, NaiveDate, NaiveDate)>) -> Option<Self> {
        let mut periods: Vec<(NaiveDate, NaiveDate, usize)> =
            queries.map(|(q, from, to)| (from, to, q)).collect();
        periods.sort_unstable();
        periods
            .windows(2)
            .all(|pair| pair[0].1 < pair[1].0)
            .then_some(Self(periods))
    }

    /// The query whose period holds `date`, if any.
    #[inline]
    fn holding(&self, date: NaiveDate) -> Option<usize> {
        let after = self.0.partition_point(|&(from, _, _)| from <= date);
        let &(_, to, q) = self.0.get(after.checked_sub(1)?)?;
        (date <= to).then_some(q)
    }
}

impl Group {
    fn of(queries: &[MetricsQuery], codes: &Codes, registry: &TerritoryRegistry) -> Vec<Self> {
        let territories = codes.territories.codes().len();
        let mut groups: Vec<Self> = Vec::new();
        for (q, query) in queries.iter().enumerate() {
            let position = groups.iter().position(|g| g.known_at == query.known_at);
            let group = match position {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Self {
                        known_at: query.known_at,
                        horizons: Vec::new(),
                        at_horizon: Vec::new(),
                        horizon_of: Vec::new(),
                        by_id: vec![Vec::new(); territories],
                        periods: None,
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            match &query.territory {
                None => group.by_id.iter_mut().for_each(|holders| holders.push(q)),
                Some(code) => {
                    let subtree = registry.descendants_or_self(code);
                    for id in subtree.iter().filter_map(|c| codes.territories.get(c)) {
                        group.by_id[id as usize].push(q);
                    }
                }
            }
            if let Err(i) = group.horizons.binary_search(&query.to) {
                group.horizons.insert(i, query.to);
            }
        }
        for group in &mut groups {
            group.horizon_of = queries
                .iter()
                .map(|query| {
                    (query.known_at == group.known_at)
                        .then(|| group.horizons.binary_search(&query.to).ok())
                        .flatten()
                })
                .collect();
            group.at_horizon = vec![Vec::new(); group.horizons.len()];
            for (q, horizon) in group.horizon_of.iter().enumerate() {
                if let Some(h) = horizon {
                    group.at_horizon[*h].push(q);
                }
            }
            group.periods = Periods::disjoint(
                queries
                    .iter()
                    .enumerate()
                    .filter(|(_, query)| query.known_at == group.known_at)
                    .map(|(q, query)| (q, query.from, query.to)),
            );
        }
        groups
    }
}

/// Which queries of a group hold which territory of the timeline being walked.
#[derive(Clone, Copy)]
struct Routes<'a> {
    /// The timeline's territories as shared ids, indexed by [`LocalId`].
    territories: &'a [u32],
    /// [`Group::by_id`].
    by_id: &'a [Vec<usize>],
}

impl Routes<'_> {
    /// Whether any query holds a territory of the timeline. Every fact of a timeline, and its
    /// territory at any `to`, is attributed to one of those territories, so a timeline for
    /// which this is `false` contributes nothing and need not be walked.
    #[inline]
    fn any(&self) -> bool {
        self.territories
            .iter()
            .any(|&id| !self.by_id[id as usize].is_empty())
    }

    /// The queries holding the territory `id` of the timeline.
    #[inline]
    fn queries(&self, id: LocalId) -> &[usize] {
        self.territories
            .get(usize::from(id))
            .map_or(&[], |&shared| self.by_id[shared as usize].as_slice())
    }
}

/// The catalogue positions of the stages of the timeline being walked.
pub(crate) struct Stages<'a> {
    /// The timeline's stages as shared ids, indexed by [`LocalId`].
    ids: &'a [u32],
    /// The catalogue position of each shared stage id.
    positions: &'a [Option<usize>],
}

impl Stages<'_> {
    /// The catalogue position of stage `id`, if the catalogue has it.
    #[inline]
    fn catalogue_stage(&self, id: LocalId) -> Option<usize> {
        self.ids
            .get(usize::from(id))
            .and_then(|&shared| self.positions[shared as usize])
    }
}

/// The territories in scope of a query.
pub(crate) enum Scope {
    Everything,
    Subtree(HashSet<TerritoryCode>),
}

impl Scope {
    pub(crate) fn new(territory: Option<&TerritoryCode>, registry: &TerritoryRegistry) -> Self {
        match territory {
            None => Self::Everything,
            Some(code) => Self::Subtree(registry.descendants_or_self(code).into_iter().collect()),
        }
    }

    pub(crate) fn contains(&self, code: &TerritoryCode) -> bool {
        match self {
            Self::Everything => true,
            Self::Subtree(set) => set.contains(code),
        }
    }
}

/// Catalogue stage codes to their position in the catalogue.
pub(crate) struct StageIndex<'c>(HashMap<&'c str, usize>);

impl<'c> StageIndex<'c> {
    pub(crate) fn new(catalogue: &'c StageCatalogue) -> Self {
        Self(
            catalogue
                .stages()
                .iter()
                .enumerate()
                .map(|(i, s)| (s.code.as_str(), i))
                .collect(),
        )
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// One timeline's [`LocalId`]s resolved against the query: which territories are in scope,
/// which stages are which catalogue stage. Buffers are reused from one timeline to the next,
/// so the fold allocates nothing per beneficiary.
#[derive(Default)]
pub(crate) struct LocalMaps {
    everything: bool,
    in_scope: Vec<bool>,
    stage: Vec<Option<usize>>,
}

impl LocalMaps {
    /// Resolves `timeline` against the query; `false` when none of the territories it names is
    /// in scope. Every fact of a timeline, and its territory at `to`, is attributed to one of
    /// those territories, so such a timeline contributes nothing and need not be walked.
    /// `stages` is `None` for folds that never ask for catalogue positions (the audit).
    pub(crate) fn prepare(
        &mut self,
        timeline: &Timeline,
        scope: &Scope,
        stages: Option<&StageIndex<'_>>,
    ) -> bool {
        self.everything = matches!(scope, Scope::Everything);
        self.in_scope.clear();
        if !self.everything {
            let codes = timeline.territories().iter();
            self.in_scope.extend(codes.map(|code| scope.contains(code)));
            if !self.in_scope.contains(&true) {
                return false;
            }
        }
        self.stage.clear();
        if let Some(stages) = stages {
            let codes = timeline.stages().iter();
            self.stage
                .extend(codes.map(|code| stages.0.get(code.as_str()).copied()));
        }
        true
    }

    /// Whether the attribution territory `id` is in scope.
    #[inline]
    pub(crate) fn in_scope(&self, id: LocalId) -> bool {
        self.everything || self.in_scope.get(usize::from(id)).copied().unwrap_or(false)
    }

    /// The catalogue position of stage `id`, if the catalogue has it.
    #[inline]
    pub(crate) fn catalogue_stage(&self, id: LocalId) -> Option<usize> {
        self.stage.get(usize::from(id)).copied().flatten()
    }
}

/// Running totals of the fold.
struct Accumulator {
    from: NaiveDate,
    to: NaiveDate,
    enrolments: u64,
    reopenings: u64,
    transitions: TransitionCounts,
    /// Row 0: from `null`; row `i + 1`: from catalogue stage `i`. Column: catalogue stage.
    matrix: Vec<u64>,
    /// Cells naming a stage outside the catalogue (rare: a stage removed from configuration).
    matrix_other: BTreeMap<(Option<StageCode>, StageCode), u64>,
    distribution: ReiterationDistribution,
    flagged: u64,
    pathway_closed: Vec<u32>,
    pathway_open: Vec<u32>,
    stage_closed: Vec<Vec<u32>>,
    stage_open: Vec<Vec<u32>>,
    active: Vec<u64>,
    waiting: u64,
    closures: Closures,
    corrections: u64,
    assessments: AssessmentCounts,
    time_to_assessment: Vec<u32>,
    by_occupability: TransitionsByOccupability,
}

impl Accumulator {
    fn new(query: &MetricsQuery, stages: usize) -> Self {
        Self {
            from: query.from,
            to: query.to,
            enrolments: 0,
            reopenings: 0,
            transitions: TransitionCounts::default(),
            matrix: vec![0; (stages + 1) * stages],
            matrix_other: BTreeMap::new(),
            distribution: ReiterationDistribution::default(),
            flagged: 0,
            pathway_closed: Vec::new(),
            pathway_open: Vec::new(),
            stage_closed: vec![Vec::new(); stages],
            stage_open: vec![Vec::new(); stages],
            active: vec![0; stages],
            waiting: 0,
            closures: Closures::default(),
            corrections: 0,
            assessments: AssessmentCounts::default(),
            time_to_assessment: Vec::new(),
            by_occupability: TransitionsByOccupability::default(),
        }
    }

    /// Adds the totals of `other`, the same query's over other timelines.
    fn merge(&mut self, other: Self) {
        self.enrolments += other.enrolments;
        self.reopenings += other.reopenings;
        self.transitions += &other.transitions;
        for (total, count) in self.matrix.iter_mut().zip(other.matrix) {
            *total += count;
        }
        for (cell, count) in other.matrix_other {
            *self.matrix_other.entry(cell).or_default() += count;
        }
        self.distribution += &other.distribution;
        self.flagged += other.flagged;
        self.pathway_closed.extend(other.pathway_closed);
        self.pathway_open.extend(other.pathway_open);
        for (total, days) in self.stage_closed.iter_mut().zip(other.stage_closed) {
            total.extend(days);
        }
        for (total, days) in self.stage_open.iter_mut().zip(other.stage_open) {
            total.extend(days);
        }
        for (total, count) in self.active.iter_mut().zip(other.active) {
            *total += count;
        }
        self.waiting += other.waiting;
        self.closures += &other.closures;
        self.corrections += other.corrections;
        self.assessments += &other.assessments;
        self.time_to_assessment.extend(other.time_to_assessment);
        self.by_occupability += &other.by_occupability;
    }

    #[inline]
    fn in_period(&self, on: NaiveDate) -> bool {
        self.from <= on && on <= self.to
    }

    /// Counts `fact`, whose attribution territory is in this query's scope (the router only
    /// gives it such facts). The walk may report facts after `to` (for another query's later
    /// horizon): every count below is of facts dated in the period, so they are left out.
    #[inline]
    fn fact(&mut self, fact: Fact, local: &Stages<'_>, timeline: &Timeline) {
        match fact {
            Fact::SpellStarted { on, reopened, .. } => {
                if self.in_period(on) {
                    if reopened {
                        self.reopenings += 1;
                    } else {
                        self.enrolments += 1;
                    }
                }
            }
            Fact::StageEntered {
                on,
                stage,
                from_stage,
                transition,
                occupability,
                ..
            } => {
                if self.in_period(on) {
                    self.transitions.count(transition);
                    self.by_occupability.count(occupability, transition);
                    self.count_cell(from_stage, stage, local, timeline);
                }
            }
            Fact::EpisodeClosed {
                on,
                entered_on,
                stage,
                ..
            } => {
                if self.in_period(on)
                    && let Some(i) = local.catalogue_stage(stage)
                {
                    self.stage_closed[i].push(days_between(entered_on, on));
                }
            }
            Fact::SpellClosed {
                on,
                started_on,
                outcome,
                ..
            } => {
                if self.in_period(on) {
                    self.closures.add(outcome);
                    self.pathway_closed.push(days_between(started_on, on));
                }
            }
            Fact::Undone { recorded_at, .. } => {
                if self.in_period(recorded_at.date_naive()) {
                    self.corrections += 1;
                }
            }
            Fact::Assessed { on, kind, .. } => {
                if self.in_period(on) {
                    self.assessments.count(kind);
                }
            }
            Fact::SpellAssessed { on, spell } => {
                // Only an assessment by `to` counts (the walk may go past it for others).
                if self.in_period(spell.on) && on <= self.to {
                    self.time_to_assessment.push(days_between(spell.on, on));
                }
            }
        }
    }

    fn count_cell(
        &mut self,
        from: Option<LocalId>,
        to: LocalId,
        local: &Stages<'_>,
        timeline: &Timeline,
    ) {
        let columns = self.active.len();
        let row = match from {
            None => Some(0),
            Some(f) => local.catalogue_stage(f).map(|i| i + 1),
        };
        match (row, local.catalogue_stage(to)) {
            (Some(row), Some(column)) => self.matrix[row * columns + column] += 1,
            _ => {
                // A stage outside the catalogue: keyed by code (unknown ids are skipped).
                let from = match from {
                    None => None,
                    Some(f) => match timeline.stage(f) {
                        Some(code) => Some(code.clone()),
                        None => return,
                    },
                };
                if let Some(to) = timeline.stage(to) {
                    *self.matrix_other.entry((from, to.clone())).or_default() += 1;
                }
            }
        }
    }

    fn end(
        &mut self,
        end: &EndState,
        in_scope: &impl Fn(LocalId) -> bool,
        local: &Stages<'_>,
        query: &MetricsQuery,
    ) {
        if let Some(spell) = end.spell
            && in_scope(spell.territory)
        {
            self.pathway_open.push(days_between(spell.on, self.to));
        }
        if let Some((stage, episode)) = end.episode
            && let Some(i) = local.catalogue_stage(stage)
            && in_scope(episode.territory)
        {
            self.stage_open[i].push(days_between(episode.on, self.to));
        }
        if !in_scope(end.territory) {
            return;
        }
        if end.entered_any {
            self.distribution.add(end.total_reiterations);
            if end.stalled_reiterations >= query.threshold {
                self.flagged += 1;
            }
        }
        if end.spell.is_some() {
            match end.episode {
                None => self.waiting += 1,
                Some((stage, _)) => {
                    if let Some(i) = local.catalogue_stage(stage) {
                        self.active[i] += 1;
                    }
                }
            }
        }
    }

    fn finish(mut self, query: &MetricsQuery, catalogue: &StageCatalogue) -> TerritoryMetrics {
        let stages = catalogue.stages();
        let columns = stages.len();
        let mut matrix: Vec<TransitionCell> = self
            .matrix
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(i, &count)| TransitionCell {
                from: (i / columns)
                    .checked_sub(1)
                    .map(|row| stages[row].code.clone()),
                to: stages[i % columns].code.clone(),
                count,
            })
            .chain(
                self.matrix_other
                    .into_iter()
                    .map(|((from, to), count)| TransitionCell { from, to, count }),
            )
            .collect();
        matrix.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        let time_in_stage_days = stages
            .iter()
            .zip(self.stage_closed.iter_mut().zip(self.stage_open.iter_mut()))
            .map(|(stage, (closed, open))| {
                let durations = Durations {
                    closed: Stats::from_days(closed),
                    open: Stats::from_days(open),
                };
                (stage.code.to_string(), durations)
            })
            .collect();
        let active_at_end = stages
            .iter()
            .zip(&self.active)
            .map(|(stage, &n)| (stage.code.to_string(), n))
            .chain([(WAITING.to_owned(), self.waiting)])
            .collect();
        let time_to_assessment_days = Stats::from_days(&mut self.time_to_assessment);
        // Every spell started in the period and in scope is an enrolment or a reopening.
        let spells_without_assessment =
            (self.enrolments + self.reopenings).saturating_sub(time_to_assessment_days.count);
        TerritoryMetrics {
            query: query.echo(),
            enrolments: self.enrolments,
            reopenings: self.reopenings,
            progressivity_index: self.transitions.progressivity_index(),
            transitions: self.transitions,
            transition_matrix: matrix,
            reiteration: ReiterationSummary {
                distribution: self.distribution,
                flagged: self.flagged,
                threshold: query.threshold,
            },
            time_in_pathway_days: Durations {
                closed: Stats::from_days(&mut self.pathway_closed),
                open: Stats::from_days(&mut self.pathway_open),
            },
            time_in_stage_days: OrderedMap(time_in_stage_days),
            active_at_end: OrderedMap(active_at_end),
            closures: self.closures,
            corrections: self.corrections,
            assessments: self.assessments,
            time_to_assessment_days,
            spells_without_assessment,
            transitions_by_occupability: self.by_occupability,
        }
    }
}
