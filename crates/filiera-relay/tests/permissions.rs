//! The example NATS configuration `deploy/nats-server.conf` is right: a nats-server of this
//! test runs that very file (only `listen` and `store_dir` rewritten, the passwords given through
//! the environment as in production), the real relay publishes with the `filiera-relay` user,
//! and the subscriber `sil-bergamo` gets its own territory's events and nothing else.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::{ConnectOptions, Event};
use common::{Harness, enrol, enter, eventually, feed, relay_settings_for, start};
use filiera_relay::{NatsRelay, STREAM_NAME};
use futures::StreamExt as _;

/// Passwords as docs/security.md says to make them: `p` and random hex digits (the server parses
/// an environment variable's value as a configuration value, so a value starting with digits
/// could be read as a number: `9e8d…` fails).
static RELAY_PASSWORD: LazyLock<String> = LazyLock::new(password);
static SIL_PASSWORD: LazyLock<String> = LazyLock::new(password);
static PROVINCE_PASSWORD: LazyLock<String> = LazyLock::new(password);

fn password() -> String {
    format!(
        "p{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The subscriber's territory and another one of the same province.
const MINE: &str = "LOM-BG-BERGAMO";
const OTHER: &str = "LOM-BG-VALLE-BREMBANA";

/// A nats-server running `deploy/nats-server.conf`, killed on drop.
struct ConfiguredNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn replace_once(text: &str, from: &str, to: &str) -> anyhow::Result<String> {
    ensure!(
        text.matches(from).count() == 1,
        "deploy/nats-server.conf should hold `{from}` once"
    );
    Ok(text.replacen(from, to, 1))
}

impl ConfiguredNats {
    async fn start() -> anyhow::Result<Self> {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats-server.conf");
        let text = std::fs::read_to_string(&example).context("read deploy/nats-server.conf")?;
        let port = filiera_testkit::free_port();
        let dir = tempfile::tempdir()?;
        let text = replace_once(
            &text,
            "listen: 127.0.0.1:4222",
            &format!("listen: 127.0.0.1:{port}"),
        )?;
        let text = replace_once(
            &text,
            "store_dir: \"/var/lib/nats\"",
            &format!("store_dir: \"{}\"", dir.path().join("jetstream").display()),
        )?;
        let config = dir.path().join("nats-server.conf");
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.path().join("nats-server.log"))?;
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .env("FILIERA_RELAY_NATS_PASSWORD", &*RELAY_PASSWORD)
            .env("SIL_BERGAMO_NATS_PASSWORD", &*SIL_PASSWORD)
            .env("PROVINCIA_BG_NATS_PASSWORD", &*PROVINCE_PASSWORD)
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/sbin",
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn nats-server (apt-get install nats-server)")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("nats-server.log"))?;
                anyhow::bail!("nats-server exited at start ({status}):\n{log}");
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "nats-server did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { port, dir, child })
    }

    /// `nats://user:password@127.0.0.1:<port>`, the form `FILIERA_NATS_URL` takes.
    fn url(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the relay's stream holds every feed event, and checks that the relay never
/// failed (a missing permission shows up as a failed JetStream request or publish).
async fn published(
    harness: &Harness,
    relay: &NatsRelay,
    nats: &ConfiguredNats,
) -> anyhow::Result<()> {
    let expected = feed(&harness.store).await?.len() as u64;
    // Until the stream holds every event and the relay has checkpointed them: its counters
    // move after the checkpoint, a moment after the server has the messages.
    let result = eventually(Duration::from_secs(20), "publication", || async {
        Ok(stream_len(nats).await? == expected && relay.status().await?.lag == 0)
    })
    .await;
    let status = relay.status().await?;
    result.with_context(|| format!("relay status {status:?}\nserver log:\n{}", nats.log()))?;
    ensure!(
        status.publish_errors_total == 0 && status.last_error.is_none(),
        "the relay failed: {status:?}\nserver log:\n{}",
        nats.log()
    );
    Ok(())
}

/// How many messages the stream holds, asked as the relay's user (0 before it exists).
async fn stream_len(nats: &ConfiguredNats) -> anyhow::Result<u64> {
    let client =
        ConnectOptions::with_user_and_password("filiera-relay".to_owned(), RELAY_PASSWORD.clone())
            .connect(format!("nats://127.0.0.1:{}", nats.port))
            .await?;
    let js = async_nats::jetstream::new(client);
    match js.get_stream(STREAM_NAME).await {
        Ok(mut stream) => Ok(stream.info().await?.state.messages),
        Err(_) => Ok(0),
    }
}

/// A client of `user` with its own inbox prefix, recording the server's errors.
async fn subscriber(
    nats: &ConfiguredNats,
    user: &str,
    password: &str,
) -> anyhow::Result<(async_nats::Client, Arc<Mutex<Vec<String>>>)> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let recorded = errors.clone();
    let client = ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .event_callback(move |event| {
            let recorded = recorded.clone();
            async move {
                if let Event::ServerError(error) = event {
                    recorded.lock().expect("lock").push(error.to_string());
                }
            }
        })
        .connect(format!("nats://127.0.0.1:{}", nats.port))
        .await?;
    Ok((client, errors))
}

/// Waits until the server reported a permissions violation about `subject`.
async fn refused(
    errors: &Arc<Mutex<Vec<String>>>,
    kind: &str,
    subject: &str,
) -> anyhow::Result<()> {
    let wanted = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
    eventually(
        Duration::from_secs(5),
        &format!("a refusal of {kind} to {subject}"),
        || async {
            let errors = errors.lock().expect("lock");
            Ok(errors.iter().any(|e| e.to_lowercase().contains(&wanted)))
        },
    )
    .await
    .with_context(|| format!("server errors seen: {:?}", errors.lock().expect("lock")))
}

#[tokio::test]
async fn the_example_configuration_lets_the_relay_publish_and_subscribers_read_only_their_territory()
-> anyhow::Result<()> {
    common::init_tracing();
    let nats = ConfiguredNats::start().await?;
    let harness = Harness::sqlite().await?;
    let store = &harness.store;

    // Events in two territories, then the relay with its own user creates the stream and
    // publishes them.
    for territory in [MINE, OTHER, MINE, OTHER] {
        let id = enrol(store, territory).await?;
        enter(store, id, "socio_occupational", 3).await?;
    }
    let relay = start(
        store,
        relay_settings_for(nats.url("filiera-relay", &RELAY_PASSWORD)),
    )
    .await?;
    published(&harness, &relay, &nats).await?;
    relay.shutdown().await;

    // A new relay over a stream that holds messages reads the last one back (stream message
    // get) before it publishes more: with the checkpoint lost, it skips what the stream holds
    // only if that read is allowed (otherwise it would send all 8 again).
    common::set_checkpoint(store, 0).await?;
    for territory in [OTHER, MINE] {
        let id = enrol(store, territory).await?;
        enter(store, id, "internship", 5).await?;
    }
    let relay = start(
        store,
        relay_settings_for(nats.url("filiera-relay", &RELAY_PASSWORD)),
    )
    .await?;
    published(&harness, &relay, &nats).await?;
    let status = relay.status().await?;
    ensure!(status.published_total == 4, "{status:?}");
    let events = feed(store).await?;
    let total = events.len() as u64;
    let mut mine: Vec<String> = events
        .iter()
        .filter(|e| e.territory.as_deref() == Some(MINE))
        .map(filiera_relay::message_id)
        .collect();
    ensure!(mine.len() == 6 && total == 12, "{} of {total}", mine.len());

    // The subscriber of LOM-BG-BERGAMO: refusals first.
    let (client, errors) = subscriber(&nats, "sil-bergamo", &SIL_PASSWORD).await?;
    let js = ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client.clone());
    let stream = js.get_stream(STREAM_NAME).await?;
    let consumer_config = |name: &str, filter: &str| pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: filter.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    for (name, filter) in [
        ("sil-bergamo", format!("filiera.events.{OTHER}.>")),
        ("sil-bergamo", "filiera.events.>".to_owned()),
        ("sil-bergamo", "filiera.events.*.enrolled".to_owned()),
        ("someone-else", format!("filiera.events.{MINE}.>")),
    ] {
        let attempt = stream.create_consumer(consumer_config(name, &filter)).await;
        ensure!(attempt.is_err(), "consumer {name} on {filter} was created");
        refused(
            &errors,
            "publish",
            &format!("$JS.API.CONSUMER.CREATE.{STREAM_NAME}.{name}.{filter}"),
        )
        .await?;
    }
    // A consumer without a name carries its filter in the body only: refused too.
    let unnamed = pull::Config {
        filter_subject: format!("filiera.events.{MINE}.>"),
        ..Default::default()
    };
    ensure!(stream.create_consumer(unnamed).await.is_err());
    refused(
        &errors,
        "publish",
        &format!("$JS.API.CONSUMER.CREATE.{STREAM_NAME}"),
    )
    .await?;
    // No reading single messages (the stream allows direct get), no deleting the stream.
    ensure!(stream.get_raw_message(1).await.is_err());
    refused(
        &errors,
        "publish",
        &format!("$JS.API.STREAM.MSG.GET.{STREAM_NAME}"),
    )
    .await?;
    ensure!(js.delete_stream(STREAM_NAME).await.is_err());
    refused(
        &errors,
        "publish",
        &format!("$JS.API.STREAM.DELETE.{STREAM_NAME}"),
    )
    .await?;
    // No plain subscription to another territory, to every inbox, or to its own subjects.
    let other = format!("filiera.events.{OTHER}.>");
    let mut sneaky = client.subscribe(other.clone()).await?;
    refused(&errors, "subscription", &other).await?;
    let _inboxes = client.subscribe("_INBOX.>").await?;
    refused(&errors, "subscription", "_INBOX.>").await?;
    // No publishing on the relay's subjects.
    let forged = format!("filiera.events.{MINE}.enrolled");
    client.publish(forged.clone(), "{}".into()).await?;
    client.flush().await?;
    refused(&errors, "publish", &forged).await?;
    ensure!(stream_len(&nats).await? == total);

    // Its own durable consumer: created, pulled, acknowledged; only LOM-BG-BERGAMO's events.
    let consumer = stream
        .create_consumer(consumer_config(
            "sil-bergamo",
            &format!("filiera.events.{MINE}.>"),
        ))
        .await
        .with_context(|| format!("server log:\n{}", nats.log()))?;
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.len() < mine.len() && tokio::time::Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
            ensure!(
                message
                    .subject
                    .starts_with(&format!("filiera.events.{MINE}.")),
                "received {}",
                message.subject
            );
            let body: serde_json::Value = serde_json::from_slice(&message.payload)?;
            received.push(body["id"].as_str().unwrap_or_default().to_owned());
            message
                .ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
    }
    // Nothing more comes.
    let mut rest = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_millis(500))
        .messages()
        .await?;
    ensure!(
        rest.next().await.is_none(),
        "a message beyond its territory"
    );
    mine.sort();
    received.sort();
    ensure!(received == mine, "received {received:?}, expected {mine:?}");
    // The acknowledgements were accepted (consumer info is allowed on its own consumer).
    let mut consumer = consumer;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while consumer.info().await?.num_ack_pending > 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "acknowledgements not taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        !matches!(
            tokio::time::timeout(Duration::from_millis(300), sneaky.next()).await,
            Ok(Some(_))
        ),
        "the refused subscription delivered a message"
    );

    // The province's user may bind one consumer per code of its subtree.
    let (province, province_errors) = subscriber(&nats, "provincia-bg", &PROVINCE_PASSWORD).await?;
    let province_js = ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(province);
    let province_stream = province_js.get_stream(STREAM_NAME).await?;
    for territory in ["LOM-BG", MINE, OTHER] {
        province_stream
            .create_consumer(consumer_config(
                &format!("provincia-bg_{territory}"),
                &format!("filiera.events.{territory}.>"),
            ))
            .await
            .with_context(|| format!("province consumer for {territory}"))?;
    }
    ensure!(
        province_stream
            .create_consumer(consumer_config(
                "provincia-bg_LOM-MI",
                "filiera.events.LOM-MI.>"
            ))
            .await
            .is_err()
    );
    refused(
        &province_errors,
        "publish",
        &format!(
            "$JS.API.CONSUMER.CREATE.{STREAM_NAME}.provincia-bg_LOM-MI.filiera.events.LOM-MI.>"
        ),
    )
    .await?;

    relay.shutdown().await;
    Ok(())
}
