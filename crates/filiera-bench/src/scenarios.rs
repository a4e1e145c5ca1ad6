//! `filiera bench --json`: the paths administrators and evaluators take, measured by running
//! the `filiera` binary as they run it — `generate`, `import`, `report`, `rebuild`, and `serve`
//! answering HTTP — on one real store, each figure beside a raw baseline taken in the same run,
//! on the same database, on the same rows:
//!
//! | scenario | filiera | raw baseline |
//! |---|---|---|
//! | `import` | `filiera import` of a generated file, events/s | PostgreSQL: `COPY` of the stored rows into a table with the same keys and no triggers; SQLite: `INSERT … SELECT` of them into such a table, one transaction |
//! | `replay` | `filiera report` (process start, scan, fold), events/s | a raw scan of the events table in position order (`COPY … TO STDOUT` / `SELECT *`) |
//! | `rebuild` | `filiera rebuild` (a new generation from position 0), events/s | the same raw scan |
//! | `ingest` | HTTP commands/s by concurrent clients, each command writing one event | single-row `INSERT`s of the same rows by as many clients, each its own transaction |
//! | `query` | p50/p99 of `GET /v1/metrics` (region, ambito), `/breakdown` (a region of 600 ambiti), `/series` (24 months) | |
//! | `memory` | peak RSS of `filiera serve` after all of the above | |
//!
//! The data is the benchmark's mix ([`crate::generate::Territories::Bench`]), written into a
//! configuration file whose registry holds its territories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

use crate::generate::bench_services;
use crate::{BenchError, Machine};

/// Where and how much to measure.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// The `filiera` binary to run.
    pub exe: PathBuf,
    /// About this many events are generated and imported.
    pub events: usize,
    pub seed: u64,
    /// PostgreSQL through this admin URL (a scratch database is created and dropped), or the
    /// embedded SQLite in a temporary folder.
    pub postgres_admin_url: Option<String>,
    /// Concurrent HTTP clients (and raw inserters) of the ingest scenario.
    pub clients: usize,
    /// Commands the ingest scenario sends, over all clients.
    pub ingest_commands: usize,
    /// Timed runs of each query (after one untimed).
    pub query_runs: usize,
    /// `[database] group_commit` of every process the benchmark runs.
    pub group_commit: bool,
}

/// The document `filiera bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// Events stored by the import.
    pub events: u64,
    /// `postgres` or `sqlite`.
    pub store: &'static str,
    /// Whether the system ran with group commit (`--no-group-commit` turns it off).
    pub group_commit: bool,
    pub machine: Machine,
    pub scenarios: Scenarios,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scenarios {
    pub ingest: Ingest,
    pub import: Against,
    pub replay: Against,
    pub rebuild: Against,
    pub query: Queries,
    pub memory: Memory,
}

