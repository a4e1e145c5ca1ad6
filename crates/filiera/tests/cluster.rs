//! The clustered topology of a region, natively: three `nats-server` nodes clustered with
//! JetStream (stream `FILIERA_EVENTS` with three replicas, created beforehand as an operator
//! does), one PostgreSQL database and two `filiera serve` replicas given every node's address.
//! Under continuous writes the NATS node leading the stream is killed (the relay's own
//! connection is on it), then the replica leading the relay, then both come back. Every stored
//! event reaches the stream exactly once and in feed order, a durable consumer created before
//! the failures sees each once, and the surviving replica took over projection and relay.

mod common;
mod load;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::{Server, filiera, get, start_with, whole_feed};
use filiera_testkit::{NatsCluster, TestDb};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

const STREAM: &str = filiera_relay::STREAM_NAME;

/// How long the cluster gets for an election (meta leader, stream leader) or a catch-up.
const ELECTION: Duration = Duration::from_secs(30);

/// The stream as an operator creates it before the relay runs: the relay's subjects, three
/// replicas, the duplicate window the relay relies on, limits retention.
fn operator_stream() -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![filiera_relay::STREAM_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_age: Duration::from_secs(90 * 24 * 60 * 60),
        duplicate_window: Duration::from_secs(2 * 60 * 60),
        num_replicas: 3,
        allow_direct: true,
        ..Default::default()
    }
}

async fn projections(client: &reqwest::Client, server: &Server) -> Value {
    get(client, format!("{}/v1/projections", server.base)).await
}

