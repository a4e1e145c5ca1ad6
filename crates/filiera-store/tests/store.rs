//! The store against real databases: every test body runs on SQLite and on PostgreSQL.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use chrono::{NaiveDate, Utc};
use common::Harness;
use filiera_domain::{
    CloseOutcome, ExitOutcome, PathwayCommand, PathwayError, PathwayEvent, PathwayStatus, Referral,
    Transition,
};
use filiera_store::{CommandContext, Executed, Rejection, Store, StoreError, StoredEvent};
use uuid::Uuid;

filiera_testkit::on_both_backends!(
    harness = crate::common::Harness::on;
    round_trip_records_positions_time_and_territory,
    refusals_write_nothing,
    racing_writers_without_gate_lose_nothing,
    idempotency_key_replays_the_first_answer,
    a_group_commits_together_and_answers_each_command_as_alone,
    a_group_that_loses_a_race_is_executed_alone,
    a_scope_admits_only_its_streams,
    feed_pages_in_position_order,
    feed_reader_never_skips_concurrent_commits,
    many_concurrent_writers_all_succeed,
    migrate_is_idempotent,
    leadership_is_exclusive_and_passes_on,
);

// The gate holds back writers at the database, where only commands committing alone wait.
filiera_testkit::on_both_backends!(
    harness = crate::common::Harness::alone;
    racing_writers_exactly_one_wins,
    racing_enrolments_with_one_key_make_one_stream,
    a_scope_admits_only_its_streams_alone,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn date(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn enrol(territory: &str, on: &str) -> PathwayCommand {
    PathwayCommand::Enrol {
        territory: territory.to_owned(),
        on: date(on),
        referral: Referral::SocialServices,
        support_band: None,
    }
}

fn stage(stage: &str, on: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: stage.to_owned(),
        on: date(on),
        provider: None,
    }
}

fn move_to(territory: &str, on: &str) -> PathwayCommand {
    PathwayCommand::ChangeTerritory {
        territory: territory.to_owned(),
        on: date(on),
    }
}

fn close(on: &str) -> PathwayCommand {
    PathwayCommand::ClosePathway {
        on: date(on),
        outcome: CloseOutcome::Employed,
    }
}

fn undo(reason: &str) -> PathwayCommand {
    PathwayCommand::Undo {
        reason: reason.to_owned(),
    }
}

fn alice() -> CommandContext {
    CommandContext::new("alice")
}

/// Executes a command that must be applied.
async fn ok(
    store: &Store,
    id: Uuid,
    command: PathwayCommand,
    ctx: CommandContext,
) -> anyhow::Result<Executed> {
    let name = command.name();
    store
        .execute(id, command, ctx)
        .await?
        .with_context(|| format!("command {name} on {id} was rejected"))
}

/// Executes a command that must be refused by the pathway rules.
async fn refused(store: &Store, id: Uuid, command: PathwayCommand) -> anyhow::Result<PathwayError> {
    match store.execute(id, command, alice()).await? {
        Err(Rejection::Refused(error)) => Ok(error),
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
}

fn ensure_strictly_increasing(events: &[StoredEvent]) -> anyhow::Result<()> {
    for pair in events.windows(2) {
        ensure!(
            pair[0].position < pair[1].position,
            "positions {} then {}",
            pair[0].position,
            pair[1].position
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bodies

async fn round_trip_records_positions_time_and_territory(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let started = Utc::now() - chrono::Duration::seconds(1);
    let id = Uuid::new_v4();

    let enrolled = ok(store, id, enrol("LOM-BG-BERGAMO", "2024-01-10"), alice()).await?;
    ensure!(!enrolled.replayed && enrolled.beneficiary == id);
    ensure!(enrolled.events.len() == 1 && enrolled.events[0].sequence == 1);
    ensure!(enrolled.events[0].territory.as_deref() == Some("LOM-BG-BERGAMO"));
    ensure!(enrolled.events[0].principal.as_deref() == Some("alice"));
    ensure!(enrolled.pathway.state().status == PathwayStatus::Open);

    ok(
        store,
        id,
        stage("socio_occupational", "2024-02-01"),
        alice(),
    )
    .await?;
    let progressed = ok(
        store,
        id,
        stage("internship", "2024-03-01"),
        CommandContext::new("bob"),
    )
    .await?;
    ensure!(progressed.events.len() == 2, "automatic exit plus entry");
    ensure!(matches!(
        progressed.events[0].event,
        PathwayEvent::StageExited {
            outcome: ExitOutcome::MovedOn,
            ..
        }
    ));
    ensure!(matches!(
        progressed.events[1].event,
        PathwayEvent::StageEntered {
            transition: Transition::Progression,
            ..
        }
    ));
    ensure!(
        progressed
            .events
            .iter()
            .all(|e| e.principal.as_deref() == Some("bob"))
    );
    ensure!(progressed.pathway.version() == 4);

    let moved = ok(store, id, move_to("LOM-MI-MILANO", "2024-04-01"), alice()).await?;
    ensure!(moved.events[0].territory.as_deref() == Some("LOM-MI-MILANO"));
    ensure!(moved.events[0].sequence == 5);

    // Undoing the move: the territory in force after the undo is the one before the move.
    let undone = ok(store, id, undo("wrong territory"), alice()).await?;
    ensure!(undone.events[0].territory.as_deref() == Some("LOM-BG-BERGAMO"));
    ensure!(matches!(
        &undone.events[0].event,
        PathwayEvent::CommandUndone { undone_sequences, .. } if undone_sequences == &[5]
    ));

    let loaded = store.load(id).await?.context("stream exists")?;
    ensure!(
        loaded == undone.pathway,
        "execute returns the state load gives"
    );
    ensure!(loaded.state().territory.as_ref().map(|t| t.as_str()) == Some("LOM-BG-BERGAMO"));
    ensure!(loaded.state().current_stage.as_ref().map(|s| s.as_str()) == Some("internship"));

    let history = store.history(id).await?.context("history exists")?;
    ensure!(history.iter().map(|e| e.sequence).eq(1..=6));
    ensure_strictly_increasing(&history)?;
    let voided: Vec<u64> = history
        .iter()
        .filter(|e| e.voided)
        .map(|e| e.sequence)
        .collect();
    ensure!(voided == [5], "voided: {voided:?}");
    let now = Utc::now() + chrono::Duration::seconds(1);
    for pair in history.windows(2) {
        ensure!(pair[0].recorded_at <= pair[1].recorded_at);
    }
    ensure!(
        history
            .iter()
            .all(|e| started <= e.recorded_at && e.recorded_at <= now)
    );
    // The events `execute` returned are the stored ones.
    let returned: Vec<_> = [&enrolled, &progressed, &moved, &undone]
        .iter()
        .flat_map(|x| {
            x.events
                .iter()
                .map(|e| (e.sequence, e.position, e.recorded_at))
        })
        .collect();
    for (sequence, position, recorded_at) in returned {
        let stored = &history[sequence as usize - 1];
        ensure!(stored.position == position && stored.recorded_at == recorded_at);
    }

    // Undoing an enrolment voids the beneficiary; its territory stays the one before.
    let other = Uuid::new_v4();
    ok(store, other, enrol("PIE-TO-TORINO", "2024-05-01"), alice()).await?;
    let voiding = ok(store, other, undo("enrolled by mistake"), alice()).await?;
    ensure!(voiding.events[0].territory.as_deref() == Some("PIE-TO-TORINO"));
    ensure!(voiding.pathway.state().status == PathwayStatus::Voided);
    let history = store.history(other).await?.context("history exists")?;
    ensure!(history.len() == 2 && history[0].voided && !history[1].voided);
    Ok(())
}

async fn refusals_write_nothing(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let nobody = Uuid::new_v4();
    ensure!(
        refused(store, nobody, stage("internship", "2024-01-01")).await?
            == PathwayError::NotEnrolled
    );
    ensure!(store.load(nobody).await?.is_none());
    ensure!(store.history(nobody).await?.is_none());
    ensure!(store.head().await? == 0);

    let id = Uuid::new_v4();
    ok(store, id, enrol("LOM", "2024-01-10"), alice()).await?;
    let head = store.head().await?;
    ensure!(head > 0);

    ensure!(refused(store, id, enrol("LOM", "2024-01-11")).await? == PathwayError::AlreadyEnrolled);
    ensure!(matches!(
        refused(store, id, stage("astronaut", "2024-01-11")).await?,
        PathwayError::UnknownStage { .. }
    ));
    ensure!(matches!(
        refused(store, id, move_to("ATLANTIS", "2024-01-11")).await?,
        PathwayError::UnknownTerritory { .. }
    ));
    ensure!(matches!(
        refused(store, id, stage("internship", "2023-12-31")).await?,
        PathwayError::OutOfOrder { .. }
    ));
    ensure!(matches!(
        refused(store, id, stage("internship", "2025-07-05")).await?,
        PathwayError::DateInFuture { .. }
    ));
    let exit = PathwayCommand::ExitStage {
        on: date("2024-01-11"),
        outcome: ExitOutcome::Completed,
    };
    ensure!(refused(store, id, exit).await? == PathwayError::NoOpenEpisode);

    ensure!(store.head().await? == head, "refusals moved the head");
    ensure!(store.history(id).await?.context("history")?.len() == 1);

    // A refused command does not bind its idempotency key.
    let keyed = alice().with_idempotency("refused-key", "hash-a");
    let answer = store.execute(id, enrol("LOM", "2024-01-11"), keyed).await?;
    ensure!(matches!(
        answer,
        Err(Rejection::Refused(PathwayError::AlreadyEnrolled))
    ));
    let keyed = alice().with_idempotency("refused-key", "hash-b");
    let applied = ok(store, id, stage("internship", "2024-01-11"), keyed).await?;
    ensure!(!applied.replayed);
    Ok(())
}

async fn racing_writers_exactly_one_wins(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let id = Uuid::new_v4();
    ok(store, id, enrol("LOM", "2024-01-10"), alice()).await?;
    ok(
        store,
        id,
        stage("socio_occupational", "2024-02-01"),
        alice(),
    )
    .await?;
    let head = store.head().await?;

    const WRITERS: usize = 8;
    let gate = h.close_gate().await?;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let ctx = CommandContext::new(format!("writer-{i}"));
                store
                    .execute(id, stage("internship", "2024-03-01"), ctx)
                    .await
            })
        })
        .collect();
    gate.wait_for_writers(WRITERS as i64).await?;
    gate.open().await?;

    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await?? {
            Ok(executed) => winners.push(executed),
            Err(Rejection::Conflict) => conflicts += 1,
            Err(other) => anyhow::bail!("unexpected rejection: {other}"),
        }
    }
    ensure!(
        winners.len() == 1 && conflicts == WRITERS - 1,
        "{} winners",
        winners.len()
    );
    let history = store.history(id).await?.context("history")?;
    ensure!(history.iter().map(|e| e.sequence).eq(1..=4));
    ensure!(
        history[2..]
            .iter()
            .all(|e| e.principal == winners[0].events[0].principal)
    );
    ensure!(store.read_feed(head, 100).await?.len() == 2);
    Ok(())
}

