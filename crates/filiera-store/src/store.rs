//! [`Store`]: connecting to either backend, executing commands, reading streams and the feed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, EventUpcaster, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore};
use filiera_domain::{Pathway, PathwayCommand, PathwayError, PathwayServices, evolution};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::Outage;
use crate::group::{GroupCommit, Grouped};
use crate::model::{CommandContext, Executed, IdempotencyKey, Rejection, StoredEvent};
use crate::rows::{EVENT_COLUMNS, KeyRow, key_row, raw_event};
use crate::{StoreError, metadata, postgres, sqlite};

/// Tuning of the connection pools.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// PostgreSQL: size of the pool (one connection is kept by the LISTEN task).
    /// SQLite: size of the read pool; the write pool always has exactly one connection.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing: the bound on how long a
    /// request waits while the database is unreachable or every connection is busy, before it
    /// is answered 503.
    pub acquire_timeout: Duration,
    /// The longest one store call (a command, a read) may take once it has its connections:
    /// past it the call fails as unreachable, so a database that stopped answering mid-query
    /// (a network partition, a frozen server) cannot hold a request for minutes.
    pub query_timeout: Duration,
    /// Whether concurrent commands share transactions (ADR 0011, `group`): each command of a
    /// group is decided and answered as on its own, but the group pays one position lock and
    /// one flush. Off, every command is its own transaction.
    pub group_commit: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
            group_commit: true,
        }
    }
}

/// The size of the readiness probe's write, and the free space (times two) below which an
/// embedded store is not ready.
const PROBE_BYTES: usize = 64 * 1024;
const MIN_FREE_BYTES: u64 = 2 * PROBE_BYTES as u64;

/// Why the store is not ready, as [`Store::readiness`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// What kind of outage.
    pub outage: Outage,
    /// What failed, for the operator (no secrets, no personal data).
    pub detail: String,
}

impl From<StoreError> for NotReady {
    fn from(error: StoreError) -> Self {
        Self {
            outage: error.outage().unwrap_or(Outage::StorageFailure),
            detail: crate::error::error_chain(&error),
        }
    }
}

/// The event store: one `Pathway` stream per beneficiary, the global feed, idempotency keys.
///
/// Cheap to clone; clones share the pools. Dropping the last clone stops the LISTEN task.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    services: PathwayServices,
    /// The domain's upcasters, for the rows the store decodes itself (the feed, histories);
    /// the cqrs-es stores of `backend` hold their own copy of the same list.
    upcasters: Vec<Box<dyn EventUpcaster>>,
    /// The highest position known to be committed; a hint for feed readers.
    wake: watch::Sender<i64>,
    /// PostgreSQL only: the task turning notifications from other processes into wake-ups.
    listener: Option<JoinHandle<()>>,
    /// The outage that made the last command fail, until a command or a readiness probe
    /// commits again: while set, [`Store::readiness`] writes to find out whether it is over.
    write_outage: std::sync::Mutex<OutageRecord>,
    options: StoreOptions,
    /// SQLite: the folder of the database file, whose free space readiness checks.
    data_folder: Option<std::path::PathBuf>,
    /// The committer commands are queued on, with group commit.
    group: Option<GroupCommit>,
}

/// A store held without keeping it alive: what its own background tasks hold.
pub(crate) struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    /// The store, unless its last clone was dropped.
    pub(crate) fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

/// The last outage commands ran into, and a generation that each new record bumps, so that a
/// success clears only an outage it started after, and a probe only the one it probed.
#[derive(Debug, Default)]
struct OutageRecord {
    generation: u64,
    outage: Option<NotReady>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

type SqliteEvents = PersistedEventStore<SqliteEventRepository, Pathway>;
type PostgresEvents = PersistedEventStore<PostgresEventRepository, Pathway>;

#[expect(
    clippy::large_enum_variant,
    reason = "one value per store, behind an Arc"
)]
enum Backend {
    Sqlite {
        /// One connection: every write goes through it.
        write: SqlitePool,
        /// Every read goes through these.
        read: SqlitePool,
        /// cqrs-es over the read pool, to load aggregates without queueing behind writers.
        loader: SqliteEvents,
        /// cqrs-es over the write pool, to commit.
        writer: SqliteEvents,
    },
    Postgres {
        pool: PgPool,
        events: PostgresEvents,
    },
}

