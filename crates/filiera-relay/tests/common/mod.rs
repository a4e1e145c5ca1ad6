//! Test helpers: a real `nats-server` per test (started and killed by the test), a fresh store
//! per test on either backend, writers of pathway commands, and a plain JetStream reader.

#![allow(dead_code)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chrono::NaiveDate;
use filiera_domain::{
    CloseOutcome, FixedClock, PathwayCommand, PathwayServices, Referral, StageCatalogue,
    TerritoryRegistry,
};
use filiera_relay::{NatsRelay, RelaySettings, STREAM_NAME, StreamSettings};
use filiera_store::{CommandContext, Store, StoreOptions, StoredEvent, on_pool};
use filiera_testkit::{NatsServer, TestDb};
use futures::StreamExt as _;
use tempfile::TempDir;
use uuid::Uuid;

/// The day the test clock is stuck on.
pub const TODAY: &str = "2025-06-30";

/// The CloudEvents source the tests configure.
pub const SOURCE: &str = "/filiera/test";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,filiera_relay=info".to_owned()),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// The relay

/// Relay settings for tests: short timeouts and backoff so that outages are quick.
pub fn relay_settings(nats: &NatsServer) -> RelaySettings {
    relay_settings_for(nats.url())
}

/// [`relay_settings`] for a server at `url` (which may carry credentials).
pub fn relay_settings_for(url: String) -> RelaySettings {
    RelaySettings {
        source: SOURCE.to_owned(),
        ack_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(200),
        follower_retry: Duration::from_millis(200),
        leadership_check: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        batch_size: 16,
        stream: StreamSettings::default(),
        ..RelaySettings::new(url)
    }
}

/// Starts a relay on `store` with `settings`, registering its metrics in a registry of its own.
pub async fn start(store: &Store, settings: RelaySettings) -> anyhow::Result<NatsRelay> {
    Ok(NatsRelay::start(store.clone(), settings, &prometheus::Registry::new()).await?)
}

// ---------------------------------------------------------------------------------------------
// The store

pub fn services() -> PathwayServices {
    PathwayServices {
        clock: Arc::new(FixedClock(NaiveDate::from_str(TODAY).expect("a date"))),
        ..PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        )
    }
}

pub use filiera_testkit::Backend;

/// A migrated store on a fresh database, removed when the harness is dropped.
pub struct Harness {
    /// Declared first so that it is dropped (and its pools closed) before the database.
    pub store: Store,
    pub url: String,
    _guard: Guard,
}

enum Guard {
    Dir(TempDir),
    Pg(TestDb),
}

impl Harness {
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub async fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("filiera.db").display());
        let store = connect(&url).await?;
        store.migrate().await?;
        filiera_relay::migrate(&store.database()).await?;
        Ok(Self {
            store,
            url,
            _guard: Guard::Dir(dir),
        })
    }

    pub async fn postgres() -> anyhow::Result<Self> {
        let db = TestDb::create().await?;
        let store = connect(&db.url).await?;
        store.migrate().await?;
        filiera_relay::migrate(&store.database()).await?;
        Ok(Self {
            store,
            url: db.url.clone(),
            _guard: Guard::Pg(db),
        })
    }

    /// Another store (its own pools, as another process would have) on the same database.
    pub async fn another_store(&self) -> anyhow::Result<Store> {
        connect(&self.url).await
    }
}

async fn connect(url: &str) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: 8,
        ..StoreOptions::default()
    };
    Ok(Store::connect_with(url, services(), options).await?)
}

