//! Commands executed in batches: every rule of [`Store::execute`], one transaction per batch.
//!
//! `filiera import` loads years of legacy history. Executing its commands one by one costs a
//! stream load, a transaction and a read-back each, and the position lock is taken once per
//! command. A batch instead looks up its idempotency keys and loads the streams it touches
//! with one statement each, decides every command in memory against the stream as the earlier
//! commands of the batch left it (the same aggregate, the same rules), and writes the events
//! of every accepted command in one transaction, so the position lock is taken once per batch.
//! The events carry the same metadata as [`Store::execute`] writes, idempotency keys included,
//! so a batch and the same commands executed one by one leave the same streams, keys and feed
//! order.
//!
//! # The write
//! On SQLite, multi-row inserts through the one write connection; the store's triggers assign
//! positions and bind keys as for any other write.
//!
//! On PostgreSQL the two row triggers of the events table (the position and the key binding)
//! would do their work, and take the advisory lock, once per row: they were most of an
//! import's time. The batch write does that work once for the statement instead (ADR 0010):
//! its transaction sets `filiera.batch_write` locally, for which the triggers stand aside
//! (migration 0006), takes the position trigger's advisory lock, held to commit as ADR 0001
//! requires, reserves a block of consecutive positions from the same sequence, inserts the
//! rows with those positions in batch order and one `recorded_at` taken after the lock, binds
//! every key of the batch with one upsert, and sends one notification with its last position.
//! A key bound to another command fails the transaction with the trigger's `unique_violation`.
//! Every other writer, [`Store::execute`] among them, still goes through the triggers.
//!
//! If the write loses a race (another writer committed to one of the streams, or bound one of
//! the keys, since they were read; or two commands of the batch carry one key), nothing of the
//! batch is written and it is executed again command by command, through [`Store::execute`],
//! which handles races.
//!
//! # Pipelined batches
//! [`Store::execute_batch`] reads, decides and writes one batch, so the client and the
//! database wait for each other. A caller with many batches (`filiera import`) instead decides
//! each with [`Store::decide_batch`] and writes it with [`Store::spawn_write`], on a task of its
//! own, while it decides the next one; [`BatchWrite::finish`] waits for the write (one at most
//! should be in flight: the next batch decides on what the previous one wrote). The next batch
//! decides on the streams as the caller's earlier batches left them, kept in a [`StreamCache`],
//! since the database may not hold them yet; only the streams it lacks are loaded. A cached
//! stream that another writer appended to since is stale, and a batch decided on it fails to
//! write on the stream's primary key `(aggregate_id, sequence)`: a lost race, so nothing of it
//! is written, it is executed one by one, and [`Written::raced`] tells the caller to clear its
//! cache and decide again whatever it decided on top of that batch. A command *refused* on a
//! stale stream writes nothing, so no write notices it: a caller decides a batch with a
//! refusal again, its streams loaded as stored ([`StreamCache::forget`]), before writing it
//! (`filiera import` does).

use std::collections::{HashMap, HashSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate as _, DomainEvent as _};
use filiera_domain::{Pathway, PathwayCommand, PathwayEvent};
use uuid::Uuid;

use crate::postgres::{CHANNEL, POSITION_LOCK_KEY};
use crate::rows::{EVENT_COLUMNS, key_row, raw_event};
use crate::store::command_metadata;
use crate::{CommandContext, Pool, Rejection, Store, StoreError, StoredEvent, metadata};

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

