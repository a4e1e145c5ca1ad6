//! Helpers of the process tests: `filiera` commands with a clean environment, and running
//! `filiera serve` processes.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use filiera_testkit::free_port;
use serde_json::Value;

/// A `filiera serve` process, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token secret of the processes the tests start ([`clean_command`]).
pub const AUTH_SECRET: &str = "the process tests' token secret, long enough to sign";

/// The data folder of every process this test binary starts (unless a test gives its own):
/// a temporary one, so that generated keys never land in the source tree, shared so that
/// replicas of one test see the same master key.
fn shared_data_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary data folder"))
        .path()
}

/// `filiera` without any `FILIERA_*` setting of the test's environment, logging warnings,
/// signing tokens with [`AUTH_SECRET`], with a temporary data folder.
pub fn clean_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filiera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FILIERA_") {
            command.env_remove(key);
        }
    }
    command.env("FILIERA_LOG", "warn");
    command.env("FILIERA_AUTH_SECRET", AUTH_SECRET);
    command.env("FILIERA_DATA_DIR", shared_data_dir());
    command
}

/// A token of `role` over `territories` for the servers [`clean_command`] starts.
pub fn token(role: filiera_auth::Role, territories: &[&str]) -> String {
    let keys = filiera_auth::TokenKeys::new(&filiera_auth::AuthSecret::new(AUTH_SECRET.into()))
        .expect("a long secret");
    let territories: Vec<_> = territories
        .iter()
        .map(|t| filiera_domain::TerritoryCode::parse(t).expect("a territory code"))
        .collect();
    keys.issue(
        &format!("test-{role}"),
        role,
        &territories,
        Duration::from_secs(3600),
    )
    .expect("a token")
}

/// An administrator's token for the servers [`clean_command`] starts.
pub fn admin_token() -> String {
    token(filiera_auth::Role::Administrator, &[])
}

/// A client sending an administrator's token with every request.
pub fn client() -> reqwest::Client {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", admin_token()))
        .expect("a header value");
    value.set_sensitive(true);
    reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, value)]
                .into_iter()
                .collect(),
        )
        .build()
        .expect("a client")
}

/// `filiera` on this database.
pub fn filiera(database_url: &str) -> Command {
    let mut command = clean_command();
    command.env("FILIERA_DATABASE_URL", database_url);
    command
}

pub async fn start(database_url: &str, client: &reqwest::Client) -> Server {
    start_with(filiera(database_url), client).await
}

pub async fn start_with(command: Command, client: &reqwest::Client) -> Server {
    start_on(command, free_port(), Stdio::inherit(), client).await
}

/// Starts `filiera serve` from `command` on `port`, its standard error to `stderr`, and waits
/// (up to 30 s) until `/readyz` answers 200.
pub async fn start_on(
    mut command: Command,
    port: u16,
    stderr: impl Into<Stdio>,
    client: &reqwest::Client,
) -> Server {
    let child = command
        .env("FILIERA_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(stderr)
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get(client: &reqwest::Client, url: String) -> Value {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// `POST /v1/beneficiaries` in `territory` with an `Idempotency-Key`: the status, whether
/// `Retry-After` came, and the body (Null if not JSON).
pub async fn enrol_with_key(
    client: &reqwest::Client,
    base: &str,
    territory: &str,
    key: &str,
) -> (u16, bool, Value) {
    let response = client
        .post(format!("{base}/v1/beneficiaries"))
        .header("Idempotency-Key", key)
        .json(&serde_json::json!({"territory": territory, "on": "2024-01-10", "referral": "self"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `GET /readyz`: the status, the body, and how long it took.
pub async fn readyz(client: &reqwest::Client, base: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/readyz answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// The whole global feed, page after page.
pub async fn whole_feed(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = get(client, format!("{base}/v1/events?after={after}&limit=1000")).await;
        let events = page["events"].as_array().expect("a feed page").clone();
        if events.is_empty() {
            return out;
        }
        after = page["next_after"].as_i64().expect("next_after");
        out.extend(events);
    }
}
