//! Load for the tests that restart replicas under traffic (`cluster.rs`, `rolling_restart.rs`):
//! a client-side balancer that probes `/readyz` as a proxy's health checks do and retries a
//! request on another replica after a connection error, idempotent writers, feed readers and a
//! live-stream (SSE) client that resumes with `Last-Event-ID`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long one logical request may keep retrying across replicas before it counts as failed:
/// longer than a replica's restart, so that a request fails only if no replica could serve it.
pub const REQUEST_PATIENCE: Duration = Duration::from_secs(30);

/// One replica as the balancer sees it.
struct Backend {
    base: Mutex<String>,
    ready: AtomicBool,
}

/// The replicas, each marked ready or not by a probe of `/readyz` every 100 ms, as a reverse
/// proxy's health checks would: requests go to ready replicas in turn; a request that meets a
/// connection error (or a 503 from a replica going away) is sent again to the next one.
#[derive(Clone)]
pub struct Balancer {
    backends: Arc<Vec<Backend>>,
    turn: Arc<AtomicUsize>,
    /// Every `(base, problem code)` a probe received with a 503, in order.
    pub not_ready_seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Balancer {
    /// A balancer over `bases`, all assumed ready until probed, with its probe running until
    /// `stop` flips.
    pub fn start(client: &reqwest::Client, bases: &[String], stop: watch::Receiver<bool>) -> Self {
        let balancer = Self {
            backends: Arc::new(
                bases
                    .iter()
                    .map(|base| Backend {
                        base: Mutex::new(base.clone()),
                        ready: AtomicBool::new(true),
                    })
                    .collect(),
            ),
            turn: Arc::default(),
            not_ready_seen: Arc::default(),
        };
        tokio::spawn(balancer.clone().probe(client.clone(), stop));
        balancer
    }

    async fn probe(self, client: reqwest::Client, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            for backend in self.backends.iter() {
                let base = backend.base.lock().unwrap().clone();
                let answer = client
                    .get(format!("{base}/readyz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                let ready = match answer {
                    Ok(response) if response.status() == 200 => true,
                    Ok(response) => {
                        let status = response.status();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        let code = body["code"].as_str().unwrap_or_default().to_owned();
                        if status == 503 {
                            self.not_ready_seen.lock().unwrap().push((base, code));
                        }
                        false
                    }
                    Err(_) => false,
                };
                backend.ready.store(ready, Ordering::Release);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Replica `index` now answers at `base` (restarted on another port).
    pub fn set_base(&self, index: usize, base: &str) {
        *self.backends[index].base.lock().unwrap() = base.to_owned();
    }

    /// Whether the last probe found replica `index` ready.
    pub fn is_ready(&self, index: usize) -> bool {
        self.backends[index].ready.load(Ordering::Acquire)
    }

    /// The next replica to send a request to: the ready ones in turn, or any if none is.
    pub fn pick(&self) -> String {
        let n = self.backends.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .find(|b| b.ready.load(Ordering::Acquire))
            .unwrap_or(&self.backends[start % n]);
        chosen.base.lock().unwrap().clone()
    }

    /// Waits until the probe has found replica `index` ready.
    pub async fn wait_ready(&self, index: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.is_ready(index) {
            assert!(
                Instant::now() < deadline,
                "replica {index} not ready within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether an answer says "try another replica": a connection error or timeout, or a 503
/// (`shutting_down`, or a database moment): nothing was decided there.
fn retry_elsewhere(answer: &Result<reqwest::Response, reqwest::Error>) -> bool {
    match answer {
        Err(_) => true,
        Ok(response) => response.status() == 503,
    }
}

/// What one request finally got: the status and JSON body, and how many attempts it took.
pub struct Outcome {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
    pub attempts: usize,
}

/// `POST /v1/beneficiaries` with `key` as its `Idempotency-Key`, sent to the balancer's next
/// replica and again to the next one after a connection error, until [`REQUEST_PATIENCE`].
/// `Err` carries the last error if no replica answered.
pub async fn enrol(
    client: &reqwest::Client,
    balancer: &Balancer,
    territory: &str,
    key: &str,
) -> Result<Outcome, String> {
    let body = serde_json::json!({"territory": territory, "on": "2024-01-10", "referral": "self"});
    send(balancer, |base| {
        client
            .post(format!("{base}/v1/beneficiaries"))
            .header("Idempotency-Key", key)
            .json(&body)
    })
    .await
}

/// `GET path` through the balancer, with the same retries as [`enrol`].
pub async fn get(
    client: &reqwest::Client,
    balancer: &Balancer,
    path: &str,
) -> Result<Outcome, String> {
    send(balancer, |base| client.get(format!("{base}{path}"))).await
}

async fn send(
    balancer: &Balancer,
    request: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<Outcome, String> {
    let deadline = Instant::now() + REQUEST_PATIENCE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let base = balancer.pick();
        let answer = request(&base).timeout(Duration::from_secs(10)).send().await;
        if !retry_elsewhere(&answer) {
            let response = answer.expect("not an error");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.json().await.unwrap_or(Value::Null);
            return Ok(Outcome {
                status,
                body,
                headers,
                attempts,
            });
        }
        if Instant::now() >= deadline {
            return Err(match answer {
                Err(error) => format!("{base}: {error}"),
                Ok(response) => format!("{base}: {}", response.status()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the writers did.
#[derive(Debug, Default)]
pub struct Writes {
    /// The beneficiary id of each acknowledged enrolment (201), in no particular order.
    pub acknowledged: Vec<String>,
    /// Requests that got no 201 within [`REQUEST_PATIENCE`], with what they got.
    pub failed: Vec<String>,
    /// Requests that needed more than one attempt (sent again after a connection error).
    pub retried: usize,
    /// Acknowledged enrolments sent a second time with the same key (to another replica,
    /// after the first answer), and those whose second answer differed from the first.
    pub repeated: usize,
    pub repeat_mismatches: Vec<String>,
}

/// `tasks` writers, each enrolling in a loop through `balancer` with a fresh key per
/// enrolment, and every fifth one sent again with the same key, until `stop` flips.
pub fn spawn_writers(
    client: &reqwest::Client,
    balancer: &Balancer,
    tasks: usize,
    stop: watch::Receiver<bool>,
) -> JoinHandle<Writes> {
    let handles: Vec<JoinHandle<Writes>> = (0..tasks)
        .map(|task| {
            let client = client.clone();
            let balancer = balancer.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let territories = ["LOM-BG-BERGAMO", "PIE-TO-TORINO", "LOM-LC-LECCO"];
                let mut writes = Writes::default();
                let mut n = 0usize;
                while !*stop.borrow() {
                    n += 1;
                    let key = uuid::Uuid::new_v4().to_string();
                    let territory = territories[(task + n) % territories.len()];
                    match enrol(&client, &balancer, territory, &key).await {
                        Ok(outcome) if outcome.status == 201 => {
                            if outcome.attempts > 1 {
                                writes.retried += 1;
                            }
                            let id = outcome.body["id"].as_str().unwrap_or_default().to_owned();
                            if n.is_multiple_of(5) {
                                writes.repeated += 1;
                                match enrol(&client, &balancer, territory, &key).await {
                                    Ok(again) if again.status == 201 && again.body["id"] == id => {}
                                    Ok(again) => writes.repeat_mismatches.push(format!(
                                        "{key}: {id} then {} {}",
                                        again.status, again.body
                                    )),
                                    Err(error) => writes
                                        .repeat_mismatches
                                        .push(format!("{key}: then {error}")),
                                }
                            }
                            writes.acknowledged.push(id);
                        }
                        Ok(outcome) => writes
                            .failed
                            .push(format!("{key}: {} {}", outcome.status, outcome.body)),
                        Err(error) => writes.failed.push(format!("{key}: {error}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                writes
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut all = Writes::default();
        for handle in handles {
            let writes = handle.await.expect("a writer");
            all.acknowledged.extend(writes.acknowledged);
            all.failed.extend(writes.failed);
            all.retried += writes.retried;
            all.repeated += writes.repeated;
            all.repeat_mismatches.extend(writes.repeat_mismatches);
        }
        all
    })
}

/// A reader of feed pages and metrics through the balancer until `stop` flips: the requests
/// that failed (no 200 within [`REQUEST_PATIENCE`]), and how many succeeded.
pub fn spawn_reader(
    client: &reqwest::Client,
    balancer: &Balancer,
    stop: watch::Receiver<bool>,
) -> JoinHandle<(usize, Vec<String>)> {
    let client = client.clone();
    let balancer = balancer.clone();
    tokio::spawn(async move {
        let (mut served, mut failed) = (0, Vec::new());
        let mut n = 0usize;
        while !*stop.borrow() {
            n += 1;
            let path = if n.is_multiple_of(2) {
                "/v1/events?after=0&limit=50"
            } else {
                "/v1/metrics"
            };
            match get(&client, &balancer, path).await {
                Ok(outcome) if outcome.status == 200 => served += 1,
                Ok(outcome) => failed.push(format!("{path}: {} {}", outcome.status, outcome.body)),
                Err(error) => failed.push(format!("{path}: {error}")),
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        (served, failed)
    })
}

/// What the live-stream client received.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The `id` (feed position) of every event received, in order, across reconnections.
    pub positions: Vec<i64>,
    /// How many times the stream ended or broke and was opened again.
    pub reconnections: usize,
}

/// A client of `/v1/events/stream` through the balancer: when its stream ends or breaks it
/// opens a new one on a ready replica with `Last-Event-ID` = the last id it received. Runs
/// until `stop` flips and it has received an event at `until` or beyond (the caller sets the
/// feed head into `until` once writes have stopped).
pub fn spawn_live_stream(
    client: &reqwest::Client,
    balancer: &Balancer,
    until: watch::Receiver<Option<i64>>,
) -> JoinHandle<Streamed> {
    use futures::StreamExt;
    let client = client.clone();
    let balancer = balancer.clone();
    tokio::spawn(async move {
        let mut streamed = Streamed::default();
        let done = |streamed: &Streamed| match *until.borrow() {
            Some(head) => streamed.positions.last().copied().unwrap_or(0) >= head,
            None => false,
        };
        let mut first = true;
        while !done(&streamed) {
            if !first {
                streamed.reconnections += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            first = false;
            let base = balancer.pick();
            let mut request = client.get(format!("{base}/v1/events/stream"));
            if let Some(last) = streamed.positions.last() {
                request = request.header("Last-Event-ID", last.to_string());
            }
            let Ok(response) = request.send().await else {
                continue;
            };
            if response.status() != 200 {
                continue;
            }
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            loop {
                let chunk = tokio::select! {
                    chunk = body.next() => chunk,
                    // Wake up now and then to see whether the caller is satisfied.
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if done(&streamed) { break; }
                        continue;
                    }
                };
                let Some(Ok(chunk)) = chunk else { break };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(id) = block
                        .lines()
                        .find_map(|line| line.strip_prefix("id:"))
                        .and_then(|id| id.trim().parse().ok())
                    {
                        streamed.positions.push(id);
                    }
                }
                if done(&streamed) {
                    break;
                }
            }
        }
        streamed
    })
}
