//! [`Store::execute_batch`] against real databases, on SQLite and on PostgreSQL: a batch leaves
//! exactly the streams, feed order and idempotency keys the same commands leave executed one
//! by one, takes one block of positions in batch order, refuses what they refuse without
//! writing anything of it, writes nothing when run again, falls back to one by one when it
//! loses a race for a key, and interleaves with single commands in commit order.

#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use filiera_domain::testing::{RandomHistory, history};
use filiera_domain::{PathwayCommand, PathwayEvent, Referral};
use filiera_store::on_pool;
use filiera_store::{
    BatchCommand, BatchOutcome, CommandContext, IdempotencyKey, Rejection, Store, StoredEvent,
};
use filiera_testkit::Backend;
use futures::FutureExt as _;
use futures::future::LocalBoxFuture;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use common::{Gate, Harness};

/// Few cases: each writes through a real database. Raise `PROPTEST_CASES` to explore.
const CASES: u32 = 8;

filiera_testkit::on_both_backends!(
    a_refused_command_in_the_middle_writes_nothing_of_it,
    a_batch_run_again_writes_nothing,
    a_batch_takes_one_block_of_positions_in_batch_order,
    a_key_bound_meanwhile_sends_the_batch_one_by_one,
    one_key_on_two_commands_of_a_batch_binds_the_first,
    batches_and_single_commands_interleave_in_commit_order,
);

#[test]
fn the_row_triggers_stand_aside_only_for_batch_writes_postgres() -> anyhow::Result<()> {
    filiera_testkit::runtime().block_on(the_row_triggers_stand_aside_only_for_batch_writes())
}

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

    // Most commands carry a key (the same request for both runs), some none: a batch mixes
    // keyed and unkeyed rows.
    let ctx = |run: &str, j: usize| {
        let mut ctx = CommandContext::new("import");
        if j % 3 != 2 {
            ctx.idempotency = Some(IdempotencyKey::for_request(
                format!("{run}:{j}"),
                &[j.to_string().as_bytes()],
            ));
        }
        ctx
    };

    let mut expected = Vec::new();
    for (j, (i, command)) in commands.iter().enumerate() {
        let accepted = store
            .execute(one_by_one[*i], command.clone(), ctx("one", j))
            .await?;
        expected.push(accepted.is_ok());
    }
    let mut outcomes = Vec::new();
    for (c, chunk) in commands.chunks(batch_size).enumerate() {
        let batch: Vec<BatchCommand> = chunk
            .iter()
            .enumerate()
            .map(|(k, (i, command))| BatchCommand {
                beneficiary: batched[*i],
                command: command.clone(),
                ctx: ctx("batch", c * batch_size + k),
            })
            .collect();
        let head = store.head().await?;
        let written = store.execute_batch(batch, false).await?;
        ensure_one_block(store, head, &written).await?;
        outcomes.extend(written);
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
    // Every event is in the feed once, and the batches' events come in the order the same
    // commands one by one put theirs in.
    let feed = feed(store).await?;
    let order = |ids: &[Uuid]| -> Vec<(usize, u64)> {
        feed.iter()
            .filter_map(|e| {
                let i = ids.iter().position(|id| *id == e.beneficiary_id)?;
                Some((i, e.sequence))
            })
            .collect()
    };
    ensure!(
        order(&batched) == order(&one_by_one),
        "feed order in batches {:?}, one by one {:?}",
        order(&batched),
        order(&one_by_one)
    );
    for id in &batched {
        let sequences: Vec<u64> = feed
            .iter()
            .filter(|e| e.beneficiary_id == *id)
            .map(|e| e.sequence)
            .collect();
        ensure!(sequences == (1..=sequences.len() as u64).collect::<Vec<_>>());
    }

    // The keys are bound as the key trigger binds them one by one: same stream, request and
    // range, to the command that wrote the range; refused commands bound nothing.
    let keys = bound_keys(store).await?;
    let stream_of = |id: &str| -> anyhow::Result<Uuid> { Ok(Uuid::parse_str(id)?) };
    for j in 0..commands.len() {
        let (one, batch) = (
            keys.get(&format!("one:{j}")),
            keys.get(&format!("batch:{j}")),
        );
        match (one, batch) {
            (None, None) => {}
            (Some(one), Some(batch)) => {
                let one_stream = stream_of(&one.aggregate_id)?;
                let i = one_by_one
                    .iter()
                    .position(|id| *id == one_stream)
                    .context("a key of the one-by-one run binds one of its streams")?;
                ensure!(
                    stream_of(&batch.aggregate_id)? == batched[i]
                        && (&one.request_hash, one.first_sequence, one.last_sequence)
                            == (
                                &batch.request_hash,
                                batch.first_sequence,
                                batch.last_sequence
                            ),
                    "command {j}: one by one {one:?}, in batches {batch:?}"
                );
            }
            _ => anyhow::bail!("command {j}: key one by one {one:?}, in batches {batch:?}"),
        }
    }
    for (key, row) in &keys {
        let commands = commands_carrying(store, key).await?;
        ensure!(
            commands
                == [(
                    row.aggregate_id.clone(),
                    row.command_id.clone(),
                    row.first_sequence,
                    row.last_sequence
                )],
            "key {key} bound as {row:?}, carried by {commands:?}"
        );
    }
    Ok(())
}