async fn racing_writers_without_gate_lose_nothing(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let id = Uuid::new_v4();
    ok(store, id, enrol("LOM", "2024-01-10"), alice()).await?;

    const WRITERS: usize = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .execute(id, stage("internship", "2024-03-01"), alice())
                    .await
            })
        })
        .collect();
    let (mut successes, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await?? {
            Ok(_) => successes += 1,
            Err(Rejection::Conflict) => conflicts += 1,
            Err(other) => anyhow::bail!("unexpected rejection: {other}"),
        }
    }
    ensure!(successes >= 1 && successes + conflicts == WRITERS);
    let history = store.history(id).await?.context("history")?;
    // The first entry writes one event, each later one an automatic exit and an entry.
    ensure!(
        history.len() == 1 + 1 + 2 * (successes - 1),
        "{} events for {successes} successes",
        history.len()
    );
    ensure!(
        history
            .iter()
            .map(|e| e.sequence)
            .eq(1..=history.len() as u64)
    );
    ensure_strictly_increasing(&history)?;
    Ok(())
}

async fn idempotency_key_replays_the_first_answer(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let id = Uuid::new_v4();
    let keyed = alice().with_idempotency("enrol-1", "hash-1");
    let first = ok(
        store,
        id,
        enrol("LOM-LC-LECCO", "2024-01-10"),
        keyed.clone(),
    )
    .await?;
    ensure!(!first.replayed);
    let head = store.head().await?;

    // The retry proposes another id, as a retried POST /v1/beneficiaries would.
    let again = ok(
        store,
        Uuid::new_v4(),
        enrol("LOM-LC-LECCO", "2024-01-10"),
        keyed,
    )
    .await?;
    ensure!(again.replayed && again.beneficiary == id);
    ensure!(again.events == first.events && again.pathway == first.pathway);
    ensure!(store.head().await? == head, "a replay wrote something");

    let reused = alice().with_idempotency("enrol-1", "another request");
    let answer = store
        .execute(id, stage("internship", "2024-02-01"), reused)
        .await?;
    ensure!(answer == Err(Rejection::IdempotencyKeyReused));

    // A command writing two events, replayed after a later command: the answer is the state
    // right after it, with both its events.
    ok(
        store,
        id,
        stage("socio_occupational", "2024-02-01"),
        alice(),
    )
    .await?;
    let keyed = alice().with_idempotency("stage-2", "hash-2");
    let two = ok(store, id, stage("internship", "2024-03-01"), keyed.clone()).await?;
    ensure!(two.events.len() == 2);
    ok(store, id, stage("job_placement", "2024-04-01"), alice()).await?;
    let replay = ok(store, id, stage("internship", "2024-03-01"), keyed).await?;
    ensure!(replay.replayed && replay.events == two.events && replay.pathway == two.pathway);
    ensure!(
        replay
            .pathway
            .state()
            .current_stage
            .as_ref()
            .map(|s| s.as_str())
            == Some("internship")
    );
    ensure!(store.history(id).await?.context("history")?.len() == 6);
    Ok(())
}

