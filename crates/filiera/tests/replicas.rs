//! Several `filiera serve` processes on one PostgreSQL database: exactly one runs each
//! projection, and another takes over within seconds when it dies.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

fn pg_admin_url() -> String {
    std::env::var("FILIERA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped at the end.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Self {
        let name = format!("filiera_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("PostgreSQL answers");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create database");
        let admin = pg_admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
        })
        .join();
    }
}

/// A `filiera serve` process, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn filiera(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filiera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FILIERA_") {
            command.env_remove(key);
        }
    }
    command
        .env("FILIERA_DATABASE_URL", database_url)
        .env("FILIERA_LOG", "warn");
    command
}

async fn start(database_url: &str, client: &reqwest::Client) -> Server {
    let port = free_port();
    let child = filiera(database_url)
        .env("FILIERA_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("filiera serve starts");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{}/readyz", server.base)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "filiera serve never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

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
    let db = TestDb::create().await;
    let client = reqwest::Client::new();
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