/// The PostgreSQL batch write, after `SET LOCAL filiera.batch_write = 'on'` and the position
/// lock: the work of the two row triggers of the events table, done once for the statement.
///
/// - `block` reserves `$8` positions (`nextval`, then `setval` to the block's end: only holders
///   of the lock advance the sequence) and takes one `recorded_at`, after the lock;
/// - `inserted` writes the rows (`$2`…`$7`, one element per row) with positions in batch order;
/// - `bound` binds the bindable keys (`$10`…`$15`, one element per key, see [`KeyBinding`]):
///   inserts each, or extends the range of one its own command bound before, and touches
///   nothing else;
/// - `filiera_check_idempotency_keys_bound` fails the transaction with unique_violation, as
///   the key trigger does, if fewer keys were bound than the batch has (`$16`); one `pg_notify`
///   on `$9` carries the last position, as the position trigger's last notification would.
const PG_WRITE_ROWS: &str = "\
WITH block AS MATERIALIZED (
    SELECT setval('events_position_seq', nextval('events_position_seq') + $8::bigint - 1)
               - $8::bigint + 1 AS first,
           clock_timestamp() AS recorded_at
),
inserted AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, position, recorded_at)
    SELECT $1, u.id, u.sequence, u.type, u.version, u.payload::jsonb, u.metadata::jsonb,
           b.first + u.n - 1, b.recorded_at
    FROM block AS b,
         UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
             WITH ORDINALITY AS u (id, sequence, type, version, payload, metadata, n)
),
bound AS (
    INSERT INTO idempotency_keys AS k
        (key, aggregate_id, command_id, request_hash, first_sequence, last_sequence)
    SELECT b.key, b.aggregate_id, b.command_id, b.request_hash, b.first, b.last
    FROM UNNEST($10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[],
                $15::bigint[])
             AS b (key, aggregate_id, command_id, request_hash, first, last)
    ON CONFLICT (key) DO UPDATE
        SET last_sequence = greatest(k.last_sequence, excluded.last_sequence)
        WHERE k.command_id = excluded.command_id
          AND k.aggregate_id = excluded.aggregate_id
    RETURNING 1
)
SELECT filiera_check_idempotency_keys_bound($16, (SELECT count(*) FROM bound)),
       pg_notify($9, (SELECT first + $8::bigint - 1 FROM block)::text)";

/// A bound idempotency key as the batch needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundKey {
    /// The beneficiary the key's command wrote to.
    pub beneficiary: Uuid,
    /// The hash of the request that bound it.
    pub request_hash: String,
}

/// The streams a caller's batches decided, as they left them: what a later batch of the same
/// caller decides on instead of loading them again from the database (`filiera import` keeps
/// one for its whole run). Every stream a batch decides is in it; the streams no batch
/// touched recently are dropped when it holds more than its capacity, but never those of the
/// last two batches (the one being decided and the one being written).
///
/// A cached stream may be stale: another writer may have appended to it since. A batch
/// decided on it then fails to write on the stream's primary key, which is a lost race
/// ([`BatchWrite::finish`]); the caller then clears the cache.
#[derive(Debug, Default)]
pub struct StreamCache {
    /// Each stream, and the number of the last batch that decided on it.
    streams: HashMap<Uuid, (Pathway, u64)>,
    /// The number of the batch being decided.
    batch: u64,
    capacity: usize,
    /// Streams loaded from the database so far.
    loaded: usize,
}

impl StreamCache {
    /// An empty cache that holds about `capacity` streams (always those of the last two
    /// batches).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Records that the stream of `beneficiary` has no event (an id just minted for an
    /// enrolment), so that no batch loads it.
    pub fn insert_empty(&mut self, beneficiary: Uuid) {
        self.streams
            .entry(beneficiary)
            .or_insert_with(|| (Pathway::default(), self.batch));
    }

    /// Forgets every stream (after a lost race: some may be stale).
    pub fn clear(&mut self) {
        self.streams.clear();
    }

    /// Forgets the streams of `beneficiaries`: the next batch loads them as stored.
    pub fn forget<'a>(&mut self, beneficiaries: impl IntoIterator<Item = &'a Uuid>) {
        for beneficiary in beneficiaries {
            self.streams.remove(beneficiary);
        }
    }

    /// How many streams it holds.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether it holds no stream.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// How many streams the batches deciding on it loaded from the database.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// Ends the batch being decided: above capacity, keeps the half most recently decided on
    /// (and every stream of this batch and the one before it).
    fn end_batch(&mut self) {
        if self.streams.len() > self.capacity {
            let mut touched: Vec<u64> = self.streams.values().map(|(_, batch)| *batch).collect();
            let keep = self.capacity / 2;
            let (_, &mut cutoff, _) = touched.select_nth_unstable(self.streams.len() - keep - 1);
            let cutoff = (cutoff + 1).min(self.batch.saturating_sub(1));
            self.streams.retain(|_, (_, batch)| *batch >= cutoff);
        }
        self.batch += 1;
    }
}

/// A batch decided by [`Store::decide_batch`] and not yet written.
pub struct DecidedBatch {
    /// One per command, in order; final unless the write loses a race.
    pub outcomes: Vec<BatchOutcome>,
    rows: Vec<Row>,
}

impl DecidedBatch {
    /// Whether a command of the batch was refused.
    pub fn refused(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o, BatchOutcome::Refused(_)))
    }
}

