//! [`FeedScan`]: the feed read in one statement, for the readers that go through all of it —
//! the offline replay of `filiera report`, a projection catching up or rebuilding.
//!
//! Pages of [`Store::read_feed`] cost a statement each, and while the reader folds a page the
//! database sits idle. A scan instead streams the rows of one statement, and decodes them in a
//! task of its own: the database sends, the scan task decodes and the caller folds at the same
//! time, each on a core of its own where there are enough. Decoded events travel in chunks
//! through a bounded channel, so a slow caller holds at most a few chunks in memory.
//!
//! A scan sees the feed as of its statement (one snapshot on both backends): events committed
//! meanwhile are for the next scan. Every row must arrive within the store's query timeout of
//! the previous one, or the scan ends with [`StoreError::TimedOut`].

use cqrs_es::Aggregate as _;
use filiera_domain::Pathway;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::rows::raw_event;
use crate::{Pool, Store, StoreError, StoredEvent};

/// Events per chunk handed to the caller.
const CHUNK: usize = 4_096;

/// Chunks decoded ahead of the caller.
const AHEAD: usize = 4;

/// A scan of the feed under way; see the module docs. Dropping it stops the scan.
pub struct FeedScan {
    chunks: mpsc::Receiver<Result<Vec<StoredEvent>, StoreError>>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedScan {
    /// The next chunk of events in position order, or `None` at the end of the scan.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<StoredEvent>, StoreError>> {
        self.chunks.recv().await
    }
}

impl Drop for FeedScan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One of `of` disjoint parts of the feed's streams, split by the last two hex digits of the
/// beneficiary's id (random in the ids filiera assigns, so the parts are about equal): a rebuild
/// folds the feed one part at a time, holding one part's timelines. Every stream is in exactly
/// one part, whatever its id. At most 256 parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPart {
    /// This part, `0..of`.
    pub index: u32,
    /// How many parts the streams are split into, `1..=256`.
    pub of: u32,
}

impl FeedPart {
    /// The most parts the streams can be split into.
    pub const MAX: u32 = 256;
}

/// What a scan reads.
enum Range {
    /// At most this many events.
    Limit(i64),
    /// The events of one part up to this position.
    Part { up_to: i64, part: FeedPart },
}

impl Store {
    /// Scans the feed after position `after`, at most `limit` events, in position order (see
    /// the module docs).
    pub fn scan_feed(&self, after: i64, limit: u64) -> FeedScan {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.scan(after, Range::Limit(limit))
    }

    /// Scans the events of the streams in `part`, after position `after` up to position
    /// `up_to`, in position order. The database does the sorting out, so a part costs the
    /// database one pass over the range and the caller only its share of the rows.
    pub fn scan_feed_part(&self, after: i64, up_to: i64, part: FeedPart) -> FeedScan {
        self.scan(after, Range::Part { up_to, part })
    }

    fn scan(&self, after: i64, range: Range) -> FeedScan {
        let (sender, chunks) = mpsc::channel(AHEAD);
        let store = self.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = store.scan_into(after, range, &sender).await {
                // The caller may be gone already; then nobody needs to know.
                let _ = sender.send(Err(error)).await;
            }
        });
        FeedScan { chunks, task }
    }

    async fn scan_into(
        &self,
        after: i64,
        range: Range,
        sender: &mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>,
    ) -> Result<(), StoreError> {
        let sqlite = self.is_sqlite();
        let (sql, bound, part) = match range {
            Range::Limit(limit) => (crate::rows::feed_page_sql(sqlite), limit, None),
            Range::Part { up_to, part } => (crate::rows::feed_part_sql(sqlite), up_to, Some(part)),
        };
        let database = self.database();
        let timeout = self.query_timeout();
        let aggregate_type = Pathway::TYPE;
        let mut chunk = Vec::with_capacity(CHUNK);
        macro_rules! stream_rows {
            ($pool:expr) => {{
                let mut query = sqlx::query(&sql)
                    .bind(aggregate_type)
                    .bind(after)
                    .bind(bound);
                if let Some(part) = part {
                    query = query.bind(i64::from(part.of)).bind(i64::from(part.index));
                }
                let mut rows = query.fetch($pool);
                loop {
                    let next = tokio::time::timeout(timeout, rows.next())
                        .await
                        .map_err(|_| StoreError::TimedOut(timeout))?;
                    let Some(row) = next else { break };
                    let raw = raw_event!(row?)?;
                    chunk.push(raw.decode(self.upcasters())?);
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if sender.send(Ok(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }};
        }
        match database.reader() {
            Pool::Sqlite(pool) => stream_rows!(pool),
            Pool::Postgres(pool) => stream_rows!(pool),
        }
        if !chunk.is_empty() {
            let _ = sender.send(Ok(chunk)).await;
        }
        Ok(())
    }
}
