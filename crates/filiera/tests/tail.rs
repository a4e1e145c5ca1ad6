//! `filiera tail` as a real process, following a real server over HTTP and over NATS.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, clean_command, start_with};
use filiera_testkit::{ChildLines, NatsServer};
use serde_json::{Value, json};

/// A running `filiera tail` (killed on drop) and the JSON lines it prints; other lines are
/// skipped.
struct Tail(ChildLines);

impl Tail {
    fn spawn(args: &[&str]) -> Self {
        let mut command = clean_command();
        command
            .env("FILIERA_TOKEN", common::admin_token())
            .arg("tail")
            .args(args)
            .stderr(Stdio::inherit());
        Self(ChildLines::spawn(&mut command).expect("filiera tail starts"))
    }

    /// The next JSON line printed within `timeout`, if any.
    fn next_json(&self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let Ok(value) = serde_json::from_str(&self.0.next_line(left)?) {
                return Some(value);
            }
        }
    }

    fn next(&self) -> Value {
        self.next_json(Duration::from_secs(20))
            .expect("a line within 20 s")
    }

    fn nothing_more(&self) {
        assert!(
            self.next_json(Duration::from_millis(700)).is_none(),
            "an unexpected line"
        );
    }
}

async fn post(client: &reqwest::Client, server: &Server, path: &str, body: Value) -> Value {
    let response = client
        .post(format!("{}{path}", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

async fn enrol(client: &reqwest::Client, server: &Server, territory: &str) -> String {
    let state = post(
        client,
        server,
        "/v1/beneficiaries",
        json!({"territory": territory, "on": "2024-01-10", "referral": "self"}),
    )
    .await;
    state["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_http_feed_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let client = common::client();
    let mut command = clean_command();
    command.env("FILIERA_DATA_DIR", dir.path());
    let server = start_with(command, &client).await;
    let bergamo = enrol(&client, &server, "LOM-BG-BERGAMO").await;
    let torino = enrol(&client, &server, "PIE-TO-TORINO").await;
    for id in [&torino, &bergamo] {
        post(
            &client,
            &server,
            &format!("/v1/beneficiaries/{id}/stage"),
            json!({"stage": "internship", "on": "2024-02-01"}),
        )
        .await;
    }

    let tail = Tail::spawn(&[
        "--url",
        &server.base,
        "--territory",
        "LOM",
        "--type",
        "stage_entered",
    ]);
    let first = tail.next();
    assert_eq!(first["type"], "StageEntered");
    assert_eq!(first["beneficiary_id"], bergamo.as_str());
    tail.nothing_more();

    // Live.
    post(
        &client,
        &server,
        &format!("/v1/beneficiaries/{bergamo}/stage"),
        json!({"stage": "job_placement", "on": "2024-03-01"}),
    )
    .await;
    let live = tail.next();
    assert_eq!(live["data"]["stage"], "job_placement");
    assert!(live["position"].as_i64() > first["position"].as_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_nats_stream_with_a_durable_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start().await.expect("nats-server");
    let client = common::client();
    let mut command = clean_command();
    command
        .env("FILIERA_DATA_DIR", dir.path())
        .env("FILIERA_NATS_URL", nats.url());
    let server = start_with(command, &client).await;
    let bergamo = enrol(&client, &server, "LOM-BG-BERGAMO").await;
    enrol(&client, &server, "PIE-TO-TORINO").await;

    let args = [
        "--nats",
        "--url",
        &nats.url(),
        "--territory",
        "LOM-BG-BERGAMO",
        "--type",
        "enrolled",
        "--durable",
        "tail-test",
    ];
    {
        let tail = Tail::spawn(&args);
        let event = tail.next();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "it.filiera.pathway.enrolled.v1");
        assert_eq!(event["subject"], bergamo.as_str());
        assert_eq!(event["data"]["territory"], "LOM-BG-BERGAMO");
        tail.nothing_more();
    }
    // The durable consumer resumes after what it acknowledged: only the new enrolment.
    let second = enrol(&client, &server, "LOM-BG-BERGAMO").await;
    let tail = Tail::spawn(&args);
    assert_eq!(tail.next()["subject"], second.as_str());
    tail.nothing_more();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_live_streams_and_the_server_stops_promptly() {
    use futures::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let client = common::client();
    let mut command = clean_command();
    command.env("FILIERA_DATA_DIR", dir.path());
    let mut server = start_with(command, &client).await;
    let stream = client
        .get(format!("{}/v1/events/stream", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();

    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    // The default drain delay (5 s: `/readyz` answers 503 while requests are still served),
    // then the shutdown proper.
    let deadline = std::time::Instant::now() + Duration::from_secs(5 + 8);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "filiera serve is still running with a live stream open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    // The client sees its stream end (then reconnects elsewhere with Last-Event-ID).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok());
}
