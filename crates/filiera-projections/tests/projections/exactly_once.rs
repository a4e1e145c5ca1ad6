//! Every event is applied exactly once per generation: across a restart, across crashes at
//! any point, and with two runners racing on one database.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use filiera_domain::PathwayEvent;
use filiera_projections::{Projections, Runner, TERRITORY_METRICS};
use filiera_testkit::Backend;
use uuid::Uuid;

use crate::common::*;

/// Stop the handle mid-way, write more, start again: every event applied once in total.
pub async fn applies_every_event_once_across_a_restart(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    for _ in 0..3 {
        varied_history(store).await?;
    }
    let first = Projections::start(store.clone(), settings(store, 3)).await?;
    let first_ref = &first;
    eventually("the first runner applied a batch", || async move {
        Ok(first_ref.applied_events().values().sum::<u64>() > 0)
    })
    .await?;
    first.shutdown().await;
    let times = varied_history(store).await?;
    let second = Projections::start(store.clone(), settings(store, 3)).await?;
    second.wait_until_caught_up(PATIENCE).await?;

    let total = feed_len(store).await?;
    let applied = |p: &Projections| p.applied_events().get(&1).copied().unwrap_or(0);
    ensure!(
        applied(&first) + applied(&second) == total,
        "{} + {} events applied, the feed has {total}",
        applied(&first),
        applied(&second)
    );
    ensure!(
        applied(&first) < total,
        "the first handle was stopped mid-way"
    );
    assert_rows_match_replay(store, 1).await?;
    assert_same_as_replay(&second, store, &queries(&times)).await?;
    second.shutdown().await;
    Ok(())
}

/// Runners cancelled at arbitrary await points — mid-read, mid-transaction, between batches —
/// as a crash would stop them; then a handle finishes the job. The rows are exactly the replay.
pub async fn crashes_at_any_point_lose_and_repeat_nothing(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let mut times = Vec::new();
    for _ in 0..3 {
        times.extend(varied_history(store).await?);
    }
    for i in 0..25u64 {
        // Every other runner catches up with scans, so crashes also come mid-scan.
        let catch_up = if i % 2 == 0 { 0 } else { 2 };
        let mut runner = Runner::new(store, TERRITORY_METRICS, 2)?.catching_up_by(catch_up);
        let budget = Duration::from_micros(300 + (i * 7_919) % 6_000);
        let _crashed = tokio::time::timeout(budget, async {
            loop {
                runner.step().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), filiera_projections::ProjectionError>(())
        })
        .await;
    }
    let projections = Projections::start(store.clone(), settings(store, 5)).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    assert_rows_match_replay(store, 1).await?;
    assert_same_as_replay(&projections, store, &queries(&times)).await?;
    projections.shutdown().await;
    Ok(())
}

