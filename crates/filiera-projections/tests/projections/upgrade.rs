//! An upgrade whose timelines read more than the stored ones: a read model built by an older
//! version (an older timeline format) is rebuilt by the first runner that leads, and queries
//! are refused rather than answered from it meanwhile.

use anyhow::{Context as _, ensure};
use filiera_domain::{AssessmentKind, Occupability, TeamMember};
use filiera_projections::{ProjectionError, Projections, TERRITORY_METRICS, leadership_job};
use filiera_store::on_pool;

use crate::common::*;

pub async fn an_outdated_read_model_is_rebuilt_and_refused_meanwhile(
    h: &Harness,
) -> anyhow::Result<()> {
    let store = &h.store;
    write(
        store,
        vec![
            enrol("LOM-BG-BERGAMO", "2025-01-10"),
            assess(
                "2025-02-09",
                AssessmentKind::Multidisciplinary,
                Occupability::Medium,
                &[TeamMember::SocialServices, TeamMember::EmploymentCentre],
            ),
            stage("internship", "2025-03-01"),
        ],
    )
    .await?;
    varied_history(store).await?;
    let query = query(
        Some("LOM"),
        "2025-01-01",
        TODAY,
        "2030-01-01T00:00:00Z".parse()?,
        2,
    );

    // What this version answers.
    let projections = Projections::start(store.clone(), settings(store, 5)).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    let expected = projections.metrics(query.clone()).await?;
    ensure!(
        expected.assessments.multidisciplinary == 1 && expected.time_to_assessment_days.count == 1
    );
    projections.shutdown().await;

    // Make generation 1 what an older version left: format 1, timelines without assessments.
    let stored = stored_timelines(store, 1).await?;
    for (id, timeline) in stored {
        let mut json = serde_json::to_value(&timeline)?;
        let entries = json["entries"].as_array_mut().context("entries")?;
        entries.retain(|e| e["kind"].get("needs_assessed").is_none());
        on_pool!(store.database().writer(), |pool| {
            sqlx::query(
                "UPDATE projection_timelines SET timeline = $1 \
                 WHERE projection = $2 AND generation = 1 AND beneficiary_id = $3",
            )
            .bind(json.to_string())
            .bind(TERRITORY_METRICS)
            .bind(&id)
            .execute(pool)
            .await?;
        });
    }
    on_pool!(store.database().writer(), |pool| {
        sqlx::query("UPDATE projection_generations SET format = 1 WHERE projection = $1")
            .bind(TERRITORY_METRICS)
            .execute(pool)
            .await?;
    });

    // While no runner of this version leads, queries are refused, not answered without the
    // assessments.
    let held = store
        .try_lead(&leadership_job(TERRITORY_METRICS))
        .await?
        .context("nobody leads")?;
    let upgraded = Projections::start(store.clone(), settings(store, 5)).await?;
    match upgraded.metrics(query.clone()).await {
        Err(ProjectionError::Outdated {
            generation: 1,
            format: 1,
            current,
            ..
        }) => ensure!(current == i64::from(filiera_domain::Timeline::FORMAT)),
        other => anyhow::bail!("an outdated read model must be refused, got {other:?}"),
    }
    ensure!(matches!(
        upgraded.scorecard(query.clone()).await,
        Err(ProjectionError::Outdated { .. })
    ));

    // Once it leads, the runner rebuilds a generation of this version's format and queries
    // answer what this version answers.
    held.release().await;
    eventually("the rebuilt generation is active", || async {
        Ok(upgraded.status().await?[0].generation == 2)
    })
    .await?;
    upgraded.wait_until_caught_up(PATIENCE).await?;
    ensure!(upgraded.metrics(query.clone()).await? == expected);
    assert_rows_match_replay(store, 2).await?;
    let formats = generation_formats(store).await?;
    ensure!(
        formats.last() == Some(&(2, "active".to_owned(), 2)),
        "{formats:?}"
    );
    upgraded.shutdown().await;
    Ok(())
}

/// A rebuild an older release began and did not finish is not resumed by `filiera rebuild`
/// (its rows lack what this version reads): it is given up and a rebuild of this version's
/// format runs and is swapped in.
pub async fn an_older_release_rebuild_is_started_again(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    write(
        store,
        vec![
            enrol("LOM-LC-LECCO", "2025-01-10"),
            assess(
                "2025-01-20",
                AssessmentKind::Initial,
                Occupability::High,
                &[TeamMember::EmploymentCentre],
            ),
        ],
    )
    .await?;
    let settings = settings(store, 5);
    let projections = Projections::start(store.clone(), settings.clone()).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    projections.shutdown().await;
    // An older release began a rebuild (generation 2, format 1) and stopped half-way.
    on_pool!(store.database().writer(), |pool| {
        sqlx::query(
            "INSERT INTO projection_generations (projection, generation, status, position, format) \
             VALUES ($1, 2, 'building', 1, 1)",
        )
        .bind(TERRITORY_METRICS)
        .execute(pool)
        .await?;
    });

    let outcome =
        filiera_projections::rebuild_until_swapped(store, &settings, TERRITORY_METRICS, |_| {})
            .await?;
    ensure!(outcome.generation == 3 && !outcome.resumed, "{outcome:?}");
    let rows = generation_formats(store).await?;
    ensure!(
        rows == [
            (1, "retired".to_owned(), 2),
            (2, "retired".to_owned(), 1),
            (3, "active".to_owned(), 2)
        ],
        "{rows:?}"
    );
    assert_rows_match_replay(store, 3).await?;
    Ok(())
}

/// Every generation of the projection: number, status and timeline format.
async fn generation_formats(
    store: &filiera_store::Store,
) -> anyhow::Result<Vec<(i64, String, i64)>> {
    Ok(on_pool!(store.database().reader(), |pool| {
        sqlx::query_as(
            "SELECT generation, status, format FROM projection_generations \
             WHERE projection = $1 ORDER BY generation",
        )
        .bind(TERRITORY_METRICS)
        .fetch_all(pool)
        .await?
    }))
}
