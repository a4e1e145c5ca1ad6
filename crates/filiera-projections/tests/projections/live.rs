//! New events reach a running projection promptly (wake-ups, with polling as the fallback).

use anyhow::ensure;
use chrono::Utc;
use filiera_projections::Projections;

use crate::common::*;

pub async fn new_events_reach_the_projection(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let projections = Projections::start(store.clone(), settings(store, 100)).await?;
    varied_history(store).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    let now_query = || query(Some("LOM"), "2024-01-01", TODAY, Utc::now(), 2);
    let before = projections.metrics(now_query()).await?.enrolments;

    write(store, vec![enrol("LOM-LC-LECCO", "2025-01-15")]).await?;
    let p = &projections;
    eventually("the enrolment is counted", || async move {
        Ok(p.metrics(now_query()).await?.enrolments == before + 1)
    })
    .await?;
    let [status] = projections
        .status()
        .await?
        .try_into()
        .expect("one projection");
    ensure!(
        status.leader && status.head == status.position,
        "{status:?}"
    );
    projections.shutdown().await;
    Ok(())
}
