//! [`Runner`]: applies the global feed to a projection's generations, one batch at a time.
//!
//! A batch reads the feed after a generation's checkpoint, loads the stored timelines of the
//! beneficiaries it touches, applies the events with [`Timeline::apply`], and writes the
//! changed timelines together with the new checkpoint in one transaction whose first statement
//! is a compare-and-set on the old checkpoint (see `ReadModel::commit_batch`). A batch that
//! loses the compare-and-set writes nothing: another runner applied those events. So every
//! event is applied exactly once per generation, whatever crashes, restarts or competing
//! runners — leadership only avoids the wasted work.
//!
//! The timelines are read outside the transaction, which is sound: checkpoints only grow, so
//! if the compare-and-set still finds the old checkpoint, no batch committed since the rows
//! were read.

use std::collections::{HashMap, HashSet};

use filiera_domain::Timeline;
use filiera_store::{FeedPart, Pool, Store, StoredEvent};
use uuid::Uuid;

use crate::ProjectionError;
use crate::read_model::{Generation, ReadModel, RowSource, Rows, TimelineRow};

/// Retired rows deleted per statement after a swap.
const PURGE_CHUNK: i64 = 50_000;

/// What one batch on one generation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The generation the batch was for.
    pub generation: i64,
    /// Events read from the feed (and applied, if `committed`).
    pub events: usize,
    /// `false` when another runner had moved the checkpoint first: nothing was written.
    pub committed: bool,
    /// The generation's checkpoint after the batch (unchanged if nothing was committed).
    pub position: i64,
    /// The feed had at least a full batch after the checkpoint: more is waiting.
    pub full: bool,
}

/// What one [`Runner::step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// The batch on the active generation.
    pub active: Option<BatchOutcome>,
    /// The batch on the building generation, during a rebuild.
    pub building: Option<BatchOutcome>,
    /// The generation that became active in this step (a rebuild completed).
    pub swapped: Option<i64>,
    /// Rows of retired generations deleted in this step.
    pub purged: u64,
}

impl StepReport {
    /// Events committed in this step, over both generations.
    pub fn applied(&self) -> usize {
        [&self.active, &self.building]
            .into_iter()
            .flatten()
            .filter(|b| b.committed)
            .map(|b| b.events)
            .sum()
    }

    /// Whether another step right away would find work: a full batch, a lost race, a swap or
    /// retired rows still to delete.
    pub fn more_to_do(&self) -> bool {
        let busy = |b: &Option<BatchOutcome>| b.as_ref().is_some_and(|b| b.full || !b.committed);
        busy(&self.active) || busy(&self.building) || self.swapped.is_some() || self.purged > 0
    }
}

/// Applies the feed to one projection's generations. Anyone may run one: the checkpoint's
/// compare-and-set keeps concurrent runners correct. [`crate::Projections`] runs one under
/// leadership so that, normally, exactly one process does the work.
pub struct Runner {
    store: Store,
    model: ReadModel,
    projection: &'static str,
    batch_size: u32,
    /// Timelines a batch may hold when it scans on after a full page (0: pages only; see
    /// [`Runner::catching_up_by`]).
    catch_up: usize,
    /// Retired rows may be left (after a swap, or a crash before they were deleted).
    purge_pending: bool,
    /// Whether it deletes retired rows at all (see [`Runner::leaving_retired_rows`]).
    purges: bool,
    /// The projection's first generation is known to exist.
    initialized: bool,
}

impl Runner {
    /// A runner of `projection` (see [`crate::PROJECTIONS`]) reading up to `batch_size` events
    /// per batch.
    pub fn new(store: &Store, projection: &str, batch_size: u32) -> Result<Self, ProjectionError> {
        Ok(Self {
            store: store.clone(),
            model: ReadModel::new(store),
            projection: crate::projection_name(projection)?,
            batch_size: batch_size.max(1),
            catch_up: 0,
            purge_pending: true,
            purges: true,
            initialized: false,
        })
    }

    /// A runner whose batches, when a page of the feed comes back full, go on reading the feed
    /// in one scan ([`Store::scan_feed`]) until they hold `timelines` timelines (0: pages
    /// only). This bounds a catch-up's memory by the timelines it holds, not by events.
    pub fn catching_up_by(mut self, timelines: usize) -> Self {
        self.catch_up = timelines;
        self
    }

    /// A runner that never deletes the rows of retired generations: `filiera rebuild`'s, which
    /// stops at the swap. Deleting a retired generation's rows takes seconds at a million
    /// events (about 0.4 s per 50,000 rows) and no query reads them; the next runner that
    /// purges (a server's) does it in the background.
    pub fn leaving_retired_rows(mut self) -> Self {
        self.purges = false;
        self
    }

