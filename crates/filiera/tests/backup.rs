//! Backup and restore, on real processes (docs/operations.md, "Backup and restore"):
//! - `filiera backup` copies a running embedded store while it writes; the copy, used as a
//!   data folder, holds exactly the original's feed up to the position it reports, the same
//!   metrics as the original as known at that event, the personal data and the token secret;
//! - a PostgreSQL store dumped with `pg_dump -Fc` under writes and restored with `pg_restore`
//!   does the same;
//! - the NATS relay of a restored store publishes nothing twice and nothing missing, and
//!   refuses, loudly, a stream that holds events the restored store lacks.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Server, get, whole_feed};
use filiera_testkit::{NatsServer, TestDb, free_port};
use serde_json::{Value, json};

/// `filiera` on the embedded store of `data`, with the data folder's own token secret (not
/// the one [`common::clean_command`] configures), so that the backup has to carry it.
fn embedded(data: &Path) -> Command {
    let mut command = common::clean_command();
    command.env_remove("FILIERA_AUTH_SECRET");
    command.env("FILIERA_DATA_DIR", data);
    command
}

/// Runs `command` to success; its standard output.
fn run(command: &mut Command) -> String {
    let output = command
        .stderr(Stdio::piped())
        .output()
        .expect("filiera runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A client sending `token`.
fn client_with(token: &str) -> reqwest::Client {
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim())).unwrap();
    value.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, value)]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap()
}

/// An administrator's client for the embedded store of `data`, its token issued by
/// `filiera token issue` (which creates the data folder's `auth-secret` if missing).
fn admin_of(data: &Path) -> reqwest::Client {
    client_with(&run(embedded(data).args([
        "token",
        "issue",
        "--role",
        "administrator",
    ])))
}

/// Starts `filiera serve` from `command`, its log appended to `log`, and waits until ready.
async fn serve(command: Command, client: &reqwest::Client, log: &Path) -> Server {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("a log file");
    common::start_on(command, free_port(), file, client).await
}

/// Stops a server as an operator would (SIGTERM: it gives its leaderships up) and waits
/// until it has exited.
async fn stop(mut server: Server) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "filiera serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A generated import file of about `events` events.
fn generate(dir: &Path, events: usize, seed: u64) -> PathBuf {
    let file = dir.join(format!("generated-{seed}.ndjson"));
    run(common::clean_command()
        .args(["generate", "--events", &events.to_string()])
        .args(["--seed", &seed.to_string(), "-o"])
        .arg(&file));
    file
}

/// The identity given with the `n`-th enrolment sent with one.
fn person(n: usize) -> Value {
    json!({"fiscal_code": format!("RSSMRA80A{:02}H501U", n + 1), "given_name": format!("Maria {n}"),
           "family_name": "Rossi"})
}

/// How many enrolments of the writer carry an identity.
const PERSONS: usize = 4;

