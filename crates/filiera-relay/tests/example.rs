//! The example consumer (`examples/consumer.rs`) against a real stream: it reports each
//! internship start once, and its durable resumes after what it acknowledged.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use common::*;
use filiera_testkit::{ChildLines, NatsServer};

/// `target/<profile>/examples/consumer`, which `cargo test` builds with the tests.
fn example_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary location")?;
    let binary = profile_dir.join("examples").join("consumer");
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: run `cargo test -p filiera-relay`, which builds the examples",
        binary.display()
    );
    Ok(binary)
}

/// Runs the example and collects the lines it prints for `wait`.
fn run_example(url: &str, wait: Duration) -> anyhow::Result<Vec<String>> {
    let example = ChildLines::spawn(
        Command::new(example_binary()?)
            .env("NATS_URL", url)
            .env("DURABLE", "internships-started")
            .stderr(Stdio::null()),
    )?;
    Ok(example.lines_for(wait))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_consumer_reports_internships_once_and_resumes() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::sqlite().await?;
    let store = &harness.store;
    let relay = start(store, relay_settings(&nats)).await?;
    // Each life enters an internship twice (once per spell).
    let first = life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    published(store, &nats).await?;

    let url = nats.url();
    let lines =
        tokio::task::spawn_blocking(move || run_example(&url, Duration::from_secs(3))).await??;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with(&format!(
        "internship started: beneficiary {first} in LOM-BG-BERGAMO on 2025-02-10 (progression"
    )));
    assert!(lines[1].contains("in LOM-MI-MILANO on 2025-03-22 (reiteration"));

    // The durable resumes: only the new beneficiary's internships come.
    let second = life(store, "PIE-TO-TORINO", "LOM-LC-LECCO").await?;
    published(store, &nats).await?;
    let url = nats.url();
    let lines =
        tokio::task::spawn_blocking(move || run_example(&url, Duration::from_secs(3))).await??;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains(&second.to_string())));
    relay.shutdown().await;
    Ok(())
}