    /// One batch on the active generation, one on the building generation if a rebuild is
    /// under way (swapping it in once it has caught up with the head and with the active one),
    /// and one chunk of retired rows deleted if any are left.
    #[tracing::instrument(name = "projection.step", level = "debug", skip(self), fields(projection = self.projection))]
    pub async fn step(&mut self) -> Result<StepReport, ProjectionError> {
        if !self.initialized {
            self.model.initialize(self.projection).await?;
            self.initialized = true;
        }
        let mut generations = self.model.generations(self.projection).await?;
        // Checked at every step, so that a generation of an older format, however it came
        // (an older release's rebuild), is never swapped in nor left active.
        if self
            .model
            .upgrade_outdated(self.projection, &generations)
            .await?
        {
            self.purge_pending = true;
            generations = self.model.generations(self.projection).await?;
        }
        let mut report = StepReport::default();
        if let Some(active) = &generations.active {
            report.active = Some(self.batch(active).await?);
        }
        if let Some(building) = &generations.building {
            let outcome = self.batch(building).await?;
            let caught_up = |b: &BatchOutcome| b.committed && !b.full;
            if let Some(active) = &report.active
                && caught_up(&outcome)
                && caught_up(active)
                && outcome.position >= active.position
                && self
                    .model
                    .swap(
                        self.projection,
                        active.generation,
                        building.generation,
                        outcome.position,
                    )
                    .await?
            {
                tracing::info!(
                    projection = self.projection,
                    generation = building.generation,
                    retired = active.generation,
                    position = outcome.position,
                    "rebuilt generation swapped in"
                );
                report.swapped = Some(building.generation);
                self.purge_pending = true;
            }
            report.building = Some(outcome);
        }
        if self.purges && self.purge_pending {
            report.purged = self
                .model
                .purge_retired(self.projection, PURGE_CHUNK)
                .await?;
            self.purge_pending = report.purged == PURGE_CHUNK as u64;
        }
        Ok(report)
    }

    /// One batch on one generation: a page of the feed and, if the page is full (the
    /// generation is behind) and catch-up scans are on, a scan of the feed that goes on until
    /// the batch holds `catch_up` timelines, so that a generation far behind (a rebuild, a
    /// start after an import) writes each timeline once per large batch rather than once per
    /// page.
    async fn batch(&self, generation: &Generation) -> Result<BatchOutcome, ProjectionError> {
        if let Some(parts) = self.build_in_parts(generation).await? {
            return self.batch_in_parts(generation, parts).await;
        }
        let mut fold = Fold::new(generation.position > 0);
        let page = self
            .store
            .read_feed(generation.position, self.batch_size)
            .await?;
        let mut events = page.len();
        let mut full = events >= self.batch_size as usize;
        let mut last = page.last().map(|e| e.position);
        fold.apply(self, generation.generation, page).await?;
        if full && self.catch_up > 0 {
            let after = last.unwrap_or(generation.position);
            let mut scan = self.store.scan_feed(after, u64::MAX);
            full = false;
            while let Some(chunk) = scan.next_chunk().await {
                let chunk = chunk?;
                events += chunk.len();
                last = chunk.last().map(|e| e.position).or(last);
                fold.apply(self, generation.generation, chunk).await?;
                if fold.timelines.len() >= self.catch_up {
                    // Dropping the scan stops it; the rest is for the next batch.
                    full = true;
                    break;
                }
            }
        }
        let mut outcome = BatchOutcome {
            generation: generation.generation,
            events,
            committed: true,
            position: generation.position,
            full,
        };
        let Some(last) = last else {
            return Ok(outcome);
        };
        outcome.committed = self
            .model
            .commit_batch(
                self.projection,
                generation.generation,
                generation.position,
                last,
                Rows(fold.into_rows()),
            )
            .await?;
        if outcome.committed {
            outcome.position = last;
            tracing::debug!(
                projection = self.projection,
                generation = generation.generation,
                events = outcome.events,
                position = last,
                "batch applied"
            );
        } else {
            tracing::info!(
                projection = self.projection,
                generation = generation.generation,
                "another runner applied this batch first; nothing written"
            );
        }
        Ok(outcome)
    }
}

impl Runner {
    /// Whether `generation` is built from the start in parts, and how: on PostgreSQL, when a
    /// generation at position 0 (a rebuild, or a first start after an import) has more streams
    /// to fold than a catch-up batch may hold. Batches bounded by timelines would each
    /// rewrite the timelines earlier batches wrote, for every stream that goes on past them —
    /// nearly all of them in a long history, which makes such a build quadratic (a 10-million
    /// event rebuild did not end in 14 minutes). On SQLite, where the one write connection
    /// would be held for the whole build (stopping every command meanwhile), generations are
    /// built in catch-up batches.
    async fn build_in_parts(
        &self,
        generation: &Generation,
    ) -> Result<Option<(i64, u32)>, ProjectionError> {
        if generation.position != 0
            || self.catch_up == 0
            || !matches!(self.store.database().writer(), Pool::Postgres(_))
        {
            return Ok(None);
        }
        let head = self.store.head().await?;
        if head == 0 {
            return Ok(None);
        }
        let streams = self.store.count_streams(head).await?;
        let holds = self.catch_up as u64;
        if streams <= holds {
            return Ok(None);
        }
        let parts = streams.div_ceil(holds).min(u64::from(FeedPart::MAX));
        Ok(Some((head, u32::try_from(parts).unwrap_or(FeedPart::MAX))))
    }

