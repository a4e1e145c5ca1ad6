//! Commands executed in batches: every rule of [`Store::execute`], one transaction per batch.
//!
//! `filiera import` loads years of legacy history. Executing its commands one by one costs a
//! stream load, a transaction and a read-back each, and the position lock is taken once per
//! command. A batch instead looks up its idempotency keys and loads the streams it touches
//! with one statement each, decides every command in memory against the stream as the earlier
//! commands of the batch left it (the same aggregate, the same rules), and writes the events
//! of every accepted command with one statement in one transaction, so the position lock is
//! taken once per batch. The events carry the same metadata as [`Store::execute`] writes,
//! idempotency keys included (bound by the same trigger), so a batch and the same commands
//! executed one by one leave the same streams.
//!
//! If the write loses a race (another writer committed to one of the streams, or bound one of
//! the keys, since they were read), nothing of the batch is written and it is executed again
//! command by command, through [`Store::execute`], which handles races.

use std::collections::{HashMap, HashSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate as _, DomainEvent as _};
use filiera_domain::{Pathway, PathwayCommand, PathwayEvent};
use uuid::Uuid;

use crate::rows::{EVENT_COLUMNS, key_row, raw_event};
use crate::store::command_metadata;
use crate::{CommandContext, Pool, Rejection, Store, StoreError};

/// One command of a batch.
#[derive(Debug)]
pub struct BatchCommand {
    pub beneficiary: Uuid,
    pub command: PathwayCommand,
    pub ctx: CommandContext,
}

/// What happened to one command of a batch.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Decided and stored: its beneficiary (for a replayed enrolment, the stored one) and how
    /// many events it wrote.
    Applied { beneficiary: Uuid, events: usize },
    /// Its idempotency key was already bound to the same request: nothing written.
    Replayed { beneficiary: Uuid },
    /// Refused; nothing written for it.
    Refused(Rejection),
    /// Not attempted: an earlier command of the batch was refused and the batch stops there.
    Skipped,
}

/// Rows per multi-row `INSERT` on SQLite (7 parameters each, well under SQLite's limit).
const SQLITE_ROWS_PER_INSERT: usize = 500;

/// A bound idempotency key as the batch needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundKey {
    /// The beneficiary the key's command wrote to.
    pub beneficiary: Uuid,
    /// The hash of the request that bound it.
    pub request_hash: String,
}

/// An event row to write: stream, sequence, event, metadata (JSON text).
pub(crate) struct Row {
    pub(crate) beneficiary: Uuid,
    pub(crate) sequence: u64,
    pub(crate) event: PathwayEvent,
    pub(crate) metadata: String,
}

