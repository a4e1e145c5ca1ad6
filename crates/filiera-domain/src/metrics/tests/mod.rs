//! Tests of the metric fold: hand-computed scenarios, a naive oracle, and properties over
//! histories produced by the real aggregate.

mod assessments;
mod oracle;
mod properties;
mod scenarios;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde_json::{Value, json};

use crate::aggregate::{FixedClock, Pathway, PathwayServices};
use crate::catalogue::{Stage, StageCatalogue, StageCode};
use crate::command::PathwayCommand;
use crate::error::PathwayError;
use crate::event::{AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Referral, TeamMember};
use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::{MetricsQuery, RecordedEvent, TerritoryMetrics, Timeline, territory_metrics};

pub(super) fn d(s: &str) -> NaiveDate {
    s.parse().expect("a test date")
}

pub(super) fn ts(s: &str) -> DateTime<Utc> {
    s.parse().expect("a test timestamp")
}

pub(super) fn code(s: &str) -> TerritoryCode {
    TerritoryCode::parse(s).expect("a test territory")
}

pub(super) fn stage(s: &str) -> StageCode {
    StageCode::parse(s).expect("a test stage")
}

/// The default catalogue plus `training` at level 1, sharing its level with socio-occupational.
pub(super) fn training_catalogue() -> StageCatalogue {
    let stage = |code: &str, level| Stage {
        code: stage(code),
        label: code.to_owned(),
        level,
    };
    StageCatalogue::new(vec![
        stage("socio_occupational", 1),
        stage("training", 1),
        stage("internship", 2),
        stage("job_placement", 3),
    ])
    .expect("a valid catalogue")
}

/// Runs a future that never waits (the aggregate's `handle` only locks an uncontended mutex).
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the aggregate does not wait"),
    }
}

/// Drives the real [`Pathway`] aggregate and stamps each written event with a `recorded_at`,
/// as the store would. Unless [`Driver::at`] says otherwise, a command is recorded at noon of
/// its effective date, or a minute after the previous command if that is later.
pub(super) struct Driver {
    id: String,
    pathway: Pathway,
    pub events: Vec<RecordedEvent>,
    now: DateTime<Utc>,
    next_at: Option<DateTime<Utc>>,
    catalogue: Arc<StageCatalogue>,
    registry: Arc<TerritoryRegistry>,
}

impl Driver {
    pub fn new(id: &str) -> Self {
        Self::with_catalogue(id, StageCatalogue::default_catalogue())
    }

    pub fn with_catalogue(id: &str, catalogue: StageCatalogue) -> Self {
        Self {
            id: id.to_owned(),
            pathway: Pathway::default(),
            events: Vec::new(),
            now: DateTime::<Utc>::MIN_UTC,
            next_at: None,
            catalogue: Arc::new(catalogue),
            registry: Arc::new(TerritoryRegistry::sample()),
        }
    }

    pub fn pathway(&self) -> &Pathway {
        &self.pathway
    }

    /// Records the next command at `at` (RFC 3339).
    pub fn at(mut self, at: &str) -> Self {
        self.next_at = Some(ts(at));
        self
    }

    /// Runs `command` recorded at `at`; on success returns the new events' sequences.
    pub fn try_command(
        &mut self,
        at: DateTime<Utc>,
        command: PathwayCommand,
    ) -> Result<Vec<u64>, PathwayError> {
        assert!(at >= self.now, "recorded_at must not go back in a stream");
        let services = PathwayServices {
            catalogue: self.catalogue.clone(),
            territories: self.registry.clone(),
            providers: Default::default(),
            clock: Arc::new(FixedClock(at.date_naive())),
        };
        let sink = EventSink::default();
        let mut pathway = self.pathway.clone();
        block_on(pathway.handle(command, &services, &sink))?;
        self.pathway = pathway;
        self.now = at;
        let written = block_on(sink.collect());
        let mut sequences = Vec::new();
        for event in written {
            let sequence = self.events.len() as u64 + 1;
            sequences.push(sequence);
            self.events.push(RecordedEvent {
                sequence,
                recorded_at: at,
                event,
            });
        }
        Ok(sequences)
    }

    fn run(mut self, on: Option<NaiveDate>, command: PathwayCommand) -> Self {
        let default = match on {
            Some(on) => (self.now + TimeDelta::minutes(1))
                .max(on.and_time(NaiveTime::MIN).and_utc() + TimeDelta::hours(12)),
            None => self.now + TimeDelta::minutes(1),
        };
        let at = self.next_at.take().unwrap_or(default);
        let name = command.name();
        if let Err(err) = self.try_command(at, command) {
            panic!("{}: `{name}` refused: {err}", self.id);
        }
        self
    }

