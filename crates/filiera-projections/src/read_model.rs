//! The read model's tables (`projection_generations`, `projection_timelines`; this crate's
//! migrations) and every statement run on them. The SQL is in `statements/`: one text for
//! both backends, and under `statements/postgres/` and `statements/sqlite/` the few that differ
//! (timestamps, arrays, row ids). Writes go through the store's [`Database::writer`], reads
//! through its reader.
//!
//! Timelines are stored as JSON text on both backends.

use chrono::{DateTime, Utc};
use filiera_domain::Timeline;
use filiera_store::{Database, Migrations, PerBackend, Pool, Store, on_pool};

use crate::ProjectionError;

/// The read model's schema (version 3 in the ledger the store's migrations share).
pub(crate) static MIGRATIONS: Migrations = Migrations::new(
    || sqlx::migrate!("./migrations/sqlite"),
    || sqlx::migrate!("./migrations/postgres"),
);

/// Statements written once for both backends.
mod sql {
    pub(super) const GENERATIONS: &str = include_str!("statements/generations.sql");
    pub(super) const GENERATION: &str = include_str!("statements/generation.sql");
    pub(super) const MOVE_CHECKPOINT: &str = include_str!("statements/move_checkpoint.sql");
    pub(super) const ADD_BUILDING: &str = include_str!("statements/add_building.sql");
    pub(super) const FETCH: &str = include_str!("statements/fetch.sql");
}

/// Statements each backend writes its own way.
macro_rules! per_backend {
    ($file:literal) => {
        PerBackend {
            sqlite: include_str!(concat!("statements/sqlite/", $file)),
            postgres: include_str!(concat!("statements/postgres/", $file)),
        }
    };
}
const INITIALIZE: PerBackend<&str> = per_backend!("initialize.sql");
const RETIRE: PerBackend<&str> = per_backend!("retire.sql");
const ACTIVATE: PerBackend<&str> = per_backend!("activate.sql");
const PURGE_RETIRED: PerBackend<&str> = per_backend!("purge_retired.sql");
const ABANDON: PerBackend<&str> = per_backend!("abandon.sql");

/// The timeline format this build writes, as stored in `projection_generations.format`.
pub(crate) const FORMAT: i64 = Timeline::FORMAT as i64;

/// A `projection_generations` row as selected: generation, status, position, started_at,
/// format.
type GenerationRow = (i64, String, i64, DateTime<Utc>, i64);

/// What a generation is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GenerationStatus {
    /// Being filled from position 0 by a rebuild; not read by queries.
    Building,
    /// Kept up with the feed and read by queries.
    Active,
    /// Replaced by a rebuild; its rows are being deleted.
    Retired,
}

impl Generation {
    fn from_row(
        (generation, status, position, started_at, format): GenerationRow,
    ) -> Result<Self, ProjectionError> {
        Ok(Self {
            generation,
            status: GenerationStatus::parse(&status)?,
            position,
            started_at,
            format,
        })
    }
}

impl GenerationStatus {
    fn parse(text: &str) -> Result<Self, ProjectionError> {
        match text {
            "building" => Ok(Self::Building),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            other => Err(ProjectionError::Corrupt(format!(
                "unknown generation status `{other}`"
            ))),
        }
    }
}

/// Decodes timeline rows as stored in `projection_timelines.timeline`.
pub(crate) fn decode(rows: Vec<TimelineRow>) -> Result<Vec<(String, Timeline)>, ProjectionError> {
    rows.into_iter().map(decode_row).collect()
}

/// Decodes one timeline row.
pub(crate) fn decode_row((id, json): TimelineRow) -> Result<(String, Timeline), ProjectionError> {
    let timeline = serde_json::from_str(&json)
        .map_err(|e| ProjectionError::Corrupt(format!("timeline of {id} does not decode: {e}")))?;
    Ok((id, timeline))
}

