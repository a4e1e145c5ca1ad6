//! Online projection == offline replay, for random histories written through the store (the
//! real aggregate decides; refused commands are skipped; histories assess needs and name
//! providers) and random queries, on both backends: the metrics document, the audit list, the
//! provider scorecard, the breakdown and the monthly series.
//! The projection runs while the second half of the histories is written, in random batch
//! sizes.

use chrono::{DateTime, Days, TimeDelta, Utc};
use filiera_domain::MetricsQuery;
use filiera_domain::testing::{RandomHistory, history};
use filiera_projections::{ProjectionSettings, Projections};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use crate::common::*;
use filiera_testkit::Backend;

/// Few cases: each one writes through a real database. Raise `PROPTEST_CASES` to explore.
const CASES: u32 = 12;

const SCOPES: [Option<&str>; 6] = [
    None,
    Some("LOM"),
    Some("LOM-BG"),
    Some("LOM-MI-MILANO"),
    Some("PIE"),
    Some("LOM-LC-LECCO"),
];

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
    histories: Vec<RandomHistory>,
    batch_size: u32,
    /// Timelines a batch may gather by scanning on when its page is full (0: pages only).
    catch_up: usize,
    queries: Vec<QuerySpec>,
}

fn case() -> impl Strategy<Value = Case> {
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
        prop::collection::vec(history(14, 15), 2..6),
        1u32..9,
        prop_oneof![Just(0usize), 1usize..6],
        prop::collection::vec(query, 4),
    )
        .prop_map(|(histories, batch_size, catch_up, queries)| Case {
            histories,
            batch_size,
            catch_up,
            queries,
        })
}

/// Writes the histories, returning when each command was recorded.
async fn write_all(
    store: &filiera_store::Store,
    histories: &[RandomHistory],
) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let mut times = Vec::new();
    for history in histories {
        let id = Uuid::new_v4();
        for (_, command) in history.commands() {
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

async fn check(case: Case, backend: Backend) -> anyhow::Result<()> {
    let harness = Harness::on(backend).await?;
    let store = &harness.store;
    let half = case.histories.len() / 2;
    let mut times = write_all(store, &case.histories[..half]).await?;
    let settings = ProjectionSettings {
        catch_up_timelines: case.catch_up,
        ..settings(store, case.batch_size)
    };
    let projections = Projections::start(store.clone(), settings).await?;
    times.extend(write_all(store, &case.histories[half..]).await?);
    projections.wait_until_caught_up(PATIENCE).await?;

    let queries: Vec<MetricsQuery> = case.queries.iter().map(|q| q.query(&times)).collect();
    assert_same_as_replay(&projections, store, &queries).await?;
    projections.shutdown().await;
    Ok(())
}

fn run(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let cases = filiera_testkit::proptest_cases(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        runtime
            .block_on(check(case, backend))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn online_projection_equals_offline_replay_sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn online_projection_equals_offline_replay_postgres() {
    run(Backend::Postgres);
}
