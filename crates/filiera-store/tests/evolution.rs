//! Stored events written in an old form are read as today's, on both backends (ADR 0007).
//!
//! `fixtures/v1_streams.json` holds rows exactly as the build before ADR 0007 wrote them
//! (version 1, externally tagged payloads), generated once by running that build and never
//! regenerated. Each test inserts them raw, then reads through the production paths and
//! compares with what the rows meant, written out below by hand.

// Only the harness is used here, not the gate of the race tests.
#[allow(dead_code)]
mod common;

use std::collections::HashMap;

use anyhow::{Context as _, ensure};
use chrono::NaiveDate;
use common::Harness;
use filiera_domain::{
    CloseOutcome, ExitOutcome, Pathway, PathwayCommand, PathwayError, PathwayEvent, PathwayStatus,
    Referral, StageCode, SupportBand, TerritoryCode, Transition,
};
use filiera_store::{CommandContext, Rejection, on_pool};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row as _;
use uuid::Uuid;

filiera_testkit::on_both_backends!(
    harness = crate::common::Harness::on;
    v1_streams_load_fold_and_feed_as_today,
    commands_continue_a_v1_stream_in_v2,
);

/// The fixture: rows of `events` without the columns the triggers set.
#[derive(Debug, Deserialize)]
struct Fixture {
    rows: Vec<FixtureRow>,
}

#[derive(Debug, Deserialize)]
struct FixtureRow {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

const V1_STREAMS: &str = include_str!("fixtures/v1_streams.json");

/// The beneficiary who goes through every kind of pathway event.
const WALKER: &str = "6f1c2a7e-0d4b-4a51-9a43-3c1f5b0e7a01";
/// The beneficiary whose enrolment was undone and whose personal data was erased.
const VOIDED: &str = "b2d8e4f0-7c3a-4e1b-8f26-91a0c4d5e602";

fn fixture() -> anyhow::Result<Fixture> {
    serde_json::from_str(V1_STREAMS).context("the v1 fixture parses")
}

/// Inserts the fixture rows as they are, in their order: the triggers give them positions
/// (and `recorded_at`) as they did when they were first written.
async fn insert_raw(h: &Harness, rows: &[FixtureRow]) -> anyhow::Result<()> {
    let sql = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                   event_version, payload, metadata) \
               VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_pool!(h.store.database().writer(), |pool| {
        for row in rows {
            sqlx::query(sql)
                .bind(&row.aggregate_type)
                .bind(&row.aggregate_id)
                .bind(row.sequence)
                .bind(&row.event_type)
                .bind(&row.event_version)
                .bind(&row.payload)
                .bind(&row.metadata)
                .execute(pool)
                .await?;
        }
    });
    Ok(())
}

fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn stage(code: &str) -> StageCode {
    StageCode::parse(code).expect("a stage code")
}

fn territory(code: &str) -> TerritoryCode {
    TerritoryCode::parse(code).expect("a territory code")
}

/// What the walker's v1 rows mean, in sequence order.
fn walker_events() -> Vec<PathwayEvent> {
    let entered = |code, on, from: Option<&str>, transition, provider: Option<&str>| {
        PathwayEvent::StageEntered {
            stage: stage(code),
            on: d(on),
            from_stage: from.map(stage),
            transition,
            provider: provider.map(str::to_owned),
        }
    };
    let exited = |code, on, outcome| PathwayEvent::StageExited {
        stage: stage(code),
        on: d(on),
        outcome,
    };
    vec![
        PathwayEvent::Enrolled {
            territory: territory("LOM-BG-BERGAMO"),
            on: d("2024-01-10"),
            referral: Referral::SocialServices,
            support_band: Some(SupportBand::Medium),
        },
        entered(
            "socio_occupational",
            "2024-01-15",
            None,
            Transition::Entry,
            Some("Cooperativa Alfa"),
        ),
        exited("socio_occupational", "2024-02-01", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-02-01",
            Some("socio_occupational"),
            Transition::Progression,
            None,
        ),
        exited("internship", "2024-03-01", ExitOutcome::Completed),
        PathwayEvent::TerritoryChanged {
            from: territory("LOM-BG-BERGAMO"),
            to: territory("LOM-LC-LECCO"),
            on: d("2024-03-05"),
        },
        entered(
            "socio_occupational",
            "2024-03-10",
            Some("internship"),
            Transition::Regression,
            Some("Consorzio Beta"),
        ),
        exited(
            "socio_occupational",
            "2024-04-01",
            ExitOutcome::PathwayClosed,
        ),
        PathwayEvent::PathwayClosed {
            on: d("2024-04-01"),
            outcome: CloseOutcome::Employed,
        },
        PathwayEvent::PathwayReopened {
            on: d("2024-05-02"),
        },
        entered(
            "socio_occupational",
            "2024-05-06",
            Some("socio_occupational"),
            Transition::Reiteration,
            None,
        ),
        exited("socio_occupational", "2024-06-03", ExitOutcome::MovedOn),
        entered(
            "internship",
            "2024-06-03",
            Some("socio_occupational"),
            Transition::Progression,
            None,
        ),
        PathwayEvent::CommandUndone {
            on: d(common::TODAY),
            undone_sequences: vec![12, 13],
            reason: "the internship starts next month".into(),
        },
        exited("socio_occupational", "2024-06-20", ExitOutcome::Interrupted),
    ]
}

