//! Several `filiera serve` processes on one PostgreSQL database: exactly one runs each
//! projection, and another takes over within seconds when it dies.

mod common;

use std::time::{Duration, Instant};

use common::{Server, filiera, get, start, start_with};
use filiera_testkit::{NatsServer, TestDb};
use serde_json::Value;

async fn leads(client: &reqwest::Client, server: &Server) -> bool {
    let status = get(client, format!("{}/v1/projections", server.base)).await;
    status["projections"][0]["leader"] == true
}

async fn enrol(client: &reqwest::Client, server: &Server, territory: &str) {
    let response = client
        .post(format!("{}/v1/beneficiaries", server.base))
        .json(&serde_json::json!({"territory": territory, "on": "2024-01-10", "referral": "self"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

/// Waits until `server` answers `enrolments == n` for the whole country.
async fn wait_for_enrolments(client: &reqwest::Client, server: &Server, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = get(client, format!("{}/v1/metrics", server.base)).await;
        if metrics["enrolments"] == n {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {n} enrolments: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projection_runner_among_replicas_and_takeover_when_it_dies() {
    let db = TestDb::create().await.expect("test database");
    let client = common::client();
    let first = start(&db.url, &client).await;
    let second = start(&db.url, &client).await;

    // Exactly one of the two runs the projection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (leader, follower) = loop {
        let (a, b) = (leads(&client, &first).await, leads(&client, &second).await);
        assert!(!(a && b), "both processes run the projection");
        if a {
            break (first, second);
        }
        if b {
            break (second, first);
        }
        assert!(Instant::now() < deadline, "no process runs the projection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Writes through either process reach both (the follower answers from the read model).
    enrol(&client, &leader, "LOM-BG-BERGAMO").await;
    enrol(&client, &follower, "PIE-TO-TORINO").await;
    wait_for_enrolments(&client, &follower, 2).await;
    assert!(!leads(&client, &follower).await);

    // The leader dies without a word; the follower takes over within seconds.
    let killed_at = Instant::now();
    drop(leader);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !leads(&client, &follower).await {
        assert!(Instant::now() < deadline, "nobody took over the projection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("takeover after {:?}", killed_at.elapsed());

    // It goes on applying, each event once: the online document equals the offline replay.
    enrol(&client, &follower, "LOM-LC-LECCO").await;
    let online = wait_for_enrolments(&client, &follower, 3).await;
    let known_at = online["query"]["known_at"].as_str().unwrap().to_owned();
    let report = filiera(&db.url)
        .args(["report", "--known-at", &known_at])
        .output()
        .expect("filiera report");
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let offline: Value = serde_json::from_slice(&report.stdout).unwrap();
    let mut online = online;
    // `to` defaults to today in both; everything else must match exactly.
    online["query"]["to"] = offline["query"]["to"].clone();
    assert_eq!(online, offline);
    let status = get(&client, format!("{}/v1/projections", follower.base)).await;
    assert_eq!(status["projections"][0]["lag"], 0, "{status}");
}

async fn relay_status(client: &reqwest::Client, server: &Server) -> Value {
    get(client, format!("{}/v1/projections", server.base)).await["relay"].clone()
}

/// Every message of `FILIERA_EVENTS`, read with a plain ephemeral JetStream consumer.
async fn stream_contents(nats: &NatsServer) -> Vec<Value> {
    use futures::StreamExt;
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("FILIERA_EVENTS").await.expect("stream");
    let count = stream.info().await.expect("info").state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(count as usize)
        .messages()
        .await
        .expect("fetch");
    let mut out = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.expect("message");
        out.push(serde_json::from_slice(&message.payload).expect("CloudEvent JSON"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nats_relay_among_replicas_and_takeover_when_it_dies() {
    let db = TestDb::create().await.expect("test database");
    let nats = NatsServer::start().await.expect("nats-server");
    let client = common::client();
    let with_nats = || {
        let mut command = filiera(&db.url);
        command.env("FILIERA_NATS_URL", nats.url());
        command
    };
    let first = start_with(with_nats(), &client).await;
    let second = start_with(with_nats(), &client).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let (leader, follower) = loop {
        let a = relay_status(&client, &first).await["leading"] == true;
        let b = relay_status(&client, &second).await["leading"] == true;
        assert!(!(a && b), "both processes run the relay");
        if a {
            break (first, second);
        }
        if b {
            break (second, first);
        }
        assert!(Instant::now() < deadline, "no process runs the relay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    enrol(&client, &leader, "LOM-BG-BERGAMO").await;
    enrol(&client, &follower, "PIE-TO-TORINO").await;
    let wait_published = |server: &Server, n: i64| {
        let base = server.base.clone();
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let status = get(&client, format!("{base}/v1/projections")).await;
                let relay = &status["relay"];
                if relay["leading"] == true && relay["position"] == n && relay["lag"] == 0 {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "relay never published {n}: {relay}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_published(&leader, 2).await;
    assert_eq!(relay_status(&client, &follower).await["leading"], false);

    drop(leader);
    enrol(&client, &follower, "LOM-LC-LECCO").await;
    wait_published(&follower, 3).await;

    let messages = stream_contents(&nats).await;
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each event exactly once: {ids:?}");
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3);
    let positions: Vec<i64> = messages
        .iter()
        .map(|m| m["data"]["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(messages[2]["type"], "it.filiera.pathway.enrolled.v1");
}
