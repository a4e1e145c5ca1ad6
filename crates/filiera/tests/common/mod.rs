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

/// `filiera` without any `FILIERA_*` setting of the test's environment, logging warnings.
pub fn clean_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filiera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FILIERA_") {
            command.env_remove(key);
        }
    }
    command.env("FILIERA_LOG", "warn");
    command
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

pub async fn start_with(mut command: Command, client: &reqwest::Client) -> Server {
    let port = free_port();
    let child = command
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