/// Waits until `check` holds for `/v1/projections` of `server`, and returns that document.
async fn wait_projections(
    client: &reqwest::Client,
    server: &Server,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let status = projections(client, server).await;
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{}: never {what}: {status}",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The relay's checkpoint (its `position`) as reported by whichever replica leads it.
async fn relay_position(client: &reqwest::Client, servers: &[&Server]) -> Option<i64> {
    for server in servers {
        let relay = &projections(client, server).await["relay"];
        if relay["leading"] == true {
            return relay["position"].as_i64();
        }
    }
    None
}

/// The CloudEvent ids the stream holds, in stream order, read message by message from its
/// leader (`STREAM.MSG.GET`), with the feed positions they carry.
async fn stream_contents(js: &jetstream::Context) -> Vec<(String, i64)> {
    let mut stream = js.get_stream(STREAM).await.expect("the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    assert_eq!(state.first_sequence, 1, "nothing was deleted");
    let mut out = Vec::new();
    for sequence in 1..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("message {sequence}: {e}"));
        let event: Value = serde_json::from_slice(&message.payload).expect("CloudEvent JSON");
        out.push((
            event["id"].as_str().expect("an id").to_owned(),
            event["data"]["position"].as_i64().expect("a position"),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_loses_its_stream_leader_and_its_relay_and_publishes_each_event_once() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(ELECTION).await.expect("a NATS cluster");
    let nats = cluster.client().await.expect("a NATS client");
    let js = jetstream::new(nats);
    js.create_stream(operator_stream())
        .await
        .expect("the operator creates the stream");
    cluster
        .wait_stream_ready(STREAM, ELECTION)
        .await
        .expect("the stream has a leader and three current replicas");
    // An independent subscriber's durable consumer, created before anything fails.
    let audit = js
        .get_stream(STREAM)
        .await
        .expect("the stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some("audit".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("a durable consumer");
    eprintln!("cluster up after {:?}", started.elapsed());

    let db = TestDb::create().await.expect("test database");
    let client = common::client();
    // Every node's address, comma-separated, as an operator configures it.
    let nats_url = cluster.url();
    let with_cluster = || {
        let mut command = filiera(&db.url);
        command.env("FILIERA_NATS_URL", &nats_url);
        command
    };
    let first = start_with(with_cluster(), &client).await;
    let second = start_with(with_cluster(), &client).await;

    // Continuous writes through both replicas, retried on the other after a connection error.
    let (stop, stopping) = watch::channel(false);
    let balancer = load::Balancer::start(
        &client,
        &[first.base.clone(), second.base.clone()],
        stopping.clone(),
    );
    let writers = load::spawn_writers(&client, &balancer, 2, stopping.clone());

    // Which replica runs the relay; the relay publishes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut relay_leader, survivor, leader_index) = loop {
        let a = projections(&client, &first).await["relay"]["leading"] == true;
        let b = projections(&client, &second).await["relay"]["leading"] == true;
        assert!(!(a && b), "both replicas run the relay");
        if a {
            break (Some(first), second, 0);
        }
        if b {
            break (Some(second), first, 1);
        }
        assert!(Instant::now() < deadline, "no replica runs the relay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leader = relay_leader.as_ref().unwrap();
    wait_projections(&client, leader, "published 10 events", |s| {
        s["relay"]["position"].as_i64().unwrap_or(0) >= 10 && s["relay"]["connected"] == true
    })
    .await;

    // Put the stream's leadership on the node the relay is connected to, so that stopping it
    // takes both the stream leader and the relay's connection away.
    let relay_node = cluster
        .node_of_client("filiera-relay")
        .await
        .expect("connz")
        .expect("the relay is connected to a node");
    let mut stream_leader = cluster
        .wait_stream_ready(STREAM, ELECTION)
        .await
        .expect("stream ready");
    for _ in 0..16 {
        if stream_leader == relay_node {
            break;
        }
        cluster.step_down_stream(STREAM).await.expect("step down");
        stream_leader = cluster
            .wait_stream_ready(STREAM, ELECTION)
            .await
            .expect("a new stream leader");
    }
    assert_eq!(stream_leader, relay_node, "the stream leader moved there");

    // 1. The NATS node leading the stream dies (SIGKILL: no leadership handed over; the others
    //    elect a new leader once its heartbeats stop).
    let before = relay_position(&client, &[leader, &survivor]).await.unwrap();
    cluster.kill(&stream_leader).await.expect("kill the leader");
    let stopped_at = Instant::now();
    let new_leader = cluster
        .wait_stream_ready(STREAM, ELECTION)
        .await
        .expect("a new stream leader among the two left");
    assert_ne!(new_leader, stream_leader);
    // The relay fails over to another node of its list and goes on publishing.
    wait_projections(&client, leader, "published again", |s| {
        s["relay"]["position"].as_i64().unwrap_or(0) >= before + 10
            && s["relay"]["connected"] == true
    })
    .await;
    let now_on = cluster
        .node_of_client("filiera-relay")
        .await
        .expect("connz");
    assert!(
        now_on.as_ref().is_some_and(|n| *n != stream_leader),
        "the relay's connection moved to a live node: {now_on:?}"
    );
    eprintln!(
        "stream leader {stream_leader} killed; {new_leader} leads, the relay publishes again \
         after {:?}",
        stopped_at.elapsed()
    );

    // 2. The replica leading the relay dies without a word; the other takes everything over.
    drop(relay_leader.take());
    let killed_at = Instant::now();
    let status = wait_projections(&client, &survivor, "leading projection and relay", |s| {
        s["relay"]["leading"] == true
            && s["relay"]["connected"] == true
            && s["projections"][0]["leader"] == true
    })
    .await;
    eprintln!(
        "relay and projection taken over after {:?}: {}",
        killed_at.elapsed(),
        status["relay"]
    );

    // 3. Both come back: the node (its stream replica catches up) and the replica.
    cluster
        .start_node(&stream_leader, ELECTION)
        .await
        .expect("the node starts again");
    cluster
        .wait_stream_ready(STREAM, ELECTION)
        .await
        .expect("three current replicas again");
    let restarted = start_with(with_cluster(), &client).await;
    balancer.set_base(leader_index, &restarted.base);
    balancer
        .wait_ready(leader_index, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.send(true).expect("the writers run");
    let writes = writers.await.expect("the writers");
    assert!(
        writes.failed.is_empty(),
        "failed writes: {:?}",
        writes.failed
    );
    assert!(writes.repeat_mismatches.is_empty());

    // Everything stored is published: the relay's checkpoint reaches the head.
    let feed = whole_feed(&client, &survivor.base).await;
    let head = feed.last().unwrap()["position"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay_position(&client, &[&survivor, &restarted]).await != Some(head) {
        assert!(Instant::now() < deadline, "the relay never reached {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every acknowledged write is stored once.
    let ids: Vec<String> = feed
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["beneficiary_id"].as_str().unwrap(),
                e["sequence"].as_u64().unwrap()
            )
        })
        .collect();
    let positions: Vec<i64> = feed
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    let enrolled: BTreeSet<&str> = feed
        .iter()
        .map(|e| e["beneficiary_id"].as_str().unwrap())
        .collect();
    assert_eq!(enrolled.len(), feed.len(), "one enrolment per beneficiary");
    let acknowledged: BTreeSet<&str> = writes.acknowledged.iter().map(String::as_str).collect();
    assert_eq!(
        acknowledged, enrolled,
        "the feed holds exactly the acknowledged writes"
    );

    // The stream holds every stored event exactly once, in feed order.
    let published = stream_contents(&js).await;
    let published_ids: Vec<&str> = published.iter().map(|(id, _)| id.as_str()).collect();
    let published_positions: Vec<i64> = published.iter().map(|(_, p)| *p).collect();
    assert_eq!(published_ids, ids, "the stream is the feed, once, in order");
    assert_eq!(published_positions, positions);

    // The durable consumer created before the failures sees each event once, in order.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "the durable consumer saw {} of {}",
            seen.len(),
            ids.len()
        );
        let mut batch = audit
            .fetch()
            .max_messages(500)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            let message = message.expect("a message");
            let event: Value = serde_json::from_slice(&message.payload).expect("JSON");
            seen.push(event["id"].as_str().unwrap().to_owned());
            message.ack().await.expect("ack");
        }
    }
    assert_eq!(
        seen, ids,
        "the durable consumer saw each event once, in order"
    );
    let mut more = audit
        .fetch()
        .max_messages(10)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    assert!(more.next().await.is_none(), "nothing more, nothing twice");

    // The survivor's metrics show every enrolment (it ran the projection since the kill).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = get(&client, format!("{}/v1/metrics", survivor.base)).await;
        if metrics["enrolments"] == feed.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor's metrics never showed {} enrolments: {metrics}",
            feed.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{} events, {} writes sent again after a connection error; the whole test took {:?}",
        feed.len(),
        writes.retried,
        started.elapsed()
    );
}