/// A row of `idempotency_keys`.
#[derive(Debug)]
struct KeyRow {
    aggregate_id: String,
    command_id: String,
    request_hash: String,
    first_sequence: i64,
    last_sequence: i64,
}

/// Every bound key.
async fn bound_keys(store: &Store) -> anyhow::Result<HashMap<String, KeyRow>> {
    const SQL: &str = "SELECT key, aggregate_id, command_id, request_hash, first_sequence, \
                              last_sequence FROM idempotency_keys";
    let rows: Vec<(String, String, String, String, i64, i64)> =
        on_pool!(store.database().reader(), |pool| sqlx::query_as(SQL)
            .fetch_all(pool)
            .await)?;
    Ok(rows
        .into_iter()
        .map(
            |(key, aggregate_id, command_id, request_hash, first, last)| {
                let row = KeyRow {
                    aggregate_id,
                    command_id,
                    request_hash,
                    first_sequence: first,
                    last_sequence: last,
                };
                (key, row)
            },
        )
        .collect())
}

/// The commands whose events carry `key`: stream, command id, first and last sequence.
async fn commands_carrying(
    store: &Store,
    key: &str,
) -> anyhow::Result<Vec<(String, String, i64, i64)>> {
    // `->>` reads JSON on both backends (PostgreSQL's jsonb, SQLite's JSON text).
    const SQL: &str = "SELECT aggregate_id, metadata ->> 'command_id', min(sequence), \
                              max(sequence) \
                       FROM events WHERE metadata ->> 'idempotency_key' = $1 \
                       GROUP BY 1, 2 ORDER BY 1, 2";
    Ok(on_pool!(store.database().reader(), |pool| sqlx::query_as(
        SQL
    )
    .bind(key)
    .fetch_all(pool)
    .await)?)
}

/// The events a batch wrote, with `head` the head before it: one block of consecutive
/// positions above `head`, in batch order (each applied command's events in turn), recorded
/// at non-decreasing times no earlier than any event before.
async fn ensure_one_block(
    store: &Store,
    head: i64,
    outcomes: &[BatchOutcome],
) -> anyhow::Result<()> {
    let all = feed(store).await?;
    let before: Vec<&StoredEvent> = all.iter().filter(|e| e.position <= head).collect();
    let mut lengths: HashMap<Uuid, u64> = HashMap::new();
    for event in &before {
        lengths.insert(event.beneficiary_id, event.sequence);
    }
    let mut expected = Vec::new();
    for outcome in outcomes {
        if let BatchOutcome::Applied {
            beneficiary,
            events,
        } = outcome
        {
            let length = lengths.entry(*beneficiary).or_default();
            let events = *events as u64;
            expected
                .extend((*length + 1..=*length + events).map(|sequence| (*beneficiary, sequence)));
            *length += events;
        }
    }
    let written: Vec<&StoredEvent> = all.iter().filter(|e| e.position > head).collect();
    let got: Vec<(Uuid, u64)> = written
        .iter()
        .map(|e| (e.beneficiary_id, e.sequence))
        .collect();
    ensure!(got == expected, "written {got:?}, batch order {expected:?}");
    let positions: Vec<i64> = written.iter().map(|e| e.position).collect();
    ensure!(
        positions.first().is_none_or(|first| *first > head)
            && positions.windows(2).all(|w| w[1] == w[0] + 1),
        "positions {positions:?} after head {head}"
    );
    let earlier = before
        .iter()
        .filter(|e| e.position <= head)
        .map(|e| e.recorded_at)
        .max();
    let times: Vec<_> = written.iter().map(|e| e.recorded_at).collect();
    ensure!(
        times.windows(2).all(|w| w[0] <= w[1])
            && times.first().zip(earlier).is_none_or(|(t, e)| *t >= e),
        "recorded at {times:?} after {earlier:?}"
    );
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
            scope: None,
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
            scope: None,
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
    // What an import runs at its end, on either backend. On PostgreSQL it analyses the columns
    // the store selects rows by.
    store.analyze().await?;
    if let filiera_store::Pool::Postgres(pool) = store.database().reader() {
        let analysed: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_stats WHERE tablename = 'events' ORDER BY attname",
        )
        .fetch_all(pool)
        .await?;
        for column in ["aggregate_id", "aggregate_type", "position", "sequence"] {
            ensure!(analysed.iter().any(|c| c == column), "{analysed:?}");
        }
    }
    Ok(())
}