/// Encodes a timeline for `projection_timelines.timeline`.
pub(crate) fn encode(id: &str, timeline: &Timeline) -> Result<TimelineRow, ProjectionError> {
    let json =
        serde_json::to_string(timeline).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
    Ok((id.to_owned(), json))
}

/// One row of `projection_generations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) generation: i64,
    pub(crate) status: GenerationStatus,
    /// The checkpoint: the global position of the last event applied.
    pub(crate) position: i64,
    pub(crate) started_at: DateTime<Utc>,
    /// The timeline format its rows were built with ([`FORMAT`] for generations made by this
    /// build).
    pub(crate) format: i64,
}

impl Generation {
    /// Whether its rows were built by an older timeline format than this build's.
    pub(crate) fn is_outdated(&self) -> bool {
        self.format < FORMAT
    }
}

/// The generations a projection is working on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generations {
    pub(crate) active: Option<Generation>,
    pub(crate) building: Option<Generation>,
}

/// A timeline row as stored: beneficiary id and JSON.
pub(crate) type TimelineRow = (String, String);

/// A row of `fetch.sql`: the generation, its checkpoint and format, and a changed timeline row
/// (null columns when none changed).
type FetchRow = (i64, i64, i64, Option<String>, Option<String>);

/// What a query cache gets from [`ReadModel::fetch`].
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The rows of the active generation changed after the given position (all of them for a
    /// full load), and the generation's checkpoint, read in one snapshot.
    Rows {
        generation: i64,
        position: i64,
        /// The generation's timeline format.
        format: i64,
        rows: Vec<TimelineRow>,
    },
    /// The generation asked about is no longer active: a rebuild was swapped in.
    GenerationChanged,
    /// No generation is active (the projection was never initialised).
    NothingActive,
}

/// The read model's tables in the store's database.
#[derive(Clone, Debug)]
pub(crate) struct ReadModel {
    database: Database,
}

impl ReadModel {
    pub(crate) fn new(store: &Store) -> Self {
        Self {
            database: store.database(),
        }
    }

    /// Creates the first generation, active at position 0, if the projection has none yet.
    /// Safe to run concurrently from several processes.
    pub(crate) async fn initialize(&self, projection: &str) -> Result<(), ProjectionError> {
        let writer = self.database.writer();
        let sql = writer.pick(&INITIALIZE);
        on_pool!(writer, |pool| {
            sqlx::query(sql)
                .bind(projection)
                .bind(FORMAT)
                .execute(pool)
                .await
                .map(drop)
        })?;
        Ok(())
    }

    /// The active and building generations of a projection.
    pub(crate) async fn generations(
        &self,
        projection: &str,
    ) -> Result<Generations, ProjectionError> {
        let rows: Vec<GenerationRow> = on_pool!(self.database.reader(), |pool| {
            sqlx::query_as(sql::GENERATIONS)
                .bind(projection)
                .fetch_all(pool)
                .await?
        });
        let mut generations = Generations::default();
        for row in rows {
            let row = Generation::from_row(row)?;
            match row.status {
                GenerationStatus::Active => generations.active = Some(row),
                GenerationStatus::Building => generations.building = Some(row),
                GenerationStatus::Retired => {}
            }
        }
        Ok(generations)
    }

    /// One generation, whatever its status.
    pub(crate) async fn generation(
        &self,
        projection: &str,
        generation: i64,
    ) -> Result<Option<Generation>, ProjectionError> {
        let row: Option<GenerationRow> = on_pool!(self.database.reader(), |pool| {
            sqlx::query_as(sql::GENERATION)
                .bind(projection)
                .bind(generation)
                .fetch_optional(pool)
                .await?
        });
        row.map(Generation::from_row).transpose()
    }