async fn racing_enrolments_with_one_key_make_one_stream(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    const WRITERS: usize = 8;
    let gate = h.close_gate().await?;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let ctx = alice().with_idempotency("same-key", "same-request");
                store
                    .execute(Uuid::new_v4(), enrol("LOM", "2024-01-10"), ctx)
                    .await
            })
        })
        .collect();
    gate.wait_for_writers(WRITERS as i64).await?;
    gate.open().await?;

    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await??.map_err(|r| anyhow::anyhow!("rejected: {r}"))?);
    }
    let ids: BTreeSet<Uuid> = answers.iter().map(|a| a.beneficiary).collect();
    ensure!(ids.len() == 1, "answers name {} beneficiaries", ids.len());
    ensure!(answers.iter().filter(|a| !a.replayed).count() == 1);
    ensure!(answers.iter().all(|a| a.events == answers[0].events));
    let feed = store.read_feed(0, 100).await?;
    ensure!(
        feed.len() == 1 && ids.contains(&feed[0].beneficiary_id),
        "feed: {feed:?}"
    );
    Ok(())
}

/// Commands queued while a group is being written form the next group: one transaction, and
/// on PostgreSQL one statement, whose rows share one `recorded_at` (SQLite: one multi-row
/// insert, one `'now'`). Each caller still gets what it would get alone: its own events, a
/// refusal, a conflict for the later writers of one beneficiary, a replay for a bound key or a
/// key repeated in the group.
async fn a_group_commits_together_and_answers_each_command_as_alone(
    h: &Harness,
) -> anyhow::Result<()> {
    let store = &h.store;
    let contested = Uuid::new_v4();
    ok(store, contested, enrol("LOM", "2024-01-10"), alice()).await?;
    let keyed = alice().with_idempotency("bound-before", "hash-1");
    let bound = ok(
        store,
        Uuid::new_v4(),
        enrol("LOM", "2024-01-10"),
        keyed.clone(),
    )
    .await?;
    let head = store.head().await?;

    // The first group waits at the gate; everything sent meanwhile queues behind it.
    let gate = h.close_gate().await?;
    let spawn = |id: Uuid, command: PathwayCommand, ctx: CommandContext| {
        let store = store.clone();
        tokio::spawn(async move { store.execute(id, command, ctx).await })
    };
    let first = spawn(Uuid::new_v4(), enrol("LOM", "2024-01-10"), alice());
    gate.wait_for_writers(1).await?;
    let enrolments: Vec<_> = (0..12)
        .map(|i| {
            let ctx = alice().with_idempotency(format!("enrol-{i}"), format!("hash-{i}"));
            spawn(Uuid::new_v4(), enrol("LOM-BG", "2024-01-10"), ctx)
        })
        .collect();
    let refused = spawn(Uuid::new_v4(), stage("internship", "2024-02-01"), alice());
    let racing: Vec<_> = (0..3)
        .map(|_| spawn(contested, stage("internship", "2024-02-01"), alice()))
        .collect();
    // Racing too, but refused on the stream it loaded: refused, not beaten to the commit.
    let refused_racer = spawn(contested, enrol("LOM", "2024-01-10"), alice());
    let replayed = spawn(Uuid::new_v4(), enrol("LOM", "2024-01-10"), keyed);
    let twins: Vec<_> = (0..2)
        .map(|_| {
            let ctx = alice().with_idempotency("twin", "hash-twin");
            spawn(Uuid::new_v4(), enrol("LOM-MI", "2024-01-10"), ctx)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Nothing has been written: every command waits for the first group's commit.
    ensure!(
        store.head().await? == head,
        "a command committed past the gate"
    );
    gate.open().await?;

    let first = first.await??.map_err(|r| anyhow::anyhow!("first: {r}"))?;
    let mut together = Vec::new();
    for task in enrolments {
        let executed = task
            .await??
            .map_err(|r| anyhow::anyhow!("enrolment: {r}"))?;
        ensure!(!executed.replayed && executed.events.len() == 1);
        together.push(executed);
    }
    ensure!(matches!(
        refused.await??,
        Err(Rejection::Refused(PathwayError::NotEnrolled))
    ));
    let (mut winners, mut conflicts) = (Vec::new(), 0);
    for task in racing {
        match task.await?? {
            Ok(executed) => winners.push(executed),
            Err(Rejection::Conflict) => conflicts += 1,
            Err(other) => anyhow::bail!("racing writer: {other}"),
        }
    }
    ensure!(
        winners.len() == 1 && conflicts == 2,
        "{} winners",
        winners.len()
    );
    let answer = refused_racer.await??;
    ensure!(
        matches!(
            answer,
            Err(Rejection::Refused(PathwayError::AlreadyEnrolled))
        ),
        "{answer:?}"
    );
    let replayed = replayed
        .await??
        .map_err(|r| anyhow::anyhow!("replay: {r}"))?;
    ensure!(replayed.replayed && replayed.beneficiary == bound.beneficiary);
    ensure!(replayed.events == bound.events);
    let mut twins_answers = Vec::new();
    for task in twins {
        twins_answers.push(task.await??.map_err(|r| anyhow::anyhow!("twin: {r}"))?);
    }
    ensure!(twins_answers.iter().filter(|a| a.replayed).count() == 1);
    ensure!(twins_answers[0].events == twins_answers[1].events);
    together.extend(winners);
    together.extend(twins_answers.into_iter().filter(|a| !a.replayed));

    // Each answer is what the store holds, and the second group is one transaction.
    let feed = store.read_feed(head, 1000).await?;
    let answered: Vec<&StoredEvent> = std::iter::once(&first)
        .chain(&together)
        .flat_map(|executed| &executed.events)
        .collect();
    ensure!(feed.len() == answered.len(), "{} events stored", feed.len());
    for event in &answered {
        ensure!(feed.contains(event), "answered {event:?}, not in the feed");
    }
    let times: BTreeSet<_> = together
        .iter()
        .flat_map(|executed| &executed.events)
        .map(|event| event.recorded_at)
        .collect();
    ensure!(
        times.len() == 1,
        "the second group took {} commits",
        times.len()
    );
    let history = store.history(contested).await?.context("history")?;
    ensure!(
        history.len() == 2,
        "the contested stream has {}",
        history.len()
    );
    Ok(())
}

/// A group decided against a stream that another writer extended before the group could
/// write fails as a whole, and each of its commands is executed again alone, against the
/// stream as it now is.
async fn a_group_that_loses_a_race_is_executed_alone(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
    for beneficiary in [id, other] {
        ok(store, beneficiary, enrol("LOM", "2024-01-10"), alice()).await?;
    }
    ok(
        store,
        other,
        stage("socio_occupational", "2024-02-01"),
        alice(),
    )
    .await?;

    let mut gate = h.close_gate().await?;
    let racing = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .execute(id, stage("internship", "2024-03-01"), alice())
                .await
        })
    };
    gate.wait_for_writers(1).await?;
    // The group decided against `id` at version 1; another writer now takes sequence 2.
    gate.copy_event((other, 2), (id, 2)).await?;
    gate.open().await?;

    let executed = racing
        .await??
        .map_err(|r| anyhow::anyhow!("rejected: {r}"))?;
    // Decided again after the other writer's entry: it moves on from it (exit, then entry).
    ensure!(
        executed.events.iter().map(|e| e.sequence).eq([3, 4]),
        "sequences {:?}",
        executed
            .events
            .iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>()
    );
    let history = store.history(id).await?.context("history")?;
    ensure!(history.len() == 4);
    ensure!(matches!(
        history[2].event,
        PathwayEvent::StageExited {
            outcome: ExitOutcome::MovedOn,
            ..
        }
    ));
    Ok(())
}