impl std::fmt::Debug for DecidedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecidedBatch")
            .field("outcomes", &self.outcomes)
            .field("rows", &self.rows.len())
            .finish()
    }
}

/// A batch's write running on its own task ([`Store::spawn_write`]).
#[derive(Debug)]
pub struct BatchWrite {
    store: Store,
    commands: Vec<BatchCommand>,
    outcomes: Vec<BatchOutcome>,
    stop_at_refusal: bool,
    write: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// How a batch's write ended.
#[derive(Debug)]
pub struct Written {
    /// One per command, in order.
    pub outcomes: Vec<BatchOutcome>,
    /// Whether the write lost a race, so that the batch was executed one by one instead: the
    /// streams the caller decided later batches on may be stale.
    pub raced: bool,
}

impl BatchWrite {
    /// Waits for the write. If it lost a race (another writer committed to one of its
    /// streams, or bound one of its keys, since they were read), nothing of it was written
    /// and the batch is executed one by one, through [`Store::execute`].
    pub async fn finish(self) -> Result<Written, StoreError> {
        let written = match self.write.await {
            Ok(written) => written,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => {
                return Err(StoreError::Corrupt(format!(
                    "a batch's write did not finish: {error}"
                )));
            }
        };
        match written {
            Ok(()) => Ok(Written {
                outcomes: self.outcomes,
                raced: false,
            }),
            Err(error) if is_race(&error) => {
                tracing::info!("a batch lost a race with another writer: executing it one by one");
                let outcomes = self
                    .store
                    .execute_one_by_one(self.commands, self.stop_at_refusal)
                    .await?;
                Ok(Written {
                    outcomes,
                    raced: true,
                })
            }
            Err(error) => Err(error),
        }
    }
}

/// An event row to write: stream, sequence, event, metadata (JSON text), and the idempotency
/// key its metadata carries.
pub(crate) struct Row {
    pub(crate) beneficiary: Uuid,
    pub(crate) sequence: u64,
    pub(crate) event: PathwayEvent,
    pub(crate) metadata: String,
    pub(crate) key: Option<RowKey>,
}

/// What the key trigger reads from an event's metadata: the idempotency key, the command id
/// and the request hash (`''` if absent, as the trigger's `coalesce`).
#[derive(Clone, Debug)]
pub(crate) struct RowKey {
    key: String,
    command_id: Option<String>,
    request_hash: String,
}

impl RowKey {
    /// The key of events written with `metadata`, if it carries one.
    pub(crate) fn of(metadata: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            key: metadata.get(metadata::IDEMPOTENCY_KEY)?.clone(),
            command_id: metadata.get(metadata::COMMAND_ID).cloned(),
            request_hash: metadata
                .get(metadata::REQUEST_HASH)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// One idempotency key of a batch's rows, bound as the key trigger binds it row after row:
/// to the stream, command and request hash of its first row, over the range of sequences of
/// its rows. A key carried by rows of more than one command (or stream) is not `bindable`: the
/// trigger would fail at the first row of the second.
struct KeyBinding<'a> {
    key: &'a RowKey,
    aggregate_id: &'a str,
    first_sequence: i64,
    last_sequence: i64,
    bindable: bool,
}

/// The bindable keys of a batch, one array per column of `PG_WRITE_ROWS`'s `bound`. Built
/// before the statement, so that no iterator over borrowed bindings lives across its await
/// (which would keep rustc from proving the write's future `Send`).
struct BoundColumns<'a> {
    keys: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    command_ids: Vec<Option<&'a str>>,
    request_hashes: Vec<&'a str>,
    first_sequences: Vec<i64>,
    last_sequences: Vec<i64>,
}

impl<'a> BoundColumns<'a> {
    fn of(bindings: &[KeyBinding<'a>]) -> Self {
        let mut columns = Self {
            keys: Vec::new(),
            aggregate_ids: Vec::new(),
            command_ids: Vec::new(),
            request_hashes: Vec::new(),
            first_sequences: Vec::new(),
            last_sequences: Vec::new(),
        };
        for binding in bindings.iter().filter(|b| b.bindable) {
            columns.keys.push(&binding.key.key);
            columns.aggregate_ids.push(binding.aggregate_id);
            columns.command_ids.push(binding.key.command_id.as_deref());
            columns.request_hashes.push(&binding.key.request_hash);
            columns.first_sequences.push(binding.first_sequence);
            columns.last_sequences.push(binding.last_sequence);
        }
        columns
    }
}

/// The distinct keys of `rows` (`ids` and `sequences` are theirs, encoded), in order of first
/// appearance.
fn key_bindings<'a>(rows: &'a [Row], ids: &'a [String], sequences: &[i64]) -> Vec<KeyBinding<'a>> {
    let mut bindings: Vec<KeyBinding<'a>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for ((row, id), &sequence) in rows.iter().zip(ids).zip(sequences) {
        let Some(key) = &row.key else { continue };
        match index.get(key.key.as_str()) {
            None => {
                index.insert(&key.key, bindings.len());
                bindings.push(KeyBinding {
                    key,
                    aggregate_id: id,
                    first_sequence: sequence,
                    last_sequence: sequence,
                    bindable: true,
                });
            }
            Some(&i) => {
                let binding = &mut bindings[i];
                if binding.aggregate_id != id || binding.key.command_id != key.command_id {
                    binding.bindable = false;
                }
                binding.first_sequence = binding.first_sequence.min(sequence);
                binding.last_sequence = binding.last_sequence.max(sequence);
            }
        }
    }
    bindings
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

