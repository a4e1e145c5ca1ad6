//! A rolling restart under load: two `filiera serve` replicas on one PostgreSQL database are
//! restarted one at a time (SIGTERM, wait for the exit, start again on the same port, wait
//! ready) while writers enrol with `Idempotency-Key`s, a reader reads, and a live-stream client
//! follows the feed, all through a client-side balancer that probes `/readyz` as a proxy does
//! and sends a request again to the other replica after a connection error. No idempotent
//! request fails, the live stream misses nothing, every acknowledged write is stored once, and
//! a request in flight at SIGTERM is served rather than cut.

mod common;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, filiera, whole_feed};
use filiera_testkit::{TestDb, free_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::Instant;

/// The drain delay of these replicas: long enough for the balancer's 100 ms probe to see
/// `/readyz` answer 503 several times (and for the checks below, on a busy machine), short
/// enough for a quick test.
const DRAIN: &str = "2s";

/// Starts `filiera serve` on `port` with `command` and waits until `/readyz` answers 200.
async fn serve_on(command: Command, port: u16, client: &reqwest::Client) -> Server {
    common::start_on(command, port, Stdio::inherit(), client).await
}

/// Sends SIGTERM to `server`.
fn terminate(server: &Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits until `server` has exited, and checks that it exited cleanly.
async fn wait_exit(server: &mut Server, within: Duration) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not exit within {within:?} of SIGTERM",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{} exited with {status}", server.base);
}

/// A raw connection that has sent a `POST /v1/beneficiaries` head and the first bytes of its
/// body, and been told `100 Continue`: the request is in the server's hands, its body not.
struct SlowEnrolment {
    stream: tokio::net::TcpStream,
    body: Vec<u8>,
    sent: usize,
}

