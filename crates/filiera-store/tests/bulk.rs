//! [`Store::append_recorded`], [`Store::scan_feed`] (whole and in parts), [`Store::count_streams`] and
//! [`Store::server_version`] against real databases, on SQLite
//! and on PostgreSQL.

#[allow(dead_code)]
mod common;

use std::collections::HashMap;

use anyhow::{Context as _, ensure};
use filiera_domain::{PathwayCommand, PathwayEvent, Referral};
use filiera_store::{CommandContext, FeedPart, StoredEvent};
use uuid::Uuid;

use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_recorded_on_sqlite() -> anyhow::Result<()> {
    append_recorded_writes_in_the_given_order(&Harness::sqlite().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_recorded_on_postgres() -> anyhow::Result<()> {
    append_recorded_writes_in_the_given_order(&Harness::postgres().await?).await
}

/// Events decided elsewhere, more than one chunk of them, come back from the feed (its pages
/// and its scans) in the order given, with positions from the store, the metadata given and
/// readable streams; a sequence already taken is refused.
async fn append_recorded_writes_in_the_given_order(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    ensure!(!store.server_version().await?.is_empty());

    // Two events decided by the aggregate, through a command.
    let source = Uuid::new_v4();
    let ctx = || CommandContext::new("alice");
    store
        .execute(
            source,
            PathwayCommand::Enrol {
                territory: "LOM-BG-BERGAMO".into(),
                on: "2024-01-10".parse()?,
                referral: Referral::SocialServices,
                support_band: None,
            },
            ctx(),
        )
        .await?
        .ok()
        .context("enrolled")?;
    store
        .execute(
            source,
            PathwayCommand::EnterStage {
                stage: "internship".into(),
                on: "2024-02-01".parse()?,
                provider: None,
            },
            ctx(),
        )
        .await?
        .ok()
        .context("stage entered")?;
    let decided: Vec<PathwayEvent> = store
        .history(source)
        .await?
        .context("the source stream")?
        .into_iter()
        .map(|e| e.event)
        .collect();
    ensure!(decided.len() == 2);
    let head = store.head().await?;

    // The same two events in 2,600 new streams, interleaved: 5,200 rows, two chunks.
    let streams: Vec<Uuid> = (0..2_600).map(|_| Uuid::new_v4()).collect();
    let mut rows = Vec::new();
    for (sequence, event) in (1u64..).zip(&decided) {
        rows.extend(streams.iter().map(|id| (*id, sequence, event)));
    }
    let metadata = HashMap::from([
        ("principal".to_owned(), "bench".to_owned()),
        ("command".to_owned(), "bench".to_owned()),
    ]);
    store.append_recorded(&rows, &metadata).await?;

    let feed: Vec<StoredEvent> = store.read_feed(head, u32::MAX).await?;
    ensure!(
        feed.len() == rows.len(),
        "{} events in the feed",
        feed.len()
    );
    ensure!(
        feed.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
    ensure!(store.head().await? == feed.last().context("events")?.position);
    for (stored, (id, sequence, event)) in feed.iter().zip(&rows) {
        ensure!(stored.beneficiary_id == *id && stored.sequence == *sequence);
        ensure!(stored.event == **event);
        ensure!(stored.principal.as_deref() == Some("bench"));
    }
    // A scan of the feed (more than one chunk) gives the same events as its pages, and stops
    // at its limit.
    let scanned = scan(store, head, u64::MAX).await?;
    ensure!(scanned == feed, "the scan differs from the pages");
    let from = feed[10].position;
    ensure!(scan(store, from, 5).await?[..] == feed[11..16]);
    ensure!(scan(store, store.head().await?, u64::MAX).await?.is_empty());
    let mut dropped = store.scan_feed(head, u64::MAX);
    ensure!(dropped.next_chunk().await.context("a first chunk")??.len() > 1);
    drop(dropped);

    // Parts of the feed: every event in exactly one of them, in position order within each,
    // every stream whole in one part, about as many streams in each; the range is bounded.
    ensure!(store.count_streams(store.head().await?).await? == 2_601);
    ensure!(store.count_streams(feed[0].position).await? == 2);
    let up_to = feed[feed.len() - 100].position;
    let wanted: Vec<&StoredEvent> = feed.iter().filter(|e| e.position <= up_to).collect();
    let of = 3;
    let mut parts = Vec::new();
    for index in 0..of {
        let mut scan = store.scan_feed_part(head, up_to, FeedPart { index, of });
        let mut part = Vec::new();
        while let Some(chunk) = scan.next_chunk().await {
            part.extend(chunk?);
        }
        ensure!(part.windows(2).all(|w| w[0].position < w[1].position));
        parts.push(part);
    }
    let mut together: Vec<&StoredEvent> = parts.iter().flatten().collect();
    together.sort_by_key(|e| e.position);
    ensure!(together == wanted, "the parts together are the range");
    let in_part = |part: &[StoredEvent]| -> std::collections::HashSet<Uuid> {
        part.iter().map(|e| e.beneficiary_id).collect()
    };
    let sets: Vec<_> = parts.iter().map(|p| in_part(p)).collect();
    for (i, a) in sets.iter().enumerate() {
        for b in &sets[i + 1..] {
            ensure!(a.is_disjoint(b), "a stream in two parts");
        }
        ensure!(
            (600..1_150).contains(&a.len()),
            "{} streams in a part of 2,600 split in 3",
            a.len()
        );
    }

    let history = store.history(streams[7]).await?.context("a new stream")?;
    ensure!(history.iter().map(|e| &e.event).eq(&decided));
    let pathway = store.load(streams[7]).await?.context("a new pathway")?;
    ensure!(pathway.state().current_stage.is_some());

    // A sequence already taken fails, and writes nothing of its chunk.
    let again = [(streams[0], 2, &decided[1])];
    ensure!(store.append_recorded(&again, &metadata).await.is_err());
    ensure!(store.read_feed(head, u32::MAX).await?.len() == rows.len());
    Ok(())
}

/// Every event of a scan of the feed.
async fn scan(
    store: &filiera_store::Store,
    after: i64,
    limit: u64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let mut scan = store.scan_feed(after, limit);
    let mut events = Vec::new();
    while let Some(chunk) = scan.next_chunk().await {
        events.extend(chunk?);
    }
    Ok(events)
}