    /// What deciding a batch (or a group, `group`) of commands needs, one statement each, sent
    /// together: the idempotency keys among theirs already bound, and the streams of their
    /// beneficiaries.
    pub(crate) async fn prepare<'a>(
        &self,
        commands: impl Iterator<Item = (Uuid, &'a CommandContext)> + Clone,
    ) -> Result<(HashMap<String, BoundKey>, HashMap<Uuid, Pathway>), StoreError> {
        let keys: Vec<String> = commands
            .clone()
            .filter_map(|(_, ctx)| ctx.idempotency.as_ref().map(|k| k.key.clone()))
            .collect();
        let ids: Vec<Uuid> = {
            let mut seen = HashSet::new();
            commands
                .map(|(beneficiary, _)| beneficiary)
                .filter(|id| seen.insert(*id))
                .collect()
        };
        // On two connections at once: a group commit waits for both.
        tokio::try_join!(self.bound_keys(&keys), self.load_streams(&ids))
    }

    /// Decides `command` against `stream` (which it leaves as it is): the stream right after
    /// it and the rows of its events, with the metadata [`Store::execute`] writes; or why not
    /// (its scope does not admit the stream, or the pathway rules refuse it).
    pub(crate) async fn decide(
        &self,
        beneficiary: Uuid,
        stream: &Pathway,
        command: &PathwayCommand,
        ctx: &CommandContext,
    ) -> Result<Result<(Pathway, Vec<Row>), Rejection>, StoreError> {
        if ctx
            .scope
            .as_ref()
            .is_some_and(|scope| !scope.admits(stream))
        {
            return Ok(Err(Rejection::OutOfScope));
        }
        let before = stream.version();
        let mut decided = stream.clone();
        let sink = EventSink::default();
        if let Err(error) = decided
            .handle(command.clone(), self.services(), &sink)
            .await
        {
            return Ok(Err(Rejection::Refused(error)));
        }
        let events = sink.collect().await;
        let territory = decided
            .state()
            .territory
            .clone()
            .or_else(|| stream.state().territory.clone());
        let md = command_metadata(command.name(), territory.as_ref(), ctx);
        let key = RowKey::of(&md);
        let md = serde_json::to_string(&md)
            .map_err(|e| StoreError::Corrupt(format!("metadata cannot be encoded: {e}")))?;
        let rows = (before + 1..)
            .zip(events)
            .map(|(sequence, event)| Row {
                beneficiary,
                sequence,
                event,
                metadata: md.clone(),
                key: key.clone(),
            })
            .collect();
        Ok(Ok((decided, rows)))
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
        let mut streams = StreamCache::new(usize::MAX);
        let DecidedBatch { outcomes, rows } = self
            .decide_batch(&commands, &bound, &mut streams, stop_at_refusal)
            .await?;
        if rows.is_empty() {
            return Ok(outcomes);
        }
        match self.write_decided(&rows).await {
            Ok(()) => Ok(outcomes),
            Err(error) if is_race(&error) => {
                tracing::info!("a batch lost a race with another writer: executing it one by one");
                self.execute_one_by_one(commands, stop_at_refusal).await
            }
            Err(error) => Err(error),
        }
    }