/// Runs `$body` with `$pool` bound to the pool reads go to, whichever the backend.
macro_rules! on_read_pool {
    ($backend:expr, |$pool:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite { read: $pool, .. } => $body,
            Backend::Postgres { pool: $pool, .. } => $body,
        }
    };
}

/// The store's schema: the `events` table and what its triggers fill, the leases, the
/// readiness probe's table.
static MIGRATIONS: crate::database::Migrations = crate::database::Migrations::new(
    || sqlx::migrate!("./migrations/sqlite"),
    || sqlx::migrate!("./migrations/postgres"),
);

/// What happened to a command between load and commit.
enum Attempt {
    /// The command's scope does not admit the stream.
    OutOfScope,
    Refused(PathwayError),
    Committed {
        /// The stream's version before the command.
        before: u64,
        /// The stream right after the command.
        pathway: Pathway,
    },
    CommitFailed(AggregateError<PathwayError>),
}

impl Store {
    /// Connects to `sqlite://path/to/file.db` (created if missing, parent folders too) or
    /// `postgres://…`, with default pool sizes. Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str, services: PathwayServices) -> Result<Self, StoreError> {
        Self::connect_with(url, services, StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool options.
    pub async fn connect_with(
        url: &str,
        services: PathwayServices,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let (wake, _) = watch::channel(0);
        let mut data_folder = None;
        let (backend, listener) = match scheme {
            "sqlite" => {
                data_folder = sqlite::folder(url);
                let (write, read) = sqlite::connect(url, &options).await?;
                let backend = Backend::Sqlite {
                    loader: PersistedEventStore::new_event_store(SqliteEventRepository::new(
                        read.clone(),
                    ))
                    .with_upcasters(evolution::upcasters()),
                    writer: PersistedEventStore::new_event_store(SqliteEventRepository::new(
                        write.clone(),
                    ))
                    .with_upcasters(evolution::upcasters()),
                    write,
                    read,
                };
                (backend, None)
            }
            "postgres" | "postgresql" => {
                let pool = postgres::connect(url, &options).await?;
                let listener = postgres::spawn_listener(pool.clone(), wake.clone());
                let backend = Backend::Postgres {
                    events: PersistedEventStore::new_event_store(PostgresEventRepository::new(
                        pool.clone(),
                    ))
                    .with_upcasters(evolution::upcasters()),
                    pool,
                };
                (backend, Some(listener))
            }
            other => {
                return Err(StoreError::UnsupportedUrl {
                    scheme: other.to_owned(),
                });
            }
        };
        tracing::info!(backend = backend.name(), "event store connected");
        let store = Self {
            inner: Arc::new_cyclic(|inner| Inner {
                backend,
                services,
                upcasters: evolution::upcasters(),
                wake,
                listener,
                write_outage: std::sync::Mutex::new(OutageRecord::default()),
                group: options
                    .group_commit
                    .then(|| GroupCommit::start(WeakStore(inner.clone()))),
                options,
                data_folder,
            }),
        };
        store.refresh_wakeups().await;
        Ok(store)
    }

    /// Applies the pending schema migrations of the backend. Safe to run repeatedly, and on
    /// PostgreSQL concurrently (sqlx takes an advisory lock; on SQLite, one process at a time).
    /// Versions in sqlx's ledger that the store does not know are left alone: crates owning
    /// tables (the vault) record theirs there too, numbered apart (1001…).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.database().migrate(&MIGRATIONS).await?;
        self.refresh_wakeups().await;
        Ok(())
    }