/// Two runners, without leadership, on one database (separate pools, as two processes): the
/// checkpoint's compare-and-set lets exactly one of them commit each batch.
pub async fn competing_runners_never_apply_a_batch_twice(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    for _ in 0..4 {
        varied_history(store).await?;
    }
    let other = h.another_store().await?;
    let run = |store: filiera_store::Store, catch_up: usize| async move {
        let mut runner = Runner::new(&store, TERRITORY_METRICS, 3)?.catching_up_by(catch_up);
        let (mut applied, mut lost) = (0, 0);
        loop {
            let step = runner.step().await?;
            applied += step.applied();
            lost += usize::from(step.active.as_ref().is_some_and(|b| !b.committed));
            if !step.more_to_do() {
                return anyhow::Ok((applied, lost));
            }
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(run(store.clone(), 0)),
        tokio::spawn(run(other.clone(), 2))
    );
    let ((applied_a, lost_a), (applied_b, lost_b)) = (a??, b??);
    let total = feed_len(store).await? as usize;
    ensure!(
        applied_a + applied_b == total,
        "{applied_a} + {applied_b} events applied (lost races: {lost_a} + {lost_b}), the feed has {total}"
    );
    assert_rows_match_replay(store, 1).await?;
    Ok(())
}

/// A generation with more streams than a catch-up batch may hold, built from position 0 by two
/// runners racing: on PostgreSQL one of them folds it part by part in a single batch (every
/// timeline written once, stamped with the head), the other finds the checkpoint moved and
/// folds nothing; on SQLite it is built in several catch-up batches. Either way every event is
/// applied once and the rows are the replay's.
pub async fn a_generation_larger_than_a_catch_up_batch_is_built_once(
    h: &Harness,
) -> anyhow::Result<()> {
    const STREAMS: usize = 1_500;
    const HOLDS: usize = 500;
    let store = &h.store;
    varied_history(store).await?;
    // One decided history repeated in 1,500 streams, interleaved (every stream's first event,
    // then every stream's second…): 6,000 events, more than a scan chunk (4,096), and every
    // stream goes on to the end of the feed, so a batch of 500 timelines never completes one.
    let (source, _) = write(
        store,
        vec![
            enrol("LOM-BG-BERGAMO", "2024-01-10"),
            stage("socio_occupational", "2024-02-01"),
            stage("internship", "2024-04-01"),
            stage("job_placement", "2024-09-01"),
        ],
    )
    .await?;
    let decided: Vec<PathwayEvent> = store
        .history(source)
        .await?
        .context("the source stream")?
        .into_iter()
        .map(|e| e.event)
        .collect();
    let copies: Vec<Uuid> = (0..STREAMS).map(|_| Uuid::new_v4()).collect();
    let mut rows = Vec::new();
    for (sequence, event) in (1u64..).zip(&decided) {
        rows.extend(copies.iter().map(|id| (*id, sequence, event)));
    }
    let metadata = HashMap::from([
        ("principal".to_owned(), "test".to_owned()),
        ("command".to_owned(), "test".to_owned()),
    ]);
    store.append_recorded(&rows, &metadata).await?;
    let head = store.head().await?;
    let streams = store.count_streams(head).await?;
    ensure!(streams > STREAMS as u64, "{streams} streams");
    let other = h.another_store().await?;
    let run = |store: filiera_store::Store| async move {
        let mut runner = Runner::new(&store, TERRITORY_METRICS, 100)?.catching_up_by(HOLDS);
        let (mut applied, mut batches) = (0, 0);
        loop {
            let step = runner.step().await?;
            applied += step.applied();
            batches += usize::from(step.applied() > 0);
            if !step.more_to_do() {
                return anyhow::Ok((applied, batches));
            }
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(run(store.clone())),
        tokio::spawn(run(other.clone()))
    );
    let ((applied_a, batches_a), (applied_b, batches_b)) = (a??, b??);
    let total = feed_len(store).await? as usize;
    ensure!(
        applied_a + applied_b == total,
        "{applied_a} + {applied_b} events applied, the feed has {total}"
    );
    assert_rows_match_replay(store, 1).await?;

    let batches = batches_a + batches_b;
    match h.backend() {
        Backend::Postgres => {
            ensure!(
                batches == 1,
                "built in 4 parts, in one batch: {batches} batches"
            );
            let stamps: Vec<i64> = filiera_store::on_pool!(store.database().reader(), |pool| {
                sqlx::query_scalar(
                    "SELECT DISTINCT updated_position FROM projection_timelines \
                     WHERE projection = $1 AND generation = 1",
                )
                .bind(TERRITORY_METRICS)
                .fetch_all(pool)
                .await?
            });
            ensure!(
                stamps == [head],
                "every timeline is written once, by the batch up to the head {head}: {stamps:?}"
            );
        }
        Backend::Sqlite => ensure!(
            batches > 1,
            "on SQLite the generation is built in catch-up batches: {batches} batch"
        ),
    }
    Ok(())
}