/// A command's scope is judged on the stream it is decided on: a stream outside it, or none,
/// is [`Rejection::OutOfScope`] and nothing is written; a bound key answers only while the
/// stream is still in scope.
async fn a_scope_admits_only_its_streams(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let bergamo = || {
        alice().within(filiera_store::WriteScope::new(|pathway| {
            pathway
                .state()
                .territory
                .as_ref()
                .is_some_and(|t| t.as_str() == "LOM-BG")
        }))
    };
    let (inside, outside) = (Uuid::new_v4(), Uuid::new_v4());
    ok(store, inside, enrol("LOM-BG", "2024-01-10"), alice()).await?;
    ok(store, outside, enrol("LOM-MI", "2024-01-10"), alice()).await?;
    let head = store.head().await?;

    for id in [outside, Uuid::new_v4()] {
        let answer = store
            .execute(id, stage("internship", "2024-02-01"), bergamo())
            .await?;
        ensure!(answer == Err(Rejection::OutOfScope), "{answer:?}");
    }
    ensure!(
        store.head().await? == head,
        "a command out of scope wrote something"
    );

    let keyed = bergamo().with_idempotency("in-scope", "hash");
    let first = ok(
        store,
        inside,
        stage("internship", "2024-02-01"),
        keyed.clone(),
    )
    .await?;
    let again = ok(
        store,
        inside,
        stage("internship", "2024-02-01"),
        keyed.clone(),
    )
    .await?;
    ensure!(again.replayed && again.events == first.events);
    // Moved out of the scope: the key answers no more than a new command would.
    ok(store, inside, move_to("LOM-MI", "2024-03-01"), alice()).await?;
    let answer = store
        .execute(inside, stage("internship", "2024-02-01"), keyed)
        .await?;
    ensure!(answer == Err(Rejection::OutOfScope), "{answer:?}");
    Ok(())
}