    pub fn enrol(self, territory: &str, on: &str) -> Self {
        let on = d(on);
        let command = PathwayCommand::Enrol {
            territory: territory.to_owned(),
            on,
            referral: Referral::SocialServices,
            support_band: None,
        };
        self.run(Some(on), command)
    }

    pub fn enter(self, stage: &str, on: &str) -> Self {
        self.enter_with(stage, on, None)
    }

    /// A stage entry run by `provider`.
    pub fn enter_with(self, stage: &str, on: &str, provider: Option<&str>) -> Self {
        let on = d(on);
        let command = PathwayCommand::EnterStage {
            stage: stage.to_owned(),
            on,
            provider: provider.map(str::to_owned),
        };
        self.run(Some(on), command)
    }

    pub fn exit(self, on: &str, outcome: ExitOutcome) -> Self {
        let on = d(on);
        self.run(Some(on), PathwayCommand::ExitStage { on, outcome })
    }

    pub fn moved(self, territory: &str, on: &str) -> Self {
        let on = d(on);
        let command = PathwayCommand::ChangeTerritory {
            territory: territory.to_owned(),
            on,
        };
        self.run(Some(on), command)
    }

    pub fn close(self, on: &str, outcome: CloseOutcome) -> Self {
        let on = d(on);
        self.run(Some(on), PathwayCommand::ClosePathway { on, outcome })
    }

    pub fn reopen(self, on: &str) -> Self {
        let on = d(on);
        self.run(Some(on), PathwayCommand::ReopenPathway { on })
    }

    /// An `initial` assessment by the employment centre.
    pub fn assess(self, on: &str, occupability: Occupability) -> Self {
        self.assess_as(on, AssessmentKind::Initial, occupability)
    }

    /// An assessment of `kind`; a `multidisciplinary` one by social services and the
    /// employment centre, the others by the employment centre alone.
    pub fn assess_as(self, on: &str, kind: AssessmentKind, occupability: Occupability) -> Self {
        let on = d(on);
        let team = match kind {
            AssessmentKind::Multidisciplinary => {
                vec![TeamMember::SocialServices, TeamMember::EmploymentCentre]
            }
            _ => vec![TeamMember::EmploymentCentre],
        };
        let command = PathwayCommand::AssessNeeds {
            on,
            kind,
            occupability,
            team,
        };
        self.run(Some(on), command)
    }

    pub fn undo(self) -> Self {
        let command = PathwayCommand::Undo {
            reason: "entered by mistake".to_owned(),
        };
        self.run(None, command)
    }

    pub fn timeline(&self) -> Timeline {
        Timeline::from_events(self.id.clone(), &self.events)
    }
}

/// A query with threshold 2 and `known_at` far after every test history.
pub(super) fn query(territory: Option<&str>, from: &str, to: &str) -> MetricsQuery {
    MetricsQuery {
        territory: territory.map(code),
        from: d(from),
        to: d(to),
        known_at: ts("2030-01-01T00:00:00Z"),
        threshold: 2,
    }
}

pub(super) fn metrics_with(
    timelines: &[Timeline],
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
) -> TerritoryMetrics {
    territory_metrics(timelines, query, catalogue, &TerritoryRegistry::sample())
}

pub(super) fn metrics(timelines: &[Timeline], query: &MetricsQuery) -> TerritoryMetrics {
    metrics_with(timelines, query, &StageCatalogue::default_catalogue())
}

/// The expected document, starting from all zeros and nulls, written by hand (not through the
/// types under test) and patched field by field.
///
/// Unless a test sets them, the assessment fields follow from the rest of the expected document
/// as for a history without assessments: every spell started in the period is one
/// `spells_without_assessment`, and every transition is `unassessed`.
pub(super) struct Expect(pub Value, std::collections::BTreeSet<String>);

