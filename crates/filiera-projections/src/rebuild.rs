//! `filiera rebuild`: a rebuild from a separate process. It requests (or resumes) a rebuild,
//! then either runs the projection itself until the new generation is swapped in, when no
//! other process leads, or waits for the leader (a running server) to do it, reporting
//! progress either way.

use std::time::Duration;

use filiera_store::Store;
use serde::Serialize;
use tokio::time::Instant;

use crate::read_model::{GenerationStatus, ReadModel};
use crate::runner::Runner;
use crate::{ProjectionError, ProjectionSettings, leadership_job};

/// How often progress is reported, and a follower looks again.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where a rebuild stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RebuildProgress {
    /// The projection.
    pub name: String,
    /// The generation being built.
    pub generation: i64,
    /// Its checkpoint.
    pub position: i64,
    /// The head of the feed.
    pub head: i64,
    /// Feed events it still has to apply.
    pub lag: u64,
    /// Whether this process is the one building it.
    pub leading: bool,
}

/// How a rebuild ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RebuildOutcome {
    /// The projection.
    pub name: String,
    /// The generation now active.
    pub generation: i64,
    /// A rebuild was already under way and this call saw it through instead of starting one.
    pub resumed: bool,
    /// This process built (part of) it; otherwise another process (a server) did.
    pub built_here: bool,
}

/// Rebuilds projection `name` and returns once the new generation is active. A rebuild
/// already under way (e.g. left by an interrupted `filiera rebuild`) is resumed rather than
/// refused. `progress` is called about once a second.
pub async fn rebuild_until_swapped(
    store: &Store,
    settings: &ProjectionSettings,
    name: &str,
    mut progress: impl FnMut(&RebuildProgress) + Send,
) -> Result<RebuildOutcome, ProjectionError> {
    let name = crate::projection_name(name)?;
    let model = ReadModel::new(store);
    model.initialize(name).await?;
    // A rebuild begun by an older release is not resumed: it is given up and started again.
    let generations = model.generations(name).await?;
    model.upgrade_outdated(name, &generations).await?;
    let (generation, resumed) = match model.start_rebuild(name).await? {
        Ok(generation) => (generation, false),
        Err(generation) => (generation, true),
    };
    tracing::info!(projection = name, generation, resumed, "rebuilding");
    let mut outcome = RebuildOutcome {
        name: name.to_owned(),
        generation,
        resumed,
        built_here: false,
    };
    let job = leadership_job(name);
    let mut reported = Instant::now();
    loop {
        if swapped(&model, name, generation).await? {
            return Ok(outcome);
        }
        let Some(mut leadership) = store.try_lead(&job).await? else {
            report(store, &model, name, generation, false, &mut progress).await?;
            tokio::time::sleep(PROGRESS_EVERY).await;
            continue;
        };
        outcome.built_here = true;
        // The retired generations' rows are left to a server's runner, which deletes them in
        // the background: queries never read them, and deleting a region's rows takes seconds.
        let mut runner = Runner::new(store, name, settings.batch_size)?
            .catching_up_by(settings.catch_up_timelines)
            .leaving_retired_rows();
        let mut checked = Instant::now();
        let result = loop {
            if checked.elapsed() >= settings.leadership_check {
                if !leadership.check().await {
                    break Ok(false);
                }
                checked = Instant::now();
            }
            let step = match runner.step().await {
                Ok(step) => step,
                Err(error) => break Err(error),
            };
            if reported.elapsed() >= PROGRESS_EVERY {
                report(store, &model, name, generation, true, &mut progress).await?;
                reported = Instant::now();
            }
            if step.swapped == Some(generation) || swapped(&model, name, generation).await? {
                break Ok(true);
            }
            if !step.more_to_do() {
                tokio::time::sleep(settings.poll_interval).await;
            }
        };
        leadership.release().await;
        if result? {
            return Ok(outcome);
        }
    }
}

/// Whether `generation` is no longer building (it was swapped in).
async fn swapped(model: &ReadModel, name: &str, generation: i64) -> Result<bool, ProjectionError> {
    let row = model.generation(name, generation).await?;
    Ok(row.is_none_or(|g| g.status != GenerationStatus::Building))
}

async fn report(
    store: &Store,
    model: &ReadModel,
    name: &str,
    generation: i64,
    leading: bool,
    progress: &mut (impl FnMut(&RebuildProgress) + Send),
) -> Result<(), ProjectionError> {
    let Some(row) = model.generation(name, generation).await? else {
        return Ok(());
    };
    let head = store.head().await?;
    progress(&RebuildProgress {
        name: name.to_owned(),
        generation,
        position: row.position,
        head,
        lag: crate::projections::feed_lag(store, row.position, head).await?,
        leading,
    });
    Ok(())
}
