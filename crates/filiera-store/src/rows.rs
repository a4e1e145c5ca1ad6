//! Decoding stored rows. Both backends select the same columns (see [`EVENT_COLUMNS`]) and
//! decode them into a [`RawEvent`] with [`raw_event!`], then into a [`StoredEvent`].

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use filiera_domain::evolution;
use uuid::Uuid;

use crate::StoreError;
use crate::metadata;
use crate::model::StoredEvent;

/// The columns every event query selects, in the order [`raw_event!`] reads them. Payload and
/// metadata are read as JSON text (PostgreSQL stores `jsonb`), decoded without an intermediate
/// `serde_json::Value` where possible.
pub(crate) const EVENT_COLUMNS: &str = "aggregate_id, sequence, event_type, event_version, \
     CAST(payload AS text) AS payload, CAST(metadata AS text) AS metadata, position, recorded_at";

/// The feed's condition on the aggregate type, for the backend (`$1` is the type). On SQLite
/// the unary `+` keeps the planner off the primary key's index, whose first column is the
/// aggregate type: without statistics (a store written only through the API is never
/// analysed) SQLite prefers it to the position index, and then reads and sorts the whole table
/// for every page of the feed — 1.2–1.6 s a page at a million events. With `+`, a page is a
/// range of the position index (a few milliseconds). PostgreSQL has no unary `+` for text, and
/// needs none.
pub(crate) fn feed_type_condition(sqlite: bool) -> &'static str {
    if sqlite {
        "+aggregate_type = $1"
    } else {
        "aggregate_type = $1"
    }
}

/// A page of the feed: [`EVENT_COLUMNS`] of the events after position `$2`, at most `$3`.
pub(crate) fn feed_page_sql(sqlite: bool) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE {} AND position > $2 ORDER BY position LIMIT $3",
        feed_type_condition(sqlite)
    )
}

/// The events of one [`crate::scan::FeedPart`] of the feed: [`EVENT_COLUMNS`] after position `$2`
/// up to `$3`, of the streams whose bucket (the id's last two characters read as hex digits,
/// anything else counting as `f`: 0–255) times `$4` (the parts) over 256 is `$5` (the part).
pub(crate) fn feed_part_sql(sqlite: bool) -> String {
    let (find, last) = if sqlite {
        ("instr", "substr(aggregate_id, -1, 1)")
    } else {
        ("strpos", "right(aggregate_id, 1)")
    };
    let before_last = if sqlite {
        "substr(aggregate_id, -2, 1)"
    } else {
        "left(right(aggregate_id, 2), 1)"
    };
    let digit = |c: &str| format!("(({find}('0123456789abcdef', lower({c})) + 15) % 16)");
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE {} AND position > $2 AND position <= $3 \
         AND ({} * 16 + {}) * $4 / 256 = $5 ORDER BY position",
        feed_type_condition(sqlite),
        digit(before_last),
        digit(last),
    )
}

/// The last position of the feed, 0 if it is empty: a walk down the position index (`max()`
/// with a condition does not take it on SQLite).
pub(crate) fn feed_head_sql(sqlite: bool) -> &'static str {
    // `feed_type_condition`, spelt out: the head is asked for often, and needs no allocation.
    if sqlite {
        "SELECT coalesce((SELECT position FROM events WHERE +aggregate_type = $1 \
                          ORDER BY position DESC LIMIT 1), 0)"
    } else {
        "SELECT coalesce((SELECT position FROM events WHERE aggregate_type = $1 \
                          ORDER BY position DESC LIMIT 1), 0)"
    }
}

/// A row of `events` as stored, before its payload and metadata are interpreted.
pub(crate) struct RawEvent {
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: String,
    pub(crate) metadata: String,
    pub(crate) position: i64,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// Decodes a `PgRow` or a `SqliteRow` holding [`EVENT_COLUMNS`] into a [`RawEvent`].
macro_rules! raw_event {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        Ok::<_, sqlx::Error>($crate::rows::RawEvent {
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            position: row.try_get("position")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }};
}
pub(crate) use raw_event;

impl RawEvent {
    /// Interprets the payload, through `upcasters` (the domain's, as cqrs-es applies them
    /// when it loads a stream), and the metadata. `voided` starts `false`.
    pub(crate) fn decode(
        self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> Result<StoredEvent, StoreError> {
        let beneficiary_id = Uuid::parse_str(&self.aggregate_id).map_err(|_| {
            StoreError::Corrupt(format!(
                "aggregate id `{}` is not a UUID",
                self.aggregate_id
            ))
        })?;
        let sequence = u64::try_from(self.sequence)
            .map_err(|_| StoreError::Corrupt(format!("negative sequence {}", self.sequence)))?;
        let event = evolution::decode_text(
            upcasters,
            &self.event_type,
            &self.event_version,
            &self.payload,
        )
        .map_err(|e| StoreError::Corrupt(format!("event {}:{sequence}: {e}", self.aggregate_id)))?;
        let metadata: FeedMetadata = serde_json::from_str(&self.metadata).map_err(|e| {
            StoreError::Corrupt(format!(
                "metadata of event {}:{sequence}: {e}",
                self.aggregate_id
            ))
        })?;
        Ok(StoredEvent {
            position: self.position,
            beneficiary_id,
            sequence,
            territory: metadata.territory,
            principal: metadata.principal,
            event,
            recorded_at: self.recorded_at,
            voided: false,
        })
    }
}

/// The members of an event's metadata the feed reads (the others are skipped unparsed).
#[derive(serde::Deserialize)]
struct FeedMetadata {
    #[serde(rename = "territory", default)]
    territory: Option<String>,
    #[serde(rename = "principal", default)]
    principal: Option<String>,
}

// The names above are the metadata keys.
const _: () = {
    assert!(matches!(metadata::TERRITORY.as_bytes(), b"territory"));
    assert!(matches!(metadata::PRINCIPAL.as_bytes(), b"principal"));
};

/// A row of `idempotency_keys`.
pub(crate) struct KeyRow {
    pub(crate) aggregate_id: String,
    pub(crate) request_hash: String,
    pub(crate) first_sequence: i64,
    pub(crate) last_sequence: i64,
}

/// Decodes a `PgRow` or a `SqliteRow` of `idempotency_keys` into a [`KeyRow`].
macro_rules! key_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        Ok::<_, sqlx::Error>($crate::rows::KeyRow {
            aggregate_id: row.try_get("aggregate_id")?,
            request_hash: row.try_get("request_hash")?,
            first_sequence: row.try_get("first_sequence")?,
            last_sequence: row.try_get("last_sequence")?,
        })
    }};
}
pub(crate) use key_row;

#[cfg(test)]
mod tests {
    use sqlx::{Connection as _, Executor as _, SqliteConnection};

    use super::*;

    /// On SQLite without statistics, the feed's page and head walk the position index: no
    /// scan of the primary key's index, no sort of the whole table.
    #[tokio::test]
    async fn sqlite_feed_queries_walk_the_position_index() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        conn.execute(include_str!("../migrations/sqlite/0001_events.sql"))
            .await
            .unwrap();
        for sql in [feed_page_sql(true), feed_head_sql(true).to_owned()] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .bind("pathway")
                    .bind(0i64)
                    .bind(10i64)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains("sqlite_autoindex_events_1")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|step| step.contains("TEMP B-TREE") || step.contains("aggregate_type=?")),
                "{sql}: {plan:?}"
            );
        }
    }
}
