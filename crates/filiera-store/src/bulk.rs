//! Bulk appends of events decided elsewhere, and the database server's version: what a
//! benchmark or a generator needs from the store without naming its tables.

use std::collections::HashMap;

use filiera_domain::PathwayEvent;
use uuid::Uuid;

use crate::batch::{Row, RowKey};
use crate::{Pool, Store, StoreError};

/// Events written per transaction.
const CHUNK: usize = 5_000;

impl Store {
    /// Appends events that were already decided (generated histories, not commands), in the
    /// order given: each row is `(stream, sequence in that stream, event)`, and every event
    /// gets `metadata`. Positions and `recorded_at` are assigned, and any idempotency key in
    /// `metadata` bound, as for a batch of commands (`Store::write_rows`). No aggregate is
    /// loaded and nothing is checked: a sequence already taken in its stream fails the chunk
    /// holding it (earlier chunks stay written).
    ///
    /// Written in chunks of 5,000 events, one transaction each (see `Store::write_rows`).
    pub async fn append_recorded(
        &self,
        rows: &[(Uuid, u64, &PathwayEvent)],
        metadata: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        let key = RowKey::of(metadata);
        let metadata = serde_json::to_string(metadata)
            .map_err(|e| StoreError::Corrupt(format!("metadata cannot be encoded: {e}")))?;
        for chunk in rows.chunks(CHUNK) {
            let rows: Vec<Row> = chunk
                .iter()
                .map(|&(beneficiary, sequence, event)| Row {
                    beneficiary,
                    sequence,
                    event: event.clone(),
                    metadata: metadata.clone(),
                    key: key.clone(),
                })
                .collect();
            self.write_rows(&rows).await?;
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
