//! [`ProjectionTables`]: one projection's read model, driven directly rather than through a
//! running [`crate::Projections`], for tools outside this crate (the benchmark in
//! `filiera-bench`): start a rebuild that the caller's own [`crate::Runner`] fills, fill a new
//! generation with timelines computed elsewhere and swap it in, and load the query cache in
//! full. Nothing here takes leadership: the caller must be the only one running the projection.

use std::collections::HashMap;
use std::sync::Arc;

use filiera_domain::Timeline;
use filiera_store::Store;

use crate::ProjectionError;
use crate::cache::{Freshness, TimelineCache};
use crate::read_model::{ReadModel, Rows};

/// One projection's read-model tables in a store's database (see the module docs).
#[derive(Clone, Debug)]
pub struct ProjectionTables {
    projection: &'static str,
    store: Store,
    model: ReadModel,
}

impl ProjectionTables {
    /// The tables of projection `name` in `store`'s database, or
    /// [`ProjectionError::UnknownProjection`].
    pub fn new(store: &Store, name: &str) -> Result<Self, ProjectionError> {
        Ok(Self {
            projection: crate::projection_name(name)?,
            store: store.clone(),
            model: ReadModel::new(store),
        })
    }

    /// Adds a generation building from position 0, which the next steps of a
    /// [`crate::Runner`] fill and then swap in. `Err(generation)` if one is already building.
    pub async fn start_rebuild(&self) -> Result<Result<i64, i64>, ProjectionError> {
        self.model.start_rebuild(self.projection).await
    }

    /// Starts filling a new generation with timelines computed elsewhere (see
    /// [`GenerationFill`]); the first generation is created first if there is none.
    /// `Err(generation)` if a generation is already building.
    pub async fn fill_generation(&self) -> Result<Result<GenerationFill, i64>, ProjectionError> {
        self.model.initialize(self.projection).await?;
        let generation = match self.model.start_rebuild(self.projection).await? {
            Ok(generation) => generation,
            Err(building) => return Ok(Err(building)),
        };
        let active = self
            .model
            .generations(self.projection)
            .await?
            .active
            .ok_or_else(|| ProjectionError::Corrupt("no active generation".into()))?;
        Ok(Ok(GenerationFill {
            tables: self.clone(),
            generation,
            active: active.generation,
            // Checkpoints past the real head, so that the swap accepts the generation.
            position: active.position.max(self.store.head().await?),
            old: 0,
        }))
    }

    /// A query cache of its own over these tables, empty until [`QueryCache::load`]; shared
    /// with no [`crate::Projections`].
    pub fn query_cache(&self) -> QueryCache {
        QueryCache(Arc::new(TimelineCache::new(
            self.projection,
            self.model.clone(),
        )))
    }
}

/// The in-memory copy of a projection's active generation that queries are answered from (see
/// [`ProjectionTables::query_cache`]).
pub struct QueryCache(Arc<TimelineCache>);

impl QueryCache {
    /// Brings the cache up to the active generation, loading it in full if it has not loaded
    /// it yet: what a process does at start-up and after a rebuild's swap.
    pub async fn load(&self) -> Result<(), ProjectionError> {
        self.0.refresh(Freshness::Current).await
    }

    /// How many timelines the cache holds.
    pub async fn timelines(&self) -> Result<usize, ProjectionError> {
        self.0.read(|state| state.timelines.len()).await
    }
}

/// The row stored for a timeline: `(beneficiary, encoded timeline)`, what
/// [`GenerationFill::write`] takes.
pub fn encode_timeline(
    beneficiary: &str,
    timeline: &Timeline,
) -> Result<(String, String), ProjectionError> {
    crate::read_model::encode(beneficiary, timeline)
}

/// Every timeline of `timelines` encoded (see [`encode_timeline`]).
pub fn encode_timelines(
    timelines: &HashMap<String, Timeline>,
) -> Result<Vec<(String, String)>, ProjectionError> {
    timelines
        .iter()
        .map(|(id, t)| encode_timeline(id, t))
        .collect()
}

/// A generation being filled, batch by batch, then swapped in (see
/// [`ProjectionTables::fill_generation`]).
#[derive(Debug)]
pub struct GenerationFill {
    tables: ProjectionTables,
    generation: i64,
    /// The generation active when the fill started, retired by the swap.
    active: i64,
    /// The checkpoint the next batch moves one further.
    position: i64,
    /// The generation's checkpoint as written: 0 before the first batch, then `position`.
    old: i64,
}

impl GenerationFill {
    /// Writes one batch of rows with the runner's own batch statement (one transaction),
    /// moving the generation's checkpoint one further.
    pub async fn write(&mut self, rows: &[(String, String)]) -> Result<(), ProjectionError> {
        self.position += 1;
        let projection = self.tables.projection;
        if !self
            .tables
            .model
            .commit_batch(
                projection,
                self.generation,
                self.old,
                self.position,
                Rows(rows.iter().cloned().map(Ok)),
            )
            .await?
        {
            return Err(ProjectionError::Corrupt("lost a batch".into()));
        }
        self.old = self.position;
        Ok(())
    }

    /// Makes the filled generation the active one and deletes the retired rows.
    pub async fn swap_in(self) -> Result<(), ProjectionError> {
        let (model, projection) = (&self.tables.model, self.tables.projection);
        if !model
            .swap(projection, self.active, self.generation, self.position)
            .await?
        {
            return Err(ProjectionError::Corrupt("could not swap".into()));
        }
        while model.purge_retired(projection, 5_000).await? > 0 {}
        Ok(())
    }
}
