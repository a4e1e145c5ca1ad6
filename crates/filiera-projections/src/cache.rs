//! The query side's in-memory copy of the active generation: beneficiary → [`Timeline`] (a
//! [`TimelineIndex`], which resolves each timeline's codes once, when it is merged), per
//! process, whether or not the process runs the projection.
//!
//! - Before each query the cache fetches the rows changed since it last looked
//!   (`updated_position > cached position`) together with the generation's checkpoint, in one
//!   statement (one snapshot), and merges them.
//! - When the active generation changes (a rebuild was swapped in), the new generation is
//!   loaded into a new map in the background and swapped in whole; until then queries keep
//!   answering from the previous map. Only a cache that has never loaded makes its first query
//!   wait.
//! - Maps are only ever replaced by a fresher one: `(generation, position)` never goes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use filiera_domain::{Timeline, TimelineIndex};
use tokio::sync::{Mutex, RwLock};

use crate::ProjectionError;
use crate::read_model::{Fetched, ReadModel, TimelineRow};

/// Rows parsed on the async thread below this count; above, on the blocking pool.
const PARSE_INLINE: usize = 256;

/// What the cache holds.
#[derive(Debug, Default)]
pub(crate) struct CacheState {
    /// The generation loaded, `None` before the first load.
    pub(crate) generation: Option<i64>,
    /// That generation's checkpoint as of the last fetch.
    pub(crate) position: i64,
    /// That generation's timeline format.
    pub(crate) format: i64,
    /// Beneficiary → timeline, with the codes of each resolved once for the folds.
    pub(crate) timelines: TimelineIndex,
}

/// How fresh [`TimelineCache::refresh`] must make the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Merge what changed in the loaded generation; if another generation became active, load
    /// it in the background and keep answering from this one meanwhile.
    Incremental,
    /// Reflect the active generation as of now, loading it in full here if needed.
    Current,
}

/// See the module docs.
pub(crate) struct TimelineCache {
    projection: &'static str,
    model: ReadModel,
    state: Arc<RwLock<CacheState>>,
    /// One fetch-and-merge at a time, so that merges apply in checkpoint order.
    refresh: Mutex<()>,
    /// A background load of a new generation is under way.
    reloading: AtomicBool,
}

impl TimelineCache {
    pub(crate) fn new(projection: &'static str, model: ReadModel) -> Self {
        Self {
            projection,
            model,
            state: Arc::default(),
            refresh: Mutex::new(()),
            reloading: AtomicBool::new(false),
        }
    }

    /// Brings the cache up to date (see [`Freshness`]).
    pub(crate) async fn refresh(
        self: &Arc<Self>,
        freshness: Freshness,
    ) -> Result<(), ProjectionError> {
        if freshness == Freshness::Incremental && self.reloading.load(Ordering::Acquire) {
            // The loaded generation was retired: nothing more will change in it.
            return Ok(());
        }
        let _one_at_a_time = self.refresh.lock().await;
        let since = {
            let state = self.state.read().await;
            state.generation.map(|g| (g, state.position))
        };
        match self.model.fetch(self.projection, since).await? {
            Fetched::Rows {
                generation,
                position,
                format,
                rows,
            } => {
                if since.is_some() {
                    let parsed = parse(rows).await?;
                    let mut state = self.state.write().await;
                    state.timelines.extend(parsed);
                    state.position = state.position.max(position);
                } else {
                    let loaded = Loaded {
                        generation,
                        position,
                        format,
                        timelines: index(rows).await?,
                    };
                    self.install(loaded).await;
                }
            }
            Fetched::NothingActive => {}
            Fetched::GenerationChanged => match freshness {
                Freshness::Current => {
                    let loaded = self.load_full().await?;
                    self.install(loaded).await;
                }
                Freshness::Incremental => self.reload_in_background(),
            },
        }
        Ok(())
    }

