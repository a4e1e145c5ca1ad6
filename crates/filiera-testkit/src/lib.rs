//! Real components for tests, started for real: a fresh PostgreSQL database per test (dropped
//! at the end), a `nats-server -js` per test on a free port (killed at the end), and a child
//! process whose output lines the test reads. The benchmark (`filiera-bench`) takes its scratch
//! PostgreSQL databases from here too.
//!
//! # Layout
//! - [`TestDb`]: a new database on the PostgreSQL at `FILIERA_TEST_PG_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`), or through any admin URL.
//! - [`NatsServer`]: a JetStream server of the test's own, which it can stop and restart.
//! - [`PgServer`]: a PostgreSQL server of the test's own (a fresh cluster), which it can
//!   stop and restart, for outages that must not touch the shared server.
//! - [`ChildLines`]: a spawned process whose standard output comes line by line.
//! - [`on_both_backends!`]: one test per body and per [`Backend`].
//! - [`python`]: the Python tools tests run as users would (PM4Py, Schemathesis).

pub mod python;

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sqlx::{Connection, Executor as _};

/// The administrative PostgreSQL URL tests create their databases through
/// (`FILIERA_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn pg_admin_url() -> String {
    std::env::var("FILIERA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A brand-new PostgreSQL database, dropped (with its connections) when this goes.
pub struct TestDb {
    /// The database name, `filiera_test_<uuid>` (or another prefix: see [`TestDb::create_on`]).
    pub name: String,
    /// A URL connecting to it: the admin URL with its database replaced (any query string kept).
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Creates the database through [`pg_admin_url`].
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_on(&pg_admin_url(), "filiera_test")
            .await
            .context("PostgreSQL answers at FILIERA_TEST_PG_URL or 127.0.0.1:5432")
    }

    /// Creates a database named `<prefix>_<uuid>` through the administrative URL `admin`: the
    /// scratch databases of `filiera-bench` (the benchmark is given its admin URL).
    pub async fn create_on(admin: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        conn.close().await?;
        Ok(Self {
            url: with_database(admin, &name),
            name,
            admin: admin.to_owned(),
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop may run inside or outside a runtime: use a private one on its own thread.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(error)) = done {
            eprintln!("could not drop test database {}: {error:#}", self.name);
        }
    }
}

/// `admin` with its database path replaced by `name`, keeping any query string.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `nats-server -js` of this test: a free port on 127.0.0.1 and a store folder of its own.
/// Killed on drop.
pub struct NatsServer {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn nats_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return path.into();
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir()?,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store folder.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "the server is running");
        let child = Command::new(nats_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn nats-server (apt-get install nats-server)")?;
        self.child = Some(child);
        let port = self.port;
        wait_started(
            &mut self.child,
            "nats-server",
            Duration::from_secs(10),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await
    }

    /// Stops the server (SIGTERM, so that JetStream flushes what it acknowledged) and waits
    /// until it has exited.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.child.take() {
            Some(child) => signal_and_reap(child, "TERM", Duration::from_secs(10)).await,
            None => Ok(()),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `ready` says the server `child` started answers, failing if it exits first
/// (and forgetting it then) or if `within` passes.
async fn wait_started<F, Fut>(
    child: &mut Option<Child>,
    what: &str,
    within: Duration,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if ready().await {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            bail!("{what} exited at start: {status}");
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} did not answer within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` (e.g. `TERM`) to `child` and waits until it has exited; kills it if it is
/// still there after `within`.
async fn signal_and_reap(mut child: Child, signal: &str, within: Duration) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL server of this test: a fresh cluster (`initdb`) in a folder of its own, on a
/// free port of 127.0.0.1 with trust authentication for `postgres`. Stopped on drop.
///
/// PostgreSQL refuses to run as root: when the test is root, the cluster belongs to the
/// `postgres` user, and its programs run as that user through `setpriv`.
pub struct PgServer {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The folder of the newest installed PostgreSQL's programs (`PG_BIN` overrides it).
fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("PG_BIN") {
        return Ok(path.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's programs under /usr/lib/postgresql (apt-get install postgresql)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL version under /usr/lib/postgresql")
}

/// Whether this process runs as root (PostgreSQL must then run as `postgres`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program` of PostgreSQL, run as `postgres` when this process is root.
fn pg_command(program: &str) -> anyhow::Result<Command> {
    let path = pg_bin()?.join(program);
    Ok(if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path);
        command
    } else {
        Command::new(path)
    })
}

impl PgServer {
    /// Creates a cluster, starts it on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            ensure!(status.success(), "chown of the cluster folder failed");
        }
        let output = pg_command("initdb")?
            .args([
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.path().join("data"))
            .output()
            .context("run initdb")?;
        ensure!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// A URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// (Re)starts the server on the same port and cluster, and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "the server is running");
        let child = pg_command("postgres")?
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn postgres")?;
        self.child = Some(child);
        let url = self.url("postgres");
        wait_started(&mut self.child, "postgres", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                match sqlx::PgConnection::connect(&url).await {
                    Ok(conn) => conn.close().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await
    }

    /// Freezes the server and every backend (SIGSTOP), as a stalled host or a network
    /// partition would look: connections stay open and nothing answers. [`PgServer::thaw`]
    /// undoes it.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal_all("STOP")
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal_all("CONT")
    }

    /// Sends `signal` to the postmaster and all its children.
    fn signal_all(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the server is not running")?;
        let pid = child.id().to_string();
        let children = Command::new("pgrep").args(["-P", &pid]).output()?;
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        pids.push(pid);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()?;
        ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Stops the server as abruptly as a crash would (immediate shutdown: every connection
    /// is cut, nothing is flushed beyond what was committed) and waits until it has exited.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.child.take() {
            Some(child) => signal_and_reap(child, "QUIT", Duration::from_secs(20)).await,
            None => Ok(()),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.thaw();
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A child process whose standard output a thread of its own reads line by line, so that the
/// test can wait for lines with a timeout. Killed (and reaped) on drop.
pub struct ChildLines {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildLines {
    /// Spawns `command` with its standard output piped; its other streams stay as `command`
    /// sets them.
    pub fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {command:?}"))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next line, or `None` if none comes within `timeout` or the output has ended.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every line printed from now until `wait` has passed or the output has ended.
    pub fn lines_for(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_line(left) {
                Some(line) => lines.push(line),
                None => break,
            }
        }
        lines
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_database("postgres://u:p@db/admin?sslmode=disable", "t"),
            "postgres://u:p@db/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://db", "t"), "postgres://db/t");
    }

    #[test]
    fn child_lines_come_in_order_until_the_output_ends() -> anyhow::Result<()> {
        let child = ChildLines::spawn(Command::new("sh").args(["-c", "echo one; echo two"]))?;
        assert_eq!(
            child.next_line(Duration::from_secs(10)).as_deref(),
            Some("one")
        );
        assert_eq!(child.lines_for(Duration::from_secs(10)), ["two"]);
        assert_eq!(child.next_line(Duration::from_millis(10)), None);
        Ok(())
    }
}

/// The two stores every suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file in a temporary folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server ([`TestDb`]).
    Postgres,
}

/// The runtime [`on_both_backends!`] runs each test on: multi-threaded, as the service runs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The number of cases a property test over real databases runs: `default`, unless
/// `PROPTEST_CASES` asks for another number (to explore further by hand).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Generates, for each async test body `name` in scope, a module `name` with one test per
/// backend, `name::sqlite` and `name::postgres`, each on its own [`runtime`]:
/// - `on_both_backends!(a, b)`: each body is `async fn a(backend: Backend) -> T` with any test
///   return type `T` (`()`, `anyhow::Result<()>`);
/// - `on_both_backends!(harness = Harness::on; a, b)`: `Harness::on(backend)` makes the
///   suite's harness (`async`, returning `anyhow::Result<Harness>`), and each body is
///   `async fn a(harness: &Harness) -> anyhow::Result<()>`.
#[macro_export]
macro_rules! on_both_backends {
    (harness = $harness:path; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() -> anyhow::Result<()> {
                    $crate::runtime().block_on(async {
                        let harness = $harness($crate::Backend::Sqlite).await?;
                        super::$name(&harness).await
                    })
                }
                #[test]
                fn postgres() -> anyhow::Result<()> {
                    $crate::runtime().block_on(async {
                        let harness = $harness($crate::Backend::Postgres).await?;
                        super::$name(&harness).await
                    })
                }
            }
        )+
    };
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() -> impl std::process::Termination {
                    $crate::runtime().block_on(super::$name($crate::Backend::Sqlite))
                }
                #[test]
                fn postgres() -> impl std::process::Termination {
                    $crate::runtime().block_on(super::$name($crate::Backend::Postgres))
                }
            }
        )+
    };
}
