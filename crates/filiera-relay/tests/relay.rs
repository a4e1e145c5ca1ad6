//! The relay against a real `nats-server -js` started by each test, on SQLite and PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use common::*;
use filiera_relay::{NatsRelay, RelaySettings, RelayStatus, StreamSettings};
use filiera_store::Store;
use filiera_testkit::NatsServer;

/// How long the relay may take to catch up in these tests.
const CATCH_UP: Duration = Duration::from_secs(20);

/// Waits until `relay` reports the checkpoint at the feed head and the stream holds as many
/// messages as the feed has events.
async fn caught_up(
    relay: &NatsRelay,
    store: &Store,
    nats: &NatsServer,
) -> anyhow::Result<RelayStatus> {
    let expected = feed(store).await?.len() as u64;
    eventually(CATCH_UP, "the relay to catch up", || async {
        let status = relay.status().await?;
        Ok(status.lag == 0 && stream_len(&nats.url()).await? == expected)
    })
    .await?;
    Ok(relay.status().await?)
}

/// Every stored event is in the stream exactly once, in feed order and the documented shape;
/// the status and the metrics say so; a restarted relay continues from the checkpoint.
async fn publishes_every_event_once_then_restarts(backend: Backend) -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::new(backend).await?;
    let store = &harness.store;
    // Events written before the relay starts are published too.
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    life(store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;

    let registry = prometheus::Registry::new();
    let relay = NatsRelay::start(store.clone(), relay_settings(&nats), &registry).await?;
    // ... and so are events written while it runs, interleaved across beneficiaries.
    let (a, b) = tokio::join!(
        life(store, "LOM-BG-BERGAMO", "PIE-TO-TORINO"),
        life(store, "LOM-MI-MILANO", "LOM-BG-BERGAMO")
    );
    a?;
    b?;
    let status = caught_up(&relay, store, &nats).await?;
    assert_stream_matches_feed(store, &nats.url()).await?;
    let head = store.head().await?;
    assert!(status.leading && status.connected, "{status:?}");
    assert_eq!(status.position, head);
    assert_eq!(status.published_total, 48);
    assert_eq!(status.last_error, None);

    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather())?;
    for line in [
        "filiera_relay_lag_events 0".to_owned(),
        format!("filiera_relay_position {head}"),
        "filiera_relay_published_total 48".to_owned(),
        "filiera_relay_publish_errors_total 0".to_owned(),
        "filiera_relay_leader 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }

    // Restart: stop the relay, write more, start a new one; it publishes only the new events.
    relay.shutdown().await;
    assert!(!relay.status().await?.leading);
    life(store, "LOM-LC-LECCO", "LOM-MI-MILANO").await?;
    let relay = start(store, relay_settings(&nats)).await?;
    let status = caught_up(&relay, store, &nats).await?;
    assert_eq!(status.published_total, 12, "{status:?}");
    assert_stream_matches_feed(store, &nats.url()).await?;
    relay.shutdown().await;
    Ok(())
}

/// NATS goes down while writes continue: writes succeed, the relay retries, and once NATS is
/// back the backlog is published, each event exactly once.
async fn survives_a_nats_outage(backend: Backend) -> anyhow::Result<()> {
    init_tracing();
    let mut nats = NatsServer::start().await?;
    let harness = Harness::new(backend).await?;
    let store = &harness.store;
    let relay = start(store, relay_settings(&nats)).await?;
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    caught_up(&relay, store, &nats).await?;

    // Writes go on while the relay is publishing and NATS goes away.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                life(&store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    nats.stop().await?;
    writer.await??;
    life(store, "LOM-MI-MILANO", "LOM-BG-BERGAMO").await?;
    eventually(CATCH_UP, "the relay to notice the outage", || async {
        let status = relay.status().await?;
        Ok(!status.connected && status.publish_errors_total > 0 && status.last_error.is_some())
    })
    .await?;
    // The outage lasts: the relay keeps failing to connect, backing off, and writes go on.
    let first_errors = relay.status().await?.publish_errors_total;
    life(store, "LOM-BG-BERGAMO", "PIE-TO-TORINO").await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = relay.status().await?;
    assert!(
        during.leading && !during.connected && during.lag > 0,
        "{during:?}"
    );
    assert!(during.publish_errors_total > first_errors, "{during:?}");

    nats.restart().await?;
    // And writes go on while it comes back.
    life(store, "LOM-LC-LECCO", "PIE-TO-TORINO").await?;
    let status = caught_up(&relay, store, &nats).await?;
    assert!(
        status.connected && status.last_error.is_none(),
        "{status:?}"
    );
    assert_stream_matches_feed(store, &nats.url()).await?;
    relay.shutdown().await;
    Ok(())
}