/// Sets the relay checkpoint by hand (to simulate a crash before it was written).
pub async fn set_checkpoint(store: &Store, position: i64) -> anyhow::Result<()> {
    let sql = "UPDATE relay_checkpoints SET position = $1 WHERE name = 'nats'";
    on_pool!(store.database().writer(), |pool| {
        sqlx::query(sql)
            .bind(position)
            .execute(pool)
            .await
            .map(drop)
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing events

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).expect("a date") + chrono::Days::new(u64::from(n))
}

async fn run(store: &Store, id: Uuid, command: PathwayCommand) -> anyhow::Result<()> {
    store
        .execute(id, command, CommandContext::new("test-operator"))
        .await?
        .map_err(|refused| anyhow::anyhow!("refused: {refused}"))?;
    Ok(())
}

/// Enrols a beneficiary in `territory`.
pub async fn enrol(store: &Store, territory: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    run(
        store,
        id,
        PathwayCommand::Enrol {
            territory: territory.to_owned(),
            on: day(0),
            referral: Referral::SocialServices,
            support_band: None,
        },
    )
    .await?;
    Ok(id)
}

pub async fn enter(store: &Store, id: Uuid, stage: &str, on: u32) -> anyhow::Result<()> {
    run(
        store,
        id,
        PathwayCommand::EnterStage {
            stage: stage.to_owned(),
            on: day(on),
            provider: None,
        },
    )
    .await
}

/// One beneficiary's varied history in `territory`: every event type, two-event commands and
/// an undo (12 events).
pub async fn life(store: &Store, territory: &str, moved_to: &str) -> anyhow::Result<Uuid> {
    let id = enrol(store, territory).await?; // 1
    enter(store, id, "socio_occupational", 5).await?; // 2
    enter(store, id, "internship", 40).await?; // 3, 4
    run(
        store,
        id,
        PathwayCommand::ChangeTerritory {
            territory: moved_to.to_owned(),
            on: day(50),
        },
    )
    .await?; // 5
    run(
        store,
        id,
        PathwayCommand::ClosePathway {
            on: day(60),
            outcome: CloseOutcome::DroppedOut,
        },
    )
    .await?; // 6, 7
    run(store, id, PathwayCommand::ReopenPathway { on: day(70) }).await?; // 8
    enter(store, id, "internship", 80).await?; // 9
    enter(store, id, "job_placement", 90).await?; // 10, 11
    run(
        store,
        id,
        PathwayCommand::Undo {
            reason: "wrong stage".to_owned(),
        },
    )
    .await?; // 12
    Ok(id)
}

/// Every event of the feed, in feed order.
pub async fn feed(store: &Store) -> anyhow::Result<Vec<StoredEvent>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_feed(after, 500).await?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        after = last.position;
        all.extend(page);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the stream with a plain JetStream consumer

/// A message as a plain consumer sees it.
#[derive(Clone, Debug)]
pub struct Received {
    pub subject: String,
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    pub stream_sequence: u64,
}

/// Every message of `FILIERA_EVENTS` at `url`, in stream order, read with an ephemeral pull
/// consumer from the first message.
pub async fn read_stream(url: &str) -> anyhow::Result<Vec<Received>> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(STREAM_NAME).await?;
    let total = stream.info().await?.state.messages as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await?;
    let mut received = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.len() < total {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "read {} of {total} messages",
            received.len()
        );
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
            let info = message.info().map_err(|e| anyhow::anyhow!("info: {e}"))?;
            let headers = message
                .headers
                .as_ref()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                v.first().map(|v| v.as_str().to_owned()).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            received.push(Received {
                subject: message.subject.to_string(),
                headers,
                body: serde_json::from_slice(&message.payload)?,
                stream_sequence: info.stream_sequence,
            });
        }
    }
    Ok(received)
}

/// How many messages the stream holds, 0 if it does not exist yet.
pub async fn stream_len(url: &str) -> anyhow::Result<u64> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    match js.get_stream(STREAM_NAME).await {
        Ok(mut stream) => Ok(stream.info().await?.state.messages),
        Err(_) => Ok(0),
    }
}

/// Waits (20 s at most) until the stream at `nats` holds as many messages as the feed has
/// events now.
pub async fn published(store: &Store, nats: &NatsServer) -> anyhow::Result<()> {
    let expected = feed(store).await?.len() as u64;
    eventually(Duration::from_secs(20), "publication", || async {
        Ok(stream_len(&nats.url()).await? == expected)
    })
    .await
}

/// Polls `check` every 50 ms until it returns true, failing after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(error.context(format!("waiting for {what}")));
            }
            Err(_) => {}
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the stream holds every feed event exactly once, in feed order, in the
/// documented shape (subject, CloudEvent, `Nats-Msg-Id`).
pub async fn assert_stream_matches_feed(store: &Store, url: &str) -> anyhow::Result<()> {
    let events = feed(store).await?;
    let received = read_stream(url).await?;
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.body["id"].as_str().unwrap_or_default())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure!(
        unique.len() == ids.len(),
        "duplicates in the stream: {} messages, {} distinct ids",
        ids.len(),
        unique.len()
    );
    ensure!(
        received.len() == events.len(),
        "the stream holds {} messages, the feed {} events",
        received.len(),
        events.len()
    );
    for (message, event) in received.iter().zip(&events) {
        let id = filiera_relay::message_id(event);
        ensure!(
            message.body == filiera_relay::cloud_event(event, SOURCE),
            "message {} is not the CloudEvent of {id}: {}",
            message.stream_sequence,
            message.body
        );
        ensure!(
            message.subject == filiera_relay::subject_for(event),
            "subject {} for {id}",
            message.subject
        );
        ensure!(
            message.headers.get("Nats-Msg-Id") == Some(&id),
            "Nats-Msg-Id of {id}: {:?}",
            message.headers
        );
    }
    // Per beneficiary, stream order is sequence order without gaps.
    let mut last: HashMap<String, u64> = HashMap::new();
    for message in &received {
        let subject = message.body["subject"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let sequence = message.body["data"]["sequence"]
            .as_u64()
            .unwrap_or_default();
        let previous = last.insert(subject.clone(), sequence).unwrap_or(0);
        ensure!(
            sequence == previous + 1,
            "beneficiary {subject}: sequence {sequence} after {previous}"
        );
    }
    Ok(())
}
