//! `tail_nats` against a real `nats-server -js`: filters, durable resumption, refusals.

mod common;

use std::time::Duration;

use common::*;
use filiera_relay::{RelayError, TailOptions, tail_nats, tail_nats_with};
use filiera_testkit::NatsServer;
use serde_json::Value;
use tokio::sync::mpsc;

/// Runs `tail_nats` in a task, forwarding what it hands out.
fn spawn_tail(
    url: String,
    durable: Option<&str>,
    territory: Option<&str>,
    event_type: Option<&str>,
) -> (
    tokio::task::JoinHandle<Result<(), RelayError>>,
    mpsc::UnboundedReceiver<Value>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (durable, territory, event_type) = (
        durable.map(str::to_owned),
        territory.map(str::to_owned),
        event_type.map(str::to_owned),
    );
    let task = tokio::spawn(async move {
        tail_nats(&url, durable, territory, event_type, move |document| {
            let _ = sender.send(document);
        })
        .await
    });
    (task, receiver)
}

/// Receives exactly `n` documents, then checks that nothing more comes for a while.
async fn receive_exactly(
    receiver: &mut mpsc::UnboundedReceiver<Value>,
    n: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await;
        match next {
            Ok(Some(document)) => got.push(document),
            _ => anyhow::bail!("received {} of {n}", got.len()),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), receiver.recv()).await
    {
        anyhow::bail!("received more than {n}: {extra}");
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_filters_by_territory_and_type_and_resumes_a_durable() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let harness = Harness::sqlite().await?;
    let store = &harness.store;
    let relay = start(store, relay_settings(&nats)).await?;
    life(store, "LOM-BG-BERGAMO", "LOM-MI-MILANO").await?;
    life(store, "PIE-TO-TORINO", "LOM-MI-MILANO").await?;
    published(store, &nats).await?;
    let url = nats.url();

    // Type and territory: in LOM-MI-MILANO (after the move) each life enters internship and
    // job_placement (then undone): 2 stage entries each.
    let (task, mut receiver) = spawn_tail(
        url.clone(),
        Some("milan-entries"),
        Some("LOM-MI-MILANO"),
        Some("StageEntered"),
    );
    let got = receive_exactly(&mut receiver, 4).await?;
    for document in &got {
        assert_eq!(document["type"], "it.filiera.pathway.stage_entered.v1");
        assert_eq!(document["data"]["territory"], "LOM-MI-MILANO");
    }
    task.abort();

    // Type only: every territory.
    let (all_closed, mut receiver) = spawn_tail(url.clone(), None, None, Some("pathway_closed"));
    let got = receive_exactly(&mut receiver, 2).await?;
    assert!(
        got.iter()
            .all(|d| d["type"] == "it.filiera.pathway.pathway_closed.v1")
    );
    all_closed.abort();

    // Territory only.
    let (turin, mut receiver) = spawn_tail(url.clone(), None, Some("PIE-TO-TORINO"), None);
    let got = receive_exactly(&mut receiver, 4).await?;
    let types: Vec<&str> = got.iter().filter_map(|d| d["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "it.filiera.pathway.enrolled.v1",
            "it.filiera.pathway.stage_entered.v1",
            "it.filiera.pathway.stage_exited.v1",
            "it.filiera.pathway.stage_entered.v1",
        ]
    );
    turin.abort();

    // The durable resumes after what it acknowledged: only the new entries come.
    life(store, "LOM-MI-MILANO", "LOM-BG-BERGAMO").await?;
    let (task, mut receiver) = spawn_tail(
        url.clone(),
        Some("milan-entries"),
        Some("LOM-MI-MILANO"),
        Some("stage_entered"),
    );
    let got = receive_exactly(&mut receiver, 2).await?;
    assert!(
        got.iter()
            .all(|d| d["data"]["territory"] == "LOM-MI-MILANO")
    );
    task.abort();

    // Refusals.
    let other_filter = tail_nats(
        &url,
        Some("milan-entries".to_owned()),
        None,
        Some("StageExited".to_owned()),
        |_| {},
    )
    .await;
    assert!(
        matches!(other_filter, Err(RelayError::DurableMismatch { .. })),
        "{other_filter:?}"
    );
    let bad_type = tail_nats_with(
        TailOptions {
            event_type: Some("Hired".to_owned()),
            ..TailOptions::new(&url)
        },
        |_| {},
    )
    .await;
    assert!(
        matches!(bad_type, Err(RelayError::Filter(_))),
        "{bad_type:?}"
    );
    let bad_territory = tail_nats(&url, None, Some("LOM.*".to_owned()), None, |_| {}).await;
    assert!(
        matches!(bad_territory, Err(RelayError::Filter(_))),
        "{bad_territory:?}"
    );

    relay.shutdown().await;
    Ok(())
}