    /// Decides `commands` in order, each against its stream as `streams` holds it (the streams
    /// it lacks are loaded first, one statement) and as the earlier commands left it, and
    /// leaves every stream it decided in `streams`; `bound` holds the idempotency keys among
    /// theirs already bound ([`Store::bound_keys`]). Writes nothing: the rows are written by
    /// [`Store::spawn_write`]. With `stop_at_refusal`, the commands after the first refused
    /// one are [`BatchOutcome::Skipped`].
    ///
    /// `streams` may be stale, as a cache of what an earlier batch wrote is when another
    /// writer appended to one of its streams since: the write then fails on the stream's
    /// primary key (a lost race), and nothing of the batch is written.
    pub async fn decide_batch(
        &self,
        commands: &[BatchCommand],
        bound: &HashMap<String, BoundKey>,
        streams: &mut StreamCache,
        stop_at_refusal: bool,
    ) -> Result<DecidedBatch, StoreError> {
        let replayed = |c: &BatchCommand| {
            c.ctx
                .idempotency
                .as_ref()
                .is_some_and(|k| bound.contains_key(&k.key))
        };
        // The streams this batch decides on that the cache lacks, one statement; the commands
        // answered from their key need none.
        let missing: Vec<Uuid> = {
            let mut seen = HashSet::new();
            commands
                .iter()
                .filter(|c| !replayed(c) && !streams.streams.contains_key(&c.beneficiary))
                .map(|c| c.beneficiary)
                .filter(|id| seen.insert(*id))
                .collect()
        };
        if !missing.is_empty() {
            streams.loaded += missing.len();
            let mut loaded = self.load_streams(&missing).await?;
            for id in missing {
                let stream = loaded.remove(&id).unwrap_or_default();
                streams.streams.insert(id, (stream, streams.batch));
            }
        }
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut rows: Vec<Row> = Vec::new();
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
            let (pathway, touched) = streams
                .streams
                .entry(*beneficiary)
                .or_insert_with(|| (Pathway::default(), 0));
            *touched = streams.batch;
            match self.decide(*beneficiary, pathway, command, ctx).await? {
                Ok((decided, decided_rows)) => {
                    outcomes.push(BatchOutcome::Applied {
                        beneficiary: *beneficiary,
                        events: decided_rows.len(),
                    });
                    rows.extend(decided_rows);
                    *pathway = decided;
                }
                Err(rejection) => {
                    stopped = stop_at_refusal;
                    outcomes.push(BatchOutcome::Refused(rejection));
                }
            }
        }
        streams.end_batch();
        Ok(DecidedBatch { outcomes, rows })
    }

    /// Starts writing a decided batch on a task of its own (see [`Store::write_rows`]), so
    /// that the caller decides its next batch meanwhile. `commands` are the batch's, executed
    /// one by one if the write loses a race ([`BatchWrite::finish`]).
    pub fn spawn_write(
        &self,
        commands: Vec<BatchCommand>,
        batch: DecidedBatch,
        stop_at_refusal: bool,
    ) -> BatchWrite {
        let DecidedBatch { outcomes, rows } = batch;
        let store = self.clone();
        let write = tokio::spawn(async move { store.write_decided(&rows).await });
        BatchWrite {
            store: self.clone(),
            commands,
            outcomes,
            stop_at_refusal,
            write,
        }
    }

    /// [`Store::write_rows`], then wakes this process's feed readers.
    async fn write_decided(&self, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write_rows(rows).await?;
        let head = self.head().await?;
        crate::store::bump_wakeups(self, head);
        Ok(())
    }