/// A batch after single commands: its events take one block of consecutive positions above
/// every earlier one, in batch order (interleaved streams included), recorded no earlier than
/// anything before; the single commands after it still get their positions (the batch's
/// transaction-local flag is gone with it).
async fn a_batch_takes_one_block_of_positions_in_batch_order(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let before = CommandContext::new("before");
    store
        .execute(a, enrol("2024-01-10"), before.clone())
        .await??;
    store.execute(c, enrol("2024-01-12"), before).await??;
    let head = store.head().await?;
    let outcomes = store
        .execute_batch(
            vec![
                keyed(b, enrol("2024-01-15"), "block:b:1"),
                keyed(a, enter("internship", "2024-02-01"), "block:a:2"),
                keyed(c, enter("internship", "2024-02-03"), "block:c:2"),
                keyed(b, enter("internship", "2024-02-05"), "block:b:2"),
                // Two events: the entry and the automatic outcome of the internship.
                keyed(a, enter("job_placement", "2024-03-01"), "block:a:3"),
            ],
            false,
        )
        .await?;
    ensure!(
        outcomes
            .iter()
            .all(|o| matches!(o, BatchOutcome::Applied { .. })),
        "{outcomes:?}"
    );
    ensure_one_block(store, head, &outcomes).await?;
    ensure!(feed(store).await?.len() == 8);

    // Single commands after the batch, on the same pool: positions above the batch's.
    let head = store.head().await?;
    for id in [a, b, c] {
        let executed = store
            .execute(
                id,
                enter("job_placement", "2024-04-01"),
                CommandContext::new("after"),
            )
            .await?;
        ensure!(executed.is_ok() || id == a, "{executed:?}");
    }
    let after: Vec<i64> = store
        .read_feed(head, 100)
        .await?
        .iter()
        .map(|e| e.position)
        .collect();
    ensure!(
        !after.is_empty() && after.iter().all(|p| *p > head),
        "positions {after:?} after head {head}"
    );
    Ok(())
}

