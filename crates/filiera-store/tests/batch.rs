//! [`Store::execute_batch`] against real databases, on SQLite and on PostgreSQL: a batch leaves
//! exactly the streams the same commands leave executed one by one, refuses what they refuse
//! without writing anything of it, and writes nothing when run again.

#[allow(dead_code)]
mod common;

use anyhow::{Context as _, ensure};
use filiera_domain::testing::{RandomHistory, history};
use filiera_domain::{PathwayCommand, PathwayEvent, Referral};
use filiera_store::{
    BatchCommand, BatchOutcome, CommandContext, IdempotencyKey, Rejection, Store, StoredEvent,
};
use filiera_testkit::Backend;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use common::Harness;

/// Few cases: each writes through a real database. Raise `PROPTEST_CASES` to explore.
const CASES: u32 = 8;

filiera_testkit::on_both_backends!(
    a_refused_command_in_the_middle_writes_nothing_of_it,
    a_batch_run_again_writes_nothing,
);

#[test]
fn a_batch_equals_the_commands_one_by_one_sqlite() {
    run(Backend::Sqlite);
}

#[test]
fn a_batch_equals_the_commands_one_by_one_postgres() {
    run(Backend::Postgres);
}

fn run(backend: Backend) {
    let runtime = filiera_testkit::runtime();
    let cases = filiera_testkit::proptest_cases(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (prop::collection::vec(history(20, 20), 1..8), 1usize..40);
    let result = TestRunner::new(config).run(&strategy, |(histories, batch_size)| {
        runtime
            .block_on(same_as_one_by_one(backend, &histories, batch_size))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// The histories' commands, interleaved across beneficiaries (as legacy exports are), each
/// with the beneficiary it is for.
fn interleaved(histories: &[RandomHistory]) -> Vec<(usize, PathwayCommand)> {
    let mut queues: Vec<_> = histories
        .iter()
        .map(|h| h.commands().into_iter().map(|(_, c)| c))
        .collect();
    let mut commands = Vec::new();
    loop {
        let before = commands.len();
        for (i, queue) in queues.iter_mut().enumerate() {
            commands.extend(queue.next().map(|c| (i, c)));
        }
        if commands.len() == before {
            return commands;
        }
    }
}

async fn same_as_one_by_one(
    backend: Backend,
    histories: &[RandomHistory],
    batch_size: usize,
) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let commands = interleaved(histories);
    let one_by_one: Vec<Uuid> = histories.iter().map(|_| Uuid::new_v4()).collect();
    let batched: Vec<Uuid> = histories.iter().map(|_| Uuid::new_v4()).collect();

    let mut expected = Vec::new();
    for (i, command) in &commands {
        let ctx = CommandContext::new("import");
        let accepted = store.execute(one_by_one[*i], command.clone(), ctx).await?;
        expected.push(accepted.is_ok());
    }
    let mut outcomes = Vec::new();
    for chunk in commands.chunks(batch_size) {
        let batch = chunk
            .iter()
            .map(|(i, command)| BatchCommand {
                beneficiary: batched[*i],
                command: command.clone(),
                ctx: CommandContext::new("import"),
            })
            .collect();
        outcomes.extend(store.execute_batch(batch, false).await?);
    }
    let accepted: Vec<bool> = outcomes
        .iter()
        .map(|o| match o {
            BatchOutcome::Applied { .. } => Ok(true),
            BatchOutcome::Refused(Rejection::Refused(_)) => Ok(false),
            other => Err(anyhow::anyhow!("unexpected outcome {other:?}")),
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        accepted == expected,
        "accepted {accepted:?}, one by one {expected:?}"
    );

    for (a, b) in one_by_one.iter().zip(&batched) {
        let (a, b) = (stream(store, *a).await?, stream(store, *b).await?);
        ensure!(
            a.len() == b.len(),
            "{} events one by one, {} in batches",
            a.len(),
            b.len()
        );
        for (x, y) in a.iter().zip(&b) {
            ensure!(
                (x.sequence, &x.event, &x.territory, &x.principal)
                    == (y.sequence, &y.event, &y.territory, &y.principal),
                "{x:?} != {y:?}"
            );
        }
    }
    // Every event is in the feed once, in stream order.
    let feed = feed(store).await?;
    for id in &batched {
        let sequences: Vec<u64> = feed
            .iter()
            .filter(|e| e.beneficiary_id == *id)
            .map(|e| e.sequence)
            .collect();
        ensure!(sequences == (1..=sequences.len() as u64).collect::<Vec<_>>());
    }
    Ok(())
}

async fn stream(store: &Store, id: Uuid) -> anyhow::Result<Vec<StoredEvent>> {
    Ok(store.history(id).await?.unwrap_or_default())
}

async fn feed(store: &Store) -> anyhow::Result<Vec<StoredEvent>> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &StoredEvent| e.position);
        let page = store.read_feed(after, 1_000).await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

fn enrol(on: &str) -> PathwayCommand {
    PathwayCommand::Enrol {
        territory: "LOM-BG-BERGAMO".into(),
        on: on.parse().expect("a date"),
        referral: Referral::SocialServices,
        support_band: None,
    }
}

fn enter(stage: &str, on: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: stage.into(),
        on: on.parse().expect("a date"),
        provider: None,
    }
}

fn keyed(beneficiary: Uuid, command: PathwayCommand, key: &str) -> BatchCommand {
    BatchCommand {
        beneficiary,
        command,
        ctx: CommandContext {
            principal: "import".into(),
            idempotency: Some(IdempotencyKey::for_request(
                key.to_owned(),
                &[key.as_bytes()],
            )),
        },
    }
}

/// A refused command in the middle of a batch: nothing of it is written; the others are, or
/// with `stop_at_refusal` only those before it.
async fn a_refused_command_in_the_middle_writes_nothing_of_it(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = |a, b| {
        vec![
            keyed(a, enrol("2024-01-10"), &format!("{a}:1")),
            keyed(a, enter("internship", "2024-02-01"), &format!("{a}:2")),
            // Before the previous entry: out of order, refused.
            keyed(a, enter("job_placement", "2024-01-20"), &format!("{a}:3")),
            keyed(b, enrol("2024-03-01"), &format!("{b}:1")),
            keyed(a, enter("job_placement", "2024-03-01"), &format!("{a}:4")),
        ]
    };
    let outcomes = store.execute_batch(batch(a, b), false).await?;
    ensure!(
        matches!(
            outcomes.as_slice(),
            [
                BatchOutcome::Applied { events: 1, .. },
                BatchOutcome::Applied { events: 1, .. },
                BatchOutcome::Refused(Rejection::Refused(_)),
                BatchOutcome::Applied { events: 1, .. },
                BatchOutcome::Applied { events: 2, .. },
            ]
        ),
        "{outcomes:?}"
    );
    let events: Vec<PathwayEvent> = stream(store, a)
        .await?
        .into_iter()
        .map(|e| e.event)
        .collect();
    ensure!(events.len() == 4, "{events:?}");
    let refused_on: chrono::NaiveDate = "2024-01-20".parse().context("a date")?;
    ensure!(
        events.iter().all(|e| e.on() != refused_on),
        "the refused entry left nothing: {events:?}"
    );
    ensure!(stream(store, b).await?.len() == 1);

    // Stopping at the refusal: the commands before it are written, none after.
    let (c, d) = (Uuid::new_v4(), Uuid::new_v4());
    let outcomes = store.execute_batch(batch(c, d), true).await?;
    ensure!(
        matches!(
            outcomes.as_slice(),
            [
                BatchOutcome::Applied { .. },
                BatchOutcome::Applied { .. },
                BatchOutcome::Refused(_),
                BatchOutcome::Skipped,
                BatchOutcome::Skipped,
            ]
        ),
        "{outcomes:?}"
    );
    ensure!(stream(store, c).await?.len() == 2);
    ensure!(stream(store, d).await?.is_empty());
    Ok(())
}

/// Run again with the same idempotency keys, a batch writes nothing and answers each command
/// as replayed, with the beneficiary it was stored for; a key reused for another command is
/// refused.
async fn a_batch_run_again_writes_nothing(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let a = Uuid::new_v4();
    let batch = || {
        vec![
            keyed(a, enrol("2024-01-10"), "run:a:1"),
            keyed(a, enter("internship", "2024-02-01"), "run:a:2"),
        ]
    };
    store.execute_batch(batch(), false).await?;
    let head = store.head().await?;
    let again = store.execute_batch(batch(), false).await?;
    ensure!(
        again
            .iter()
            .all(|o| matches!(o, BatchOutcome::Replayed { beneficiary } if *beneficiary == a)),
        "{again:?}"
    );
    ensure!(store.head().await? == head, "nothing new was written");
    let bound = store
        .bound_keys(&["run:a:1".to_owned(), "nope".to_owned()])
        .await?;
    ensure!(bound.len() == 1 && bound["run:a:1"].beneficiary == a);

    let other = BatchCommand {
        beneficiary: a,
        command: enter("job_placement", "2024-03-01"),
        ctx: CommandContext {
            principal: "import".into(),
            idempotency: Some(IdempotencyKey::for_request("run:a:2".into(), &[b"another"])),
        },
    };
    let reused = store.execute_batch(vec![other], false).await?;
    ensure!(
        matches!(
            reused.as_slice(),
            [BatchOutcome::Refused(Rejection::IdempotencyKeyReused)]
        ),
        "{reused:?}"
    );
    ensure!(store.head().await? == head);
    // What an import runs at its end, on either backend.
    store.analyze().await?;
    Ok(())
}