    /// The read pool of an embedded store; `None` on PostgreSQL (for [`Store::backup_into`]).
    pub(crate) fn sqlite_read_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.inner.backend {
            Backend::Sqlite { read, .. } => Some(read),
            Backend::Postgres { .. } => None,
        }
    }

    /// The options the store was connected with.
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The configuration and clock commands are decided with.
    pub fn services(&self) -> &PathwayServices {
        &self.inner.services
    }

    /// The handle for crates that own tables of their own (and their migrations, recorded in
    /// the same ledger as the store's: see [`Store::migrate`]).
    pub fn database(&self) -> crate::Database {
        match &self.inner.backend {
            Backend::Sqlite { write, read, .. } => {
                crate::Database::sqlite(write.clone(), read.clone())
            }
            Backend::Postgres { pool, .. } => crate::Database::postgres(pool.clone()),
        }
    }

    /// Whether the store can serve commands now, found out within `within`:
    /// - after a command failed for an outage (disk full, database unreachable…), a probe
    ///   write commits or the outage goes on;
    /// - otherwise the database answers a query, and on SQLite the disk holding it has room
    ///   for at least a probe's worth of writes.
    ///
    /// Never takes much longer than `within`; recovers by itself once the cause is gone.
    pub async fn readiness(&self, within: Duration) -> Result<(), NotReady> {
        let (generation, failing) = {
            let record = self.outage_record();
            (record.generation, record.outage.is_some())
        };
        let check = async {
            if failing {
                return self.probe_write().await.map_err(NotReady::from);
            }
            self.check_free_space()?;
            on_read_pool!(&self.inner.backend, |pool| {
                sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map_err(|e| NotReady::from(StoreError::Database(e)))?;
            });
            Ok(())
        };
        match tokio::time::timeout(within, check).await {
            Ok(Ok(())) => {
                if failing && self.clear_outage(generation) {
                    tracing::info!("the store commits again");
                }
                Ok(())
            }
            Ok(Err(not_ready)) => Err(not_ready),
            Err(_) => Err(NotReady {
                outage: Outage::Unreachable,
                detail: format!(
                    "the database did not answer within {} ms (unreachable, or every \
                     connection busy)",
                    within.as_millis()
                ),
            }),
        }
    }

    fn outage_record(&self) -> std::sync::MutexGuard<'_, OutageRecord> {
        self.inner
            .write_outage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record_outage(&self, outage: NotReady) {
        let mut record = self.outage_record();
        record.generation += 1;
        record.outage = Some(outage);
    }

    /// Clears the outage if no other was recorded since `generation`; says whether one was
    /// cleared.
    fn clear_outage(&self, generation: u64) -> bool {
        let mut record = self.outage_record();
        if record.generation == generation && record.outage.is_some() {
            record.outage = None;
            true
        } else {
            false
        }
    }

    /// SQLite: refuses when the disk holding the database cannot take a probe's worth of
    /// writes, so that an idle service on a full disk is not reported ready.
    fn check_free_space(&self) -> Result<(), NotReady> {
        let Some(folder) = &self.inner.data_folder else {
            return Ok(());
        };
        match rustix::fs::statvfs(folder) {
            Ok(stats) if stats.f_bavail.saturating_mul(stats.f_frsize) < MIN_FREE_BYTES => {
                Err(NotReady {
                    outage: Outage::DiskFull,
                    detail: format!(
                        "{} bytes free on the volume of {}",
                        stats.f_bavail.saturating_mul(stats.f_frsize),
                        folder.display()
                    ),
                })
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::debug!(%error, "cannot read the free space of the data folder");
                Ok(())
            }
        }
    }

    /// Commits a write about as large as a big command's, to learn whether commits succeed.
    async fn probe_write(&self) -> Result<(), StoreError> {
        let sql = "INSERT INTO store_probe (id, written_at, filler) VALUES (1, $1, $2) \
                   ON CONFLICT (id) DO UPDATE \
                   SET written_at = excluded.written_at, filler = excluded.filler";
        let now = chrono::Utc::now().to_rfc3339();
        let filler = vec![0_u8; PROBE_BYTES];
        match &self.inner.backend {
            Backend::Sqlite { write, .. } => {
                sqlx::query(sql)
                    .bind(now)
                    .bind(filler)
                    .execute(write)
                    .await?;
            }
            Backend::Postgres { pool, .. } => {
                sqlx::query(sql)
                    .bind(now)
                    .bind(filler)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether the store is the embedded SQLite (some statements differ, see `rows`).
    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.inner.backend, Backend::Sqlite { .. })
    }

    /// How long a statement may take before the store gives up on it.
    pub(crate) fn query_timeout(&self) -> Duration {
        self.inner.options.query_timeout
    }

    /// The domain's upcasters, for rows decoded elsewhere in the crate.
    pub(crate) fn upcasters(&self) -> &[Box<dyn EventUpcaster>] {
        &self.inner.upcasters
    }

    /// A receiver of the highest position known to be committed, bumped after each local
    /// commit and, with PostgreSQL, on notifications from other processes. Only a hint to
    /// re-read the feed sooner: readers must still poll.
    pub fn wakeups(&self) -> watch::Receiver<i64> {
        self.inner.wake.subscribe()
    }

    /// Executes a command on a beneficiary's stream: load, decide, commit.
    ///
    /// With an idempotency key, a request already executed with that key is answered from the
    /// first execution (`replayed: true`, nothing written), and a key used for a different
    /// request is refused. Two writers racing on one stream: one commits, the other gets
    /// [`Rejection::Conflict`].
    ///
    /// The outer `Result` fails only when the store does; refusals are in the inner one.
    #[tracing::instrument(
        name = "store.execute",
        skip_all,
        fields(beneficiary = %beneficiary, command = command.name(), principal = %ctx.principal)
    )]
    pub async fn execute(
        &self,
        beneficiary: Uuid,
        command: PathwayCommand,
        ctx: CommandContext,
    ) -> Result<Result<Executed, Rejection>, StoreError> {
        let generation = self.outage_record().generation;
        let deadline = self.inner.options.query_timeout;
        let result = match tokio::time::timeout(
            deadline,
            self.execute_once(beneficiary, command, ctx),
        )
        .await
        {
            Ok(result) => result,
            // Abandoned somewhere between load and read-back: perhaps while committing.
            Err(_) => Err(StoreError::OutcomeUnknown {
                stored: false,
                cause: Box::new(StoreError::TimedOut(deadline)),
            }),
        };
        match &result {
            Ok(Ok(executed)) if !executed.replayed => {
                if self.clear_outage(generation) {
                    tracing::info!("the store commits again");
                }
            }
            Err(error) => {
                let outage = match error {
                    StoreError::OutcomeUnknown { cause, .. } => cause.outage(),
                    other => other.outage(),
                };
                if let Some(outage) = outage {
                    let detail = crate::error::error_chain(error);
                    tracing::warn!(outage = outage.as_str(), error = %detail, "command not stored");
                    self.record_outage(NotReady { outage, detail });
                }
            }
            Ok(_) => {}
        }
        result
    }

    /// One try of [`Store::execute`]: in a group if the store commits in groups and the group
    /// can decide it, else alone.
    async fn execute_once(
        &self,
        beneficiary: Uuid,
        command: PathwayCommand,
        ctx: CommandContext,
    ) -> Result<Result<Executed, Rejection>, StoreError> {
        let Some(group) = &self.inner.group else {
            return self.execute_alone(beneficiary, command, ctx).await;
        };
        match group.submit(beneficiary, command, ctx).await {
            Grouped::Answered(answer) => answer,
            Grouped::Alone(command, ctx) => self.execute_alone(beneficiary, command, ctx).await,
        }
    }

    /// A command in a transaction of its own.
    async fn execute_alone(
        &self,
        beneficiary: Uuid,
        command: PathwayCommand,
        ctx: CommandContext,
    ) -> Result<Result<Executed, Rejection>, StoreError> {
        if let Some(key) = &ctx.idempotency
            && let Some(row) = self.find_key(&key.key).await?
        {
            tracing::debug!("idempotency key already used");
            return self.answer_keyed(beneficiary, row, key, &ctx).await;
        }
        let aggregate_id = beneficiary.to_string();
        let services = &self.inner.services;
        let attempt = match &self.inner.backend {
            Backend::Sqlite { loader, writer, .. } => {
                attempt(loader, writer, services, &aggregate_id, command, &ctx).await?
            }
            Backend::Postgres { events, .. } => {
                attempt(events, events, services, &aggregate_id, command, &ctx).await?
            }
        };
        match attempt {
            Attempt::OutOfScope => Ok(Err(Rejection::OutOfScope)),
            Attempt::Refused(error) => {
                tracing::debug!(code = error.code(), "command refused");
                Ok(Err(Rejection::Refused(error)))
            }
            Attempt::Committed { before, pathway } => {
                let events = self
                    .read_back(&aggregate_id, before + 1, pathway.version())
                    .await
                    .map_err(|cause| StoreError::OutcomeUnknown {
                        stored: true,
                        cause: Box::new(cause),
                    })?;
                // What the commit reported must be readable by everyone before it is
                // acknowledged: a commit that only a connection's own open transaction can see
                // is not one.
                readable(pathway.version() - before, &events)?;
                if let Some(last) = events.last() {
                    bump(&self.inner.wake, last.position);
                }
                tracing::debug!(events = events.len(), "command committed");
                Ok(Ok(Executed {
                    beneficiary,
                    pathway,
                    events,
                    replayed: false,
                }))
            }
            Attempt::CommitFailed(error) => {
                if commit_outcome_unknown(&error) {
                    return Err(StoreError::OutcomeUnknown {
                        stored: false,
                        cause: Box::new(store_error(error)),
                    });
                }
                let conflict = is_conflict(&error);
                // A concurrent twin with the same key may have won: answer as it did.
                if let Some(key) = &ctx.idempotency
                    && let Some(row) = self.find_key(&key.key).await?
                {
                    tracing::debug!("lost the race to a request with the same idempotency key");
                    return self.answer_keyed(beneficiary, row, key, &ctx).await;
                }
                if conflict {
                    tracing::info!("concurrent write conflict");
                    Ok(Err(Rejection::Conflict))
                } else {
                    Err(store_error(error))
                }
            }
        }
    }

    /// The events a command just committed, read back (a few tries: the commit succeeded, so
    /// a failing read is worth retrying before the answer becomes "stored but unconfirmed").
    async fn read_back(
        &self,
        aggregate_id: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut pause = Duration::from_millis(50);
        for _ in 0..3 {
            match self.fetch_range(aggregate_id, first, last).await {
                // Waited for a connection in vain already: another try would wait as long.
                Err(StoreError::Database(sqlx::Error::PoolTimedOut)) => {
                    return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
                }
                Err(error) if error.outage().is_some() => {
                    tracing::warn!(error = %crate::error::error_chain(&error), "reading back a commit failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
                other => return other,
            }
        }
        self.fetch_range(aggregate_id, first, last).await
    }

    /// The beneficiary's stream folded, or `None` if nothing was ever recorded for it.
    #[tracing::instrument(name = "store.load", level = "debug", skip(self), fields(beneficiary = %beneficiary))]
    pub async fn load(&self, beneficiary: Uuid) -> Result<Option<Pathway>, StoreError> {
        let stream = self
            .bounded(self.fetch_stream(&beneficiary.to_string()))
            .await?;
        Ok((!stream.is_empty()).then(|| Pathway::from_events(stream.iter().map(|e| &e.event))))
    }

    /// Every event of the beneficiary's stream in sequence order, each marked `voided` if an
    /// undo voided it; `None` if nothing was ever recorded for it.
    #[tracing::instrument(name = "store.history", level = "debug", skip(self), fields(beneficiary = %beneficiary))]
    pub async fn history(&self, beneficiary: Uuid) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        let mut stream = self
            .bounded(self.fetch_stream(&beneficiary.to_string()))
            .await?;
        if stream.is_empty() {
            return Ok(None);
        }
        let pathway = Pathway::from_events(stream.iter().map(|e| &e.event));
        for event in &mut stream {
            event.voided = pathway.is_voided(event.sequence);
        }
        Ok(Some(stream))
    }

    /// How many events the feed holds after position `after` (positions may have gaps, so
    /// this is not `head - after`). A count over the feed: callers that know `after` is the
    /// head should not ask.
    pub async fn count_after(&self, after: i64) -> Result<u64, StoreError> {
        self.bounded(self.count_after_unbounded(after)).await
    }

    async fn count_after_unbounded(&self, after: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM events WHERE {} AND position > $2",
            crate::rows::feed_type_condition(self.is_sqlite())
        );
        let sql = sql.as_str();
        let count = on_read_pool!(&self.inner.backend, |pool| {
            sqlx::query_scalar::<_, i64>(sql)
                // A plan cached while the table was small would keep scanning it whole.
                .persistent(false)
                .bind(Pathway::TYPE)
                .bind(after)
                .fetch_one(pool)
                .await?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// How many streams have an event at or before position `up_to`: a count of their first
    /// events (one row per stream, no sort), to size the parts of a rebuild
    /// ([`crate::FeedPart`]).
    pub async fn count_streams(&self, up_to: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count(*) FROM events WHERE {} AND sequence = 1 AND position <= $2",
            crate::rows::feed_type_condition(self.is_sqlite())
        );
        let sql = sql.as_str();
        let count = self
            .bounded(async {
                Ok(on_read_pool!(&self.inner.backend, |pool| {
                    sqlx::query_scalar::<_, i64>(sql)
                        .bind(Pathway::TYPE)
                        .bind(up_to)
                        .fetch_one(pool)
                        .await?
                }))
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// A page of the global feed: events with a position greater than `after`, in position
    /// order, at most `limit` of them. Feed order equals sequence order within a stream, and
    /// an event committed later never gets a lower position than one already read.
    #[tracing::instrument(name = "store.read_feed", level = "debug", skip(self))]
    pub async fn read_feed(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.bounded(self.read_feed_unbounded(after, limit)).await
    }

    async fn read_feed_unbounded(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = crate::rows::feed_page_sql(self.is_sqlite());
        let rows = on_read_pool!(&self.inner.backend, |pool| {
            sqlx::query(&sql)
                .bind(Pathway::TYPE)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| raw_event!(row))
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(|raw| raw.decode(&self.inner.upcasters))
            .collect()
    }

    /// The highest position of the feed, 0 if it is empty.
    pub async fn head(&self) -> Result<i64, StoreError> {
        self.bounded(self.head_unbounded()).await
    }

    async fn head_unbounded(&self) -> Result<i64, StoreError> {
        let sql = crate::rows::feed_head_sql(self.is_sqlite());
        let head = on_read_pool!(&self.inner.backend, |pool| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(Pathway::TYPE)
                .fetch_one(pool)
                .await?
        });
        Ok(head)
    }

    /// Runs a store call under the query timeout.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = self.inner.options.query_timeout;
        tokio::time::timeout(deadline, call)
            .await
            .unwrap_or(Err(StoreError::TimedOut(deadline)))
    }

    /// Raises the wake-up hint to the current head, if the schema is there yet.
    async fn refresh_wakeups(&self) {
        if let Ok(head) = self.head().await {
            bump(&self.inner.wake, head);
        }
    }

    async fn fetch_stream(&self, aggregate_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.fetch_range(aggregate_id, 1, i64::MAX as u64).await
    }

    /// The events of a stream with `first <= sequence <= last`, in sequence order.
    async fn fetch_range(
        &self,
        aggregate_id: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 AND sequence <= $4 \
             ORDER BY sequence"
        );
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let rows = on_read_pool!(&self.inner.backend, |pool| {
            sqlx::query(&sql)
                .bind(Pathway::TYPE)
                .bind(aggregate_id)
                .bind(first)
                .bind(last)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| raw_event!(row))
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(|raw| raw.decode(&self.inner.upcasters))
            .collect()
    }

    /// Whether an idempotency key is already bound to a request: a command sent with it
    /// writes nothing (it is answered from the first execution, or refused as a reuse). Lets
    /// a caller tell such a request from a new one before it executes anything.
    pub async fn idempotency_key_used(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.bounded(self.find_key(key)).await?.is_some())
    }

    async fn find_key(&self, key: &str) -> Result<Option<KeyRow>, StoreError> {
        let sql = "SELECT aggregate_id, request_hash, first_sequence, last_sequence \
                   FROM idempotency_keys WHERE key = $1";
        let row = on_read_pool!(&self.inner.backend, |pool| {
            match sqlx::query(sql).bind(key).fetch_optional(pool).await? {
                Some(row) => Some(key_row!(&row)?),
                None => None,
            }
        });
        Ok(row)
    }

    /// [`Store::answer_from_key`] for a command on `beneficiary` whose scope, if it has one,
    /// must admit that stream as it is now: a bound key answers nothing more than the command
    /// itself would.
    async fn answer_keyed(
        &self,
        beneficiary: Uuid,
        row: KeyRow,
        key: &IdempotencyKey,
        ctx: &CommandContext,
    ) -> Result<Result<Executed, Rejection>, StoreError> {
        if let Some(scope) = &ctx.scope {
            let now = self.load(beneficiary).await?.unwrap_or_default();
            if !scope.admits(&now) {
                return Ok(Err(Rejection::OutOfScope));
            }
        }
        self.answer_from_key(row, key).await
    }

    /// Answers a request whose idempotency key is already bound: the first execution's
    /// stream prefix and events, or a refusal if the request differs.
    async fn answer_from_key(
        &self,
        row: KeyRow,
        key: &IdempotencyKey,
    ) -> Result<Result<Executed, Rejection>, StoreError> {
        if row.request_hash != key.request_hash {
            return Ok(Err(Rejection::IdempotencyKeyReused));
        }
        let beneficiary = Uuid::parse_str(&row.aggregate_id).map_err(|_| {
            StoreError::Corrupt(format!(
                "idempotency key bound to `{}`, not a UUID",
                row.aggregate_id
            ))
        })?;
        let (first, last) = (
            u64::try_from(row.first_sequence).unwrap_or(0),
            u64::try_from(row.last_sequence).unwrap_or(0),
        );
        let mut stream = self.fetch_range(&row.aggregate_id, 1, last).await?;
        if stream.len() as u64 != last {
            return Err(StoreError::Corrupt(format!(
                "idempotency key bound to {}:{first}..={last}, but the stream has {} events",
                row.aggregate_id,
                stream.len()
            )));
        }
        let pathway = Pathway::from_events(stream.iter().map(|e| &e.event));
        let events = stream.split_off(usize::try_from(first.saturating_sub(1)).unwrap_or(0));
        Ok(Ok(Executed {
            beneficiary,
            pathway,
            events,
            replayed: true,
        }))
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// Loads the aggregate through `loader`, lets it handle the command, and commits the events
/// through `writer` with the command's metadata. The metadata is computed after handling, since
/// it names the territory in force after the command.
async fn attempt<L, W>(
    loader: &L,
    writer: &W,
    services: &PathwayServices,
    aggregate_id: &str,
    command: PathwayCommand,
    ctx: &CommandContext,
) -> Result<Attempt, StoreError>
where
    L: EventStore<Pathway, AC = EventStoreAggregateContext<Pathway>>,
    W: EventStore<Pathway, AC = EventStoreAggregateContext<Pathway>>,
{
    let mut context = loader
        .load_aggregate(aggregate_id)
        .await
        .map_err(store_error)?;
    if let Some(scope) = &ctx.scope
        && !scope.admits(&context.aggregate)
    {
        return Ok(Attempt::OutOfScope);
    }
    let before = context.aggregate.version();
    let territory_before = context.aggregate.state().territory.clone();
    let name = command.name();
    let sink = EventSink::default();
    // `handle` applies each event it writes to the aggregate, so afterwards the context holds
    // the state right after the command.
    if let Err(error) = context.aggregate.handle(command, services, &sink).await {
        return Ok(Attempt::Refused(error));
    }
    let events = sink.collect().await;
    let pathway = context.aggregate.clone();
    let territory = pathway.state().territory.clone().or(territory_before);

    let md = command_metadata(name, territory.as_ref(), ctx);
    match writer.commit(events, context, md).await {
        Ok(_) => Ok(Attempt::Committed { before, pathway }),
        Err(error) => Ok(Attempt::CommitFailed(error)),
    }
}

/// The metadata stored with every event of one command: a new command id, the principal, the
/// command's name, the territory in force after it (for an undo voiding the enrolment, the one
/// before) and the idempotency key with the request's hash, if any. Batches write the same.
pub(crate) fn command_metadata(
    command: &str,
    territory: Option<&filiera_domain::TerritoryCode>,
    ctx: &CommandContext,
) -> HashMap<String, String> {
    let mut md = HashMap::from([
        (metadata::COMMAND_ID.to_owned(), Uuid::new_v4().to_string()),
        (metadata::PRINCIPAL.to_owned(), ctx.principal.clone()),
        (metadata::COMMAND.to_owned(), command.to_owned()),
    ]);
    if let Some(territory) = territory {
        md.insert(
            metadata::TERRITORY.to_owned(),
            territory.as_str().to_owned(),
        );
    }
    if let Some(key) = &ctx.idempotency {
        md.insert(metadata::IDEMPOTENCY_KEY.to_owned(), key.key.clone());
        md.insert(metadata::REQUEST_HASH.to_owned(), key.request_hash.clone());
    }
    md
}

/// Whether a failed commit lost a race: a primary-key conflict on the stream (reported by
/// the cqrs-es adapters as `AggregateConflict`) or the idempotency trigger (PostgreSQL raises
/// `unique_violation`, reported as a conflict too; SQLite aborts with a trigger constraint).
fn is_conflict(error: &AggregateError<PathwayError>) -> bool {
    match error {
        AggregateError::AggregateConflict => true,
        AggregateError::UnexpectedError(cause) | AggregateError::DatabaseConnectionError(cause) => {
            cause
                .downcast_ref::<sqlx::Error>()
                .and_then(sqlx::Error::as_database_error)
                .and_then(|db| db.code())
                .is_some_and(|code| {
                    code == sqlite::CONSTRAINT_TRIGGER || code == postgres::UNIQUE_VIOLATION
                })
        }
        _ => false,
    }
}

/// Whether a failed commit may have committed after all: the connection broke while the
/// transaction was open, so whether the server applied `COMMIT` cannot be told.
fn commit_outcome_unknown(error: &AggregateError<PathwayError>) -> bool {
    match error {
        AggregateError::UnexpectedError(cause) | AggregateError::DatabaseConnectionError(cause) => {
            cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(crate::error::leaves_outcome_unknown)
        }
        _ => false,
    }
}

/// A cqrs-es error that is not a refusal nor a conflict.
fn store_error(error: AggregateError<PathwayError>) -> StoreError {
    match error {
        AggregateError::DatabaseConnectionError(cause) | AggregateError::UnexpectedError(cause) => {
            match cause.downcast::<sqlx::Error>() {
                Ok(sqlx) => StoreError::Database(*sqlx),
                Err(other) => StoreError::EventStore(other),
            }
        }
        AggregateError::DeserializationError(cause) => StoreError::Corrupt(cause.to_string()),
        AggregateError::AggregateConflict => {
            StoreError::EventStore("unexpected optimistic-lock conflict".into())
        }
        AggregateError::UserError(error) => StoreError::EventStore(Box::new(error)),
    }
}

/// Raises `store`'s wake-up hint to `position` if it is higher (after a write made elsewhere in
/// the crate).
pub(crate) fn bump_wakeups(store: &Store, position: i64) {
    bump(&store.inner.wake, position);
}

/// Fails unless all `written` events of a commit were read back: what a commit reported must be
/// readable by everyone before it is acknowledged (a commit that only a connection's own open
/// transaction can see is not one).
pub(crate) fn readable(written: u64, events: &[StoredEvent]) -> Result<(), StoreError> {
    if events.len() as u64 == written {
        return Ok(());
    }
    Err(StoreError::EventStore(
        format!(
            "the commit of {written} event(s) reported success but {} are readable",
            events.len()
        )
        .into(),
    ))
}

/// Raises the wake-up hint to `position` if it is higher.
pub(crate) fn bump(wake: &watch::Sender<i64>, position: i64) {
    wake.send_if_modified(|current| {
        if position > *current {
            *current = position;
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection as _, Executor as _, SqliteConnection};

    use super::*;

    /// The SQLite idempotency trigger's abort is recognised as a lost race, not a failure.
    #[tokio::test]
    async fn sqlite_trigger_abort_is_a_conflict() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        conn.execute(
            "CREATE TABLE t (x integer) STRICT;
             CREATE TRIGGER t_abort AFTER INSERT ON t BEGIN SELECT RAISE(ABORT, 'filiera: no'); END;",
        )
        .await
        .unwrap();
        let error = conn.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
        let error = AggregateError::<PathwayError>::UnexpectedError(Box::new(error));
        assert!(is_conflict(&error));
        let other = sqlx::Error::Protocol("broken".into());
        assert!(!is_conflict(&AggregateError::UnexpectedError(Box::new(
            other
        ))));
        assert!(is_conflict(&AggregateError::AggregateConflict));
    }
}