/// A key bound by another command after the batch looked its keys up (written here while the
/// batch waits to write): the batch's write fails as a lost race and leaves nothing, and the
/// batch is executed one by one, which answers that command from the key's binding.
async fn a_key_bound_meanwhile_sends_the_batch_one_by_one(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let (a, b, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let first = store
        .execute_batch(vec![keyed(other, enrol("2024-01-05"), "other")], false)
        .await?;
    ensure!(matches!(first.as_slice(), [BatchOutcome::Applied { .. }]));
    let batch = vec![
        keyed(a, enrol("2024-01-10"), "meanwhile:a:1"),
        keyed(a, enter("internship", "2024-02-01"), "meanwhile:a:2"),
        keyed(b, enrol("2024-03-01"), "meanwhile:b:1"),
    ];
    let mut gate = h.close_gate().await?;
    // The other command's binding, under the key of the batch's second command.
    const BIND: &str = "INSERT INTO idempotency_keys \
                            (key, aggregate_id, command_id, request_hash, first_sequence, \
                             last_sequence) \
                        SELECT 'meanwhile:a:2', aggregate_id, command_id, request_hash, \
                               first_sequence, last_sequence \
                        FROM idempotency_keys WHERE key = 'other'";
    // rustc does not see the batch's future as `Send` (a `&PathwayCommand` held across an
    // await in `execute_batch`, with a higher-ranked lifetime), so it runs beside the binding
    // on this task instead of a spawned one.
    let meanwhile = async {
        gate.wait_for_writers(1).await?;
        match &mut gate {
            Gate::Pg { pool, .. } => {
                sqlx::query(BIND).execute(&*pool).await?;
            }
            Gate::Sqlite(conn) => {
                sqlx::query(BIND).execute(&mut **conn).await?;
            }
        }
        gate.open().await
    };
    let batch = async { anyhow::Ok(store.execute_batch(batch, false).await?) };
    let (outcomes, ()) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::try_join(batch, meanwhile),
    )
    .await??;
    ensure!(
        matches!(
            outcomes.as_slice(),
            [
                BatchOutcome::Applied { events: 1, .. },
                BatchOutcome::Refused(Rejection::IdempotencyKeyReused),
                BatchOutcome::Applied { events: 1, .. },
            ]
        ),
        "{outcomes:?}"
    );
    ensure!(stream(store, a).await?.len() == 1);
    ensure!(stream(store, b).await?.len() == 1);
    ensure!(feed(store).await?.len() == 3, "nothing else was written");
    let keys = bound_keys(store).await?;
    let bound_to = |key: &str| keys.get(key).map(|row| row.aggregate_id.clone());
    ensure!(bound_to("meanwhile:a:1") == Some(a.to_string()));
    ensure!(bound_to("meanwhile:a:2") == Some(other.to_string()));
    ensure!(bound_to("meanwhile:b:1") == Some(b.to_string()));
    ensure!(keys.len() == 4, "{keys:?}");
    Ok(())
}

/// One key on several commands of a batch: as one by one, the first binds it, the same
/// request again is answered from it, another request with it is refused; the others of the
/// batch are written.
async fn one_key_on_two_commands_of_a_batch_binds_the_first(
    backend: Backend,
) -> anyhow::Result<()> {
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let (a, b, c, d) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut another_request = keyed(c, enrol("2024-01-12"), "twice");
    another_request.ctx.idempotency =
        Some(IdempotencyKey::for_request("twice".into(), &[b"another"]));
    let outcomes = store
        .execute_batch(
            vec![
                keyed(a, enrol("2024-01-10"), "twice"),
                keyed(b, enrol("2024-01-11"), "twice"),
                another_request,
                keyed(d, enrol("2024-01-13"), "d:1"),
            ],
            false,
        )
        .await?;
    ensure!(
        matches!(
            outcomes.as_slice(),
            [
                BatchOutcome::Applied { events: 1, .. },
                BatchOutcome::Replayed { beneficiary },
                BatchOutcome::Refused(Rejection::IdempotencyKeyReused),
                BatchOutcome::Applied { events: 1, .. },
            ] if *beneficiary == a
        ),
        "{outcomes:?}"
    );
    ensure!(stream(store, b).await?.is_empty() && stream(store, c).await?.is_empty());
    ensure!(feed(store).await?.len() == 2);
    let keys = bound_keys(store).await?;
    ensure!(keys.len() == 2 && keys["twice"].aggregate_id == a.to_string());
    Ok(())
}

