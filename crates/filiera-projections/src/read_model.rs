//! The read model's tables (`projection_generations`, `projection_timelines`, created by the
//! store's migrations `0003_projections.sql`) and every statement run on them, for both
//! backends. On SQLite every write goes through the store's one-connection write pool, every
//! read through its read pool.
//!
//! Timelines are stored as JSON text on both backends.

use chrono::{DateTime, Utc};
use filiera_domain::Timeline;
use filiera_store::Store;
use sqlx::{PgPool, Row as _, SqlitePool};

use crate::ProjectionError;

/// Decodes a `projection_generations` row selected as `generation, status, position,
/// started_at`.
macro_rules! generation_row {
    ($row:expr) => {{
        let row = $row;
        Ok::<_, sqlx::Error>((
            row.try_get::<i64, _>("generation")?,
            row.try_get::<String, _>("status")?,
            row.try_get::<i64, _>("position")?,
            row.try_get::<DateTime<Utc>, _>("started_at")?,
        ))
    }};
}

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
    rows.into_iter()
        .map(|(id, json)| {
            let timeline = serde_json::from_str(&json).map_err(|e| {
                ProjectionError::Corrupt(format!("timeline of {id} does not decode: {e}"))
            })?;
            Ok((id, timeline))
        })
        .collect()
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
}

/// The generations a projection is working on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Generations {
    pub(crate) active: Option<Generation>,
    pub(crate) building: Option<Generation>,
}

/// A timeline row as stored: beneficiary id and JSON.
pub(crate) type TimelineRow = (String, String);

/// What a query cache gets from [`ReadModel::fetch`].
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The rows of the active generation changed after the given position (all of them for a
    /// full load), and the generation's checkpoint, read in one snapshot.
    Rows {
        generation: i64,
        position: i64,
        rows: Vec<TimelineRow>,
    },
    /// The generation asked about is no longer active: a rebuild was swapped in.
    GenerationChanged,
    /// No generation is active (the projection was never initialised).
    NothingActive,
}

/// The read model's tables in the store's database.
#[derive(Clone, Debug)]
pub(crate) enum ReadModel {
    Postgres(PgPool),
    Sqlite {
        /// The store's one-connection write pool: every write goes through it.
        write: SqlitePool,
        read: SqlitePool,
    },
}

impl ReadModel {
    pub(crate) fn new(store: &Store) -> Self {
        if let Some(pool) = store.pg_pool() {
            return Self::Postgres(pool.clone());
        }
        let (write, read) = store
            .sqlite_pools()
            .expect("a store is either PostgreSQL or SQLite");
        Self::Sqlite {
            write: write.clone(),
            read: read.clone(),
        }
    }