impl Store {
    /// The idempotency keys among `keys` that are already bound, with their beneficiary and
    /// request hash: one statement.
    pub async fn bound_keys(
        &self,
        keys: &[String],
    ) -> Result<HashMap<String, BoundKey>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, crate::rows::KeyRow)> = match self.database().reader() {
            Pool::Postgres(pool) => sqlx::query(
                "SELECT key, aggregate_id, request_hash, first_sequence, last_sequence \
                     FROM idempotency_keys WHERE key = ANY($1)",
            )
            .bind(keys)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((sqlx::Row::try_get(row, "key")?, key_row!(row)?)))
            .collect::<Result<_, sqlx::Error>>()?,
            Pool::Sqlite(pool) => sqlx::query(
                "SELECT key, aggregate_id, request_hash, first_sequence, last_sequence \
                     FROM idempotency_keys WHERE key IN (SELECT value FROM json_each($1))",
            )
            .bind(json_list(keys)?)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((sqlx::Row::try_get(row, "key")?, key_row!(row)?)))
            .collect::<Result<_, sqlx::Error>>()?,
        };
        rows.into_iter()
            .map(|(key, row)| {
                let beneficiary = Uuid::parse_str(&row.aggregate_id).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "aggregate id `{}` is not a UUID",
                        row.aggregate_id
                    ))
                })?;
                let bound = BoundKey {
                    beneficiary,
                    request_hash: row.request_hash,
                };
                Ok((key, bound))
            })
            .collect()
    }

    /// Executes `commands` in order, each decided against its stream as the earlier commands
    /// of the batch left it, and writes the events of the accepted ones in one transaction
    /// (see the module docs). With `stop_at_refusal`, the commands after the first refused one
    /// are [`BatchOutcome::Skipped`] (the accepted ones before it are written). Answers one
    /// outcome per command, in order.
    pub async fn execute_batch(
        &self,
        commands: Vec<BatchCommand>,
        stop_at_refusal: bool,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let keys: Vec<String> = commands
            .iter()
            .filter_map(|c| c.ctx.idempotency.as_ref().map(|k| k.key.clone()))
            .collect();
        let bound = self.bound_keys(&keys).await?;
        let ids: Vec<Uuid> = {
            let mut seen = HashSet::new();
            commands
                .iter()
                .map(|c| c.beneficiary)
                .filter(|id| seen.insert(*id))
                .collect()
        };
        let mut streams = self.load_streams(&ids).await?;
        let services = self.services();
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut rows: Vec<Row> = Vec::new();
        let mut stopped = false;
        for BatchCommand {
            beneficiary,
            command,
            ctx,
        } in &commands
        {
            if stopped {
                outcomes.push(BatchOutcome::Skipped);
                continue;
            }
            if let Some(key) = &ctx.idempotency
                && let Some(bound) = bound.get(&key.key)
            {
                outcomes.push(if bound.request_hash == key.request_hash {
                    BatchOutcome::Replayed {
                        beneficiary: bound.beneficiary,
                    }
                } else {
                    stopped = stop_at_refusal;
                    BatchOutcome::Refused(Rejection::IdempotencyKeyReused)
                });
                continue;
            }
            let pathway = streams.entry(*beneficiary).or_default();
            let before = pathway.version();
            let territory_before = pathway.state().territory.clone();
            let mut decided = pathway.clone();
            let sink = EventSink::default();
            if let Err(error) = decided.handle(command.clone(), services, &sink).await {
                stopped = stop_at_refusal;
                outcomes.push(BatchOutcome::Refused(Rejection::Refused(error)));
                continue;
            }
            let events = sink.collect().await;
            let territory = decided.state().territory.clone().or(territory_before);
            let md = command_metadata(command.name(), territory.as_ref(), ctx);
            let md = serde_json::to_string(&md)
                .map_err(|e| StoreError::Corrupt(format!("metadata cannot be encoded: {e}")))?;
            outcomes.push(BatchOutcome::Applied {
                beneficiary: *beneficiary,
                events: events.len(),
            });
            rows.extend((before + 1..).zip(events).map(|(sequence, event)| Row {
                beneficiary: *beneficiary,
                sequence,
                event,
                metadata: md.clone(),
            }));
            *pathway = decided;
        }
        if rows.is_empty() {
            return Ok(outcomes);
        }
        match self.write_rows(&rows).await {
            Ok(()) => {
                let head = self.head().await?;
                crate::store::bump_wakeups(self, head);
                Ok(outcomes)
            }
            Err(error) if is_race(&error) => {
                tracing::info!("a batch lost a race with another writer: executing it one by one");
                self.execute_one_by_one(commands, stop_at_refusal).await
            }
            Err(error) => Err(error),
        }
    }

    /// Refreshes the planner's statistics of the events and idempotency tables after a bulk
    /// load (PostgreSQL's `ANALYZE`; SQLite's `PRAGMA optimize`). Until autovacuum gets to it,
    /// a freshly loaded table looks tiny to PostgreSQL's planner, which then reads the feed by
    /// sorting the whole table on every page instead of walking the position index: the
    /// offline replay right after a 100,000-event import took 2.4 s instead of 0.9 s.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        match self.database().writer() {
            Pool::Postgres(pool) => {
                sqlx::query("ANALYZE events, idempotency_keys")
                    .execute(pool)
                    .await?;
            }
            Pool::Sqlite(write) => {
                sqlx::query("PRAGMA optimize").execute(write).await?;
            }
        }
        Ok(())
    }

    /// The fallback of a batch that lost a race: [`Store::execute`] for each command.
    async fn execute_one_by_one(
        &self,
        commands: Vec<BatchCommand>,
        stop_at_refusal: bool,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut stopped = false;
        for BatchCommand {
            beneficiary,
            command,
            ctx,
        } in commands
        {
            if stopped {
                outcomes.push(BatchOutcome::Skipped);
                continue;
            }
            outcomes.push(match self.execute(beneficiary, command, ctx).await? {
                Ok(executed) if executed.replayed => BatchOutcome::Replayed {
                    beneficiary: executed.beneficiary,
                },
                Ok(executed) => BatchOutcome::Applied {
                    beneficiary: executed.beneficiary,
                    events: executed.events.len(),
                },
                Err(rejection) => {
                    stopped = stop_at_refusal;
                    BatchOutcome::Refused(rejection)
                }
            });
        }
        Ok(outcomes)
    }

    /// The streams of `ids` folded into aggregates (those with no event are left out): one
    /// statement.
    async fn load_streams(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Pathway>, StoreError> {
        let mut streams: HashMap<Uuid, Pathway> = HashMap::new();
        if ids.is_empty() {
            return Ok(streams);
        }
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let raw = match self.database().reader() {
            Pool::Postgres(pool) => sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = ANY($2) \
                 ORDER BY aggregate_id, sequence"
            ))
            .bind(Pathway::TYPE)
            .bind(&ids)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| raw_event!(row))
            .collect::<Result<Vec<_>, _>>()?,
            Pool::Sqlite(pool) => sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id IN (SELECT value FROM json_each($2)) \
                 ORDER BY aggregate_id, sequence"
            ))
            .bind(Pathway::TYPE)
            .bind(json_list(&ids)?)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| raw_event!(row))
            .collect::<Result<Vec<_>, _>>()?,
        };
        for raw in raw {
            let stored = raw.decode(self.upcasters())?;
            streams
                .entry(stored.beneficiary_id)
                .or_default()
                .apply(stored.event);
        }
        Ok(streams)
    }

    /// Writes `rows` in one transaction: one statement on PostgreSQL, multi-row inserts on
    /// SQLite's write connection. The store's triggers assign positions and `recorded_at` and
    /// bind idempotency keys as for any other write.
    pub(crate) async fn write_rows(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(rows.len());
        let mut sequences = Vec::with_capacity(rows.len());
        let mut types = Vec::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        let mut metadata = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.beneficiary.to_string());
            sequences.push(i64::try_from(row.sequence).map_err(|_| {
                StoreError::Corrupt(format!("sequence {} is out of range", row.sequence))
            })?);
            types.push(row.event.event_type());
            versions.push(row.event.event_version());
            payloads
                .push(serde_json::to_string(&row.event).map_err(|e| {
                    StoreError::Corrupt(format!("an event cannot be encoded: {e}"))
                })?);
            metadata.push(row.metadata.as_str());
        }
        match self.database().writer() {
            Pool::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                         event_version, payload, metadata) \
                     SELECT $1, u.id, u.sequence, u.type, u.version, u.payload::jsonb, \
                            u.metadata::jsonb \
                     FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
                                 $7::text[]) \
                          WITH ORDINALITY AS u (id, sequence, type, version, payload, metadata, n) \
                     ORDER BY u.n",
                )
                .bind(Pathway::TYPE)
                .bind(&ids)
                .bind(&sequences)
                .bind(&types)
                .bind(&versions)
                .bind(&payloads)
                .bind(&metadata)
                .execute(pool)
                .await?;
            }
            Pool::Sqlite(write) => {
                // Multi-row inserts: one statement per chunk instead of one per row (each
                // statement is a round trip to SQLite's worker thread).
                let mut tx = write.begin().await?;
                for start in (0..rows.len()).step_by(SQLITE_ROWS_PER_INSERT) {
                    let end = (start + SQLITE_ROWS_PER_INSERT).min(rows.len());
                    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                             event_version, payload, metadata) ",
                    );
                    insert.push_values(start..end, |mut row, i| {
                        row.push_bind(Pathway::TYPE)
                            .push_bind(&ids[i])
                            .push_bind(sequences[i])
                            .push_bind(&types[i])
                            .push_bind(&versions[i])
                            .push_bind(&payloads[i])
                            .push_bind(metadata[i]);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// A list of texts as a JSON array, for SQLite's `json_each`.
fn json_list(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Whether a failed batch write lost a race: a stream's primary key (another writer's event at
/// the same sequence) or the idempotency trigger (a key bound meanwhile).
fn is_race(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    // PostgreSQL: unique_violation (the primary key, or the trigger's key insert). SQLite:
    // SQLITE_CONSTRAINT_PRIMARYKEY (1555) or the trigger's RAISE(ABORT) (1811).
    matches!(
        db.code().as_deref(),
        Some("23505" | "1555" | "1811" | "2067")
    )
}
