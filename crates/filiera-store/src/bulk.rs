//! Bulk appends of events decided elsewhere, and the database server's version: what a
//! benchmark or a generator needs from the store without naming its tables.

use std::collections::HashMap;

use cqrs_es::{Aggregate as _, DomainEvent as _};
use filiera_domain::{Pathway, PathwayEvent};
use uuid::Uuid;

use crate::{Pool, Store, StoreError};

/// Events written per statement (PostgreSQL) or per transaction (SQLite).
const CHUNK: usize = 5_000;

impl Store {
    /// Appends events that were already decided (generated histories, not commands), in the
    /// order given: each row is `(stream, sequence in that stream, event)`, and every event
    /// gets `metadata`. The store's triggers assign positions and `recorded_at` as for any
    /// other write. No aggregate is loaded and nothing is checked: a sequence already taken in
    /// its stream fails the chunk holding it (earlier chunks stay written).
    ///
    /// Written in chunks of 5,000 events: one `INSERT … SELECT FROM UNNEST(…)` per chunk on
    /// PostgreSQL, one transaction of single-row inserts per chunk on SQLite (through the
    /// write connection).
    pub async fn append_recorded(
        &self,
        rows: &[(Uuid, u64, &PathwayEvent)],
        metadata: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(metadata)
            .map_err(|e| StoreError::Corrupt(format!("metadata cannot be encoded: {e}")))?;
        let database = self.database();
        for chunk in rows.chunks(CHUNK) {
            let mut ids = Vec::with_capacity(chunk.len());
            let mut sequences = Vec::with_capacity(chunk.len());
            let mut types = Vec::with_capacity(chunk.len());
            let mut versions = Vec::with_capacity(chunk.len());
            let mut payloads = Vec::with_capacity(chunk.len());
            for (id, sequence, event) in chunk {
                ids.push(id.to_string());
                sequences.push(i64::try_from(*sequence).map_err(|_| {
                    StoreError::Corrupt(format!("sequence {sequence} is out of range"))
                })?);
                types.push(event.event_type());
                versions.push(event.event_version());
                payloads.push(serde_json::to_string(event).map_err(|e| {
                    StoreError::Corrupt(format!("an event cannot be encoded: {e}"))
                })?);
            }
            match database.writer() {
                Pool::Postgres(pool) => {
                    sqlx::query(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                             event_version, payload, metadata) \
                         SELECT $1, u.id, u.sequence, u.type, u.version, u.payload::jsonb, \
                                $7::jsonb \
                         FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], \
                                     $6::text[]) \
                              WITH ORDINALITY AS u (id, sequence, type, version, payload, n) \
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
                    let mut tx = write.begin().await?;
                    for i in 0..chunk.len() {
                        sqlx::query(
                            "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
                                                 event_type, event_version, payload, metadata) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .bind(Pathway::TYPE)
                        .bind(&ids[i])
                        .bind(sequences[i])
                        .bind(&types[i])
                        .bind(&versions[i])
                        .bind(&payloads[i])
                        .bind(&metadata)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                }
            }
        }
        Ok(())
    }

    /// The version of the database server: PostgreSQL's `server_version`, or the SQLite
    /// library's version.
    pub async fn server_version(&self) -> Result<String, StoreError> {
        let database = self.database();
        let version = match database.reader() {
            Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, String>("SHOW server_version")
                    .fetch_one(pool)
                    .await?
            }
            Pool::Sqlite(read) => {
                sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
                    .fetch_one(read)
                    .await?
            }
        };
        Ok(version)
    }
}
