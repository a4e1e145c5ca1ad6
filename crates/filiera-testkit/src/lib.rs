//! Real components for tests, started for real: a fresh PostgreSQL database per test (dropped
//! at the end), a `nats-server -js` per test on a free port (killed at the end) or a cluster of
//! three, and a child process whose output lines the test reads. The benchmark (`filiera-bench`) takes its scratch
//! PostgreSQL databases from here too.
//!
//! # Layout
//! - [`TestDb`]: a new database on the PostgreSQL at `FILIERA_TEST_PG_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`), or through any admin URL.
//! - [`NatsServer`]: a JetStream server of the test's own, which it can stop and restart.
//! - [`NatsCluster`]: three clustered JetStream servers, which it can stop and start one at a
//!   time, with the questions a clustered test asks (stream leader, replicas caught up).
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

/// A three-node NATS cluster with JetStream, as a region runs it: nodes `n1`, `n2` and `n3`,
/// each with its own client port, route port, monitoring port and store folder, routed to
/// each other (cluster `filiera-test`). Nodes can be stopped and started one at a time by
/// name; the cluster answers which node leads a stream and which one a client is connected to.
/// Every node is killed on drop.
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
}

/// One node of a [`NatsCluster`].
struct NatsNode {
    name: String,
    port: u16,
    monitor_port: u16,
    config: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The name of the cluster a [`NatsCluster`]'s nodes form.
pub const NATS_CLUSTER_NAME: &str = "filiera-test";

impl NatsCluster {
    /// The node names, in order.
    pub const NODES: [&'static str; 3] = ["n1", "n2", "n3"];

    /// Starts three nodes and waits (up to `within`) until JetStream has a meta leader, so
    /// that streams can be created.
    pub async fn start(within: Duration) -> anyhow::Result<Self> {
        let route_ports: Vec<u16> = Self::NODES.iter().map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, name) in Self::NODES.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let port = free_port();
            let monitor_port = free_port();
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let config = dir.path().join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: \"{name}\"\n\
                     listen: \"127.0.0.1:{port}\"\n\
                     http: \"127.0.0.1:{monitor_port}\"\n\
                     jetstream {{ store_dir: \"{store}\" }}\n\
                     cluster {{\n  name: \"{NATS_CLUSTER_NAME}\"\n  \
                     listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
                    store = dir.path().join("jetstream").display(),
                    route = route_ports[i],
                    routes = routes.join(", "),
                ),
            )?;
            nodes.push(NatsNode {
                name: (*name).to_owned(),
                port,
                monitor_port,
                config,
                _dir: dir,
                child: None,
            });
        }
        let mut cluster = Self { nodes };
        for name in Self::NODES {
            cluster.spawn(name)?;
        }
        for name in Self::NODES {
            cluster.wait_accepting(name, within).await?;
        }
        cluster.wait_ready(within).await?;
        Ok(cluster)
    }

    fn node(&self, name: &str) -> anyhow::Result<&NatsNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node named {name}"))
    }

    fn node_mut(&mut self, name: &str) -> anyhow::Result<&mut NatsNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .with_context(|| format!("no node named {name}"))
    }

    /// Every node's address, comma-separated: `nats://127.0.0.1:<p1>,nats://…`, as an operator
    /// gives `FILIERA_NATS_URL`.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The address of node `name`.
    pub fn node_url(&self, name: &str) -> anyhow::Result<String> {
        Ok(format!("nats://127.0.0.1:{}", self.node(name)?.port))
    }

    /// The names of the nodes running now.
    pub fn running(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let node = self.node_mut(name)?;
        ensure!(node.child.is_none(), "node {name} is running");
        let child = Command::new(nats_binary())
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn nats-server (apt-get install nats-server)")?;
        node.child = Some(child);
        Ok(())
    }

    async fn wait_accepting(&mut self, name: &str, within: Duration) -> anyhow::Result<()> {
        let node = self.node_mut(name)?;
        let port = node.port;
        wait_started(&mut node.child, "nats-server", within, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
        .with_context(|| format!("node {name}"))
    }

    /// Stops node `name` (SIGTERM, as an operator or an orchestrator does) and waits until it
    /// has exited.
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        match self.node_mut(name)?.child.take() {
            Some(child) => signal_and_reap(child, "TERM", Duration::from_secs(10)).await,
            None => Ok(()),
        }
    }

    /// Kills node `name` (SIGKILL: a crash, a machine gone; nothing is flushed, its peers
    /// find out by missing heartbeats) and waits until it has exited.
    pub async fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        match self.node_mut(name)?.child.take() {
            Some(child) => signal_and_reap(child, "KILL", Duration::from_secs(10)).await,
            None => Ok(()),
        }
    }

    /// Starts node `name` again (same ports, same store folder) and waits until it accepts
    /// connections and the cluster has a meta leader. Its streams catch up by themselves: see
    /// [`NatsCluster::wait_stream_ready`].
    pub async fn start_node(&mut self, name: &str, within: Duration) -> anyhow::Result<()> {
        self.spawn(name)?;
        self.wait_accepting(name, within).await?;
        self.wait_ready(within).await
    }

    /// A client of the running nodes (any of them).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        let servers: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.port).parse())
            .collect::<Result<_, _>>()?;
        ensure!(!servers.is_empty(), "no node is running");
        Ok(async_nats::ConnectOptions::new()
            .name("filiera-testkit")
            .connect(servers)
            .await?)
    }

    /// Waits until JetStream answers on every running node: the cluster has elected its meta
    /// leader (JetStream requests fail while it has none).
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for name in self.running() {
            let url = self.node_url(&name)?;
            loop {
                // `$JS.API.INFO` read as plain JSON: async-nats's account type expects fields
                // that nats-server 2.9 does not send.
                let answer = async {
                    let client = async_nats::connect(url.as_str()).await?;
                    let reply = client.request("$JS.API.INFO", "".into()).await?;
                    let info: serde_json::Value = serde_json::from_slice(&reply.payload)?;
                    ensure!(info.get("error").is_none(), "{}", info["error"]);
                    anyhow::Ok(())
                };
                let last_error = match tokio::time::timeout(Duration::from_secs(2), answer).await {
                    Ok(Ok(())) => break,
                    Ok(Err(error)) => format!("{error:#}"),
                    Err(_) => "no answer within 2 s".to_owned(),
                };
                ensure!(
                    Instant::now() < deadline,
                    "JetStream on node {name} not ready within {within:?}: {last_error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The stream's cluster view as its leader reports it, or `None` while it has no leader.
    async fn stream_cluster(
        &self,
        stream: &str,
    ) -> anyhow::Result<Option<async_nats::jetstream::stream::ClusterInfo>> {
        let js = async_nats::jetstream::new(self.client().await?);
        let info = tokio::time::timeout(Duration::from_secs(3), async {
            let mut found = js.get_stream(stream).await?;
            let info = found.info().await?.clone();
            anyhow::Ok(info)
        })
        .await
        .context("stream info: no answer within 3 s")?
        .with_context(|| format!("stream info of {stream}"))?;
        Ok(info.cluster.filter(|c| c.leader.is_some()))
    }

    /// The node leading `stream` (JetStream's stream info, `cluster.leader`).
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<String> {
        self.stream_cluster(stream)
            .await?
            .and_then(|c| c.leader)
            .with_context(|| format!("stream {stream} has no leader"))
    }

    /// Waits until `stream` has a leader among the running nodes and every replica on a
    /// running node is current (caught up), and returns the leader. After a node stops, its
    /// replica is offline and not waited for; after it starts again, it is.
    pub async fn wait_stream_ready(
        &self,
        stream: &str,
        within: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let running = self.running();
        loop {
            let seen = match self.stream_cluster(stream).await {
                Ok(Some(cluster)) => {
                    let leader = cluster.leader.clone().unwrap_or_default();
                    let lagging: Vec<&str> = cluster
                        .replicas
                        .iter()
                        .filter(|r| running.contains(&r.name) && (!r.current || r.offline))
                        .map(|r| r.name.as_str())
                        .collect();
                    let members = 1 + cluster
                        .replicas
                        .iter()
                        .filter(|r| running.contains(&r.name))
                        .count();
                    if running.contains(&leader) && lagging.is_empty() && members == running.len() {
                        return Ok(leader);
                    }
                    format!("leader {leader}, replicas {:?}", cluster.replicas)
                }
                Ok(None) => "no leader".to_owned(),
                Err(error) => format!("{error:#}"),
            };
            ensure!(
                Instant::now() < deadline,
                "stream {stream} not ready within {within:?}: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the leader of `stream` to step down (`$JS.API.STREAM.LEADER.STEPDOWN`); another
    /// replica is elected. Wait with [`NatsCluster::wait_stream_ready`] afterwards.
    pub async fn step_down_stream(&self, stream: &str) -> anyhow::Result<()> {
        let client = self.client().await?;
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                "".into(),
            ),
        )
        .await
        .context("stream step-down: no answer within 5 s")??;
        let answer: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        ensure!(
            answer["success"] == true,
            "stream step-down refused: {answer}"
        );
        Ok(())
    }

    /// The node a client named `client_name` (its `CONNECT` name) is connected to, from the
    /// running nodes' monitoring endpoints (`/connz`); `None` if it is connected to none.
    pub async fn node_of_client(&self, client_name: &str) -> anyhow::Result<Option<String>> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let connz: serde_json::Value = http
                .get(format!("http://127.0.0.1:{}/connz", node.monitor_port))
                .send()
                .await?
                .json()
                .await?;
            let connected = connz["connections"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == client_name));
            if connected {
                return Ok(Some(node.name.clone()));
            }
        }
        Ok(None)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
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