    /// The stored timelines of `ids` in a generation (those that have one).
    pub(crate) async fn load_timelines(
        &self,
        projection: &str,
        generation: i64,
        ids: &[String],
    ) -> Result<Vec<TimelineRow>, ProjectionError> {
        let rows = match self.database.reader() {
            // Planned for each call (not a cached generic plan), so that a table that grew
            // from empty during a rebuild is read through its primary key.
            Pool::Postgres(pool) => {
                sqlx::query_as(include_str!("statements/postgres/load_timelines.sql"))
                    .persistent(false)
                    .bind(projection)
                    .bind(generation)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite(pool) => {
                let ids = serde_json::to_string(ids)
                    .map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
                sqlx::query_as(include_str!("statements/sqlite/load_timelines.sql"))
                    .bind(projection)
                    .bind(generation)
                    .bind(ids)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows)
    }

    /// Writes a batch: moves the generation's checkpoint from `old` to `new` with a
    /// compare-and-set and upserts `rows` (stamped `updated_position = new`), in one
    /// transaction. `false` (and nothing written) when the checkpoint was not `old` any more
    /// or the generation was retired: another runner got there first. The rows are taken
    /// (encoded, for the runner) [`UPSERT_CHUNK`] at a time, so a large catch-up batch never
    /// holds all of them at once; a source may even fold them only then, inside the
    /// transaction (a rebuild in parts: the compare-and-set then also keeps a second runner
    /// from folding at all). On PostgreSQL, a batch from checkpoint 0 (a generation built from
    /// the start) streams its rows with one `COPY` instead of upserting them.
    pub(crate) async fn commit_batch(
        &self,
        projection: &str,
        generation: i64,
        old: i64,
        new: i64,
        mut rows: impl RowSource,
    ) -> Result<bool, ProjectionError> {
        on_pool!(self.database.writer(), |pool| {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(sql::MOVE_CHECKPOINT)
                .bind(projection)
                .bind(generation)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if moved != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            let batch = Batch {
                projection,
                generation,
                position: new,
            };
            // A generation at checkpoint 0 has no rows yet (rows are only ever written with a
            // checkpoint move), so none of this batch's rows can conflict with a stored one.
            let fresh = old == 0;
            batch.write(fresh, &mut rows, &mut tx).await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Adds a `building` generation at position 0. `Err(generation)` if one is already
    /// building (the partial unique index decides races between processes).
    pub(crate) async fn start_rebuild(
        &self,
        projection: &str,
    ) -> Result<Result<i64, i64>, ProjectionError> {
        for _ in 0..3 {
            if let Some(building) = self.generations(projection).await?.building {
                return Ok(Err(building.generation));
            }
            let inserted: Result<i64, sqlx::Error> = on_pool!(self.database.writer(), |pool| {
                sqlx::query_scalar(sql::ADD_BUILDING)
                    .bind(projection)
                    .bind(FORMAT)
                    .fetch_one(pool)
                    .await
            });
            match inserted {
                Ok(generation) => return Ok(Ok(generation)),
                // Another process inserted first: look again.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        match self.generations(projection).await?.building {
            Some(building) => Ok(Err(building.generation)),
            None => Err(ProjectionError::Corrupt(
                "could not add a building generation".into(),
            )),
        }
    }

    /// Starts the rebuild a read model built by an older version needs: when the active
    /// generation's timeline format is older than this build's (its timelines lack facts the
    /// metrics now read), a new generation is built from the start of the feed. A building
    /// generation of an older format (a rebuild begun by an older release) is given up first.
    /// `true` when it changed anything.
    pub(crate) async fn upgrade_outdated(
        &self,
        projection: &str,
        generations: &Generations,
    ) -> Result<bool, ProjectionError> {
        let mut changed = false;
        let mut building = generations.building.as_ref();
        if let Some(outdated) = building.filter(|b| b.is_outdated()) {
            tracing::warn!(
                projection,
                generation = outdated.generation,
                format = outdated.format,
                "giving up a rebuild begun by an older version"
            );
            self.abandon(projection, outdated.generation).await?;
            building = None;
            changed = true;
        }
        if let Some(active) = generations.active.as_ref().filter(|a| a.is_outdated())
            && building.is_none()
            && let Ok(generation) = self.start_rebuild(projection).await?
        {
            tracing::warn!(
                projection,
                active = active.generation,
                format = active.format,
                generation,
                "the read model was built by an older version: rebuilding it; queries wait \
                 for the new generation"
            );
            changed = true;
        }
        Ok(changed)
    }

    /// Gives up the building generation `generation` (built with an older timeline format):
    /// retires it so that its rows are purged and a new rebuild can start.
    pub(crate) async fn abandon(
        &self,
        projection: &str,
        generation: i64,
    ) -> Result<(), ProjectionError> {
        let writer = self.database.writer();
        let sql = writer.pick(&ABANDON);
        on_pool!(writer, |pool| {
            sqlx::query(sql)
                .bind(projection)
                .bind(generation)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Makes the building generation active and the active one retired, in one transaction,
    /// provided the building one is still at `building_position` and the active one is not
    /// ahead of it. `false` (nothing changed) otherwise.
    pub(crate) async fn swap(
        &self,
        projection: &str,
        active: i64,
        building: i64,
        building_position: i64,
    ) -> Result<bool, ProjectionError> {
        let writer = self.database.writer();
        let (retire, activate) = (writer.pick(&RETIRE), writer.pick(&ACTIVATE));
        let swapped = on_pool!(writer, |pool| {
            let mut tx = pool.begin().await?;
            let mut changed = 0;
            for (sql, generation) in [(retire, active), (activate, building)] {
                changed += sqlx::query(sql)
                    .bind(projection)
                    .bind(generation)
                    .bind(building_position)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    break;
                }
            }
            if changed == 2 {
                tx.commit().await?;
                true
            } else {
                tx.rollback().await?;
                false
            }
        });
        Ok(swapped)
    }

    /// Deletes up to `chunk` rows of retired generations; returns how many it deleted (0 when
    /// there are none left). Chunked so that the SQLite write connection is never held long.
    pub(crate) async fn purge_retired(
        &self,
        projection: &str,
        chunk: i64,
    ) -> Result<u64, ProjectionError> {
        let writer = self.database.writer();
        let sql = writer.pick(&PURGE_RETIRED);
        let deleted = on_pool!(writer, |pool| {
            sqlx::query(sql)
                .bind(projection)
                .bind(chunk)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }

    /// The active generation's checkpoint and the rows changed after `since`, in one snapshot
    /// (one statement). `since = None`: a full load of whichever generation is active.
    /// `since = Some((generation, position))`: only if that generation is still active.
    pub(crate) async fn fetch(
        &self,
        projection: &str,
        since: Option<(i64, i64)>,
    ) -> Result<Fetched, ProjectionError> {
        let (generation, after) = match since {
            Some((generation, position)) => (Some(generation), position),
            None => (None, -1),
        };
        // Planned for each call: a generic plan cached while the table was small would keep
        // scanning it whole once it has grown.
        let rows: Vec<FetchRow> = on_pool!(self.database.reader(), |pool| {
            sqlx::query_as(sql::FETCH)
                .persistent(false)
                .bind(projection)
                .bind(generation)
                .bind(after)
                .fetch_all(pool)
                .await?
        });
        let Some(&(generation, position, format, _, _)) = rows.first() else {
            return Ok(if since.is_some() {
                Fetched::GenerationChanged
            } else {
                Fetched::NothingActive
            });
        };
        let rows = rows
            .into_iter()
            .filter_map(|(_, _, _, id, timeline)| Some((id?, timeline?)))
            .collect();
        Ok(Fetched::Rows {
            generation,
            position,
            format,
            rows,
        })
    }
}

/// Timelines upserted per statement.
const UPSERT_CHUNK: usize = 10_000;

/// Timelines per multi-row statement on SQLite (5 parameters each, well under SQLite's limit
/// of 32,766).
const SQLITE_ROWS_PER_UPSERT: usize = 1_000;

/// Where the rows of a batch come from: taken a chunk at a time by
/// [`ReadModel::commit_batch`], inside the batch's transaction, until a chunk comes back empty.
pub(crate) trait RowSource: Send {
    /// Up to `max` more rows; none when the source is exhausted.
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Vec<TimelineRow>, ProjectionError>> + Send;
}

/// Rows already at hand (or encoded as they are taken).
pub(crate) struct Rows<I>(pub(crate) I);

impl<I> RowSource for Rows<I>
where
    I: Iterator<Item = Result<TimelineRow, ProjectionError>> + Send,
{
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<TimelineRow>, ProjectionError> {
        self.0.by_ref().take(max).collect()
    }
}

/// Where a batch's timelines go, and the checkpoint they are stamped with.
struct Batch<'a> {
    projection: &'a str,
    generation: i64,
    position: i64,
}

impl Batch<'_> {
    /// Writes every row `rows` gives, inside the batch's transaction. `fresh`: the generation
    /// has no row yet, so the rows need no upsert (each row of a batch is a different
    /// beneficiary: a batch writes each changed timeline once).
    async fn write<DB: WriteTimelines>(
        &self,
        fresh: bool,
        rows: &mut impl RowSource,
        tx: &mut sqlx::Transaction<'_, DB>,
    ) -> Result<(), ProjectionError> {
        if fresh {
            DB::insert_fresh(self, rows, tx).await
        } else {
            self.upsert_all(rows, tx).await
        }
    }

    /// Upserts every row `rows` gives, [`UPSERT_CHUNK`] at a time.
    async fn upsert_all<DB: WriteTimelines>(
        &self,
        rows: &mut impl RowSource,
        tx: &mut sqlx::Transaction<'_, DB>,
    ) -> Result<(), ProjectionError> {
        loop {
            let chunk = rows.next_chunk(UPSERT_CHUNK).await?;
            if chunk.is_empty() {
                return Ok(());
            }
            DB::upsert(self, &chunk, tx).await?;
        }
    }
}

/// How a backend writes a batch's timelines inside the batch's transaction.
trait WriteTimelines: sqlx::Database {
    /// Upserts one chunk of rows.
    async fn upsert(
        batch: &Batch<'_>,
        rows: &[TimelineRow],
        tx: &mut sqlx::Transaction<'_, Self>,
    ) -> Result<(), sqlx::Error>;

    /// Inserts every row `rows` gives into a generation that has none yet; by default, with
    /// the upserts (SQLite has no `COPY`, and its multi-row statements come close).
    async fn insert_fresh(
        batch: &Batch<'_>,
        rows: &mut impl RowSource,
        tx: &mut sqlx::Transaction<'_, Self>,
    ) -> Result<(), ProjectionError> {
        batch.upsert_all(rows, tx).await
    }
}

impl WriteTimelines for sqlx::Postgres {
    /// One statement for the whole chunk.
    async fn upsert(
        batch: &Batch<'_>,
        rows: &[TimelineRow],
        tx: &mut sqlx::Transaction<'_, Self>,
    ) -> Result<(), sqlx::Error> {
        let (ids, timelines): (Vec<&str>, Vec<&str>) = rows
            .iter()
            .map(|(id, timeline)| (id.as_str(), timeline.as_str()))
            .unzip();
        sqlx::query(include_str!("statements/postgres/upsert_timelines.sql"))
            .bind(batch.projection)
            .bind(batch.generation)
            .bind(batch.position)
            .bind(ids)
            .bind(timelines)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// One `COPY` for the whole generation (a rebuild, a first start after an import): the
    /// server stores a chunk while the next one is folded, encoded and sent, where upserts
    /// made each side wait for the other, and `COPY` skips the conflict checks and the
    /// arrays' unpacking. A duplicate row would fail the primary key, never overwrite.
    async fn insert_fresh(
        batch: &Batch<'_>,
        rows: &mut impl RowSource,
        tx: &mut sqlx::Transaction<'_, Self>,
    ) -> Result<(), ProjectionError> {
        let mut copy = tx
            .copy_in_raw(include_str!("statements/postgres/copy_timelines.sql"))
            .await?;
        let mut data = CopyData::new(batch)?;
        loop {
            let chunk = match rows.next_chunk(UPSERT_CHUNK).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    // The error that stopped the rows is the one to tell, whatever the abort
                    // meets (the server may have failed the copy already).
                    if let Err(abort) = copy.abort("the rows could not be produced").await {
                        tracing::debug!(error = %abort, "aborting the copy of a fresh generation");
                    }
                    return Err(error);
                }
            };
            if chunk.is_empty() {
                break;
            }
            for (id, timeline) in &chunk {
                data.row(id, timeline)?;
            }
            copy.send(data.pending()).await?;
            data.clear();
        }
        copy.send(data.finish()).await?;
        copy.finish().await?;
        Ok(())
    }
}

impl WriteTimelines for sqlx::Sqlite {
    /// Multi-row statements of [`SQLITE_ROWS_PER_UPSERT`] rows (SQLite has no arrays): one
    /// statement per row cost a rebuild a third of its time.
    async fn upsert(
        batch: &Batch<'_>,
        rows: &[TimelineRow],
        tx: &mut sqlx::Transaction<'_, Self>,
    ) -> Result<(), sqlx::Error> {
        for rows in rows.chunks(SQLITE_ROWS_PER_UPSERT) {
            let mut statement = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO projection_timelines \
                 (projection, generation, beneficiary_id, timeline, updated_position) ",
            );
            statement.push_values(rows, |mut row, (id, timeline)| {
                row.push_bind(batch.projection)
                    .push_bind(batch.generation)
                    .push_bind(id)
                    .push_bind(timeline)
                    .push_bind(batch.position);
            });
            statement.push(
                " ON CONFLICT (projection, generation, beneficiary_id) DO UPDATE \
                 SET timeline = excluded.timeline, updated_position = excluded.updated_position",
            );
            statement.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The data of `copy_timelines.sql` in PostgreSQL's binary `COPY` format (a header, then
/// per row its field count and each field as a length and its bytes, then a trailer): no
/// escaping of the JSON, and the numbers sent as they are.
struct CopyData {
    buffer: Vec<u8>,
    /// The fields every row shares, encoded once: projection, generation.
    head: Vec<u8>,
    /// The last field of every row: the checkpoint.
    tail: Vec<u8>,
}

/// The binary `COPY` signature, then no flags and no header extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl CopyData {
    fn new(batch: &Batch<'_>) -> Result<Self, ProjectionError> {
        let mut head = Vec::new();
        head.extend_from_slice(&5_i16.to_be_bytes());
        put_field(&mut head, batch.projection.as_bytes())?;
        put_field(&mut head, &batch.generation.to_be_bytes())?;
        let mut tail = Vec::new();
        put_field(&mut tail, &batch.position.to_be_bytes())?;
        Ok(Self {
            buffer: COPY_HEADER.to_vec(),
            head,
            tail,
        })
    }

    /// Adds a row for beneficiary `id`.
    fn row(&mut self, id: &str, timeline: &str) -> Result<(), ProjectionError> {
        self.buffer.extend_from_slice(&self.head);
        put_field(&mut self.buffer, id.as_bytes())?;
        put_field(&mut self.buffer, timeline.as_bytes())?;
        self.buffer.extend_from_slice(&self.tail);
        Ok(())
    }

    /// The data added since the last [`CopyData::clear`].
    fn pending(&self) -> &[u8] {
        &self.buffer
    }

    /// Empties the buffer once its data is sent, keeping its allocation for the next chunk.
    fn clear(&mut self) {
        self.buffer.clear();
    }

    /// The rest of the data, with the trailer.
    fn finish(mut self) -> Vec<u8> {
        self.buffer.extend_from_slice(&(-1_i16).to_be_bytes());
        self.buffer
    }
}

/// One field of a binary `COPY` row: its length, then its bytes.
fn put_field(buffer: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ProjectionError> {
    let length = i32::try_from(bytes.len())
        .map_err(|_| ProjectionError::Corrupt("a field of 2 GiB or more to copy".into()))?;
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(bytes);
    Ok(())
}