/// [`a_scope_admits_only_its_streams`] with every command in a transaction of its own.
async fn a_scope_admits_only_its_streams_alone(h: &Harness) -> anyhow::Result<()> {
    a_scope_admits_only_its_streams(h).await
}

async fn feed_pages_in_position_order(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    ensure!(store.head().await? == 0 && store.read_feed(0, 10).await?.is_empty());
    let mut wakeups = store.wakeups();

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        ok(store, *id, enrol("LOM", "2024-01-10"), alice()).await?;
    }
    for id in &ids {
        ok(
            store,
            *id,
            stage("socio_occupational", "2024-02-01"),
            alice(),
        )
        .await?;
        ok(store, *id, stage("internship", "2024-03-01"), alice()).await?;
    }
    let last = ok(store, ids[0], close("2024-04-01"), alice()).await?;

    let all = store.read_feed(0, 1000).await?;
    ensure!(all.len() == 3 * 4 + 2, "{} events", all.len());
    ensure_strictly_increasing(&all)?;
    let head = store.head().await?;
    ensure!(head == all.last().context("events")?.position);
    ensure!(last.events.last().map(|e| e.position) == Some(head));
    ensure!(
        all.iter()
            .all(|e| !e.voided && e.territory.as_deref() == Some("LOM"))
    );

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_feed(after, 4).await?;
        ensure!(page.len() <= 4);
        let Some(tail) = page.last() else { break };
        after = tail.position;
        paged.extend(page);
    }
    ensure!(paged == all);
    ensure!(store.read_feed(head, 10).await?.is_empty());
    ensure!(store.read_feed(all[5].position, 2).await? == all[6..8]);

    // Within a stream, feed order is sequence order.
    let mut per_stream: HashMap<Uuid, Vec<u64>> = HashMap::new();
    for event in &all {
        per_stream
            .entry(event.beneficiary_id)
            .or_default()
            .push(event.sequence);
    }
    for sequences in per_stream.values() {
        ensure!(sequences.iter().copied().eq(1..=sequences.len() as u64));
    }

    ensure!(
        *wakeups.borrow_and_update() == head,
        "local commits bump the wake-up hint"
    );
    Ok(())
}

