//! Online projection == offline replay, for random histories written through the store (the
//! real aggregate decides; refused commands are skipped) and random queries, on both backends.
//! The projection runs while the second half of the histories is written, in random batch
//! sizes.

use chrono::{DateTime, Days, TimeDelta, Utc};
use filiera_domain::{
    AuditQuery, CloseOutcome, ExitOutcome, MetricsQuery, PathwayCommand, Referral,
};
use filiera_projections::{Projections, Replay};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use crate::common::*;

/// Few cases: each one writes through a real database. Raise `PROPTEST_CASES` to explore.
const CASES: u32 = 12;

const TERRITORIES: [&str; 5] = [
    "LOM-BG-BERGAMO",
    "LOM-BG-VALLE-BREMBANA",
    "LOM-LC-LECCO",
    "LOM-MI-MILANO",
    "PIE-TO-TORINO",
];
const STAGES: [&str; 4] = [
    "socio_occupational",
    "training",
    "internship",
    "job_placement",
];
const SCOPES: [Option<&str>; 6] = [
    None,
    Some("LOM"),
    Some("LOM-BG"),
    Some("LOM-MI-MILANO"),
    Some("PIE"),
    Some("LOM-LC-LECCO"),
];

/// One random command: what, which option, how many days after the previous one.
#[derive(Clone, Debug)]
struct Step {
    kind: u8,
    pick: u8,
    advance_days: u8,
}

/// A beneficiary: enrolment territory, start (days after 2024-01-01), commands.
type History = (u8, u16, Vec<Step>);

/// A random query: scope, period, which recording instant it is known at (or now), threshold.
#[derive(Clone, Debug)]
struct QuerySpec {
    scope: u8,
    from_offset: u16,
    length: u16,
    known_at: Option<(u16, bool)>,
    threshold: u32,
}

#[derive(Clone, Debug)]
struct Case {
    histories: Vec<History>,
    batch_size: u32,
    queries: Vec<QuerySpec>,
}

fn case() -> impl Strategy<Value = Case> {
    let step = (0u8..16, any::<u8>(), 0u8..15).prop_map(|(kind, pick, advance_days)| Step {
        kind,
        pick,
        advance_days,
    });
    let history = (any::<u8>(), 0u16..200, prop::collection::vec(step, 0..14));
    let query = (
        any::<u8>(),
        0u16..500,
        0u16..500,
        prop::option::weighted(0.7, (any::<u16>(), any::<bool>())),
        1u32..4,
    )
        .prop_map(
            |(scope, from_offset, length, known_at, threshold)| QuerySpec {
                scope,
                from_offset,
                length,
                known_at,
                threshold,
            },
        );
    (
        prop::collection::vec(history, 2..6),
        1u32..9,
        prop::collection::vec(query, 4),
    )
        .prop_map(|(histories, batch_size, queries)| Case {
            histories,
            batch_size,
            queries,
        })
}

/// The commands of a history; dates move forward so that most are accepted.
fn commands((territory, start, steps): &History) -> Vec<PathwayCommand> {
    let mut day = date("2024-01-01") + Days::new(u64::from(*start));
    let mut commands = vec![PathwayCommand::Enrol {
        territory: TERRITORIES[usize::from(*territory) % TERRITORIES.len()].to_owned(),
        on: day,
        referral: Referral::ThirdSector,
        support_band: None,
    }];
    for step in steps {
        day = day + Days::new(u64::from(step.advance_days));
        let pick = usize::from(step.pick);
        commands.push(match step.kind {
            0..=6 => PathwayCommand::EnterStage {
                stage: STAGES[pick % STAGES.len()].to_owned(),
                on: day,
                provider: None,
            },
            7 | 8 => PathwayCommand::ExitStage {
                on: day,
                outcome: if pick % 2 == 0 {
                    ExitOutcome::Completed
                } else {
                    ExitOutcome::Interrupted
                },
            },
            9 | 10 => PathwayCommand::ChangeTerritory {
                territory: TERRITORIES[pick % TERRITORIES.len()].to_owned(),
                on: day,
            },
            11 => PathwayCommand::ClosePathway {
                on: day,
                outcome: CloseOutcome::ALL[pick % CloseOutcome::ALL.len()],
            },
            12 => PathwayCommand::ReopenPathway { on: day },
            _ => PathwayCommand::Undo {
                reason: "random correction".to_owned(),
            },
        });
    }
    commands
}

/// Writes the histories, returning when each command was recorded.
async fn write_all(
    store: &filiera_store::Store,
    histories: &[History],
) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let mut times = Vec::new();
    for history in histories {
        let id = Uuid::new_v4();
        for command in commands(history) {
            let ctx = filiera_store::CommandContext::new("proptest");
            if let Ok(executed) = store.execute(id, command, ctx).await? {
                times.extend(executed.events.last().map(|e| e.recorded_at));
            }
        }
    }
    Ok(times)
}

impl QuerySpec {
    fn query(&self, times: &[DateTime<Utc>]) -> MetricsQuery {
        let from = date("2023-12-01") + Days::new(u64::from(self.from_offset));
        let known_at = match (self.known_at, times.len()) {
            (Some((i, just_before)), n) if n > 0 => {
                let t = times[usize::from(i) % n];
                if just_before {
                    t - TimeDelta::microseconds(1)
                } else {
                    t
                }
            }
            _ => Utc::now(),
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

async fn check(case: Case, postgres: bool) -> anyhow::Result<()> {
    let harness = if postgres {
        Harness::postgres().await?
    } else {
        Harness::sqlite().await?
    };
    let store = &harness.store;
    let half = case.histories.len() / 2;
    let mut times = write_all(store, &case.histories[..half]).await?;
    let projections = Projections::start(store.clone(), settings(store, case.batch_size)).await?;
    times.extend(write_all(store, &case.histories[half..]).await?);
    projections.wait_until_caught_up(PATIENCE).await?;

    let replay = Replay::load(store).await?;
    let (catalogue, registry) = (
        &projections.settings().catalogue,
        &projections.settings().registry,
    );
    for spec in &case.queries {
        let query = spec.query(&times);
        let online = projections.metrics(query.clone()).await?;
        let offline = replay.metrics(&query, catalogue, registry);
        anyhow::ensure!(
            online == offline,
            "metrics differ for {query:?}:\nonline  {}\noffline {}",
            serde_json::to_string(&online)?,
            serde_json::to_string(&offline)?
        );
        let audit = AuditQuery::from(&query);
        let online = projections.audit(audit.clone()).await?;
        anyhow::ensure!(
            online == replay.audit(&audit, catalogue, registry),
            "audit lists differ for {audit:?}"
        );
    }
    projections.shutdown().await;
    Ok(())
}

fn run(postgres: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        runtime
            .block_on(check(case, postgres))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn online_projection_equals_offline_replay_sqlite() {
    run(false);
}

#[test]
fn online_projection_equals_offline_replay_postgres() {
    run(true);
}
