//! Every event is applied exactly once per generation: across a restart, across crashes at
//! any point, and with two runners racing on one database.

use std::time::Duration;

use anyhow::ensure;
use filiera_projections::{Projections, Runner, TERRITORY_METRICS};

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