/// A crash between publish and checkpoint leaves the stream ahead of the checkpoint. With a
/// duplicate window far too short to help, the next relay still publishes nothing twice: its
/// start-up check skips what the stream holds.
async fn no_duplicate_after_a_crash_between_publish_and_checkpoint(
    backend: Backend,
) -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::new(backend).await?;
    let store = &harness.store;
    let settings = RelaySettings {
        stream: StreamSettings {
            duplicate_window: Duration::from_millis(100),
            ..StreamSettings::default()
        },
        ..relay_settings(&nats)
    };

    // 1. A relay publishes everything, then "crashes" as if no checkpoint had been written
    //    after the first 3 events.
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    let relay = start(store, settings.clone()).await?;
    caught_up(&relay, store, &nats).await?;
    relay.shutdown().await;
    let events = feed(store).await?;
    set_checkpoint(store, events[2].position).await?;

    // 2. Another relay had published some events exactly as the relay does (subject, body,
    //    Nats-Msg-Id, order) and crashed before its checkpoint: do that by hand.
    life(store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let events = feed(store).await?;
    for event in &events[12..17] {
        let body = serde_json::to_vec(&filiera_relay::cloud_event(event, SOURCE))?;
        js.send_publish(
            filiera_relay::subject_for(event),
            PublishMessage::build()
                .payload(body.into())
                .message_id(filiera_relay::message_id(event)),
        )
        .await?
        .await?;
    }
    // Past the duplicate window: only the start-up check can prevent duplicates now.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let relay = start(store, settings).await?;
    let status = caught_up(&relay, store, &nats).await?;
    assert_stream_matches_feed(store, &nats.url()).await?;
    assert_eq!(status.published_total, 7, "{status:?}");
    relay.shutdown().await;
    Ok(())
}

/// Two relays (two "processes": separate stores and pools) on one PostgreSQL database: one
/// leads and publishes, the other waits; when the leader dies the other takes over within
/// seconds, and the stream still has every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_relays_one_leader_and_takeover() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::postgres().await?;
    let store = &harness.store;
    let first = start(&harness.another_store().await?, relay_settings(&nats)).await?;
    let second = start(&harness.another_store().await?, relay_settings(&nats)).await?;
    eventually(CATCH_UP, "one relay to lead", || async {
        Ok(first.is_leading() || second.is_leading())
    })
    .await?;
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    life(store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
    let (leader, follower) = if first.is_leading() {
        (first, second)
    } else {
        (second, first)
    };
    caught_up(&leader, store, &nats).await?;
    // Give the follower every chance to (wrongly) do something.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (l, f) = (leader.status().await?, follower.status().await?);
    assert!(l.leading && !f.leading, "{l:?} {f:?}");
    assert_eq!((l.published_total, f.published_total), (24, 0));
    assert!(!f.connected);
    // Followers report the shared checkpoint too.
    assert_eq!(f.position, l.position);

    // The leader dies (its task is aborted and its connections dropped, as in a crash).
    drop(leader);
    let died = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the follower to take over",
        || async { Ok(follower.is_leading()) },
    )
    .await?;
    let takeover = died.elapsed();
    assert!(
        takeover < Duration::from_secs(5),
        "took over after {takeover:?}"
    );
    life(store, "LOM-LC-LECCO", "LOM-BG-BERGAMO").await?;
    let status = caught_up(&follower, store, &nats).await?;
    assert_eq!(status.published_total, 12, "{status:?}");
    assert_stream_matches_feed(store, &nats.url()).await?;
    follower.shutdown().await;
    Ok(())
}

/// Two relays on one SQLite file: a leader that shuts down hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_relays_hand_over_on_shutdown() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::sqlite().await?;
    let store = &harness.store;
    let first = start(store, relay_settings(&nats)).await?;
    eventually(CATCH_UP, "the first relay to lead", || async {
        Ok(first.is_leading())
    })
    .await?;
    let second = start(&harness.another_store().await?, relay_settings(&nats)).await?;
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    caught_up(&first, store, &nats).await?;
    assert!(!second.is_leading());
    first.shutdown().await;
    eventually(
        Duration::from_secs(5),
        "the second relay to take over",
        || async { Ok(second.is_leading()) },
    )
    .await?;
    life(store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
    let status = caught_up(&second, store, &nats).await?;
    assert_eq!(status.published_total, 12, "{status:?}");
    assert_stream_matches_feed(store, &nats.url()).await?;
    second.shutdown().await;
    Ok(())
}