/// Sends the commands of a generated file over HTTP, one at a time, until the file ends or
/// `stop` is set; the first [`PERSONS`] enrolments carry an identity. Pauses a few
/// milliseconds after each command, so that two commands never share a `recorded_at`
/// millisecond: the events after a position are then exactly those recorded after its
/// event's `recorded_at`. Counts the commands sent in `sent`; returns the ids of the
/// beneficiaries enrolled with an identity.
async fn write_history(
    client: reqwest::Client,
    base: String,
    file: PathBuf,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(file).expect("the generated file");
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut persons = Vec::new();
    for line in text.lines() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let mut body: serde_json::Map<String, Value> =
            serde_json::from_str(line).expect("an object");
        let reference = body.remove("beneficiary").expect("a reference");
        let reference = reference.as_str().expect("a text reference").to_owned();
        let command = body.remove("command").expect("a command");
        let command = command.as_str().expect("a command name");
        let id = || ids[&reference].clone();
        let path = match command {
            "enrol" => "/v1/beneficiaries".to_owned(),
            "stage" => format!("/v1/beneficiaries/{}/stage", id()),
            "exit" => format!("/v1/beneficiaries/{}/stage/exit", id()),
            "territory" => format!("/v1/beneficiaries/{}/territory", id()),
            "close" => format!("/v1/beneficiaries/{}/close", id()),
            "reopen" => format!("/v1/beneficiaries/{}/reopen", id()),
            "assess" => format!("/v1/beneficiaries/{}/assessment", id()),
            "undo" => format!("/v1/beneficiaries/{}/undo", id()),
            other => panic!("unknown command {other}"),
        };
        let with_person = command == "enrol" && persons.len() < PERSONS;
        if with_person {
            body.insert("person".into(), person(persons.len()));
        }
        let response = client
            .post(format!("{base}{path}"))
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{command} {path}: {status} {answer}");
        if command == "enrol" {
            let id = answer["id"].as_str().expect("an id").to_owned();
            if with_person {
                persons.push((id.clone(), person(persons.len())));
            }
            ids.insert(reference, id);
        }
        sent.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    persons
}

