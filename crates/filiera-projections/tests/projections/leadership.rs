//! Several processes: exactly one runs the projection, every one answers queries, and another
//! takes over within seconds when the runner dies.

use std::time::Duration;

use anyhow::ensure;
use filiera_projections::Projections;

use crate::common::*;

pub async fn one_leader_and_a_takeover_when_it_dies(h: &Harness) -> anyhow::Result<()> {
    let (store_a, store_b) = (h.another_store().await?, h.another_store().await?);
    let a = Projections::start(store_a.clone(), settings(&store_a, 4)).await?;
    let b = Projections::start(store_b.clone(), settings(&store_b, 4)).await?;
    let (ra, rb) = (&a, &b);
    eventually("one of them leads", || async move {
        Ok(ra.is_leader() || rb.is_leader())
    })
    .await?;
    // Never both, over a few leadership checks.
    for _ in 0..10 {
        ensure!(!(a.is_leader() && b.is_leader()), "two leaders");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let times = varied_history(&h.store).await?;
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    follower.wait_until_caught_up(PATIENCE).await?;
    assert_same_as_replay(&follower, &h.store, &queries(&times[..2])).await?;
    let [status] = follower.status().await?.try_into().expect("one projection");
    ensure!(!status.leader && status.lag == 0, "{status:?}");

    // The leader dies without giving anything up (its tasks are aborted, like a crash): on
    // PostgreSQL its session ends; on SQLite its lease expires.
    drop(leader);
    let f = &follower;
    eventually(
        "the follower takes over",
        || async move { Ok(f.is_leader()) },
    )
    .await?;
    let more = varied_history(&h.store).await?;
    follower.wait_until_caught_up(PATIENCE).await?;
    assert_rows_match_replay(&h.store, 1).await?;
    assert_same_as_replay(&follower, &h.store, &queries(&more[..2])).await?;
    follower.shutdown().await;
    let [status] = follower.status().await?.try_into().expect("one projection");
    ensure!(
        status.state == filiera_projections::ProjectionState::Stopped && !status.leader,
        "{status:?}"
    );
    Ok(())
}