/// A stream filled from another database is refused rather than guessed at: the relay
/// publishes nothing and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_stream_filled_from_another_database() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let first = Harness::sqlite().await?;
    life(&first.store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    let relay = start(&first.store, relay_settings(&nats)).await?;
    caught_up(&relay, &first.store, &nats).await?;
    relay.shutdown().await;

    let other = Harness::sqlite().await?;
    life(&other.store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
    let relay = start(&other.store, relay_settings(&nats)).await?;
    eventually(CATCH_UP, "the relay to refuse the stream", || async {
        let status = relay.status().await?;
        Ok(status
            .last_error
            .is_some_and(|e| e.contains("filled from another database")))
    })
    .await?;
    let status = relay.status().await?;
    assert_eq!(
        (status.published_total, status.position),
        (0, 0),
        "{status:?}"
    );
    assert_eq!(stream_len(&nats.url()).await?, 12);
    relay.shutdown().await;
    Ok(())
}

/// A store restored from a backup older than the stream may record, at the very position
/// of a lost event, the same beneficiary's next event: the same message id at the same
/// position. Its recording time tells it apart, and the relay refuses rather than take the
/// stream for its own (it would then publish every later event under positions whose
/// messages are the lost events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_restored_store_whose_new_event_repeats_a_lost_ones_id() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let original = Harness::sqlite().await?;
    let id = enrol(&original.store, "LOM-BG-BERGAMO").await?;
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("filiera.db");
    assert_eq!(original.store.backup_into(&copy).await?.position, 1);
    enter(&original.store, id, "socio_occupational", 5).await?;
    let relay = start(&original.store, relay_settings(&nats)).await?;
    caught_up(&relay, &original.store, &nats).await?;
    relay.shutdown().await;

    let url = format!("sqlite://{}", copy.display());
    let restored = Store::connect(&url, services()).await?;
    enter(&restored, id, "internship", 9).await?;
    let lost = feed(&original.store).await?;
    let again = feed(&restored).await?;
    assert_eq!(
        (again[1].position, again[1].sequence),
        (lost[1].position, lost[1].sequence)
    );
    assert_ne!(again[1].recorded_at, lost[1].recorded_at);
    let relay = start(&restored, relay_settings(&nats)).await?;
    eventually(CATCH_UP, "the relay to refuse the stream", || async {
        let status = relay.status().await?;
        Ok(status
            .last_error
            .is_some_and(|e| e.contains("not this store's event there")))
    })
    .await?;
    let status = relay.status().await?;
    assert_eq!(
        (status.published_total, status.position),
        (0, 0),
        "{status:?}"
    );
    assert_eq!(stream_len(&nats.url()).await?, 2);
    relay.shutdown().await;
    Ok(())
}

/// Even two relays publishing the same feed to the same stream at the same time (which
/// leadership normally prevents: here they have different checkpoints, hence different
/// leadership jobs) cannot duplicate or reorder: message ids, the expected-last-sequence
/// header and the re-synchronisation keep the stream exactly the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_relays_cannot_duplicate_or_reorder() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::postgres().await?;
    let store = &harness.store;
    let settings = |name: &str| RelaySettings {
        checkpoint_name: name.to_owned(),
        batch_size: 5,
        ..relay_settings(&nats)
    };
    let a = start(store, settings("a")).await?;
    let b = start(store, settings("b")).await?;
    let mut writers = Vec::new();
    for (from, to) in [
        ("LOM-BG-BERGAMO", "LOM-MI-MILANO"),
        ("PIE-TO-TORINO", "LOM-LC-LECCO"),
        ("LOM-MI-MILANO", "PIE-TO-TORINO"),
    ] {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..3 {
                life(&store, from, to).await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let (sa, sb) = (
        caught_up(&a, store, &nats).await?,
        caught_up(&b, store, &nats).await?,
    );
    assert!(sa.leading && sb.leading);
    assert_stream_matches_feed(store, &nats.url()).await?;
    assert_eq!(
        sa.published_total + sb.published_total,
        108,
        "{sa:?} {sb:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

filiera_testkit::on_both_backends!(
    publishes_every_event_once_then_restarts,
    survives_a_nats_outage,
    no_duplicate_after_a_crash_between_publish_and_checkpoint,
);
