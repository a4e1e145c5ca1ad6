//! PostgreSQL stops under writes and comes back: requests fail fast with 503 and
//! `Retry-After` (never 500, never a long hang), `/readyz` says so, nothing acknowledged is
//! lost, and writes, reads and the projection recover within seconds of the database's return
//! without restarting filiera.
//!
//! The database is a PostgreSQL server of the test's own, never the shared one.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{enrol_with_key, filiera, get, readyz, start_with, whole_feed};
use filiera_testkit::PgServer;
use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

/// `[database] acquire_timeout` of the server under test.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// `[database] query_timeout` of the server under test: the bound on one command.
const QUERY_TIMEOUT: Duration = Duration::from_secs(4);
/// The longest a refused request may take: the query timeout plus slack for a busy machine.
const REFUSAL_BOUND: Duration = Duration::from_secs(6);

/// What the writers were told, key by key.
#[derive(Debug, Default)]
struct Outcomes {
    /// Keys answered 201, with the id.
    acknowledged: Vec<(String, String)>,
    /// Keys answered 503.
    refused: Vec<String>,
    /// When the last 201 came.
    last_success: Option<Instant>,
    /// When the request of the last 503 was sent.
    last_refusal: Option<Instant>,
}

async fn enrol(client: &reqwest::Client, base: &str, key: &str) -> (u16, Value, Duration, bool) {
    let started = Instant::now();
    let (status, retry_after, body) = enrol_with_key(client, base, "PIE-TO-TORINO", key).await;
    (status, body, started.elapsed(), retry_after)
}