/// What the voided beneficiary's v1 rows mean, in sequence order.
fn voided_events() -> Vec<PathwayEvent> {
    vec![
        PathwayEvent::Enrolled {
            territory: territory("PIE-TO-TORINO"),
            on: d("2024-01-12"),
            referral: Referral::SelfReferral,
            support_band: None,
        },
        PathwayEvent::CommandUndone {
            on: d(common::TODAY),
            undone_sequences: vec![1],
            reason: "enrolled the wrong person".into(),
        },
        PathwayEvent::PersonalDataErased {
            on: d(common::TODAY),
        },
    ]
}

fn meant(beneficiary: &str) -> Vec<PathwayEvent> {
    match beneficiary {
        WALKER => walker_events(),
        _ => voided_events(),
    }
}

fn metadata_text(row: &FixtureRow, key: &str) -> Option<String> {
    row.metadata
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Bodies

async fn v1_streams_load_fold_and_feed_as_today(h: &Harness) -> anyhow::Result<()> {
    let fixture = fixture()?;
    ensure!(
        fixture.rows.iter().all(|r| r.event_version == "1"),
        "the fixture holds version 1 rows only"
    );
    insert_raw(h, &fixture.rows).await?;
    let walker = Uuid::parse_str(WALKER)?;
    let voided = Uuid::parse_str(VOIDED)?;

    // The state, folded from the stream the store loads.
    let pathway = h.store.load(walker).await?.context("the walker's stream")?;
    ensure!(
        pathway == Pathway::from_events(&walker_events()),
        "the walker's stream folds as its events mean: {pathway:?}"
    );
    let state = pathway.state();
    ensure!(state.status == PathwayStatus::Open);
    ensure!(state.territory == Some(territory("LOM-LC-LECCO")));
    ensure!(state.current_stage.is_none());
    ensure!(state.last_stage == Some(stage("socio_occupational")));
    ensure!(state.latest_on == Some(d("2024-06-20")));
    ensure!(
        (
            state.counts.spells,
            state.counts.stage_entries,
            state.counts.corrections
        ) == (2, 4, 1),
        "counts: {:?}",
        state.counts
    );
    ensure!(
        (
            state.counts.entries,
            state.counts.progressions,
            state.counts.reiterations,
            state.counts.regressions
        ) == (1, 1, 1, 1),
        "transitions: {:?}",
        state.counts
    );
    let gone = h.store.load(voided).await?.context("the voided stream")?;
    ensure!(gone == Pathway::from_events(&voided_events()));
    ensure!(gone.state().status == PathwayStatus::Voided);
    ensure!(gone.personal_data_erased());

    // The history, with the undo's voiding.
    let history = h
        .store
        .history(walker)
        .await?
        .context("the walker's history")?;
    let events: Vec<_> = history.iter().map(|e| e.event.clone()).collect();
    ensure!(events == walker_events(), "history: {events:?}");
    let voided_sequences: Vec<u64> = history
        .iter()
        .filter(|e| e.voided)
        .map(|e| e.sequence)
        .collect();
    ensure!(voided_sequences == vec![12, 13], "{voided_sequences:?}");

    // The global feed, in the order the rows were written, with their metadata.
    let feed = h.store.read_feed(0, 1000).await?;
    ensure!(feed.len() == fixture.rows.len(), "feed of {}", feed.len());
    for (item, row) in feed.iter().zip(&fixture.rows) {
        let expected = &meant(&row.aggregate_id)[usize::try_from(row.sequence)? - 1];
        ensure!(
            (item.beneficiary_id.to_string(), item.sequence)
                == (row.aggregate_id.clone(), u64::try_from(row.sequence)?),
            "feed order: {}:{} where the fixture has {}:{}",
            item.beneficiary_id,
            item.sequence,
            row.aggregate_id,
            row.sequence
        );
        ensure!(&item.event == expected, "feed item {item:?}");
        ensure!(item.territory == metadata_text(row, "territory"));
        ensure!(item.principal == metadata_text(row, "principal"));
    }
    Ok(())
}

async fn commands_continue_a_v1_stream_in_v2(h: &Harness) -> anyhow::Result<()> {
    let fixture = fixture()?;
    insert_raw(h, &fixture.rows).await?;
    let walker = Uuid::parse_str(WALKER)?;
    let voided = Uuid::parse_str(VOIDED)?;
    let ctx = || CommandContext::new("alice");

    // cqrs-es loads the v1 stream (through the upcasters) to decide: the entry is classified
    // against the last stage of the v1 events, and gets the next sequence.
    let executed = h
        .store
        .execute(
            walker,
            PathwayCommand::EnterStage {
                stage: "job_placement".into(),
                on: d("2024-07-01"),
                provider: None,
            },
            ctx(),
        )
        .await?
        .map_err(|r| anyhow::anyhow!("refused: {r}"))?;
    let entered = PathwayEvent::StageEntered {
        stage: stage("job_placement"),
        on: d("2024-07-01"),
        from_stage: Some(stage("socio_occupational")),
        transition: Transition::Progression,
        provider: None,
    };
    let written: Vec<_> = executed
        .events
        .iter()
        .map(|e| (e.sequence, e.event.clone()))
        .collect();
    ensure!(written == vec![(16, entered.clone())], "{written:?}");

    // The voided, erased stream refuses as its v1 events say.
    for (command, refusal) in [
        (
            PathwayCommand::Undo {
                reason: "again".into(),
            },
            PathwayError::Voided,
        ),
        (PathwayCommand::RecordErasure, PathwayError::AlreadyErased),
    ] {
        match h.store.execute(voided, command, ctx()).await? {
            Err(Rejection::Refused(error)) => ensure!(error == refusal, "{error:?}"),
            other => anyhow::bail!("expected {refusal:?}, got {other:?}"),
        }
    }

    // The new row is today's form; the stream now mixes versions and reads as one.
    let sql = "SELECT event_type, event_version, payload FROM events \
               WHERE aggregate_id = $1 AND sequence = 16";
    let row = on_pool!(h.store.database().reader(), |pool| {
        let row = sqlx::query(sql).bind(WALKER).fetch_one(pool).await?;
        (
            row.try_get::<String, _>("event_type")?,
            row.try_get::<String, _>("event_version")?,
            row.try_get::<Value, _>("payload")?,
        )
    });
    ensure!(
        row == (
            "StageEntered".to_owned(),
            "2".to_owned(),
            serde_json::json!({
                "type": "stage_entered",
                "stage": "job_placement",
                "on": "2024-07-01",
                "from_stage": "socio_occupational",
                "transition": "progression",
                "provider": null,
            })
        ),
        "{row:?}"
    );
    let mut all = walker_events();
    all.push(entered);
    let pathway = h.store.load(walker).await?.context("the walker's stream")?;
    ensure!(pathway == Pathway::from_events(&all));
    let feed = h.store.read_feed(0, 1000).await?;
    let mut by_stream: HashMap<Uuid, Vec<PathwayEvent>> = HashMap::new();
    for item in feed {
        by_stream
            .entry(item.beneficiary_id)
            .or_default()
            .push(item.event);
    }
    ensure!(by_stream.get(&walker) == Some(&all));
    ensure!(by_stream.get(&voided) == Some(&voided_events()));
    Ok(())
}