async fn feed_reader_never_skips_concurrent_commits(h: &Harness) -> anyhow::Result<()> {
    const WRITERS: usize = 16;
    const BENEFICIARIES: usize = 5;
    let store = &h.store;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let ids: Vec<Uuid> = (0..BENEFICIARIES).map(|_| Uuid::new_v4()).collect();
                let ctx = CommandContext::new(format!("writer-{w}"));
                let steps = [
                    enrol("LOM-BG", "2024-01-10"),
                    stage("socio_occupational", "2024-02-01"),
                    stage("internship", "2024-03-01"),
                    move_to("LOM-MI", "2024-04-01"),
                    close("2024-05-01"),
                ];
                // Interleave the beneficiaries so that streams grow side by side.
                for step in steps {
                    for id in &ids {
                        ok(&store, *id, step.clone(), ctx.clone()).await?;
                    }
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                anyhow::Ok(())
            })
        })
        .collect();

    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move { common::tail_feed(&store, &done, WRITERS).await })
    };

    for writer in writers {
        writer.await??;
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), reader).await???;

    let stored: Vec<(Uuid, u64)> = store
        .read_feed(0, 100_000)
        .await?
        .into_iter()
        .map(|e| (e.beneficiary_id, e.sequence))
        .collect();
    // 5 commands per beneficiary, two of them writing two events.
    ensure!(
        stored.len() == WRITERS * BENEFICIARIES * 7,
        "{} stored",
        stored.len()
    );
    common::assert_tailed_in_order(&seen, &stored)
}