/// Waits until `sent` reaches `n`.
async fn wait_sent(sent: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Acquire) < n {
        assert!(
            Instant::now() < deadline,
            "the writer never sent {n} commands"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The feed head of a server.
async fn head(client: &reqwest::Client, base: &str) -> i64 {
    whole_feed(client, base)
        .await
        .last()
        .map_or(0, |e| e["position"].as_i64().unwrap())
}

/// Waits until the server's projection has applied its whole feed.
async fn projection_caught_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get(client, format!("{base}/v1/projections")).await;
        let projection = &status["projections"][0];
        if projection["leader"] == true && projection["lag"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the projection never caught up: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `filiera report` (`extra` options) on the store `command` opens, as JSON.
fn report(mut command: Command, extra: &[&str]) -> Value {
    serde_json::from_str(&run(command.arg("report").args(extra))).expect("a JSON report")
}

/// The restored copy (served at `restored`, its offline reports by `restored_cli`) holds the
/// original (served at `original`, its offline reports by `original_cli`) exactly as it was
/// at `position`: the same feed up to there and nothing after, the same metrics as known at
/// that event, the same identities. Returns the `recorded_at` of the event at `position`.
async fn assert_restored_at(
    position: i64,
    (original, original_client, original_cli): (&str, &reqwest::Client, &dyn Fn() -> Command),
    (restored, restored_client, restored_cli): (&str, &reqwest::Client, &dyn Fn() -> Command),
    persons: &[(String, Value)],
) -> String {
    let original_feed = whole_feed(original_client, original).await;
    let restored_feed = whole_feed(restored_client, restored).await;
    let prefix: Vec<Value> = original_feed
        .iter()
        .filter(|e| e["position"].as_i64().unwrap() <= position)
        .cloned()
        .collect();
    assert!(
        prefix.len() < original_feed.len(),
        "the original must have written after the backup for this test to mean anything"
    );
    assert_eq!(
        restored_feed
            .last()
            .map(|e| e["position"].as_i64().unwrap()),
        Some(position),
        "the restored feed ends at the backup's position"
    );
    assert!(
        restored_feed == prefix,
        "the restored feed is the original's prefix"
    );

    // The events after `position` were all recorded later than the one at `position`.
    let at = |e: &Value| {
        e["recorded_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    let known_at = prefix.last().unwrap()["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = &original_feed[prefix.len()];
    assert!(
        at(next) > at(prefix.last().unwrap()),
        "{next} shares the last backed-up event's instant"
    );

    // Metrics: offline on the original as known at that event, offline on the copy, and
    // online on the restored server (its read model came with the copy and caught up).
    projection_caught_up(restored_client, restored).await;
    let period = ["--from", "2000-01-01", "--to", "2030-12-31"];
    let mut options = period.to_vec();
    options.extend(["--known-at", known_at.as_str()]);
    let expected = report(original_cli(), &options);
    assert!(expected["enrolments"].as_u64().unwrap() > 0, "{expected}");
    assert_eq!(report(restored_cli(), &options), expected);
    let online_then = get(
        restored_client,
        format!("{restored}/v1/metrics?from=2000-01-01&to=2030-12-31&known_at={known_at}"),
    )
    .await;
    assert_eq!(online_then, expected, "online metrics of the restored copy");
    let mut online = get(
        restored_client,
        format!("{restored}/v1/metrics?from=2000-01-01&to=2030-12-31"),
    )
    .await;
    assert_ne!(online["query"]["known_at"], expected["query"]["known_at"]);
    online["query"]["known_at"] = expected["query"]["known_at"].clone();
    assert_eq!(
        online, expected,
        "the restored copy knows nothing after the backup"
    );
    let mut breakdown = options.clone();
    breakdown.push("--breakdown");
    assert_eq!(
        report(restored_cli(), &breakdown),
        report(original_cli(), &breakdown)
    );

    // The identities of the beneficiaries the copy holds read the same on both; the others
    // are not there.
    assert!(!persons.is_empty());
    let mut held = 0;
    for (id, person) in persons {
        let enrolled_at = original_feed
            .iter()
            .find(|e| e["beneficiary_id"] == id.as_str())
            .map(|e| e["position"].as_i64().unwrap())
            .expect("an enrolment");
        let read = get(
            original_client,
            format!("{original}/v1/beneficiaries/{id}/person"),
        )
        .await;
        assert_eq!(&read, person);
        let response = restored_client
            .get(format!("{restored}/v1/beneficiaries/{id}/person"))
            .send()
            .await
            .unwrap();
        if enrolled_at <= position {
            held += 1;
            assert_eq!(response.status(), 200);
            assert_eq!(&response.json::<Value>().await.unwrap(), person);
        } else {
            assert_eq!(response.status(), 404);
        }
    }
    assert!(held > 0, "no identity was enrolled before the backup");
    known_at
}

/// The mode bits of a file or folder.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// SQLite's integrity check of a database file, opened read-only.
async fn integrity_check(file: &Path) -> Vec<String> {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("the copy opens");
    let rows = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check");
    conn.close().await.unwrap();
    rows
}

/// `cp -a`: a restore copies the backup folder whole.
fn copy_folder(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_the_store_as_it_was_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let log = dir.path().join("serve.log");
    // A history imported first, then more written over HTTP while the backup runs.
    run(embedded(&original)
        .arg("import")
        .arg(generate(dir.path(), 3_000, 7)));
    let client = admin_of(&original);
    let server = serve(embedded(&original), &client, &log).await;
    let stop_writing = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_history(
        client.clone(),
        server.base.clone(),
        generate(dir.path(), 2_000, 8),
        Arc::clone(&stop_writing),
        Arc::clone(&sent),
    ));
    wait_sent(&sent, 60).await;

    let backup = dir.path().join("backup");
    let before = head(&client, &server.base).await;
    let mut command = embedded(&original);
    command.arg("backup").arg(&backup);
    let printed = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    let after = head(&client, &server.base).await;
    let printed: Value = serde_json::from_str(&printed).expect("one JSON line");
    let position = printed["position"].as_i64().expect("the position held");
    assert!(
        before <= position && position <= after && before < after,
        "writes went on during the backup: {before} <= {position} <= {after}"
    );
    assert_eq!(
        printed["files"],
        json!(["filiera.db", "master.key", "auth-secret"])
    );
    assert_eq!(printed["backup"], backup.display().to_string());
    // More writes after the backup, which the copy must not hold.
    let sent_then = sent.load(Ordering::Acquire);
    wait_sent(&sent, sent_then + 30).await;
    stop_writing.store(true, Ordering::Release);
    let persons = writer.await.unwrap();
    assert_eq!(persons.len(), PERSONS);
    let events = whole_feed(&client, &server.base)
        .await
        .iter()
        .filter(|e| e["position"].as_i64().unwrap() <= position)
        .count();
    assert_eq!(printed["events"], events as i64);

    // The backup folder: owner-only, an intact database, the same keys.
    assert_eq!(mode(&backup), 0o700);
    for file in ["filiera.db", "master.key", "auth-secret"] {
        assert_eq!(mode(&backup.join(file)), 0o600, "{file}");
    }
    for file in ["master.key", "auth-secret"] {
        assert_eq!(
            std::fs::read(backup.join(file)).unwrap(),
            std::fs::read(original.join(file)).unwrap()
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(&backup)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["auth-secret", "filiera.db", "master.key"]);
    assert_eq!(integrity_check(&backup.join("filiera.db")).await, ["ok"]);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial")),
        "no staging folder is left behind"
    );

    // Restored: the backup folder copied whole becomes a data folder. The original's token
    // works there (the token secret came along).
    let restored = dir.path().join("restored");
    copy_folder(&backup, &restored);
    let restored_server = serve(embedded(&restored), &client, &log).await;
    let original_cli = || embedded(&original);
    let restored_cli = || embedded(&restored);
    assert_restored_at(
        position,
        (&server.base, &client, &original_cli),
        (&restored_server.base, &client, &restored_cli),
        &persons,
    )
    .await;

    // The restored store goes on from its position.
    let (status, _, _) =
        common::enrol_with_key(&client, &restored_server.base, "LOM-BG-BERGAMO", "after").await;
    assert_eq!(status, 201);
    assert_eq!(head(&client, &restored_server.base).await, position + 1);
    stop(restored_server).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refuses_what_it_cannot_copy_safely() {
    let dir = tempfile::tempdir().unwrap();
    // No store there: nothing is created.
    let missing = dir.path().join("nothing-here");
    let output = embedded(&missing)
        .arg("backup")
        .arg(dir.path().join("b1"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no embedded store"), "{stderr}");
    assert!(!missing.exists() && !dir.path().join("b1").exists());

    // Never over an existing folder's contents.
    let data = dir.path().join("data");
    run(embedded(&data).arg("migrate"));
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), "mine").unwrap();
    let output = embedded(&data)
        .arg("backup")
        .arg(&occupied)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(occupied.join("keep.txt")).unwrap(),
        "mine"
    );
    // An empty folder is fine; the master key configured elsewhere is not in the backup,
    // which says so.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = embedded(&data)
        .env(
            "FILIERA_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .arg("backup")
        .arg(&empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("the backup does not hold it"), "{stderr}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["position"], 0);
    assert_eq!(printed["files"], json!(["filiera.db"]));

    // PostgreSQL: pg_dump or PITR.
    let output = common::filiera("postgres://postgres@127.0.0.1:5432/unused")
        .arg("backup")
        .arg(dir.path().join("b2"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("pg_dump") && stderr.contains("WAL archiving"),
        "{stderr}"
    );
    assert!(!dir.path().join("b2").exists());
}

/// Runs a PostgreSQL client program (`pg_dump`, `pg_restore`) to success.
fn pg_tool(command: &mut Command) {
    let output = command
        .output()
        .expect("the PostgreSQL client tools are installed");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_taken_under_writes_restores_with_pg_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create().await.expect("test database");
    let log = dir.path().join("serve.log");
    let client = common::client();
    run(common::filiera(&db.url)
        .arg("import")
        .arg(generate(dir.path(), 3_000, 11)));
    let server = serve(common::filiera(&db.url), &client, &log).await;
    let stop_writing = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_history(
        client.clone(),
        server.base.clone(),
        generate(dir.path(), 2_000, 12),
        Arc::clone(&stop_writing),
        Arc::clone(&sent),
    ));
    wait_sent(&sent, 60).await;

    // The documented dump: custom format, one consistent snapshot, taken while writing.
    let dump = dir.path().join("filiera.dump");
    let before = head(&client, &server.base).await;
    let mut command = Command::new("pg_dump");
    command
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(format!("--dbname={}", db.url));
    tokio::task::spawn_blocking(move || pg_tool(&mut command))
        .await
        .unwrap();
    let after = head(&client, &server.base).await;
    assert!(before < after, "writes went on during the dump");
    let sent_then = sent.load(Ordering::Acquire);
    wait_sent(&sent, sent_then + 30).await;
    stop_writing.store(true, Ordering::Release);
    let persons = writer.await.unwrap();

    // Restored into a fresh database, and served.
    let restored = TestDb::create().await.expect("a database to restore into");
    pg_tool(
        Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error"])
            .arg(format!("--dbname={}", restored.url))
            .arg(&dump),
    );
    let restored_server = serve(common::filiera(&restored.url), &client, &log).await;
    let position = head(&client, &restored_server.base).await;
    assert!(
        before <= position && position <= after,
        "{before} <= {position} <= {after}"
    );
    let original_cli = || common::filiera(&db.url);
    let restored_cli = || common::filiera(&restored.url);
    assert_restored_at(
        position,
        (&server.base, &client, &original_cli),
        (&restored_server.base, &client, &restored_cli),
        &persons,
    )
    .await;

    // Positions go on above the dump's (its sequence came along).
    let (status, _, _) =
        common::enrol_with_key(&client, &restored_server.base, "LOM-BG-BERGAMO", "after").await;
    assert_eq!(status, 201);
    assert!(head(&client, &restored_server.base).await > position);
    stop(restored_server).await;
    stop(server).await;
}

/// Every message of `FILIERA_EVENTS` as (CloudEvent id, feed position), in stream order.
async fn stream_contents(nats: &NatsServer) -> Vec<(String, i64)> {
    use futures::StreamExt as _;
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("FILIERA_EVENTS").await.expect("stream");
    let count = stream.info().await.expect("info").state.messages;
    if count == 0 {
        return Vec::new();
    }
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
        let event: Value = serde_json::from_slice(&message.payload).expect("CloudEvent JSON");
        out.push((
            event["id"].as_str().unwrap().to_owned(),
            event["data"]["position"].as_i64().unwrap(),
        ));
    }
    out
}

/// The feed as (CloudEvent id, position) pairs, after `after`.
async fn feed_ids(client: &reqwest::Client, base: &str, after: i64) -> Vec<(String, i64)> {
    whole_feed(client, base)
        .await
        .iter()
        .map(|e| {
            (
                format!(
                    "{}:{}",
                    e["beneficiary_id"].as_str().unwrap(),
                    e["sequence"]
                ),
                e["position"].as_i64().unwrap(),
            )
        })
        .filter(|(_, position)| *position > after)
        .collect()
}

async fn relay_status(client: &reqwest::Client, base: &str) -> Value {
    get(client, format!("{base}/v1/projections")).await["relay"].clone()
}

/// Waits until the relay of `base` leads and has published its whole feed.
async fn relay_caught_up(client: &reqwest::Client, base: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let relay = relay_status(client, base).await;
        if relay["leading"] == true && relay["lag"] == 0 && relay["last_error"].is_null() {
            return relay;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never caught up: {relay}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn enrol(client: &reqwest::Client, base: &str, n: usize) {
    for _ in 0..n {
        let response = client
            .post(format!("{base}/v1/beneficiaries"))
            .json(&json!({"territory": "PIE-TO-TORINO", "on": "2024-02-01", "referral": "self"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_after_a_restore_publishes_nothing_twice_and_refuses_an_older_backup() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start().await.expect("nats-server");
    let original = dir.path().join("original");
    let log = dir.path().join("serve.log");
    let client = admin_of(&original);
    let with_nats = |data: &Path| {
        let mut command = embedded(data);
        command.env("FILIERA_NATS_URL", nats.url());
        command
    };

    // 1..4 published; 5..7 written while NATS is not configured; the backup holds 1..7
    // with the relay checkpoint at 4.
    let server = serve(with_nats(&original), &client, &log).await;
    enrol(&client, &server.base, 4).await;
    assert_eq!(relay_caught_up(&client, &server.base).await["position"], 4);
    stop(server).await;
    let server = serve(embedded(&original), &client, &log).await;
    enrol(&client, &server.base, 3).await;
    let backup = dir.path().join("backup");
    let printed: Value =
        serde_json::from_str(&run(embedded(&original).arg("backup").arg(&backup))).unwrap();
    assert_eq!(printed["position"], 7);
    stop(server).await;
    // The original publishes 5..7 before it is lost: the stream is ahead of the backup's
    // checkpoint, not of its feed.
    let server = serve(with_nats(&original), &client, &log).await;
    assert_eq!(relay_caught_up(&client, &server.base).await["position"], 7);
    assert_eq!(
        stream_contents(&nats).await,
        feed_ids(&client, &server.base, 0).await
    );
    stop(server).await;

    // Restored: the relay skips what the stream holds, then publishes the new events.
    let restored = dir.path().join("restored");
    copy_folder(&backup, &restored);
    let server = serve(with_nats(&restored), &client, &log).await;
    enrol(&client, &server.base, 3).await;
    let relay = relay_caught_up(&client, &server.base).await;
    assert_eq!(relay["position"], 10);
    assert_eq!(relay["published_total"], 3, "only the new events: {relay}");
    let published = stream_contents(&nats).await;
    assert_eq!(
        published,
        feed_ids(&client, &server.base, 0).await,
        "every event of the restored feed exactly once, in order"
    );
    stop(server).await;

    // A second restore of the same backup is older than the stream (which holds 8..10 of the
    // first): its relay publishes nothing, and says why in the log and in its status.
    let older = dir.path().join("older");
    copy_folder(&backup, &older);
    let older_log = dir.path().join("older.log");
    let server = serve(with_nats(&older), &client, &older_log).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let relay = relay_status(&client, &server.base).await;
        if relay["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("restored from a backup older than the stream"))
        {
            break relay;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never refused: {relay}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["position"], 4, "{refused}");
    let error = refused["last_error"].as_str().unwrap();
    assert!(
        error.contains("up to position 10") && error.contains("ends at position 7"),
        "{error}"
    );
    // New events take positions the stream already holds (8, 9, 10, 11): still refused,
    // nothing published, after several more attempts.
    enrol(&client, &server.base, 4).await;
    let errors = relay_status(&client, &server.base).await["publish_errors_total"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let relay = relay_status(&client, &server.base).await;
        if relay["publish_errors_total"].as_u64().unwrap() >= errors + 2 {
            break relay;
        }
        assert!(
            Instant::now() < deadline,
            "the relay stopped retrying: {relay}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["published_total"], 0, "{refused}");
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("restored from an older backup")),
        "{refused}"
    );
    assert_eq!(
        stream_contents(&nats).await,
        published,
        "the stream is untouched"
    );
    let logged = std::fs::read_to_string(&older_log).unwrap();
    assert!(
        logged.contains("ERROR") && logged.contains("the NATS relay publishes nothing"),
        "{logged}"
    );

    // The operator's way out when the newer store is lost for good: delete the stream (a
    // purge would not do: the server would still drop events 5..7 as duplicates of the lost
    // ones' ids for the rest of its duplicate window); the relay creates it again and
    // publishes the restored store's events after its checkpoint.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    assert!(js.delete_stream("FILIERA_EVENTS").await.unwrap().success);
    let relay = relay_caught_up(&client, &server.base).await;
    assert_eq!(relay["position"], 11, "{relay}");
    assert_eq!(
        stream_contents(&nats).await,
        feed_ids(&client, &server.base, 4).await
    );
    stop(server).await;
}