    /// Refreshes the planner's statistics of the events and idempotency tables after a bulk
    /// load (PostgreSQL's `ANALYZE`; SQLite's `PRAGMA optimize`). Until autovacuum gets to it,
    /// a freshly loaded table looks tiny to PostgreSQL's planner, which then reads the feed by
    /// sorting the whole table on every page instead of walking the position index: the
    /// offline replay right after a 100,000-event import took 2.4 s instead of 0.9 s.
    ///
    /// Of the events table, only the columns the store's queries select rows by are analysed:
    /// statistics of the JSON payloads and metadata are most of an `ANALYZE`'s cost (0.53 s
    /// against 0.17 s after a 200,000-event import) and no query filters on them; autovacuum
    /// analyses the whole table later.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        match self.database().writer() {
            Pool::Postgres(pool) => {
                sqlx::query(
                    "ANALYZE events (aggregate_type, aggregate_id, sequence, position), \
                             idempotency_keys",
                )
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
    pub(crate) async fn load_streams(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Pathway>, StoreError> {
        Ok(self
            .fetch_streams(ids)
            .await?
            .into_iter()
            .map(|(id, stream)| (id, Pathway::from_events(stream.iter().map(|e| &e.event))))
            .collect())
    }

    /// The events of the streams of `ids`, each stream in sequence order (those with no event
    /// are left out): one statement.
    pub(crate) async fn fetch_streams(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<StoredEvent>>, StoreError> {
        let mut streams: HashMap<Uuid, Vec<StoredEvent>> = HashMap::new();
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
                .push(stored);
        }
        Ok(streams)
    }

    /// Writes `rows` in one transaction, in order: on PostgreSQL one statement that assigns
    /// positions and `recorded_at` and binds idempotency keys for all of them, under the
    /// position lock (see the module docs); on SQLite, multi-row inserts on the write
    /// connection, the triggers doing that work. A key bound to another command fails it
    /// with the error the key trigger raises (see [`is_race`]).
    pub(crate) async fn write_rows(&self, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
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
                let count = i64::try_from(rows.len())
                    .map_err(|_| StoreError::Corrupt("too many rows in one batch".into()))?;
                let mut tx = pool.begin().await?;
                // The row triggers stand aside (migration 0006) for this transaction, which
                // does their work below; the lock is the position trigger's, held to commit.
                // (`set_config(…, true)` is `SET LOCAL`.) Not sent with the `BEGIN` (one round
                // trip less): sqlx counts such a transaction as begun only once the whole
                // query has answered, so a write cancelled while it waits for the lock, or a
                // lock that fails, would leave the connection in the pool inside it.
                sqlx::query(
                    "SELECT set_config('filiera.batch_write', 'on', true), \
                            pg_advisory_xact_lock($1)",
                )
                .bind(POSITION_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
                let keys = key_bindings(rows, &ids, &sequences);
                let distinct = i64::try_from(keys.len())
                    .map_err(|_| StoreError::Corrupt("too many keys in one batch".into()))?;
                // Unbindable keys are left out: the check then fails the statement.
                let keys = BoundColumns::of(&keys);
                sqlx::query(PG_WRITE_ROWS)
                    .bind(Pathway::TYPE)
                    .bind(&ids)
                    .bind(&sequences)
                    .bind(&types)
                    .bind(&versions)
                    .bind(&payloads)
                    .bind(&metadata)
                    .bind(count)
                    .bind(CHANNEL)
                    .bind(keys.keys)
                    .bind(keys.aggregate_ids)
                    .bind(keys.command_ids)
                    .bind(keys.request_hashes)
                    .bind(keys.first_sequences)
                    .bind(keys.last_sequences)
                    .bind(distinct)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
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
/// the same sequence) or a key bound to another command (meanwhile, or by another command of
/// the batch).
pub(crate) fn is_race(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    // PostgreSQL: unique_violation (the primary key, or `filiera_check_idempotency_keys_bound`
    // after the batch's key upsert, as the key trigger raises it for single writes). SQLite:
    // SQLITE_CONSTRAINT_PRIMARYKEY (1555) or the trigger's RAISE(ABORT) (1811).
    matches!(
        db.code().as_deref(),
        Some("23505" | "1555" | "1811" | "2067")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Above its capacity, the cache drops the streams decided on longest ago, down to about
    /// half of it, and never those of the last two batches (the one decided and the one being
    /// written), however many they are.
    #[test]
    fn the_stream_cache_keeps_the_recent_streams_within_its_capacity() {
        let mut cache = StreamCache::new(10);
        let mut batches: Vec<Vec<Uuid>> = Vec::new();
        for _ in 0..6 {
            let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
            for id in &ids {
                cache.insert_empty(*id);
            }
            cache.end_batch();
            batches.push(ids);
        }
        assert!(cache.len() <= 10, "{} streams", cache.len());
        for ids in &batches[4..] {
            assert!(ids.iter().all(|id| cache.streams.contains_key(id)));
        }
        assert!(batches[0].iter().all(|id| !cache.streams.contains_key(id)));

        // Two batches above the capacity on their own: both are kept, nothing older.
        let big: Vec<Vec<Uuid>> = (0..2)
            .map(|_| {
                let ids: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
                for id in &ids {
                    cache.insert_empty(*id);
                }
                cache.end_batch();
                ids
            })
            .collect();
        assert_eq!(cache.len(), 16);
        assert!(
            big.iter()
                .flatten()
                .all(|id| cache.streams.contains_key(id))
        );

        cache.clear();
        assert!(cache.is_empty());
    }
}
