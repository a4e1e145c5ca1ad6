//! Properties over random histories written by the real aggregate: the fold equals the naive
//! oracle, a timeline built event by event through its persisted form equals one built in one
//! go, and nothing panics — not even on streams the aggregate would never write.

use chrono::{DateTime, Days, TimeDelta, Utc};
use proptest::prelude::*;

use crate::catalogue::{StageCatalogue, StageCode};
use crate::event::{AssessmentKind, Occupability, PathwayEvent, Transition};
use crate::state::PathwayStatus;
use crate::territory::TerritoryRegistry;
use crate::testing::{RandomHistory, TERRITORIES, history};

use super::super::fold::{territory_metrics_in_parts, territory_metrics_many};
use super::super::series::{breakdown_queries, series_queries};
use super::super::{
    AuditQuery, RecordedEvent, Timeline, TimelineIndex, TransitionCounts, provider_scorecard,
    reiteration_audit, territory_metrics,
};
use super::oracle::{oracle, scorecard_oracle};
use super::*;

const SCOPES: [Option<&str>; 7] = [
    None,
    Some("LOM"),
    Some("LOM-BG"),
    Some("LOM-BG-BERGAMO"),
    Some("LOM-LC"),
    Some("LOM-MI-MILANO"),
    Some("PIE"),
];

/// Runs a history through the aggregate; refused commands write nothing and are skipped.
fn drive(id: &str, history: &RandomHistory) -> Driver {
    let mut driver = Driver::with_catalogue(id, training_catalogue());
    let mut commands = history.commands().into_iter();
    let (now, enrol) = commands
        .next()
        .expect("a history starts with its enrolment");
    driver
        .try_command(now, enrol)
        .expect("the enrolment is valid");
    for (now, command) in commands {
        let _refused_or_written = driver.try_command(now, command);
    }
    driver
}

/// A random query over the histories' time range.
#[derive(Clone, Debug)]
struct QuerySpec {
    scope: u8,
    from_offset: u16,
    length: u16,
    known_at_hours: Option<u32>,
    threshold: u32,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        any::<u8>(),
        0u16..700,
        0u16..700,
        prop::option::weighted(0.7, 0u32..24 * 700),
        0u32..4,
    )
        .prop_map(
            |(scope, from_offset, length, known_at_hours, threshold)| QuerySpec {
                scope,
                from_offset,
                length,
                known_at_hours,
                threshold,
            },
        )
}

impl QuerySpec {
    fn query(&self) -> MetricsQuery {
        let from = d("2023-12-01") + Days::new(u64::from(self.from_offset));
        let known_at = match self.known_at_hours {
            Some(hours) => ts("2024-01-01T00:00:00Z") + TimeDelta::hours(i64::from(hours)),
            None => ts("2030-01-01T00:00:00Z"),
        };
        MetricsQuery {
            territory: SCOPES[usize::from(self.scope) % SCOPES.len()].map(code),
            from,
            to: from + Days::new(u64::from(self.length)),
            known_at,
            threshold: self.threshold,
        }
    }
}

fn drive_all(histories: &[RandomHistory]) -> Vec<Driver> {
    histories
        .iter()
        .enumerate()
        .map(|(i, h)| drive(&format!("b{i:02}"), h))
        .collect()
}