async fn many_concurrent_writers_all_succeed(h: &Harness) -> anyhow::Result<()> {
    const WRITERS: usize = 32;
    let store = &h.store;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                barrier.wait().await;
                ok(&store, id, enrol("LOM", "2024-01-10"), alice()).await?;
                ok(&store, id, stage("internship", "2024-02-01"), alice()).await
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    ensure!(store.read_feed(0, 1000).await?.len() == 2 * WRITERS);
    Ok(())
}

async fn migrate_is_idempotent(h: &Harness) -> anyhow::Result<()> {
    h.store.migrate().await?;
    ensure!(
        h.store
            .readiness(std::time::Duration::from_secs(5))
            .await
            .is_ok()
    );
    ensure!(
        h.store.backend_name()
            == if h.pg_url().is_some() {
                "postgres"
            } else {
                "sqlite"
            }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn unsupported_url_is_refused_without_echoing_it() {
    let error = Store::connect("mysql://root:secret@localhost/db", common::services())
        .await
        .expect_err("mysql is not supported");
    assert!(matches!(error, StoreError::UnsupportedUrl { ref scheme } if scheme == "mysql"));
    assert!(!error.to_string().contains("secret"));
    let error = Store::connect("sqlite::memory:", common::services())
        .await
        .expect_err("in-memory is refused");
    assert!(matches!(error, StoreError::InMemorySqlite));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifications_wake_other_processes() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let url = h.pg_url().context("postgres")?;
    let other = Store::connect(url, common::services()).await?;
    let mut wakeups = other.wakeups();
    // The other store's LISTEN task subscribes in the background: retry until it has.
    for _ in 0..20 {
        let executed = ok(
            &h.store,
            Uuid::new_v4(),
            enrol("LOM", "2024-01-10"),
            alice(),
        )
        .await?;
        let position = executed.events[0].position;
        let woken = tokio::time::timeout(
            Duration::from_millis(500),
            wakeups.wait_for(|p| *p >= position),
        )
        .await;
        if let Ok(changed) = woken {
            changed?;
            return Ok(());
        }
    }
    anyhow::bail!("no wake-up from the other process")
}

#[tokio::test]
async fn sqlite_file_survives_reopening() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("a/b/filiera.db").display());
    let id = Uuid::new_v4();
    let position = {
        let store = Store::connect(&url, common::services()).await?;
        store.migrate().await?;
        ok(&store, id, enrol("LOM", "2024-01-10"), alice())
            .await?
            .events[0]
            .position
    };
    let store = Store::connect(&url, common::services()).await?;
    store.migrate().await?;
    ensure!(store.load(id).await?.is_some());
    ensure!(
        *store.wakeups().borrow() == position,
        "the hint starts at the head"
    );
    let next = ok(&store, id, stage("internship", "2024-02-01"), alice()).await?;
    ensure!(next.events[0].position == position + 1);
    Ok(())
}

async fn leadership_is_exclusive_and_passes_on(h: &Harness) -> anyhow::Result<()> {
    let store = &h.store;
    let mut first = store
        .try_lead("projection:test")
        .await?
        .ok_or_else(|| anyhow::anyhow!("nobody leads yet, the first candidate must win"))?;
    ensure!(first.job() == "projection:test");
    ensure!(
        store.try_lead("projection:test").await?.is_none(),
        "a second candidate must not lead while the first does"
    );
    let other = store.try_lead("relay").await?;
    ensure!(other.is_some(), "another job is led independently");
    ensure!(first.check().await, "the leader still leads");
    first.release().await;
    let second = store.try_lead("projection:test").await?;
    ensure!(
        second.is_some(),
        "after a release, the next candidate leads"
    );
    // A leader that vanishes without releasing (a crashed process) is replaced: at once on
    // PostgreSQL (its session ends), after the lease expires on SQLite.
    drop(second);
    let deadline = std::time::Instant::now()
        + filiera_store::lease::SQLITE_LEASE_TTL
        + std::time::Duration::from_secs(3);
    loop {
        if store.try_lead("projection:test").await?.is_some() {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "nobody took over the job of a vanished leader"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}
