//! PostgreSQL set-up: one pool for reads and writes, and a LISTEN task turning the
//! `filiera_events` notifications of every process into local wake-ups.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::MigrateDatabase as _;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::StoreError;
use crate::store::{StoreOptions, bump};

/// The channel the position trigger notifies, with the new position as payload (the batch
/// write: once, with its last position).
pub(crate) const CHANNEL: &str = "filiera_events";

/// The position lock: the transaction-scoped advisory lock the position trigger takes, and the
/// batch write takes itself (migrations 0001 and 0006). 'filiera' read as a big-endian integer.
pub(crate) const POSITION_LOCK_KEY: i64 = 28_826_361_970_127_457;

/// SQLSTATE `unique_violation`: a primary-key conflict, or the idempotency trigger.
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

/// SQLSTATE `invalid_catalog_name`: the database named by the URL does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// SQLSTATE `duplicate_database`: another process created the database first.
const DUPLICATE_DATABASE: &str = "42P04";

/// Connects the pool, first creating the database if it does not exist (through the
/// maintenance database `postgres`, with the same credentials, as `createdb` does) when the
/// role may. One of the pool's connections is kept by the LISTEN task.
///
/// Connections are tested before use (sqlx's default, kept explicit here), so those broken by
/// a database restart are replaced instead of failing the first requests after it. A dropped
/// transaction is rolled back by sqlx before the connection is reused (the server tracks
/// transaction state, unlike SQLite). While the database is down, an acquire fails after
/// `options.acquire_timeout` instead of waiting for it.
pub(crate) async fn connect(url: &str, options: &StoreOptions) -> Result<PgPool, StoreError> {
    match pool(url, options).await {
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(INVALID_CATALOG_NAME) =>
        {
            create_database(url).await?;
            Ok(pool(url, options).await?)
        }
        connected => Ok(connected?),
    }
}

async fn pool(url: &str, options: &StoreOptions) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(options.max_connections.max(2))
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(true)
        .connect(url)
        .await
}

/// Creates the missing database of `url`. Another process creating it meanwhile (replicas
/// starting together) is not an error.
async fn create_database(url: &str) -> Result<(), StoreError> {
    let database = url
        .parse::<PgConnectOptions>()
        .ok()
        .and_then(|options| options.get_database().map(str::to_owned))
        .unwrap_or_default();
    match sqlx::Postgres::create_database(url).await {
        Ok(()) => {
            tracing::info!(%database, "created the missing PostgreSQL database");
            Ok(())
        }
        Err(sqlx::Error::Database(error))
            if error.code().as_deref() == Some(DUPLICATE_DATABASE) =>
        {
            Ok(())
        }
        Err(source) => Err(StoreError::CannotCreateDatabase { database, source }),
    }
}

/// Listens to [`CHANNEL`] until aborted, bumping `wake` with each notified position. Failures
/// are logged and retried: wake-ups are only hints, readers poll anyway.
pub(crate) fn spawn_listener(pool: PgPool, wake: watch::Sender<i64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !pool.is_closed() {
            if let Err(error) = listen(&pool, &wake).await {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(%error, "LISTEN {CHANNEL} failed; retrying in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn listen(pool: &PgPool, wake: &watch::Sender<i64>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        match listener.try_recv().await? {
            Some(notification) => {
                if let Ok(position) = notification.payload().parse() {
                    bump(wake, position);
                }
            }
            // The connection was lost and re-established: notifications may have been missed,
            // so wake readers up with the current head.
            None => {
                let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
                    .fetch_one(pool)
                    .await?;
                bump(wake, head.unwrap_or(0));
            }
        }
    }
}