    /// Loads whichever generation is active into a new map, in the background, then swaps it
    /// in. Does nothing if such a load is already under way.
    fn reload_in_background(self: &Arc<Self>) {
        if self.reloading.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            match cache.load_full().await {
                Ok(loaded) => {
                    let (generation, position) = (loaded.generation, loaded.position);
                    let _one_at_a_time = cache.refresh.lock().await;
                    cache.install(loaded).await;
                    tracing::info!(
                        projection = cache.projection,
                        generation,
                        position,
                        "query cache switched to the new generation"
                    );
                }
                Err(error) => tracing::warn!(
                    projection = cache.projection,
                    error = %error,
                    "could not load the new generation; the next query retries"
                ),
            }
            cache.reloading.store(false, Ordering::Release);
        });
    }

    /// A full load of the active generation.
    async fn load_full(&self) -> Result<Loaded, ProjectionError> {
        match self.model.fetch(self.projection, None).await? {
            Fetched::Rows {
                generation,
                position,
                format,
                rows,
            } => Ok(Loaded {
                generation,
                position,
                format,
                timelines: index(rows).await?,
            }),
            Fetched::NothingActive | Fetched::GenerationChanged => Ok(Loaded {
                generation: 0,
                position: 0,
                format: crate::read_model::FORMAT,
                timelines: TimelineIndex::default(),
            }),
        }
    }

    /// Replaces the map if the new one is fresher; the old one is dropped outside the lock.
    async fn install(&self, loaded: Loaded) {
        let mut state = self.state.write().await;
        let fresher = match state.generation {
            None => true,
            Some(current) => (loaded.generation, loaded.position) > (current, state.position),
        };
        if !fresher {
            return;
        }
        let old = std::mem::replace(
            &mut *state,
            CacheState {
                generation: Some(loaded.generation),
                position: loaded.position,
                format: loaded.format,
                timelines: loaded.timelines,
            },
        );
        drop(state);
        drop(old);
    }

    /// Runs `f` over the cached state on the blocking pool (folds take milliseconds to tens of
    /// milliseconds over large maps). Concurrent readers share the map.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R, ProjectionError>
    where
        F: FnOnce(&CacheState) -> R + Send + 'static,
        R: Send + 'static,
    {
        let state = Arc::clone(&self.state);
        Ok(tokio::task::spawn_blocking(move || f(&state.blocking_read())).await?)
    }

    /// Whether the loaded generation was built by an older timeline format.
    pub(crate) async fn is_outdated(&self) -> Option<(i64, i64)> {
        let state = self.state.read().await;
        let generation = state.generation?;
        (state.format < crate::read_model::FORMAT).then_some((generation, state.format))
    }

    /// The generation loaded and its checkpoint, for the status.
    pub(crate) async fn loaded(&self) -> (Option<i64>, i64) {
        let state = self.state.read().await;
        (state.generation, state.position)
    }
}

/// A generation loaded in full.
struct Loaded {
    generation: i64,
    position: i64,
    format: i64,
    timelines: TimelineIndex,
}

/// Decodes and indexes a generation's timeline rows, on the blocking pool when there are many.
/// Each row goes into the index as soon as it is decoded, so that no list of every decoded
/// timeline is held beside the index (at a million events, 30 MB more at the peak of a load).
async fn index(rows: Vec<TimelineRow>) -> Result<TimelineIndex, ProjectionError> {
    off_the_runtime(rows.len(), move || {
        let mut index = TimelineIndex::default();
        for row in rows {
            let (key, timeline) = crate::read_model::decode_row(row)?;
            index.insert(key, timeline);
        }
        Ok(index)
    })
    .await
}

/// Parses timeline rows, on the blocking pool when there are many.
async fn parse(rows: Vec<TimelineRow>) -> Result<Vec<(String, Timeline)>, ProjectionError> {
    off_the_runtime(rows.len(), move || crate::read_model::decode(rows)).await
}

/// Runs `decode` (of `rows` rows) inline when they are few, else on the blocking pool, where a
/// long decode holds no runtime worker.
async fn off_the_runtime<T: Send + 'static>(
    rows: usize,
    decode: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ProjectionError> {
    if rows < PARSE_INLINE {
        decode()
    } else {
        tokio::task::spawn_blocking(decode).await?
    }
}
