//! Test helpers: a fresh store per test on either backend, and a gate that holds every
//! commit back so that racing commands really race.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use filiera_domain::{FixedClock, PathwayServices, StageCatalogue, TerritoryRegistry};
use filiera_store::{Pool, Store, StoreOptions};
use filiera_testkit::{Backend, TestDb};
use sqlx::{Connection as _, Executor as _, PgConnection};
use tempfile::TempDir;

/// The day the test clock is stuck on.
pub const TODAY: &str = "2025-06-30";

/// The advisory lock key of the position trigger (see the PostgreSQL migration).
const POSITION_LOCK_KEY: i64 = 28_826_361_970_127_457;

pub fn services() -> PathwayServices {
    PathwayServices {
        clock: Arc::new(FixedClock(NaiveDate::from_str(TODAY).expect("a date"))),
        ..PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        )
    }
}

/// A migrated store on a fresh database, removed when the harness is dropped.
pub struct Harness {
    /// Declared first so that it is dropped (and its pools closed) before the database.
    pub store: Store,
    _guard: Guard,
}

enum Guard {
    Dir(#[allow(dead_code)] TempDir),
    Pg(#[allow(dead_code)] TestDb),
}

impl Harness {
    /// A store on a new database of `backend`, committing concurrent commands in groups as
    /// the service does.
    pub async fn on(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite_with(true).await,
            Backend::Postgres => Self::postgres_with(true).await,
        }
    }

    /// A store on a new database of `backend` without group commit: every command is its own
    /// transaction, so [`Harness::close_gate`] holds each writer back at the database.
    #[allow(dead_code)]
    pub async fn alone(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite_with(false).await,
            Backend::Postgres => Self::postgres_with(false).await,
        }
    }

    /// A store on a new SQLite file, in folders that do not exist yet.
    #[allow(dead_code)]
    pub async fn sqlite() -> anyhow::Result<Self> {
        Self::sqlite_with(true).await
    }

    async fn sqlite_with(group_commit: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested/data/filiera.db");
        let url = format!("sqlite://{}", path.display());
        let options = StoreOptions {
            max_connections: 8,
            group_commit,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&url, services(), options).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            _guard: Guard::Dir(dir),
        })
    }

    /// A store on a new PostgreSQL database.
    #[allow(dead_code)]
    pub async fn postgres() -> anyhow::Result<Self> {
        Self::postgres_with(true).await
    }

    async fn postgres_with(group_commit: bool) -> anyhow::Result<Self> {
        let db = TestDb::create().await?;
        let options = StoreOptions {
            max_connections: 24,
            group_commit,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&db.url, services(), options).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            _guard: Guard::Pg(db),
        })
    }

    /// The URL of the PostgreSQL test database, if this is one.
    pub fn pg_url(&self) -> Option<&str> {
        match &self._guard {
            Guard::Pg(db) => Some(&db.url),
            Guard::Dir(_) => None,
        }
    }

    /// Holds back every commit until [`Gate::open`]: PostgreSQL by taking the position
    /// trigger's advisory lock, SQLite by holding the single write connection.
    pub async fn close_gate(&self) -> anyhow::Result<Gate> {
        match self.store.database().writer() {
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await?.detach();
                conn.execute("BEGIN").await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(POSITION_LOCK_KEY)
                    .execute(&mut conn)
                    .await?;
                Ok(Gate::Pg {
                    conn,
                    pool: pool.clone(),
                })
            }
            Pool::Sqlite(write) => Ok(Gate::Sqlite(write.acquire().await?)),
        }
    }
}