impl Expect {
    pub fn zero(query: &MetricsQuery, catalogue: &StageCatalogue) -> Self {
        let empty = json!({"count": 0, "mean": null, "median": null, "p90": null});
        let mut stages = serde_json::Map::new();
        let mut active = serde_json::Map::new();
        for s in catalogue.stages() {
            stages.insert(
                s.code.to_string(),
                json!({"closed": empty.clone(), "open": empty.clone()}),
            );
            active.insert(s.code.to_string(), json!(0));
        }
        active.insert("waiting".to_owned(), json!(0));
        Self::new(json!({
            "query": {
                "territory": query.territory.as_ref().map(|t| t.as_str()),
                "from": query.from.to_string(),
                "to": query.to.to_string(),
                "known_at": query.known_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            },
            "enrolments": 0,
            "reopenings": 0,
            "transitions": {"entry": 0, "progression": 0, "reiteration": 0, "regression": 0},
            "transition_matrix": [],
            "progressivity_index": null,
            "reiteration": {
                "distribution": {"0": 0, "1": 0, "2": 0, "3+": 0},
                "flagged": 0,
                "threshold": query.threshold,
            },
            "time_in_pathway_days": {"closed": empty.clone(), "open": empty},
            "time_in_stage_days": stages,
            "active_at_end": active,
            "closures": {"employed": 0, "dropped_out": 0, "moved_away": 0, "deceased": 0, "other": 0},
            "corrections": 0,
            "assessments": {"initial": 0, "multidisciplinary": 0, "review": 0},
            "time_to_assessment_days": {"count": 0, "mean": null, "median": null, "p90": null},
            "spells_without_assessment": 0,
            "transitions_by_occupability": {
                "low": {"entry": 0, "progression": 0, "reiteration": 0, "regression": 0},
                "medium": {"entry": 0, "progression": 0, "reiteration": 0, "regression": 0},
                "high": {"entry": 0, "progression": 0, "reiteration": 0, "regression": 0},
                "unassessed": {"entry": 0, "progression": 0, "reiteration": 0, "regression": 0},
            },
        }))
    }

    fn new(document: Value) -> Self {
        Self(document, Default::default())
    }

    /// Sets the value at a `/`-separated path (no leading slash).
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        let field = path.split('/').next().unwrap_or(path);
        self.1.insert(field.to_owned());
        let slot = self
            .0
            .pointer_mut(&format!("/{path}"))
            .unwrap_or_else(|| panic!("no field {path} in the expected document"));
        *slot = value.into();
        self
    }

    /// Sets a stats object: `count` and, when non-zero, `(mean, median, p90)`.
    pub fn stats(self, path: &str, count: u64, values: (f64, f64, f64)) -> Self {
        let (mean, median, p90) = values;
        self.set(
            path,
            json!({"count": count, "mean": mean, "median": median, "p90": p90}),
        )
    }

    /// A stats object over a single duration.
    pub fn one(self, path: &str, days: f64) -> Self {
        self.stats(path, 1, (days, days, days))
    }

    /// The transition matrix, in the expected (sorted) order.
    pub fn matrix(self, cells: &[(Option<&str>, &str, u64)]) -> Self {
        let cells: Vec<Value> = cells
            .iter()
            .map(|(from, to, count)| json!({"from": from, "to": to, "count": count}))
            .collect();
        self.set("transition_matrix", cells)
    }

    pub fn transitions(
        self,
        entry: u64,
        progression: u64,
        reiteration: u64,
        regression: u64,
    ) -> Self {
        self.set(
            "transitions",
            json!({"entry": entry, "progression": progression,
                   "reiteration": reiteration, "regression": regression}),
        )
    }

    /// The document with the assessment fields a test left alone derived (see the type docs).
    fn completed(&self) -> Value {
        let mut document = self.0.clone();
        let count = |key: &str| document[key].as_u64().expect("a count");
        if !self.1.contains("spells_without_assessment") {
            let assessed = document["time_to_assessment_days"]["count"]
                .as_u64()
                .unwrap_or(0);
            let without = count("enrolments") + count("reopenings") - assessed;
            document["spells_without_assessment"] = json!(without);
        }
        if !self.1.contains("transitions_by_occupability") {
            document["transitions_by_occupability"]["unassessed"] = document["transitions"].clone();
        }
        document
    }

    #[track_caller]
    pub fn check(&self, actual: &TerritoryMetrics) {
        let actual = serde_json::to_value(actual).expect("metrics serialize");
        let expected = self.completed();
        if let Err(at) = same(&expected, &actual, String::new()) {
            panic!(
                "metrics differ at {at}\nexpected: {}\nactual:   {}",
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&actual).unwrap()
            );
        }
    }
}

/// Compares two JSON documents, numbers with a 1e-9 tolerance. Key order is only compared if
/// serde_json preserves it; the text tests check the order of the document itself.
pub(super) fn same(expected: &Value, actual: &Value, at: String) -> Result<(), String> {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if (a - b).abs() <= 1e-9 {
                Ok(())
            } else {
                Err(format!("{at}: {a} != {b}"))
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: Vec<_> = a.keys().collect();
            let keys_b: Vec<_> = b.keys().collect();
            if keys_a != keys_b {
                return Err(format!("{at}: keys {keys_a:?} != {keys_b:?}"));
            }
            for (k, v) in a {
                same(v, &b[k], format!("{at}/{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: {} items != {}", a.len(), b.len()));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(x, y, format!("{at}/{i}"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: {expected} != {actual}")),
    }
}