impl SlowEnrolment {
    async fn begin(base: &str, key: &str) -> Self {
        let address = base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let body =
            br#"{"territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "self"}"#.to_vec();
        let head = format!(
            "POST /v1/beneficiaries HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Idempotency-Key: {key}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            common::admin_token(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut interim = [0u8; 25];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut interim))
            .await
            .expect("100 Continue in time")
            .expect("read");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(&body[..10]).await.expect("write");
        Self {
            stream,
            body,
            sent: 10,
        }
    }

    /// Sends the rest of the body and reads the answer until the server closes the
    /// connection: the status line and the headers' text, and the body.
    async fn finish(mut self) -> (String, serde_json::Value) {
        self.stream
            .write_all(&self.body[self.sent..])
            .await
            .expect("the rest of the body is taken");
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(15),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("the answer comes and the connection closes")
        .expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
        (
            head.to_ascii_lowercase(),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Waits until nothing accepts connections at `base` any more (the drain is over).
async fn wait_refused(base: &str, within: Duration) {
    let address = base.trim_start_matches("http://");
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(address).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{base} still accepts {within:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_restarted_one_at_a_time_under_load_fail_no_request() {
    let test_started = Instant::now();
    let db = TestDb::create().await.expect("test database");
    let config_dir = tempfile::tempdir().expect("a folder");
    let config = config_dir.path().join("filiera.toml");
    std::fs::write(&config, format!("[http]\ndrain_delay = \"{DRAIN}\"\n")).expect("config");
    let command = || {
        let mut command = filiera(&db.url);
        command.env("FILIERA_CONFIG", &config);
        command
    };
    let client = common::client();
    let ports = [free_port(), free_port()];
    let mut replicas = [
        serve_on(command(), ports[0], &client).await,
        serve_on(command(), ports[1], &client).await,
    ];
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();

    let (stop, stopping) = watch::channel(false);
    let (until, until_rx) = watch::channel(None);
    let balancer = load::Balancer::start(&client, &bases, stopping.clone());
    let writers = load::spawn_writers(&client, &balancer, 3, stopping.clone());
    let reader = load::spawn_reader(&client, &balancer, stopping.clone());
    let live = load::spawn_live_stream(&client, &balancer, until_rx);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut in_flight_id = None;
    for index in 0..replicas.len() {
        let other = 1 - index;
        balancer.wait_ready(other, Duration::from_secs(30)).await;
        let base = replicas[index].base.clone();
        // The first time, a request is in flight at SIGTERM: its body is still arriving.
        let slow = if index == 0 {
            let key = uuid::Uuid::new_v4().to_string();
            Some(SlowEnrolment::begin(&base, &key).await)
        } else {
            None
        };
        terminate(&replicas[index]);
        // It reports not ready at once, and goes on serving during the drain.
        let deadline = Instant::now() + Duration::from_secs(5);
        let drained = loop {
            let ready = client
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .expect("/readyz answers during the drain");
            if ready.status() == 503 {
                let body: serde_json::Value = ready.json().await.expect("a problem");
                break body;
            }
            assert!(Instant::now() < deadline, "/readyz never answered 503");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(drained["code"], "shutting_down", "{drained}");
        let served = client
            .get(format!("{base}/v1/stages"))
            .send()
            .await
            .expect("served during the drain");
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["connection"], "close");

        if let Some(slow) = slow {
            // The listener closes after the drain delay; the request in flight is served all
            // the same, and its connection closed after the answer.
            wait_refused(&base, Duration::from_secs(10)).await;
            let (head, body) = slow.finish().await;
            assert!(head.starts_with("http/1.1 201"), "{head}\n{body}");
            assert!(head.contains("connection: close"), "{head}");
            in_flight_id = Some(body["id"].as_str().expect("an id").to_owned());
        }
        wait_exit(&mut replicas[index], Duration::from_secs(15)).await;
        replicas[index] = serve_on(command(), ports[index], &client).await;
        balancer.wait_ready(index, Duration::from_secs(30)).await;
        // Let the load run on both replicas for a moment before the next restart.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stop.send(true).expect("the load runs");
    let writes = writers.await.expect("the writers");
    let (reads, failed_reads) = reader.await.expect("the reader");
    let feed = whole_feed(&client, &replicas[0].base).await;
    let head = feed
        .last()
        .and_then(|e| e["position"].as_i64())
        .unwrap_or(0);
    until.send(Some(head)).expect("the live stream runs");
    let streamed = tokio::time::timeout(Duration::from_secs(30), live)
        .await
        .expect("the live stream catches up with the head")
        .expect("the live stream task");

    // No idempotent request failed, and a repeated one answered the first outcome.
    assert!(
        writes.failed.is_empty(),
        "failed writes: {:?}",
        writes.failed
    );
    assert!(
        writes.repeat_mismatches.is_empty(),
        "{:?}",
        writes.repeat_mismatches
    );
    assert!(failed_reads.is_empty(), "failed reads: {failed_reads:?}");
    assert!(writes.acknowledged.len() > 20, "{writes:?}");
    assert!(writes.repeated > 0);
    assert!(reads > 10);

    // Every acknowledged write is in the feed exactly once, and nothing else is (each repeat
    // stored nothing), but the request that was in flight at SIGTERM.
    let mut enrolled: BTreeMap<String, usize> = BTreeMap::new();
    for event in &feed {
        assert_eq!(event["type"], "Enrolled", "{event}");
        *enrolled
            .entry(event["beneficiary_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        enrolled.values().all(|n| *n == 1),
        "an enrolment stored twice"
    );
    let acknowledged: BTreeSet<&String> = writes.acknowledged.iter().collect();
    assert_eq!(acknowledged.len(), writes.acknowledged.len());
    assert!(acknowledged.iter().all(|id| enrolled.contains_key(*id)));
    let in_flight_id = in_flight_id.expect("the request in flight at SIGTERM was answered");
    assert!(!acknowledged.contains(&in_flight_id));
    assert_eq!(enrolled.get(&in_flight_id), Some(&1));
    assert_eq!(
        enrolled.len(),
        acknowledged.len() + 1,
        "plus the one in flight"
    );

    // The live stream resumed after each restart and missed nothing: it received every feed
    // position once, in order.
    let positions: Vec<i64> = feed
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(streamed.positions, positions, "{streamed:?}");
    assert!(streamed.reconnections >= 1, "the stream ended at a restart");

    // Both replicas reported `shutting_down` to the probe before they went away.
    let seen = balancer.not_ready_seen.lock().unwrap().clone();
    for base in &bases {
        assert!(
            seen.iter()
                .any(|(b, code)| b == base && code == "shutting_down"),
            "{base}: {seen:?}"
        );
    }
    eprintln!(
        "rolling restart: {} writes ({} sent again after a connection error, {} repeated with \
         their key), {reads} reads, {} live-stream reconnections, {:?}",
        writes.acknowledged.len(),
        writes.retried,
        writes.repeated,
        streamed.reconnections,
        test_started.elapsed()
    );
}