    /// Builds `generation` from position 0 up to `head` in one batch whose rows are folded
    /// part by part inside the batch's transaction (see [`InParts`]): each timeline is folded
    /// and written once, and the batch holds one part's timelines at a time.
    async fn batch_in_parts(
        &self,
        generation: &Generation,
        (head, parts): (i64, u32),
    ) -> Result<BatchOutcome, ProjectionError> {
        tracing::info!(
            projection = self.projection,
            generation = generation.generation,
            head,
            parts,
            "building the generation in parts"
        );
        let mut source = InParts {
            runner: self,
            generation: generation.generation,
            head,
            parts,
            next: 0,
            events: 0,
            rows: Box::new(std::iter::empty()),
        };
        let committed = self
            .model
            .commit_batch(self.projection, generation.generation, 0, head, &mut source)
            .await?;
        Ok(BatchOutcome {
            generation: generation.generation,
            events: source.events,
            committed,
            position: if committed { head } else { 0 },
            full: false,
        })
    }
}

/// The rows of a generation built in parts ([`Runner::batch_in_parts`]): each part of the
/// streams ([`FeedPart`]) is scanned and folded when the rows of the one before have been
/// taken.
struct InParts<'a> {
    runner: &'a Runner,
    generation: i64,
    head: i64,
    parts: u32,
    /// The next part to fold.
    next: u32,
    /// Events folded so far.
    events: usize,
    /// The rows of the part folded last, encoded as they are taken.
    rows: Box<dyn Iterator<Item = Result<TimelineRow, ProjectionError>> + Send + 'a>,
}

impl RowSource for &mut InParts<'_> {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<TimelineRow>, ProjectionError> {
        loop {
            let chunk = self
                .rows
                .by_ref()
                .take(max)
                .collect::<Result<Vec<_>, _>>()?;
            if !chunk.is_empty() || self.next == self.parts {
                return Ok(chunk);
            }
            let part = FeedPart {
                index: self.next,
                of: self.parts,
            };
            self.next += 1;
            let mut fold = Fold::new(false);
            let mut scan = self.runner.store.scan_feed_part(0, self.head, part);
            while let Some(chunk) = scan.next_chunk().await {
                let chunk = chunk?;
                self.events += chunk.len();
                fold.apply(self.runner, self.generation, chunk).await?;
            }
            self.rows = Box::new(fold.into_rows());
        }
    }
}

/// The timelines a batch changes, as the batch goes, by beneficiary (the store's id: no text
/// made per event).
struct Fold {
    /// Whether the generation may hold timelines already (its checkpoint is past 0: rows are
    /// only ever written together with a checkpoint move).
    stored: bool,
    timelines: HashMap<Uuid, (Timeline, bool)>,
    /// Changed beneficiaries.
    changed: Vec<Uuid>,
}

impl Fold {
    fn new(stored: bool) -> Self {
        Self {
            stored,
            timelines: HashMap::new(),
            changed: Vec::new(),
        }
    }

    /// Applies `events` to the timelines of their beneficiaries, loading first the stored
    /// timelines of those the batch has not seen yet (one statement).
    async fn apply(
        &mut self,
        runner: &Runner,
        generation: i64,
        events: Vec<StoredEvent>,
    ) -> Result<(), ProjectionError> {
        if self.stored {
            let ids: Vec<String> = {
                let mut seen = HashSet::new();
                events
                    .iter()
                    .map(|e| e.beneficiary_id)
                    .filter(|id| !self.timelines.contains_key(id) && seen.insert(*id))
                    .map(|id| id.to_string())
                    .collect()
            };
            if !ids.is_empty() {
                let stored = runner
                    .model
                    .load_timelines(runner.projection, generation, &ids)
                    .await?;
                for (id, timeline) in crate::read_model::decode(stored)? {
                    let id = Uuid::parse_str(&id).map_err(|e| {
                        ProjectionError::Corrupt(format!("stored beneficiary id {id}: {e}"))
                    })?;
                    self.timelines.insert(id, (timeline, false));
                }
            }
        }
        for stored in events {
            let (beneficiary, recorded) = stored.into_recorded();
            let (timeline, changed) = self
                .timelines
                .entry(beneficiary)
                .or_insert_with(|| (Timeline::new(beneficiary.to_string()), false));
            if timeline.apply(&recorded) && !*changed {
                *changed = true;
                self.changed.push(beneficiary);
            }
        }
        Ok(())
    }

    /// The changed timelines as rows, encoded as they are taken (each timeline dropped once
    /// encoded), in beneficiary order: the order of the table's primary key (a UUID's bytes
    /// and its text sort alike), so that PostgreSQL adds a new generation's rows at the end of
    /// its index instead of searching it for each row (a fifth less time to store them).
    fn into_rows(self) -> impl Iterator<Item = Result<(String, String), ProjectionError>> {
        let Self {
            mut timelines,
            mut changed,
            ..
        } = self;
        changed.sort_unstable();
        changed.into_iter().filter_map(move |id| {
            let (timeline, _) = timelines.remove(&id)?;
            Some(crate::read_model::encode(&id.to_string(), &timeline))
        })
    }
}
