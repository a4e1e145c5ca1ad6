//! [`Store::backup_into`]: a copy of the embedded database taken while commands are written is
//! exactly the feed up to the position it reports, and opens as a store that writes on; it
//! refuses an occupied destination and PostgreSQL.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::ensure;
use filiera_domain::{PathwayCommand, Referral};
use filiera_store::{BackupError, CommandContext, Store, StoredEvent};
use uuid::Uuid;

use common::Harness;

async fn enrol(store: &Store) -> anyhow::Result<()> {
    let command = PathwayCommand::Enrol {
        territory: "LOM-BG-BERGAMO".to_owned(),
        on: "2025-01-10".parse()?,
        referral: Referral::SelfReferral,
        support_band: None,
    };
    store
        .execute(
            Uuid::new_v4(),
            command,
            CommandContext::new("test-operator"),
        )
        .await?
        .map_err(|refused| anyhow::anyhow!("refused: {refused}"))?;
    Ok(())
}

async fn whole_feed(store: &Store) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(store.read_feed(0, 100_000).await?)
}

/// The fields that make an event this event.
fn key(event: &StoredEvent) -> (i64, Uuid, u64, String) {
    (
        event.position,
        event.beneficiary_id,
        event.sequence,
        event.recorded_at.to_rfc3339(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_taken_during_writes_is_the_feed_up_to_its_position() -> anyhow::Result<()> {
    let h = Harness::sqlite().await?;
    for _ in 0..200 {
        enrol(&h.store).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (h.store.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Acquire) {
                enrol(&store).await?;
                written += 1;
            }
            anyhow::Ok(written)
        })
    };
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("copy.db");
    let before = h.store.head().await?;
    let summary = h.store.backup_into(&copy).await?;
    // Writes go on after the copy, and the copy must not hold them.
    let target = h.store.head().await? + 20;
    while h.store.head().await? < target {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Release);
    let written = writer.await??;
    // At least the 20 events after the copy's head (exactly 20 if the copy held it back).
    ensure!(written >= 20, "the writer wrote {written}");
    ensure!(
        summary.position >= before && summary.bytes > 0,
        "{summary:?}"
    );

    let original: Vec<_> = whole_feed(&h.store)
        .await?
        .iter()
        .filter(|e| e.position <= summary.position)
        .map(key)
        .collect();
    let url = format!("sqlite://{}", copy.display());
    let restored = Store::connect(&url, common::services()).await?;
    let copied: Vec<_> = whole_feed(&restored).await?.iter().map(key).collect();
    ensure!(copied == original, "the copy is the feed's prefix");
    ensure!(summary.events == copied.len() as i64, "{summary:?}");
    ensure!(restored.head().await? == summary.position);
    enrol(&restored).await?;
    ensure!(restored.head().await? == summary.position + 1);

    // Never over an existing file.
    let refused = h.store.backup_into(&copy).await;
    ensure!(
        matches!(refused, Err(BackupError::DestinationExists(_))),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_backed_up_with_its_own_tools() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let dir = tempfile::tempdir()?;
    let refused = h.store.backup_into(&dir.path().join("copy.db")).await;
    let Err(error @ BackupError::NotEmbedded) = refused else {
        anyhow::bail!("{refused:?}");
    };
    ensure!(error.to_string().contains("pg_dump"), "{error}");
    ensure!(!dir.path().join("copy.db").exists());
    Ok(())
}