async fn writer(
    client: reqwest::Client,
    base: String,
    name: usize,
    outcomes: Arc<Mutex<Outcomes>>,
    stop: Arc<AtomicBool>,
) {
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("outage-{name}-{n}");
        let sent = Instant::now();
        let (status, body, took, retry_after) = enrol(&client, &base, &key).await;
        match status {
            201 => {
                let id = body["id"].as_str().expect("an id").to_owned();
                let mut outcomes = outcomes.lock().unwrap();
                outcomes.acknowledged.push((key, id));
                outcomes.last_success = Some(Instant::now());
            }
            503 => {
                assert!(retry_after, "503 without Retry-After: {body}");
                // `outcome_unknown`: the connection died around the commit.
                assert!(
                    matches!(
                        body["code"].as_str(),
                        Some("database_unavailable" | "outcome_unknown")
                    ),
                    "{body}"
                );
                assert!(took <= REFUSAL_BOUND, "refused after {took:?}: {body}");
                {
                    let mut outcomes = outcomes.lock().unwrap();
                    outcomes.refused.push(key);
                    outcomes.last_refusal = Some(sent);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("enrolment answered {other} after {took:?}: {body}"),
        }
    }
}

/// A PostgreSQL of the test's own with a `filiera` database, and `filiera serve` on it with
/// these `[database]` timeouts (the configuration file lives as long as the returned handle).
async fn serve_on_own_postgres(
    acquire_timeout: Duration,
    query_timeout: Duration,
) -> (PgServer, tempfile::NamedTempFile, common::Server) {
    let pg = PgServer::start()
        .await
        .expect("a PostgreSQL of the test's own");
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    admin.execute("CREATE DATABASE filiera").await.unwrap();
    admin.close().await.unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[database]\nacquire_timeout = \"{}ms\"\nquery_timeout = \"{}ms\"\n",
            acquire_timeout.as_millis(),
            query_timeout.as_millis()
        ),
    )
    .unwrap();
    let mut command = filiera(&pg.url("filiera"));
    command.env("FILIERA_CONFIG", config.path());
    let server = start_with(command, &common::client()).await;
    (pg, config, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_loses_nothing_and_recovers_without_a_restart() {
    let (mut pg, _config, server) = serve_on_own_postgres(ACQUIRE_TIMEOUT, QUERY_TIMEOUT).await;
    let client = common::client();
    let base = server.base.clone();

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|name| {
            tokio::spawn(writer(
                client.clone(),
                base.clone(),
                name,
                outcomes.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The database goes away under the writers.
    pg.stop().await.unwrap();
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body, took) = readyz(&client, &base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "database_unavailable", "{body}");
    assert!(took < Duration::from_millis(1500), "/readyz took {took:?}");
    // Reads fail fast too.
    let started = Instant::now();
    let feed = client
        .get(format!("{base}/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 503);
    assert!(started.elapsed() <= REFUSAL_BOUND);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused_during = outcomes.lock().unwrap().refused.len();
    assert!(
        refused_during >= 3,
        "only {refused_during} refusals while down"
    );
    eprintln!(
        "refused {refused_during} writes in {:?} of outage",
        stopped_at.elapsed()
    );

    // It comes back: writes succeed again within seconds, without restarting filiera.
    pg.restart().await.unwrap();
    let back_at = Instant::now();
    let recovered = loop {
        if let Some(at) = outcomes.lock().unwrap().last_success
            && at > back_at
        {
            break at - back_at;
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(15),
            "writes did not resume within 15 s of the database's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("writes resumed {recovered:?} after the database's return");
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    // Connections broken by the restart are replaced, not handed to requests: once a write
    // went through, none sent after it fails.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    {
        let outcomes = outcomes.lock().unwrap();
        let first_success = back_at + recovered;
        assert!(
            outcomes
                .last_refusal
                .is_none_or(|sent| sent <= first_success),
            "a request sent after writes had resumed failed"
        );
    }
    let (status, body, _) = readyz(&client, &base).await;
    assert_eq!(status, 200, "{body}");

    // A refused command may or may not have been committed (the connection died around
    // COMMIT): retrying it with its key answers the first outcome or stores it now.
    let (acknowledged, refused) = {
        let outcomes = outcomes.lock().unwrap();
        (outcomes.acknowledged.clone(), outcomes.refused.clone())
    };
    let mut ids: BTreeSet<String> = acknowledged.iter().map(|(_, id)| id.clone()).collect();
    for key in &refused {
        let (status, body, _, _) = enrol(&client, &base, key).await;
        assert_eq!(status, 201, "retry of {key}: {body}");
        assert!(
            ids.insert(body["id"].as_str().unwrap().to_owned()),
            "{key} reused an id"
        );
    }

    // Every acknowledged enrolment is stored, and each key stored exactly one.
    let stored: Vec<String> = whole_feed(&client, &base)
        .await
        .iter()
        .map(|e| e["beneficiary_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), acknowledged.len() + refused.len());
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), ids);

    // The projection runner took its leadership back and caught up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = get(&client, format!("{base}/v1/metrics")).await;
        if metrics["enrolments"] == ids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "projection stuck: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
}

/// A database that stops answering without closing its connections (a frozen host, a network
/// partition) holds no request longer than the configured timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_holds_no_request_past_the_timeouts() {
    let (pg, _config, server) =
        serve_on_own_postgres(Duration::from_secs(2), Duration::from_secs(3)).await;
    let client = common::client();
    let base = server.base.clone();
    let (status, _, first) = enrol_with_key(&client, &base, "PIE-TO-TORINO", "before").await;
    assert_eq!(status, 201, "{first}");

    pg.freeze().unwrap();
    // A write and a read, each answered 503 within the timeouts (2 s + 3 s, plus slack).
    let started = Instant::now();
    let (status, retry_after, body) =
        enrol_with_key(&client, &base, "PIE-TO-TORINO", "frozen").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(retry_after, "{body}");
    assert!(
        matches!(
            body["code"].as_str(),
            Some("database_unavailable" | "outcome_unknown")
        ),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "the write took {took:?}");
    let started = Instant::now();
    let read = client
        .get(format!(
            "{base}/v1/beneficiaries/{}",
            first["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(8));
    let (status, body, took) = readyz(&client, &base).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_millis(1500), "/readyz took {took:?}");

    // Thawed: the same write goes through (or answers its first outcome), within seconds.
    pg.thaw().unwrap();
    let thawed = Instant::now();
    loop {
        let (status, _, body) = enrol_with_key(&client, &base, "PIE-TO-TORINO", "frozen").await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            thawed.elapsed() < Duration::from_secs(15),
            "no recovery: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let enrolled = whole_feed(&client, &base).await;
    assert_eq!(enrolled.len(), 2, "one enrolment per key");
    drop(server);
}