/// See [`Harness::close_gate`].
pub enum Gate {
    Pg {
        conn: PgConnection,
        pool: sqlx::PgPool,
    },
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

impl Gate {
    /// Waits until `n` writers are blocked at the gate, i.e. have loaded and decided.
    pub async fn wait_for_writers(&self, n: i64) -> anyhow::Result<()> {
        match self {
            Gate::Pg { pool, .. } => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_locks \
                         WHERE locktype = 'advisory' AND NOT granted \
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    )
                    .fetch_one(pool)
                    .await?;
                    if waiting >= n {
                        return Ok(());
                    }
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "only {waiting} of {n} writers reached the gate"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            // The pool does not tell how many wait for its connection: give them time.
            Gate::Sqlite(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(())
            }
        }
    }

    /// Writes, behind the gate, a copy of the event at `from` (stream, sequence) as the event
    /// at `to`: another writer's commit that the held-back writers will find when the gate
    /// opens.
    #[allow(dead_code)]
    pub async fn copy_event(
        &mut self,
        from: (uuid::Uuid, u64),
        to: (uuid::Uuid, u64),
    ) -> anyhow::Result<()> {
        let sql = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                       event_version, payload, metadata) \
                   SELECT aggregate_type, $1, $2, event_type, event_version, payload, metadata \
                   FROM events WHERE aggregate_id = $3 AND sequence = $4";
        let (to_id, to_sequence) = (to.0.to_string(), i64::try_from(to.1)?);
        let (from_id, from_sequence) = (from.0.to_string(), i64::try_from(from.1)?);
        let copied = match self {
            Gate::Pg { conn, .. } => sqlx::query(sql)
                .bind(&to_id)
                .bind(to_sequence)
                .bind(&from_id)
                .bind(from_sequence)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
            Gate::Sqlite(conn) => sqlx::query(sql)
                .bind(&to_id)
                .bind(to_sequence)
                .bind(&from_id)
                .bind(from_sequence)
                .execute(&mut **conn)
                .await?
                .rows_affected(),
        };
        anyhow::ensure!(copied == 1, "no event {from:?} to copy");
        Ok(())
    }

    /// Lets the held-back commits through.
    pub async fn open(self) -> anyhow::Result<()> {
        match self {
            Gate::Pg { mut conn, .. } => {
                conn.execute("COMMIT").await?;
                conn.close().await?;
            }
            Gate::Sqlite(conn) => drop(conn),
        }
        Ok(())
    }
}

/// Reads the feed in pages of 7 as writers add to it, until `done` counts `writers` finished
/// writers and the feed is drained; fails if a position ever goes back. Returns every
/// `(stream, sequence)` read, in feed order.
pub async fn tail_feed(
    store: &Store,
    done: &std::sync::atomic::AtomicUsize,
    writers: usize,
) -> anyhow::Result<Vec<(uuid::Uuid, u64)>> {
    let mut checkpoint = 0;
    let mut seen = Vec::new();
    let mut wakeups = store.wakeups();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == writers;
        let page = store.read_feed(checkpoint, 7).await?;
        for event in &page {
            anyhow::ensure!(
                event.position > checkpoint,
                "position went back from {checkpoint} to {}",
                event.position
            );
            checkpoint = event.position;
            seen.push((event.beneficiary_id, event.sequence));
        }
        if page.is_empty() {
            if finished {
                return Ok(seen);
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), wakeups.changed()).await;
        }
    }
}

/// What a reader tailing the feed ([`tail_feed`]) must have seen of the `stored` events:
/// each exactly once, none missed, and each stream's sequences in order.
pub fn assert_tailed_in_order(
    seen: &[(uuid::Uuid, u64)],
    stored: &[(uuid::Uuid, u64)],
) -> anyhow::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    anyhow::ensure!(unique.len() == seen.len(), "the reader saw an event twice");
    anyhow::ensure!(
        unique == stored.iter().copied().collect(),
        "the reader missed events"
    );
    let mut last: BTreeMap<uuid::Uuid, u64> = BTreeMap::new();
    for &(id, sequence) in seen {
        let previous = last.insert(id, sequence).unwrap_or(0);
        anyhow::ensure!(
            sequence == previous + 1,
            "stream {id}: {sequence} after {previous}"
        );
    }
    Ok(())
}
