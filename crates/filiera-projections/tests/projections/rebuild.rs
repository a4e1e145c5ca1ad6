//! Rebuilds: a new generation is filled alongside and swapped in; queries keep answering from
//! the old one meanwhile and answer the same after the swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context as _, ensure};
use filiera_projections::{
    ProjectionError, ProjectionState, ProjectionTables, Projections, Runner, TERRITORY_METRICS,
    leadership_job, rebuild_until_swapped,
};
use filiera_store::{Store, on_pool};

use crate::common::*;

pub async fn rebuild_swaps_in_without_downtime(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let mut times = Vec::new();
    for _ in 0..3 {
        times.extend(varied_history(store).await?);
    }
    // This test holds the leadership at first and steps a runner itself, so that it can look
    // at a rebuild half-way; the handle is a follower until the leadership is released.
    let held = store
        .try_lead(&leadership_job(TERRITORY_METRICS))
        .await?
        .context("nobody leads yet")?;
    let projections = Projections::start(store.clone(), settings(store, 4)).await?;
    let mut runner = Runner::new(store, TERRITORY_METRICS, 4)?;
    while runner.step().await?.more_to_do() {}
    projections.wait_until_caught_up(PATIENCE).await?;
    let queries = queries(&times[..4]);
    let mut before = Vec::new();
    for query in &queries {
        before.push(projections.metrics(query.clone()).await?);
    }

    let started = projections.rebuild(TERRITORY_METRICS).await?;
    ensure!(started.generation == 2, "generation {}", started.generation);
    match projections.rebuild(TERRITORY_METRICS).await {
        Err(e @ ProjectionError::AlreadyRebuilding { generation: 2, .. }) => {
            ensure!(e.is_refusal())
        }
        other => anyhow::bail!("a second rebuild must be refused, got {other:?}"),
    }
    match projections.rebuild("nonexistent").await {
        Err(e @ ProjectionError::UnknownProjection { .. }) => ensure!(e.is_refusal()),
        other => anyhow::bail!("an unknown projection must be refused, got {other:?}"),
    }
    let total = feed_len(store).await?;
    let [status] = projections
        .status()
        .await?
        .try_into()
        .expect("one projection");
    ensure!(status.state == ProjectionState::Rebuilding, "{status:?}");
    ensure!(
        status.generation == 1 && status.lag == 0 && !status.leader,
        "{status:?}"
    );
    let rebuilding = status.rebuilding.context("rebuilding")?;
    ensure!(rebuilding.generation == 2 && rebuilding.position == 0 && rebuilding.lag == total);

    // Half-way: the new generation has some events, queries still read the old one.
    runner.step().await?;
    let [status] = projections
        .status()
        .await?
        .try_into()
        .expect("one projection");
    let rebuilding = status.rebuilding.context("still rebuilding")?;
    ensure!(rebuilding.position > 0 && rebuilding.lag > 0 && rebuilding.lag < total);
    for (query, expected) in queries.iter().zip(&before) {
        ensure!(&projections.metrics(query.clone()).await? == expected);
    }

    // Hand over to the handle, querying all along: every answer is the same.
    held.release().await;
    let done = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicUsize::new(0));
    let querying = {
        let (projections, done, answers) = (projections.clone(), done.clone(), answers.clone());
        let (query, expected) = (queries[0].clone(), before[0].clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                let answer = projections.metrics(query.clone()).await?;
                ensure!(answer == expected, "an answer changed during the rebuild");
                answers.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    let p = &projections;
    eventually("the rebuilt generation is swapped in", || async move {
        let [status] = p.status().await?.try_into().expect("one projection");
        Ok(status.generation == 2 && status.rebuilding.is_none())
    })
    .await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    done.store(true, Ordering::Release);
    querying.await??;
    ensure!(answers.load(Ordering::Relaxed) > 0);

    for (query, expected) in queries.iter().zip(&before) {
        ensure!(&projections.metrics(query.clone()).await? == expected);
    }
    let [status] = projections
        .status()
        .await?
        .try_into()
        .expect("one projection");
    ensure!(
        status.leader && status.state == ProjectionState::Live,
        "{status:?}"
    );
    ensure!(
        status.cache.is_some_and(|c| c.generation == 2),
        "{status:?}"
    );
    eventually("the retired rows are deleted", || async move {
        Ok(stored_timelines(store, 1).await?.is_empty())
    })
    .await?;
    assert_rows_match_replay(store, 2).await?;

    // The new generation is live.
    let more = varied_history(store).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    assert_same_as_replay(&projections, store, &crate::common::queries(&more[..2])).await?;
    projections.shutdown().await;
    Ok(())
}

/// `filiera rebuild`: alone, it runs the rebuild itself; with a server running, it waits for
/// the server's runner to do it.
pub async fn rebuild_from_another_process(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let times = varied_history(store).await?;
    let settings = settings(store, 5);

    let mut reports = 0;
    let alone =
        rebuild_until_swapped(store, &settings, TERRITORY_METRICS, |_| reports += 1).await?;
    ensure!(
        alone.generation == 2 && alone.built_here && !alone.resumed,
        "{alone:?}"
    );
    assert_rows_match_replay(store, 2).await?;
    ensure!(
        !stored_timelines(store, 1).await?.is_empty(),
        "the rebuild left the retired generation's rows to a server's runner"
    );

    let server_store = h.another_store().await?;
    let server = Projections::start(server_store.clone(), settings.clone()).await?;
    let s = &server;
    eventually("the server leads", || async move { Ok(s.is_leader()) }).await?;
    // The rows of the generation the rebuild retired are the server's runner's to delete.
    eventually("the retired rows are deleted", || async move {
        Ok(stored_timelines(store, 1).await?.is_empty())
    })
    .await?;
    let waited = rebuild_until_swapped(store, &settings, TERRITORY_METRICS, |_| ()).await?;
    ensure!(waited.generation == 3 && !waited.built_here, "{waited:?}");
    server.wait_until_caught_up(PATIENCE).await?;
    assert_rows_match_replay(store, 3).await?;
    assert_same_as_replay(&server, store, &queries(&times[..2])).await?;

    ensure!(matches!(
        rebuild_until_swapped(store, &settings, "nope", |_| ()).await,
        Err(ProjectionError::UnknownProjection { .. })
    ));
    server.shutdown().await;
    let _ = reports;
    Ok(())
}

/// A generation's first batch (on PostgreSQL one `COPY` in binary format) stores every row
/// exactly as given, whatever characters the JSON holds, stamped with the batch's checkpoint;
/// the next batch upserts over them.
pub async fn a_fresh_generation_stores_rows_exactly_as_given(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let tables = ProjectionTables::new(store, TERRITORY_METRICS)?;
    let Ok(mut fill) = tables.fill_generation().await? else {
        anyhow::bail!("a rebuild was left over");
    };
    // Backslashes, tabs, quotes and newlines would need escaping in `COPY`'s text format.
    let awkward = r#"{"a":"back\\slash \t tab \" quote \n newline","b":"àè€ 😀"}"#;
    let first: Vec<(String, String)> = (0..25_000)
        .map(|i| (format!("b-{i:05}"), format!("{awkward}{i}")))
        .collect();
    fill.write(&first).await?;
    let building = building_generation(store).await?;
    let stored = stored_rows(store, building).await?;
    ensure!(stored.len() == first.len(), "{} rows stored", stored.len());
    let position = stored[0].2;
    for ((id, timeline), row) in first.iter().zip(&stored) {
        ensure!(
            (id, timeline, position) == (&row.0, &row.1, row.2),
            "row {id} came back as {row:?}"
        );
    }

    let second = vec![
        ("b-00007".to_owned(), "seven".to_owned()),
        ("b-99999".to_owned(), "new".to_owned()),
    ];
    fill.write(&second).await?;
    let stored = stored_rows(store, building).await?;
    ensure!(
        stored.len() == first.len() + 1,
        "{} rows stored",
        stored.len()
    );
    for (id, timeline) in &second {
        let row = stored.iter().find(|r| &r.0 == id).context("a row")?;
        ensure!(
            &row.1 == timeline && row.2 > position,
            "row {id} came back as {row:?}"
        );
    }
    fill.swap_in().await?;
    Ok(())
}

/// The generation being built.
async fn building_generation(store: &Store) -> anyhow::Result<i64> {
    Ok(on_pool!(store.database().reader(), |pool| {
        sqlx::query_scalar(
            "SELECT generation FROM projection_generations \
             WHERE projection = $1 AND status = 'building'",
        )
        .bind(TERRITORY_METRICS)
        .fetch_one(pool)
        .await?
    }))
}

/// A generation's rows as stored, by beneficiary: id, timeline text, checkpoint stamp.
async fn stored_rows(store: &Store, generation: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
    Ok(on_pool!(store.database().reader(), |pool| {
        sqlx::query_as(
            "SELECT beneficiary_id, timeline, updated_position FROM projection_timelines \
             WHERE projection = $1 AND generation = $2 ORDER BY beneficiary_id",
        )
        .bind(TERRITORY_METRICS)
        .bind(generation)
        .fetch_all(pool)
        .await?
    }))
}