/// A throughput beside its raw baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Against {
    pub value: f64,
    pub unit: &'static str,
    pub baseline: f64,
    /// `value / baseline`.
    pub ratio: f64,
    pub seconds: f64,
    pub baseline_seconds: f64,
    /// What the baseline did.
    pub baseline_is: &'static str,
    /// Peak resident memory of the `filiera` process.
    pub peak_rss_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ingest {
    pub value: f64,
    pub unit: &'static str,
    pub baseline: f64,
    pub ratio: f64,
    /// Per request, over all clients.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub clients: usize,
    pub commands: usize,
    /// Events the commands wrote (one each).
    pub events: u64,
    pub baseline_is: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Queries {
    pub region_p50_ms: f64,
    pub region_p99_ms: f64,
    pub ambito_p50_ms: f64,
    pub ambito_p99_ms: f64,
    pub breakdown_p50_ms: f64,
    pub breakdown_p99_ms: f64,
    pub series24_p50_ms: f64,
    pub series24_p99_ms: f64,
    /// Timed runs of each.
    pub runs: usize,
    /// Children of the breakdown's territory.
    pub breakdown_children: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// `filiera serve`, after the queries and the ingest.
    pub peak_rss_mib: f64,
}

/// The period of every query.
const FROM: &str = "2024-01-01";
const TO: &str = "2025-06-30";
/// The region, one of its ambiti, and the region of 600 ambiti.
const REGION: &str = "LOM";
const AMBITO: &str = "LOM-MI-MILANO";
const WIDE_REGION: &str = crate::generate::SYNTHETIC;

/// Runs every scenario on one store.
pub async fn scenarios(
    options: &ScenarioOptions,
    mut progress: impl FnMut(&str),
) -> Result<ScenarioReport, BenchError> {
    let dir = tempfile::tempdir()?;
    let (url, scratch, store) = match &options.postgres_admin_url {
        Some(admin) => {
            let db = crate::stores::scratch_database(admin).await?;
            (db.url.clone(), Some(db), "postgres")
        }
        None => (
            format!("sqlite://{}", dir.path().join("filiera.db").display()),
            None,
            "sqlite",
        ),
    };
    let filiera = Filiera::new(options, dir.path(), &url)?;
    let mut machine = Machine::probe();

    progress(&format!("generating about {} events", options.events));
    let file = dir.path().join("history.ndjson");
    filiera
        .run(&[
            "generate",
            "--bench-territories",
            "--events",
            &options.events.to_string(),
            "--seed",
            &options.seed.to_string(),
            "-o",
            &path_arg(&file),
        ])
        .await?;

    progress(&format!("{store}: filiera import"));
    let import = filiera
        .run(&["import", "--batch", "bench", &path_arg(&file)])
        .await?;
    let raw = RawStore::connect(&url).await?;
    match &raw {
        RawStore::Postgres(pool) => {
            machine.postgres = Some(
                sqlx::query_scalar("SELECT version()")
                    .fetch_one(pool)
                    .await?,
            )
        }
        RawStore::Sqlite(pool) => {
            machine.sqlite = Some(
                sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(pool)
                    .await?,
            )
        }
    }
    let events = raw.count_events().await?;
    progress(&format!("{store}: {events} events imported; raw bulk load"));
    let bulk = raw.bulk_load(dir.path()).await?;
    let import = Against::new(events, "events/s", &import, bulk, raw.bulk_load_is());

    progress(&format!("{store}: filiera report, raw scan"));
    let scan = raw.scan().await?;
    let report = filiera
        .run(&[
            "report",
            "--territory",
            REGION,
            "--from",
            FROM,
            "--to",
            TO,
            "-o",
            &path_arg(&dir.path().join("report.json")),
        ])
        .await?;
    let replay = Against::new(events, "events/s", &report, scan, raw.scan_is());

    progress(&format!("{store}: filiera rebuild"));
    // The first run also fills the projection's first generation; the second is a rebuild.
    filiera.run(&["rebuild"]).await?;
    let rebuilt = filiera.run(&["rebuild"]).await?;
    let scan = raw.scan().await?;
    let rebuild = Against::new(events, "events/s", &rebuilt, scan, raw.scan_is());

    progress(&format!("{store}: filiera serve, queries"));
    let server = filiera.serve().await?;
    let query = queries(&server, options.query_runs).await?;

    progress(&format!(
        "{store}: ingest, {} commands by {} clients",
        options.ingest_commands, options.clients
    ));
    let head = raw.head().await?;
    let (elapsed, latencies) = ingest(&server, options).await?;
    let written = raw.count_events().await? - events;
    let memory = Memory {
        peak_rss_mib: peak_rss_mib(server.pid()),
    };
    drop(server);
    let (inserted, insert_time) = raw.insert_rows_after(head, options.clients).await?;
    let commands = latencies.len();
    let value = commands as f64 / elapsed.as_secs_f64();
    let baseline = inserted as f64 / insert_time.as_secs_f64();
    let ingest = Ingest {
        value: round(value),
        unit: "commands/s",
        baseline: round(baseline),
        ratio: round3(value / baseline),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        clients: options.clients,
        commands,
        events: written,
        baseline_is: "single-row INSERTs of the rows the commands wrote, one transaction each, \
                      by as many clients, into a table with the same keys and no triggers",
    };
    raw.close().await;
    drop(scratch);
    Ok(ScenarioReport {
        events,
        store,
        group_commit: options.group_commit,
        machine,
        scenarios: Scenarios {
            ingest,
            import,
            replay,
            rebuild,
            query,
            memory,
        },
    })
}

impl Against {
    fn new(
        count: u64,
        unit: &'static str,
        run: &Run,
        baseline: Duration,
        baseline_is: &'static str,
    ) -> Self {
        let value = count as f64 / run.elapsed.as_secs_f64();
        let base = count as f64 / baseline.as_secs_f64();
        Self {
            value: round(value),
            unit,
            baseline: round(base),
            ratio: round3(value / base),
            seconds: round3(run.elapsed.as_secs_f64()),
            baseline_seconds: round3(baseline.as_secs_f64()),
            baseline_is,
            peak_rss_mib: run.peak_rss_mib,
        }
    }
}

/// The `filiera` binary with the benchmark's configuration and store.
struct Filiera {
    exe: PathBuf,
    env: Vec<(&'static str, String)>,
    listen: String,
}

/// A finished `filiera` process.
struct Run {
    elapsed: Duration,
    peak_rss_mib: f64,
}

impl Filiera {
    fn new(options: &ScenarioOptions, dir: &Path, url: &str) -> Result<Self, BenchError> {
        let config = dir.join("filiera.toml");
        std::fs::write(&config, bench_configuration(options.group_commit))?;
        let listen = format!("127.0.0.1:{}", filiera_testkit::free_port());
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Ok(Self {
            exe: options.exe.clone(),
            env: vec![
                ("FILIERA_CONFIG", path_arg(&config)),
                ("FILIERA_DATABASE_URL", url.to_owned()),
                ("FILIERA_DATA_DIR", path_arg(&dir.join("data"))),
                ("FILIERA_AUTH_SECRET", secret),
                ("FILIERA_LISTEN", listen.clone()),
                ("FILIERA_LOG", "warn".to_owned()),
            ],
            listen,
        })
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.exe);
        // Nothing of the caller's own configuration (its NATS, its master key) leaks in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FILIERA_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs `filiera args…` to its end; fails unless it succeeds.
    async fn run(&self, args: &[&str]) -> Result<Run, BenchError> {
        let started = Instant::now();
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let pid = child.id();
        let mut stderr = child.stderr.take();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(stderr) = &mut stderr {
                let _ = tokio::io::AsyncReadExt::read_to_string(stderr, &mut text).await;
            }
            text
        });
        // The high-water mark, read until the process ends.
        let mut peak = 0.0f64;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    peak = peak.max(peak_rss_mib(pid));
                }
            }
        };
        let elapsed = started.elapsed();
        let errors = errors.await?;
        if !status.success() {
            return Err(BenchError::Check(format!(
                "`filiera {}` failed ({status}): {errors}",
                args.join(" ")
            )));
        }
        Ok(Run {
            elapsed,
            peak_rss_mib: peak,
        })
    }

    /// Prints a token: `filiera token issue args…`.
    async fn token(&self, args: &[&str]) -> Result<String, BenchError> {
        let output = self
            .command(&[&["token", "issue"], args].concat())
            .output()
            .await?;
        if !output.status.success() {
            return Err(BenchError::Check(format!(
                "`filiera token issue` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `filiera serve`, once its projection has caught up with the feed.
    async fn serve(&self) -> Result<Server, BenchError> {
        let administrator = self.token(&["--role", "administrator"]).await?;
        let evaluator = self.token(&["--role", "evaluator"]).await?;
        let operator = self
            .token(&["--role", "operator", "--territory", REGION])
            .await?;
        let child = self
            .command(&["serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let server = Server {
            base: format!("http://{}", self.listen),
            http: reqwest::Client::new(),
            child,
            evaluator,
            operator,
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let status = server
                .http
                .get(format!("{}/v1/projections", server.base))
                .bearer_auth(&administrator)
                .send()
                .await;
            if let Ok(response) = status
                && response.status().is_success()
            {
                let page: Value = response.json().await?;
                let live = page["projections"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["lag"] == 0 && p["state"] == "live"));
                if live {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Check(
                    "filiera serve did not catch up within 10 minutes".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A running `filiera serve`, stopped when dropped.
struct Server {
    base: String,
    http: reqwest::Client,
    child: tokio::process::Child,
    evaluator: String,
    operator: String,
}

impl Server {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `GET path` as the evaluator; fails unless it answers 200.
    async fn get(&self, path: &str) -> Result<Value, BenchError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.evaluator)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(BenchError::Check(format!("GET {path}: {status} {body}")));
        }
        Ok(body)
    }
}

/// The latencies of each query, one untimed run first (it loads the query cache).
async fn queries(server: &Server, runs: usize) -> Result<Queries, BenchError> {
    let metrics =
        |territory: &str| format!("/v1/metrics?territory={territory}&from={FROM}&to={TO}");
    let breakdown = format!("/v1/metrics/breakdown?territory={WIDE_REGION}&from={FROM}&to={TO}");
    let series =
        format!("/v1/metrics/series?territory={REGION}&from=2023-07-01&to={TO}&interval=month");
    let mut timings = Vec::new();
    let mut children = 0;
    for path in [metrics(REGION), metrics(AMBITO), breakdown, series] {
        let first = server.get(&path).await?;
        if let Some(list) = first["children"].as_array() {
            children = list.len();
        }
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            server.get(&path).await?;
            samples.push(started.elapsed());
        }
        timings.push(samples);
    }
    let p = |i: usize, q: f64| percentile(&timings[i], q);
    Ok(Queries {
        region_p50_ms: p(0, 0.5),
        region_p99_ms: p(0, 0.99),
        ambito_p50_ms: p(1, 0.5),
        ambito_p99_ms: p(1, 0.99),
        breakdown_p50_ms: p(2, 0.5),
        breakdown_p99_ms: p(2, 0.99),
        series24_p50_ms: p(3, 0.5),
        series24_p99_ms: p(3, 0.99),
        runs: runs.max(1),
        breakdown_children: children,
    })
}

/// `clients` clients send `ingest_commands` commands in all, each writing one event: an
/// enrolment, a needs assessment and a first stage entry per beneficiary. Returns the elapsed
/// time and every request's latency.
async fn ingest(
    server: &Server,
    options: &ScenarioOptions,
) -> Result<(Duration, Vec<Duration>), BenchError> {
    let per_client = options.ingest_commands.div_ceil(options.clients.max(1));
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.clients.max(1))
        .map(|_| {
            let (http, base, token) = (
                server.http.clone(),
                server.base.clone(),
                server.operator.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                let mut id = String::new();
                for n in 0..per_client {
                    let (path, body) = match n % 3 {
                        0 => (
                            "/v1/beneficiaries".to_owned(),
                            serde_json::json!({"territory": "LOM-BG-BERGAMO", "on": "2025-01-10",
                                               "referral": "social_services"}),
                        ),
                        1 => (
                            format!("/v1/beneficiaries/{id}/assessment"),
                            serde_json::json!({"on": "2025-01-12", "kind": "initial",
                                               "occupability": "medium",
                                               "team": ["social_services"]}),
                        ),
                        _ => (
                            format!("/v1/beneficiaries/{id}/stage"),
                            serde_json::json!({"stage": "socio_occupational", "on": "2025-01-15"}),
                        ),
                    };
                    let sent = Instant::now();
                    let response = http
                        .post(format!("{base}{path}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?;
                    let status = response.status();
                    let answer: Value = response.json().await?;
                    latencies.push(sent.elapsed());
                    if !status.is_success() {
                        return Err(BenchError::Check(format!("POST {path}: {status} {answer}")));
                    }
                    if n % 3 == 0 {
                        id = answer["id"].as_str().unwrap_or_default().to_owned();
                    }
                }
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((started.elapsed(), latencies))
}

/// The benchmark's database, reached directly for the baselines.
enum RawStore {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// The columns of `events`, in table order.
const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
                       payload, metadata, position, recorded_at";

impl RawStore {
    async fn connect(url: &str) -> Result<Self, BenchError> {
        Ok(if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            // The store's durability: every commit waits for the disk.
            let options = options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            Self::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?,
            )
        } else {
            Self::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(40)
                    .connect(url)
                    .await?,
            )
        })
    }

    async fn close(self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }

    async fn count_events(&self) -> Result<u64, BenchError> {
        let sql = "SELECT count(*) FROM events";
        let count: i64 = match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        };
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn head(&self) -> Result<i64, BenchError> {
        let sql = "SELECT coalesce(max(position), 0) FROM events";
        Ok(match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// An empty copy of `events` named `table`: the same columns and keys, no triggers.
    async fn copy_table(&self, table: &str) -> Result<(), BenchError> {
        match self {
            Self::Postgres(pool) => {
                pool.execute(
                    format!(
                        "DROP TABLE IF EXISTS {table}; \
                         CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS \
                                               INCLUDING CONSTRAINTS INCLUDING INDEXES)"
                    )
                    .as_str(),
                )
                .await?;
            }
            Self::Sqlite(pool) => {
                pool.execute(
                    format!(
                        "DROP TABLE IF EXISTS {table}; \
                         CREATE TABLE {table} AS SELECT * FROM events LIMIT 0; \
                         CREATE UNIQUE INDEX {table}_key \
                             ON {table} (aggregate_type, aggregate_id, sequence); \
                         CREATE UNIQUE INDEX {table}_position ON {table} (position)"
                    )
                    .as_str(),
                )
                .await?;
            }
        }
        Ok(())
    }

    fn bulk_load_is(&self) -> &'static str {
        match self {
            Self::Postgres(_) => {
                "COPY of the stored rows (copied out to a file first) into a table with the same \
                 keys and no triggers"
            }
            Self::Sqlite(_) => {
                "INSERT … SELECT of the stored rows into a table with the same keys and no \
                 triggers, one transaction"
            }
        }
    }

    /// Loads every stored row into an empty copy of `events` the fastest raw way; returns how
    /// long the load took.
    async fn bulk_load(&self, dir: &Path) -> Result<Duration, BenchError> {
        self.copy_table("bench_bulk").await?;
        let elapsed = match self {
            Self::Postgres(pool) => {
                let file = dir.join("events.copy");
                {
                    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(&file).await?);
                    let mut conn = pool.acquire().await?;
                    let mut rows = conn.copy_out_raw(&copy_out_events()).await?;
                    while let Some(bytes) = rows.next().await {
                        tokio::io::AsyncWriteExt::write_all(&mut out, &bytes?).await?;
                    }
                    tokio::io::AsyncWriteExt::flush(&mut out).await?;
                }
                let mut conn = pool.acquire().await?;
                let started = Instant::now();
                let mut copy = conn
                    .copy_in_raw(&format!("COPY bench_bulk ({COLUMNS}) FROM STDIN"))
                    .await?;
                let mut input = tokio::fs::File::open(&file).await?;
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    let read = tokio::io::AsyncReadExt::read(&mut input, &mut buffer).await?;
                    if read == 0 {
                        break;
                    }
                    copy.send(&buffer[..read]).await?;
                }
                copy.finish().await?;
                let elapsed = started.elapsed();
                tokio::fs::remove_file(&file).await?;
                elapsed
            }
            Self::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let started = Instant::now();
                let mut tx = conn.begin().await?;
                tx.execute("INSERT INTO bench_bulk SELECT * FROM events ORDER BY position")
                    .await?;
                tx.commit().await?;
                started.elapsed()
            }
        };
        self.drop_table("bench_bulk").await?;
        Ok(elapsed)
    }

    async fn drop_table(&self, table: &str) -> Result<(), BenchError> {
        let sql = format!("DROP TABLE {table}");
        match self {
            Self::Postgres(pool) => {
                pool.execute(sql.as_str()).await?;
            }
            Self::Sqlite(pool) => {
                pool.execute(sql.as_str()).await?;
            }
        }
        Ok(())
    }

    fn scan_is(&self) -> &'static str {
        match self {
            Self::Postgres(_) => {
                "COPY (SELECT every column FROM events ORDER BY position) TO STDOUT, read and discarded"
            }
            Self::Sqlite(_) => {
                "SELECT every column FROM events ORDER BY position, every row read and discarded"
            }
        }
    }

    /// A raw scan of the events table in position order; returns how long it took.
    async fn scan(&self) -> Result<Duration, BenchError> {
        let started = Instant::now();
        let mut count = 0u64;
        match self {
            Self::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let mut rows = conn.copy_out_raw(&copy_out_events()).await?;
                while let Some(bytes) = rows.next().await {
                    count += bytecount_lines(&bytes?);
                }
            }
            Self::Sqlite(pool) => {
                let sql = format!("SELECT {COLUMNS} FROM events ORDER BY position");
                let mut rows = sqlx::query(&sql).fetch(pool);
                while let Some(row) = rows.next().await {
                    std::hint::black_box(row?);
                    count += 1;
                }
            }
        }
        let elapsed = started.elapsed();
        std::hint::black_box(count);
        Ok(elapsed)
    }

    /// Inserts the rows after position `after` into an empty copy of `events`, one row per
    /// statement and transaction, by `clients` concurrent clients; returns the rows inserted
    /// and how long it took.
    async fn insert_rows_after(
        &self,
        after: i64,
        clients: usize,
    ) -> Result<(usize, Duration), BenchError> {
        self.copy_table("bench_insert").await?;
        let select = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             CAST(payload AS text), CAST(metadata AS text), position, \
                             CAST(recorded_at AS text) \
                      FROM events WHERE position > $1 ORDER BY position";
        type Row = (
            String,
            String,
            i64,
            String,
            String,
            String,
            String,
            i64,
            String,
        );
        let clients = clients.max(1);
        // Each client inserts every `clients`-th row, one statement (and transaction) a row.
        macro_rules! insert_concurrently {
            ($pool:expr, $insert:expr) => {{
                let rows: Vec<Row> = sqlx::query_as(select).bind(after).fetch_all($pool).await?;
                let started = Instant::now();
                let tasks: Vec<_> = (0..clients)
                    .map(|client| {
                        let mine: Vec<Row> =
                            rows.iter().skip(client).step_by(clients).cloned().collect();
                        let pool = $pool.clone();
                        tokio::spawn(async move {
                            for row in mine {
                                sqlx::query($insert)
                                    .bind(row.0)
                                    .bind(row.1)
                                    .bind(row.2)
                                    .bind(row.3)
                                    .bind(row.4)
                                    .bind(row.5)
                                    .bind(row.6)
                                    .bind(row.7)
                                    .bind(row.8)
                                    .execute(&pool)
                                    .await?;
                            }
                            Ok::<_, sqlx::Error>(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                (rows.len(), started.elapsed())
            }};
        }
        let (count, elapsed) = match self {
            Self::Postgres(pool) => insert_concurrently!(
                pool,
                "INSERT INTO bench_insert (aggregate_type, aggregate_id, sequence, event_type, \
                                           event_version, payload, metadata, position, \
                                           recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9::timestamptz)"
            ),
            Self::Sqlite(pool) => insert_concurrently!(
                pool,
                "INSERT INTO bench_insert (aggregate_type, aggregate_id, sequence, event_type, \
                                           event_version, payload, metadata, position, \
                                           recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
        };
        self.drop_table("bench_insert").await?;
        Ok((count, elapsed))
    }
}

/// Every row of `events` in position order, as `COPY` text.
fn copy_out_events() -> String {
    format!("COPY (SELECT {COLUMNS} FROM events ORDER BY position) TO STDOUT")
}

/// Rows in a chunk of `COPY` text output.
fn bytecount_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// The benchmark's configuration: the registry of [`bench_services`] (the sample's territories
/// and the synthetic region), the default stages.
fn bench_configuration(group_commit: bool) -> String {
    let services = bench_services();
    let mut toml = format!(
        "[audit]\nreiteration_threshold = 2\n\n[database]\ngroup_commit = {group_commit}\n"
    );
    for def in services.territories.definitions() {
        toml.push_str(&format!(
            "\n[[territories]]\ncode = {:?}\nname = {:?}\n",
            def.code, def.name
        ));
        if let Some(parent) = &def.parent {
            toml.push_str(&format!("parent = {parent:?}\n"));
        }
    }
    toml
}

/// The peak resident memory of process `pid` so far (`VmHWM`), 0 if unknown.
fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| round(kb / 1024.0))
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// The `q` quantile of `samples` in milliseconds (nearest rank).
fn percentile(samples: &[Duration], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    round3(sorted[rank - 1].as_secs_f64() * 1000.0)
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