fn check_invariants(m: &TerritoryMetrics) {
    let t = &m.transitions;
    let cells: u64 = m.transition_matrix.iter().map(|c| c.count).sum();
    assert_eq!(
        cells,
        t.entry + t.progression + t.reiteration + t.regression
    );
    let entries: u64 = m
        .transition_matrix
        .iter()
        .filter(|c| c.from.is_none())
        .map(|c| c.count)
        .sum();
    assert_eq!(entries, t.entry);
    let sorted = m
        .transition_matrix
        .windows(2)
        .all(|w| (&w[0].from, &w[0].to) < (&w[1].from, &w[1].to));
    assert!(sorted, "matrix sorted without duplicates");
    assert_eq!(m.closures.total(), m.time_in_pathway_days.closed.count);
    let spread: u64 = m
        .reiteration
        .distribution
        .buckets()
        .iter()
        .map(|b| b.1)
        .sum();
    assert!(m.reiteration.flagged <= spread);
    let by_occupability = m.transitions_by_occupability.rows().iter().fold(
        TransitionCounts::default(),
        |mut sum, (_, row)| {
            sum.entry += row.entry;
            sum.progression += row.progression;
            sum.reiteration += row.reiteration;
            sum.regression += row.regression;
            sum
        },
    );
    assert_eq!(&by_occupability, t);
    assert_eq!(
        m.time_to_assessment_days.count + m.spells_without_assessment,
        m.enrolments + m.reopenings
    );
    if let Some(index) = m.progressivity_index {
        assert!((-1.0..=1.0).contains(&index));
    }
    for (_, durations) in m.time_in_stage_days.iter() {
        for stats in [&durations.closed, &durations.open] {
            if let (Some(median), Some(p90)) = (stats.median, stats.p90) {
                assert!(median <= p90 + 1e-9);
            }
        }
    }
}

