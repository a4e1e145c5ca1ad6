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

impl Store {
    /// Scans the feed after position `after`, at most `limit` events, in position order (see
    /// the module docs).
    pub fn scan_feed(&self, after: i64, limit: u64) -> FeedScan {
        let (sender, chunks) = mpsc::channel(AHEAD);
        let store = self.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let task = tokio::spawn(async move {
            if let Err(error) = store.scan_into(after, limit, &sender).await {
                // The caller may be gone already; then nobody needs to know.
                let _ = sender.send(Err(error)).await;
            }
        });
        FeedScan { chunks, task }
    }

    async fn scan_into(
        &self,
        after: i64,
        limit: i64,
        sender: &mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>,
    ) -> Result<(), StoreError> {
        let sql = crate::rows::feed_page_sql(self.is_sqlite());
        let database = self.database();
        let timeout = self.query_timeout();
        let aggregate_type = Pathway::TYPE;
        let mut chunk = Vec::with_capacity(CHUNK);
        macro_rules! stream_rows {
            ($pool:expr) => {{
                let mut rows = sqlx::query(&sql)
                    .bind(aggregate_type)
                    .bind(after)
                    .bind(limit)
                    .fetch($pool);
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