    /// Creates the first generation, active at position 0, if the projection has none yet.
    /// Safe to run concurrently from several processes.
    pub(crate) async fn initialize(&self, projection: &str) -> Result<(), ProjectionError> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO projection_generations \
                         (projection, generation, status, position, activated_at) \
                     SELECT $1, 1, 'active', 0, clock_timestamp() \
                     WHERE NOT EXISTS \
                         (SELECT 1 FROM projection_generations WHERE projection = $1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(projection)
                .execute(pool)
                .await?;
            }
            Self::Sqlite { write, .. } => {
                sqlx::query(
                    "INSERT OR IGNORE INTO projection_generations \
                         (projection, generation, status, position, activated_at) \
                     SELECT ?1, 1, 'active', 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE NOT EXISTS \
                         (SELECT 1 FROM projection_generations WHERE projection = ?1)",
                )
                .bind(projection)
                .execute(write)
                .await?;
            }
        }
        Ok(())
    }

    /// The active and building generations of a projection.
    pub(crate) async fn generations(
        &self,
        projection: &str,
    ) -> Result<Generations, ProjectionError> {
        const SQL: &str = "SELECT generation, status, position, started_at \
                           FROM projection_generations \
                           WHERE projection = $1 AND status IN ('active', 'building')";
        let rows = match self {
            Self::Postgres(pool) => sqlx::query(SQL)
                .bind(projection)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| generation_row!(row))
                .collect::<Result<Vec<_>, sqlx::Error>>()?,
            Self::Sqlite { read, .. } => sqlx::query(SQL)
                .bind(projection)
                .fetch_all(read)
                .await?
                .iter()
                .map(|row| generation_row!(row))
                .collect::<Result<Vec<_>, sqlx::Error>>()?,
        };
        let mut generations = Generations::default();
        for (generation, status, position, started_at) in rows {
            let row = Generation {
                generation,
                status: GenerationStatus::parse(&status)?,
                position,
                started_at,
            };
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
        const SQL: &str = "SELECT generation, status, position, started_at \
                           FROM projection_generations \
                           WHERE projection = $1 AND generation = $2";
        let row = match self {
            Self::Postgres(pool) => match sqlx::query(SQL)
                .bind(projection)
                .bind(generation)
                .fetch_optional(pool)
                .await?
            {
                Some(row) => Some(generation_row!(&row)?),
                None => None,
            },
            Self::Sqlite { read, .. } => match sqlx::query(SQL)
                .bind(projection)
                .bind(generation)
                .fetch_optional(read)
                .await?
            {
                Some(row) => Some(generation_row!(&row)?),
                None => None,
            },
        };
        row.map(|(generation, status, position, started_at)| {
            Ok(Generation {
                generation,
                status: GenerationStatus::parse(&status)?,
                position,
                started_at,
            })
        })
        .transpose()
    }

    /// The stored timelines of `ids` in a generation (those that have one).
    pub(crate) async fn load_timelines(
        &self,
        projection: &str,
        generation: i64,
        ids: &[String],
    ) -> Result<Vec<TimelineRow>, ProjectionError> {
        let rows = match self {
            Self::Postgres(pool) => {
                // Planned for each call (not a cached generic plan), so that a table that grew
                // from empty during a rebuild is read through its primary key.
                sqlx::query_as::<_, TimelineRow>(
                    "SELECT beneficiary_id, timeline FROM projection_timelines \
                     WHERE projection = $1 AND generation = $2 AND beneficiary_id = ANY($3)",
                )
                .persistent(false)
                .bind(projection)
                .bind(generation)
                .bind(ids)
                .fetch_all(pool)
                .await?
            }
            Self::Sqlite { read, .. } => {
                let ids = serde_json::to_string(ids)
                    .map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
                sqlx::query_as::<_, TimelineRow>(
                    // CROSS JOIN makes SQLite probe the primary key once per id instead of
                    // scanning the generation's rows.
                    "SELECT t.beneficiary_id, t.timeline \
                     FROM json_each(?3) AS ids CROSS JOIN projection_timelines AS t \
                     WHERE t.projection = ?1 AND t.generation = ?2 \
                       AND t.beneficiary_id = ids.value",
                )
                .bind(projection)
                .bind(generation)
                .bind(ids)
                .fetch_all(read)
                .await?
            }
        };
        Ok(rows)
    }

    /// Writes a batch: moves the generation's checkpoint from `old` to `new` with a
    /// compare-and-set and upserts `rows` (stamped `updated_position = new`), in one
    /// transaction. `false` (and nothing written) when the checkpoint was not `old` any more
    /// or the generation was retired: another runner got there first.
    pub(crate) async fn commit_batch(
        &self,
        projection: &str,
        generation: i64,
        old: i64,
        new: i64,
        rows: &[TimelineRow],
    ) -> Result<bool, ProjectionError> {
        match self {
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let moved = sqlx::query(
                    "UPDATE projection_generations SET position = $4 \
                     WHERE projection = $1 AND generation = $2 AND position = $3 \
                       AND status <> 'retired'",
                )
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
                if !rows.is_empty() {
                    let (ids, timelines): (Vec<&str>, Vec<&str>) =
                        rows.iter().map(|(i, t)| (i.as_str(), t.as_str())).unzip();
                    sqlx::query(
                        "INSERT INTO projection_timelines \
                             (projection, generation, beneficiary_id, timeline, updated_position) \
                         SELECT $1, $2, u.id, u.timeline, $3 \
                         FROM UNNEST($4::text[], $5::text[]) AS u (id, timeline) \
                         ON CONFLICT (projection, generation, beneficiary_id) DO UPDATE \
                         SET timeline = excluded.timeline, \
                             updated_position = excluded.updated_position",
                    )
                    .bind(projection)
                    .bind(generation)
                    .bind(new)
                    .bind(ids)
                    .bind(timelines)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Self::Sqlite { write, .. } => {
                let mut tx = write.begin().await?;
                let moved = sqlx::query(
                    "UPDATE projection_generations SET position = ?4 \
                     WHERE projection = ?1 AND generation = ?2 AND position = ?3 \
                       AND status <> 'retired'",
                )
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
                for (id, timeline) in rows {
                    sqlx::query(
                        "INSERT INTO projection_timelines \
                             (projection, generation, beneficiary_id, timeline, updated_position) \
                         VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (projection, generation, beneficiary_id) DO UPDATE \
                         SET timeline = excluded.timeline, \
                             updated_position = excluded.updated_position",
                    )
                    .bind(projection)
                    .bind(generation)
                    .bind(id)
                    .bind(timeline)
                    .bind(new)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
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
            let inserted = match self {
                Self::Postgres(pool) => {
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO projection_generations \
                             (projection, generation, status, position) \
                         SELECT $1, coalesce(max(generation), 0) + 1, 'building', 0 \
                         FROM projection_generations WHERE projection = $1 \
                         RETURNING generation",
                    )
                    .bind(projection)
                    .fetch_one(pool)
                    .await
                }
                Self::Sqlite { write, .. } => {
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO projection_generations \
                             (projection, generation, status, position) \
                         SELECT ?1, coalesce(max(generation), 0) + 1, 'building', 0 \
                         FROM projection_generations WHERE projection = ?1 \
                         RETURNING generation",
                    )
                    .bind(projection)
                    .fetch_one(write)
                    .await
                }
            };
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
        macro_rules! swap_on {
            ($pool:expr, $retire:expr, $activate:expr) => {{
                let mut tx = $pool.begin().await?;
                let retired = sqlx::query($retire)
                    .bind(projection)
                    .bind(active)
                    .bind(building_position)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let activated = if retired == 1 {
                    sqlx::query($activate)
                        .bind(projection)
                        .bind(building)
                        .bind(building_position)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                } else {
                    0
                };
                if activated == 1 {
                    tx.commit().await?;
                    true
                } else {
                    tx.rollback().await?;
                    false
                }
            }};
        }
        let swapped = match self {
            Self::Postgres(pool) => swap_on!(
                pool,
                "UPDATE projection_generations \
                 SET status = 'retired', retired_at = clock_timestamp() \
                 WHERE projection = $1 AND generation = $2 AND status = 'active' \
                   AND position <= $3",
                "UPDATE projection_generations \
                 SET status = 'active', activated_at = clock_timestamp() \
                 WHERE projection = $1 AND generation = $2 AND status = 'building' \
                   AND position = $3"
            ),
            Self::Sqlite { write, .. } => swap_on!(
                write,
                "UPDATE projection_generations \
                 SET status = 'retired', retired_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE projection = ?1 AND generation = ?2 AND status = 'active' \
                   AND position <= ?3",
                "UPDATE projection_generations \
                 SET status = 'active', activated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE projection = ?1 AND generation = ?2 AND status = 'building' \
                   AND position = ?3"
            ),
        };
        Ok(swapped)
    }

    /// Deletes up to `chunk` rows of retired generations; returns how many it deleted (0 when
    /// there are none left). Chunked so that the SQLite write connection is never held long.
    pub(crate) async fn purge_retired(
        &self,
        projection: &str,
        chunk: i64,
    ) -> Result<u64, ProjectionError> {
        let deleted = match self {
            Self::Postgres(pool) => sqlx::query(
                "DELETE FROM projection_timelines \
                     WHERE (projection, generation, beneficiary_id) IN ( \
                         SELECT t.projection, t.generation, t.beneficiary_id \
                         FROM projection_timelines t \
                         JOIN projection_generations g \
                           ON g.projection = t.projection AND g.generation = t.generation \
                         WHERE t.projection = $1 AND g.status = 'retired' \
                         LIMIT $2)",
            )
            .bind(projection)
            .bind(chunk)
            .execute(pool)
            .await?
            .rows_affected(),
            Self::Sqlite { write, .. } => sqlx::query(
                "DELETE FROM projection_timelines \
                     WHERE rowid IN ( \
                         SELECT t.rowid FROM projection_timelines t \
                         JOIN projection_generations g \
                           ON g.projection = t.projection AND g.generation = t.generation \
                         WHERE t.projection = ?1 AND g.status = 'retired' \
                         LIMIT ?2)",
            )
            .bind(projection)
            .bind(chunk)
            .execute(write)
            .await?
            .rows_affected(),
        };
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
        let rows: Vec<(i64, i64, Option<String>, Option<String>)> = match self {
            Self::Postgres(pool) => {
                // Planned for each call: a generic plan cached while the table was small would
                // keep scanning it whole once it has grown.
                sqlx::query_as(
                    "SELECT g.generation, g.position, t.beneficiary_id, t.timeline \
                     FROM projection_generations g \
                     LEFT JOIN projection_timelines t \
                       ON t.projection = g.projection AND t.generation = g.generation \
                      AND t.updated_position > $3 \
                     WHERE g.projection = $1 AND g.status = 'active' \
                       AND ($2::bigint IS NULL OR g.generation = $2)",
                )
                .persistent(false)
                .bind(projection)
                .bind(generation)
                .bind(after)
                .fetch_all(pool)
                .await?
            }
            Self::Sqlite { read, .. } => {
                sqlx::query_as(
                    "SELECT g.generation, g.position, t.beneficiary_id, t.timeline \
                     FROM projection_generations g \
                     LEFT JOIN projection_timelines t \
                       ON t.projection = g.projection AND t.generation = g.generation \
                      AND t.updated_position > ?3 \
                     WHERE g.projection = ?1 AND g.status = 'active' \
                       AND (?2 IS NULL OR g.generation = ?2)",
                )
                .bind(projection)
                .bind(generation)
                .bind(after)
                .fetch_all(read)
                .await?
            }
        };
        let Some(&(generation, position, _, _)) = rows.first() else {
            return Ok(if since.is_some() {
                Fetched::GenerationChanged
            } else {
                Fetched::NothingActive
            });
        };
        let rows = rows
            .into_iter()
            .filter_map(|(_, _, id, timeline)| Some((id?, timeline?)))
            .collect();
        Ok(Fetched::Rows {
            generation,
            position,
            rows,
        })
    }
}
