//! Leadership: exactly one runner per named job (a projection, the NATS relay) among every
//! process sharing the store, and a takeover within seconds when the runner dies.
//!
//! - PostgreSQL: a session-level advisory lock held by a dedicated connection. When the holding
//!   process dies its connection closes and the server releases the lock at once.
//! - SQLite: a row in `leases` with an expiry, renewed by [`Leadership::check`]; a lease that
//!   was not renewed for [`SQLITE_LEASE_TTL`] can be taken over.
//!
//! Leadership is a way to avoid wasted work, not the last line of defence: runners still write
//! their checkpoints with a compare-and-set so that two runners can never both apply a batch.

use std::time::Duration;

use sqlx::{Connection, PgConnection, SqlitePool};
use uuid::Uuid;

use crate::{Pool, Store, StoreError};

/// How long an SQLite lease lasts without renewal.
pub const SQLITE_LEASE_TTL: Duration = Duration::from_secs(5);

/// The first half of PostgreSQL advisory lock keys for jobs (ASCII "fili"); the second half is
/// a hash of the job name. The two-key space does not overlap the one-key space the event
/// trigger locks in.
const PG_LOCK_CLASS: i32 = 0x6669_6c69;

/// Being the single runner of a job. Dropping it gives the job up.
pub struct Leadership {
    job: String,
    hold: Hold,
}

enum Hold {
    Postgres(PgConnection),
    Sqlite { pool: SqlitePool, holder: String },
}

impl Store {
    /// Tries, without waiting, to become the only runner of `job` among the processes sharing
    /// this store. `None` when another one runs it.
    pub async fn try_lead(&self, job: &str) -> Result<Option<Leadership>, StoreError> {
        let database = self.database();
        let hold = match database.writer() {
            Pool::Postgres(pool) => {
                // Try on a pooled connection; only a won lock takes its connection out of the
                // pool (a follower retrying every second must not open a new session each time).
                let mut pooled = pool.acquire().await?;
                let (locked,): (bool,) =
                    sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2))")
                        .bind(PG_LOCK_CLASS)
                        .bind(job)
                        .fetch_one(&mut *pooled)
                        .await?;
                if !locked {
                    return Ok(None);
                }
                Hold::Postgres(pooled.detach())
            }
            Pool::Sqlite(write) => {
                let holder = Uuid::new_v4().to_string();
                if !renew_sqlite(write, job, &holder).await? {
                    return Ok(None);
                }
                Hold::Sqlite {
                    pool: write.clone(),
                    holder,
                }
            }
        };
        tracing::info!(job, "leading");
        Ok(Some(Leadership {
            job: job.to_owned(),
            hold,
        }))
    }
}

/// Takes or renews the lease of `job` for `holder`; true when `holder` has it.
async fn renew_sqlite(pool: &SqlitePool, job: &str, holder: &str) -> Result<bool, StoreError> {
    let now = now_millis();
    let expires = now + SQLITE_LEASE_TTL.as_millis() as i64;
    let taken = sqlx::query(
        "INSERT INTO leases (job, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < ?4",
    )
    .bind(job)
    .bind(holder)
    .bind(expires)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Leadership {
    /// The job led.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Whether this process still leads; renews the SQLite lease. Call it at least every
    /// couple of seconds while running, and stop running when it says false.
    pub async fn check(&mut self) -> bool {
        let still = match &mut self.hold {
            Hold::Postgres(conn) => conn.ping().await.is_ok(),
            Hold::Sqlite { pool, holder } => {
                matches!(renew_sqlite(pool, &self.job, holder).await, Ok(true))
            }
        };
        if !still {
            tracing::warn!(job = %self.job, "leadership lost");
        }
        still
    }

    /// Gives the job up now (dropping does the same, less promptly).
    pub async fn release(self) {
        match self.hold {
            Hold::Postgres(conn) => {
                let _ = conn.close().await;
            }
            Hold::Sqlite {
                ref pool,
                ref holder,
            } => {
                let _ = sqlx::query("DELETE FROM leases WHERE job = ?1 AND holder = ?2")
                    .bind(&self.job)
                    .bind(holder)
                    .execute(pool)
                    .await;
            }
        }
        tracing::info!(job = %self.job, "leadership released");
    }
}