/// Batches and single commands written concurrently while a reader tails the feed with a
/// checkpoint: the reader sees every event once, positions never go back, and `recorded_at`
/// never decreases along the feed: one order, the order of commits.
async fn batches_and_single_commands_interleave_in_commit_order(
    backend: Backend,
) -> anyhow::Result<()> {
    const SINGLE_WRITERS: usize = 6;
    const BENEFICIARIES: usize = 3;
    const BATCH_WRITERS: usize = 3;
    const BATCHES: usize = 4;
    const PER_BATCH: usize = 10;
    let h = Harness::on(backend).await?;
    let store = &h.store;
    let done = AtomicUsize::new(0);

    // Joined on this task rather than spawned (a batch's future is not `Send`): they still
    // interleave at every round trip to the database.
    let mut writers: Vec<LocalBoxFuture<'_, anyhow::Result<()>>> = Vec::new();
    for w in 0..SINGLE_WRITERS {
        let done = &done;
        writers.push(
            async move {
                let ids: Vec<Uuid> = (0..BENEFICIARIES).map(|_| Uuid::new_v4()).collect();
                for (n, command) in [enrol("2024-01-10"), enter("internship", "2024-02-01")]
                    .into_iter()
                    .enumerate()
                {
                    for id in &ids {
                        let ctx = keyed(*id, command.clone(), &format!("single:{id}:{n}")).ctx;
                        store
                            .execute(*id, command.clone(), ctx)
                            .await?
                            .map_err(|r| anyhow::anyhow!("writer {w}: {r:?}"))?;
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
            .boxed_local(),
        );
    }
    for w in 0..BATCH_WRITERS {
        let done = &done;
        writers.push(
            async move {
                for _ in 0..BATCHES {
                    let ids: Vec<Uuid> = (0..PER_BATCH).map(|_| Uuid::new_v4()).collect();
                    let mut batch = Vec::new();
                    for id in &ids {
                        batch.push(keyed(*id, enrol("2024-01-10"), &format!("batch:{id}:1")));
                    }
                    for id in &ids {
                        let command = enter("internship", "2024-02-01");
                        batch.push(keyed(*id, command, &format!("batch:{id}:2")));
                    }
                    let outcomes = store.execute_batch(batch, false).await?;
                    ensure!(
                        outcomes
                            .iter()
                            .all(|o| matches!(o, BatchOutcome::Applied { .. })),
                        "batch writer {w}: {outcomes:?}"
                    );
                }
                done.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(())
            }
            .boxed_local(),
        );
    }

    let reader = common::tail_feed(store, &done, SINGLE_WRITERS + BATCH_WRITERS);
    let (_, seen) = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::try_join(futures::future::try_join_all(writers), reader),
    )
    .await??;

    let stored = feed(store).await?;
    let expected = SINGLE_WRITERS * BENEFICIARIES * 2 + BATCH_WRITERS * BATCHES * PER_BATCH * 2;
    ensure!(stored.len() == expected, "{} stored", stored.len());
    let stored_ids: Vec<(Uuid, u64)> = stored
        .iter()
        .map(|e| (e.beneficiary_id, e.sequence))
        .collect();
    common::assert_tailed_in_order(&seen, &stored_ids)?;
    for pair in stored.windows(2) {
        ensure!(
            pair[0].recorded_at <= pair[1].recorded_at,
            "recorded at {} (position {}) then {} (position {})",
            pair[0].recorded_at,
            pair[0].position,
            pair[1].recorded_at,
            pair[1].position
        );
    }
    ensure!(bound_keys(store).await?.len() == expected);
    Ok(())
}

/// PostgreSQL: the events table's row triggers stand aside only in a transaction that set
/// `filiera.batch_write` to `on`, and only until it ends: there, a row without a position is
/// refused (nothing assigns one); before and after it, on the same connection, the triggers
/// assign the position and bind the key.
async fn the_row_triggers_stand_aside_only_for_batch_writes() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let h = Harness::on(Backend::Postgres).await?;
    let database = h.store.database();
    let filiera_store::Pool::Postgres(pool) = database.writer() else {
        anyhow::bail!("a PostgreSQL store");
    };
    let mut conn = pool.acquire().await?;
    let insert = |sequence: i64| {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             VALUES ('Pathway', 'x', $1, 'Test', '1', '{}', \
                     jsonb_build_object('idempotency_key', 'k' || $1, 'command_id', 'c'))",
        )
        .bind(sequence)
    };
    let positioned = |sequence: i64| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events e JOIN idempotency_keys k ON k.key = 'k' || $1 \
             WHERE e.aggregate_id = 'x' AND e.sequence = $1 AND e.position > 0",
        )
        .bind(sequence)
    };

    // A session value other than `on` changes nothing.
    sqlx::query("SET filiera.batch_write = 'off'")
        .execute(&mut *conn)
        .await?;
    insert(1).execute(&mut *conn).await?;
    ensure!(positioned(1).fetch_one(&mut *conn).await? == 1);

    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL filiera.batch_write = 'on'")
        .execute(&mut *tx)
        .await?;
    let error = insert(2)
        .execute(&mut *tx)
        .await
        .err()
        .context("an event without a position is refused while the flag is on")?;
    let code = error.as_database_error().and_then(|db| db.code());
    ensure!(code.as_deref() == Some("23502"), "{error}");
    tx.rollback().await?;

    insert(3).execute(&mut *conn).await?;
    ensure!(positioned(3).fetch_one(&mut *conn).await? == 1);
    Ok(())
}