/// `None` when the two documents are the same (numbers within 1e-9), else where they differ
/// and both documents.
fn difference(expected: &impl serde::Serialize, actual: &impl serde::Serialize) -> Option<String> {
    let (e, a) = (
        serde_json::to_value(expected).unwrap(),
        serde_json::to_value(actual).unwrap(),
    );
    same(&e, &a, String::new())
        .err()
        .map(|at| format!("{at}\nexpected {e}\nactual {a}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The fold equals the literal reading of SPEC 3, and the audit agrees with `flagged`.
    #[test]
    fn fold_equals_the_oracle(
        histories in prop::collection::vec(history(30, 12), 1..6),
        specs in prop::collection::vec(query_spec(), 1..6),
    ) {
        let drivers = drive_all(&histories);
        let streams: Vec<Vec<RecordedEvent>> = drivers.iter().map(|d| d.events.clone()).collect();
        let timelines: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        for spec in &specs {
            let q = spec.query();
            let actual = territory_metrics(&timelines, &q, &catalogue, &registry);
            let expected = oracle(&streams, &q, &catalogue, &registry);
            if let Some(difference) = difference(&expected, &actual) {
                prop_assert!(false, "{q:?}: {difference}");
            }
            check_invariants(&actual);

            let audit = reiteration_audit(&timelines, &AuditQuery::from(&q), &catalogue, &registry);
            prop_assert_eq!(audit.beneficiaries.len() as u64, actual.reiteration.flagged);
            let ids: Vec<_> = audit.beneficiaries.iter().map(|b| b.beneficiary_id.clone()).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            prop_assert_eq!(ids, sorted);
            for b in &audit.beneficiaries {
                prop_assert!(b.stalled_reiterations >= q.threshold);
                prop_assert!(b.stalled_reiterations <= b.total_reiterations);
                let listed = b.transitions.iter().filter(|t| t.classification == Transition::Reiteration).count();
                prop_assert_eq!(listed as u32, b.total_reiterations);
                prop_assert!(b.transitions.iter().all(|t| t.on <= q.to));
            }
        }
    }

    /// A timeline applied one event at a time, persisted and reloaded after each, is the same
    /// as one built in one go, and gives the same metrics; it follows the aggregate's state.
    #[test]
    fn incremental_timelines_equal_replayed_ones(
        histories in prop::collection::vec(history(30, 12), 1..5),
        specs in prop::collection::vec(query_spec(), 1..4),
    ) {
        let drivers = drive_all(&histories);
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        let mut online = Vec::new();
        for driver in &drivers {
            let mut row = serde_json::to_string(&Timeline::new(driver.timeline().beneficiary_id())).unwrap();
            for event in &driver.events {
                let mut timeline: Timeline = serde_json::from_str(&row).unwrap();
                prop_assert!(timeline.apply(event));
                row = serde_json::to_string(&timeline).unwrap();
            }
            let timeline: Timeline = serde_json::from_str(&row).unwrap();
            let state = driver.pathway().state();
            if state.status != PathwayStatus::Voided {
                prop_assert_eq!(timeline.current_territory(), state.territory.as_ref());
            }
            prop_assert_eq!(timeline.last_sequence(), driver.pathway().version());
            online.push(timeline);
        }
        let offline: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        prop_assert_eq!(&online, &offline);
        for spec in &specs {
            let q = spec.query();
            prop_assert_eq!(
                territory_metrics(&online, &q, &catalogue, &registry),
                territory_metrics(&offline, &q, &catalogue, &registry)
            );
        }
    }

    /// Erasing a beneficiary's personal data changes no metric and no audit (SPEC 5.2).
    #[test]
    fn erasure_changes_no_metric(
        histories in prop::collection::vec(history(30, 12), 1..5),
        specs in prop::collection::vec(query_spec(), 1..4),
    ) {
        let plain = drive_all(&histories);
        let mut erased = drive_all(&histories);
        for driver in &mut erased {
            let after = driver.events.last().map(|e| e.recorded_at).unwrap_or_default();
            driver
                .try_command(after + TimeDelta::minutes(1), PathwayCommand::RecordErasure)
                .expect("every driven beneficiary can be erased");
        }
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        let plain: Vec<Timeline> = plain.iter().map(Driver::timeline).collect();
        let erased: Vec<Timeline> = erased.iter().map(Driver::timeline).collect();
        for spec in &specs {
            let q = spec.query();
            prop_assert_eq!(
                territory_metrics(&plain, &q, &catalogue, &registry),
                territory_metrics(&erased, &q, &catalogue, &registry)
            );
            let audit = AuditQuery::from(&q);
            prop_assert_eq!(
                serde_json::to_value(reiteration_audit(&plain, &audit, &catalogue, &registry)).unwrap(),
                serde_json::to_value(reiteration_audit(&erased, &audit, &catalogue, &registry)).unwrap()
            );
        }
    }

    /// Several queries folded in one pass (shared walks, routed facts) give each the document
    /// it gets alone: mixed scopes, periods and `known_at`, a series' months and a breakdown's
    /// children together.
    #[test]
    fn many_queries_in_one_pass_equal_each_alone(
        histories in prop::collection::vec(history(30, 12), 1..6),
        specs in prop::collection::vec(query_spec(), 1..6),
    ) {
        let drivers = drive_all(&histories);
        let timelines: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        let mut queries: Vec<MetricsQuery> = specs.iter().map(QuerySpec::query).collect();
        queries.extend(series_queries(&queries[0]));
        queries.extend(breakdown_queries(&queries[0], &registry));
        // The roots: more children ending together than the fold hands the end state to
        // one by one.
        let roots = MetricsQuery { territory: None, ..queries[0].clone() };
        queries.extend(breakdown_queries(&roots, &registry));
        let many = territory_metrics_many(&timelines, &queries, &catalogue, &registry);
        prop_assert_eq!(many.len(), queries.len());
        for (q, document) in queries.iter().zip(&many) {
            prop_assert_eq!(document, &territory_metrics(&timelines, q, &catalogue, &registry), "{:?}", q);
        }
        // A series folded alone: its months do not meet, so each dated fact goes only to the
        // month holding its date. The same documents as each month alone.
        let months = series_queries(&queries[0]);
        let series = territory_metrics_many(&timelines, &months, &catalogue, &registry);
        for (q, document) in months.iter().zip(&series) {
            prop_assert_eq!(document, &territory_metrics(&timelines, q, &catalogue, &registry), "{:?}", q);
        }
        // Folded in parts on threads of their own (as over many timelines), the totals added
        // up: the same documents, whatever the split.
        let refs: Vec<&Timeline> = timelines.iter().collect();
        for parts in [2, 3, refs.len() + 1] {
            let split = territory_metrics_in_parts(&refs, parts, &queries, &catalogue, &registry);
            prop_assert_eq!(&split, &many, "in {} parts", parts);
        }
        // Through the query cache's index, whose codes were resolved when each timeline was
        // inserted, after another beneficiary's timeline was replaced under every key: the
        // same documents.
        let mut index = TimelineIndex::default();
        let key = |t: &Timeline| t.beneficiary_id().to_owned();
        for (timeline, other) in timelines.iter().zip(timelines.iter().cycle().skip(1)) {
            index.insert(key(timeline), other.clone());
        }
        index.extend(timelines.iter().rev().map(|t| (key(t), t.clone())));
        prop_assert_eq!(index.len(), timelines.len());
        prop_assert_eq!(&index.territory_metrics_many(&queries, &catalogue, &registry), &many);
        prop_assert_eq!(
            &index.territory_metrics(&queries[0], &catalogue, &registry),
            &many[0]
        );
        // The folds that read the index's timelines one by one see them whole.
        let audit = AuditQuery::from(&queries[0]);
        prop_assert_eq!(
            serde_json::to_value(reiteration_audit(index.views(), &audit, &catalogue, &registry)).unwrap(),
            serde_json::to_value(reiteration_audit(&timelines, &audit, &catalogue, &registry)).unwrap()
        );
        prop_assert_eq!(
            provider_scorecard(index.views(), &queries[0], &catalogue, &registry),
            provider_scorecard(&timelines, &queries[0], &catalogue, &registry)
        );
    }

    /// The regional report's documents, folded together, are each the document of its own
    /// route for the same query: the metrics, the series of its last months, the breakdown
    /// and the audit list.
    #[test]
    fn regional_documents_equal_each_document_alone(
        histories in prop::collection::vec(history(30, 12), 1..6),
        spec in query_spec(),
    ) {
        let drivers = drive_all(&histories);
        let timelines: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        let q = spec.query();
        let regional = super::super::regional_documents(&timelines, &q, &catalogue, &registry);
        prop_assert_eq!(&regional.metrics, &territory_metrics(&timelines, &q, &catalogue, &registry));
        let months = series_queries(&super::super::regional_series_query(&q));
        prop_assert_eq!(regional.series.points.len(), months.len());
        for (point, month) in regional.series.points.iter().zip(&months) {
            prop_assert_eq!(&point.metrics, &territory_metrics(&timelines, month, &catalogue, &registry));
        }
        let children = breakdown_queries(&q, &registry);
        prop_assert_eq!(regional.breakdown.children.len(), children.len());
        for (child, query) in regional.breakdown.children.iter().zip(&children) {
            prop_assert_eq!(&child.metrics, &territory_metrics(&timelines, query, &catalogue, &registry));
        }
        prop_assert_eq!(
            &regional.audit,
            &reiteration_audit(&timelines, &AuditQuery::from(&q), &catalogue, &registry)
        );
    }

    /// The provider scorecard equals the literal reading of SPEC 3.1, and its counts agree
    /// with each other.
    #[test]
    fn scorecard_equals_the_oracle(
        histories in prop::collection::vec(history(30, 40), 1..6),
        specs in prop::collection::vec(query_spec(), 1..6),
    ) {
        let drivers = drive_all(&histories);
        let streams: Vec<Vec<RecordedEvent>> = drivers.iter().map(|d| d.events.clone()).collect();
        let timelines: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        for spec in &specs {
            let q = spec.query();
            let actual = provider_scorecard(&timelines, &q, &catalogue, &registry);
            let expected = scorecard_oracle(&streams, &q, &catalogue, &registry);
            if let Some(difference) = difference(&expected, &actual) {
                prop_assert!(false, "{q:?}: {difference}");
            }
            for p in &actual.providers {
                let t = &p.transitions;
                prop_assert_eq!(p.episodes, t.entry + t.progression + t.reiteration + t.regression);
                let exited = p.exits.total();
                prop_assert_eq!(p.time_in_stage_days.count, exited);
                prop_assert!(p.placements_within_180_days <= exited);
                let c = &p.occupability_change;
                prop_assert_eq!(c.improved + c.unchanged + c.worsened + c.unknown, exited);
            }
        }
    }

    /// Streams the aggregate would refuse (dates out of order, undos of anything, stages
    /// outside the catalogue, no enrolment first) must not make the fold panic, and folding
    /// several queries together still answers each like it alone.
    #[test]
    fn arbitrary_streams_never_panic(
        raw in prop::collection::vec((0u8..8, any::<u8>(), 0u16..400, 0u32..2000), 0..40),
        specs in prop::collection::vec(query_spec(), 1..4),
    ) {
        let stage_of = |pick: u8| StageCode::parse(["socio_occupational", "internship", "elsewhere"][usize::from(pick) % 3]).unwrap();
        let mut events = Vec::new();
        for (i, (kind, pick, day, hours)) in raw.iter().enumerate() {
            let on = d("2024-01-01") + Days::new(u64::from(*day));
            let recorded_at: DateTime<Utc> = ts("2024-01-01T00:00:00Z") + TimeDelta::hours(i64::from(*hours));
            let territory = code(TERRITORIES[usize::from(*pick) % TERRITORIES.len()]);
            let event = match kind {
                0 => PathwayEvent::Enrolled { territory, on, referral: Referral::Other, support_band: None },
                1 => PathwayEvent::StageEntered {
                    stage: stage_of(*pick),
                    on,
                    from_stage: (pick % 2 == 0).then(|| stage_of(pick / 2)),
                    transition: [Transition::Entry, Transition::Progression, Transition::Reiteration, Transition::Regression][usize::from(*pick) % 4],
                    provider: (pick % 3 == 0).then(|| format!("p{}", pick % 5)),
                },
                2 => PathwayEvent::StageExited { stage: stage_of(*pick), on, outcome: ExitOutcome::Completed },
                3 => PathwayEvent::TerritoryChanged { from: territory.clone(), to: territory, on },
                4 => PathwayEvent::PathwayClosed { on, outcome: CloseOutcome::ALL[usize::from(*pick) % 5] },
                5 => PathwayEvent::PathwayReopened { on },
                6 => PathwayEvent::NeedsAssessed {
                    on,
                    kind: AssessmentKind::ALL[usize::from(*pick) % 3],
                    occupability: Occupability::ALL[usize::from(*pick / 3) % 3],
                    team: Vec::new(),
                },
                _ => PathwayEvent::CommandUndone {
                    on,
                    undone_sequences: vec![u64::from(*pick) % 50, i as u64],
                    reason: "fuzz".to_owned(),
                },
            };
            events.push(RecordedEvent { sequence: i as u64 + 1, recorded_at, event });
        }
        let timelines = [Timeline::from_events("fuzz", &events)];
        // Effective dates out of order (as clocks that disagree could leave them): one pass
        // over several horizons still gives each query its own document.
        let registry = TerritoryRegistry::sample();
        let mut queries: Vec<MetricsQuery> = specs.iter().map(QuerySpec::query).collect();
        queries.extend(series_queries(&queries[0]));
        let catalogue = training_catalogue();
        let many = territory_metrics_many(&timelines, &queries, &catalogue, &registry);
        for (q, document) in queries.iter().zip(&many) {
            prop_assert_eq!(document, &territory_metrics(&timelines, q, &catalogue, &registry));
        }
        for spec in &specs {
            let q = spec.query();
            for catalogue in [training_catalogue(), StageCatalogue::default()] {
                let m = territory_metrics(&timelines, &q, &catalogue, &TerritoryRegistry::sample());
                let _ = m.to_csv();
                let _ = reiteration_audit(&timelines, &AuditQuery::from(&q), &catalogue, &TerritoryRegistry::sample());
                let _ = provider_scorecard(&timelines, &q, &catalogue, &TerritoryRegistry::sample()).to_csv();
            }
        }
    }
}

/// A matrix as `(from, to) → count`.
type Cells = std::collections::BTreeMap<(Option<String>, String), u64>;

fn matrix_cells(m: &TerritoryMetrics, with_entries: bool) -> Cells {
    m.transition_matrix
        .iter()
        .filter(|c| with_entries || c.from.is_some())
        .map(|c| {
            let from = c.from.as_ref().map(|s| s.as_str().to_owned());
            ((from, c.to.as_str().to_owned()), c.count)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The process-mining logs agree with the fold by construction. In any scope, the stage
    /// entries of the logs by `(from_stage, stage)` are the transition matrix and their
    /// enrolments, reopenings, transitions and assessments are the document's. Over every
    /// territory from 2000-01-01, the stage entries of each log, taken in order, directly
    /// follow each other as the matrix without its `entry` rows counts them, and each log's
    /// dates never go back.
    #[test]
    fn event_logs_agree_with_the_fold(
        histories in prop::collection::vec(history(30, 12), 1..6),
        specs in prop::collection::vec(query_spec(), 1..5),
    ) {
        use super::super::event_log::{Activity, LogScope, event_log};

        let drivers = drive_all(&histories);
        let timelines: Vec<Timeline> = drivers.iter().map(Driver::timeline).collect();
        let catalogue = training_catalogue();
        let registry = TerritoryRegistry::sample();
        for spec in &specs {
            let q = spec.query();
            let m = territory_metrics(&timelines, &q, &catalogue, &registry);
            let scope = LogScope::new(q.territory.as_ref(), &registry);
            let mut cells = Cells::new();
            let mut transitions = TransitionCounts::default();
            let (mut enrolments, mut reopenings, mut assessments) = (0, 0, 0);
            for timeline in &timelines {
                for event in event_log(timeline, &q, &scope) {
                    prop_assert!(q.from <= event.on && event.on <= q.to);
                    match event.activity {
                        Activity::StageEntered { stage, from_stage, transition, .. } => {
                            let key = (from_stage.map(|s| s.as_str().to_owned()), stage.expect("a stage").as_str().to_owned());
                            *cells.entry(key).or_default() += 1;
                            transitions.count(transition);
                        }
                        Activity::Enrolled => enrolments += 1,
                        Activity::PathwayReopened => reopenings += 1,
                        Activity::NeedsAssessed { .. } => assessments += 1,
                        _ => {}
                    }
                }
            }
            prop_assert_eq!(&cells, &matrix_cells(&m, true), "{:?}", q);
            prop_assert_eq!(&transitions, &m.transitions);
            prop_assert_eq!(enrolments, m.enrolments);
            prop_assert_eq!(reopenings, m.reopenings);
            let a = &m.assessments;
            prop_assert_eq!(assessments, a.initial + a.multidisciplinary + a.review);

            let whole = MetricsQuery { territory: None, from: d("2000-01-01"), ..q.clone() };
            let everything = LogScope::new(None, &registry);
            let mut follows = Cells::new();
            for timeline in &timelines {
                let log = event_log(timeline, &whole, &everything);
                prop_assert!(log.windows(2).all(|w| w[0].sequence < w[1].sequence && w[0].on <= w[1].on));
                let stages: Vec<String> = log
                    .iter()
                    .filter_map(|e| match e.activity {
                        Activity::StageEntered { stage, .. } => stage.map(|s| s.as_str().to_owned()),
                        _ => None,
                    })
                    .collect();
                for pair in stages.windows(2) {
                    *follows.entry((Some(pair[0].clone()), pair[1].clone())).or_default() += 1;
                }
            }
            let m = territory_metrics(&timelines, &whole, &catalogue, &registry);
            prop_assert_eq!(&follows, &matrix_cells(&m, false), "{:?}", whole);
        }
    }
}
