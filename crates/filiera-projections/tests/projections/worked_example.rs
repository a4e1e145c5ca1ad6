//! The worked example of `docs/metrics.md`, figure by figure. Keep the two in step.
//!
//! The documented figures depend on when each command was recorded (the undo counts as a
//! correction on the day it was recorded, and `known_at` picks what was recorded by then), so
//! they are checked on the events the store wrote, stamped with the recording times of the
//! story, through the same fold. The projection, fed the same commands now, must give the
//! same document except for those recording-time figures.

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use filiera_domain::{
    AssessmentKind, AuditQuery, CloseOutcome, ExitOutcome, Occupability, PathwayCommand,
    PathwayServices, RecordedEvent, StageCatalogue, TeamMember, TerritoryRegistry,
};
use filiera_projections::{ProjectionSettings, Projections, Replay};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

/// The story: (who, command, when it was recorded).
fn story(anna: Uuid, bruno: Uuid) -> Vec<(Uuid, PathwayCommand, DateTime<Utc>)> {
    vec![
        (
            anna,
            enrol("LOM-BG-BERGAMO", "2024-01-10"),
            at("2024-01-10T09:00:00Z"),
        ),
        (
            anna,
            assess(
                "2024-01-30",
                AssessmentKind::Multidisciplinary,
                Occupability::Low,
                &[TeamMember::SocialServices, TeamMember::EmploymentCentre],
            ),
            at("2024-01-30T09:00:00Z"),
        ),
        (
            anna,
            stage("socio_occupational", "2024-02-01"),
            at("2024-02-01T09:00:00Z"),
        ),
        (
            anna,
            stage_by("internship", "2024-04-01", "coop-alfa"),
            at("2024-04-01T09:00:00Z"),
        ),
        (
            anna,
            exit("2024-06-01", ExitOutcome::Completed),
            at("2024-06-01T09:00:00Z"),
        ),
        (
            anna,
            assess(
                "2024-06-10",
                AssessmentKind::Review,
                Occupability::Medium,
                &[TeamMember::EmploymentCentre],
            ),
            at("2024-06-10T09:00:00Z"),
        ),
        (
            anna,
            stage_by("internship", "2024-06-15", "coop-alfa"),
            at("2024-06-15T09:00:00Z"),
        ),
        (
            anna,
            territory("LOM-MI-MILANO", "2024-09-01"),
            at("2024-09-01T09:00:00Z"),
        ),
        (
            anna,
            stage_by("internship", "2024-10-01", "coop-beta"),
            at("2024-10-01T09:00:00Z"),
        ),
        (
            bruno,
            enrol("LOM-BG-BERGAMO", "2024-03-01"),
            at("2024-03-01T09:00:00Z"),
        ),
        (
            bruno,
            stage_by("internship", "2024-03-05", "enaip"),
            at("2024-03-05T09:00:00Z"),
        ),
        (
            bruno,
            stage("job_placement", "2024-05-05"),
            at("2024-05-05T09:00:00Z"),
        ),
        (
            bruno,
            close("2024-08-31", CloseOutcome::Employed),
            at("2024-08-31T09:00:00Z"),
        ),
        (bruno, reopen("2024-11-01"), at("2024-11-01T09:00:00Z")),
        (
            bruno,
            stage("socio_occupational", "2024-11-02"),
            at("2024-11-02T09:00:00Z"),
        ),
        (bruno, undo(), at("2024-11-04T09:00:00Z")),
    ]
}

fn stats(count: u64, mean: f64, median: f64, p90: f64) -> Value {
    json!({"count": count, "mean": mean, "median": median, "p90": p90})
}

fn none() -> Value {
    json!({"count": 0, "mean": null, "median": null, "p90": null})
}

/// The document of `docs/metrics.md` for LOM-BG, 2024, known at 2025-01-01.
fn after_the_undo() -> Value {
    json!({
        "query": {"territory": "LOM-BG", "from": "2024-01-01", "to": "2024-12-31",
                  "known_at": "2025-01-01T00:00:00Z"},
        "enrolments": 2,
        "reopenings": 1,
        "transitions": {"entry": 2, "progression": 2, "reiteration": 1, "regression": 0},
        "transition_matrix": [
            {"from": null, "to": "internship", "count": 1},
            {"from": null, "to": "socio_occupational", "count": 1},
            {"from": "internship", "to": "internship", "count": 1},
            {"from": "internship", "to": "job_placement", "count": 1},
            {"from": "socio_occupational", "to": "internship", "count": 1},
        ],
        "progressivity_index": 2.0 / 3.0,
        "reiteration": {"distribution": {"0": 1, "1": 0, "2": 0, "3+": 0},
                        "flagged": 0, "threshold": 2},
        "time_in_pathway_days": {"closed": stats(1, 183.0, 183.0, 183.0),
                                 "open": stats(2, 208.0, 208.0, 326.4)},
        "time_in_stage_days": {
            "socio_occupational": {"closed": stats(1, 60.0, 60.0, 60.0), "open": none()},
            "internship": {"closed": stats(3, 230.0 / 3.0, 61.0, 98.6), "open": none()},
            "job_placement": {"closed": stats(1, 118.0, 118.0, 118.0), "open": none()},
        },
        "active_at_end": {"socio_occupational": 0, "internship": 0, "job_placement": 0,
                          "waiting": 1},
        "closures": {"employed": 1, "dropped_out": 0, "moved_away": 0, "deceased": 0,
                     "other": 0},
        "corrections": 1,
        "assessments": {"initial": 0, "multidisciplinary": 1, "review": 1},
        "time_to_assessment_days": stats(1, 20.0, 20.0, 20.0),
        "spells_without_assessment": 2,
        "transitions_by_occupability": {
            "low": counts(1, 1, 0, 0),
            "medium": counts(0, 0, 1, 0),
            "high": counts(0, 0, 0, 0),
            "unassessed": counts(1, 1, 0, 0),
        },
    })
}

fn counts(entry: u64, progression: u64, reiteration: u64, regression: u64) -> Value {
    json!({"entry": entry, "progression": progression, "reiteration": reiteration,
           "regression": regression})
}

/// The scorecard of `docs/metrics.md` for LOM-BG, 2024, known at 2025-01-01.
fn scorecard() -> Value {
    json!({
        "query": {"territory": "LOM-BG", "from": "2024-01-01", "to": "2024-12-31",
                  "known_at": "2025-01-01T00:00:00Z"},
        "providers": [
            {
                "provider": "coop-alfa",
                "episodes": 2,
                "transitions": counts(0, 1, 1, 0),
                "reiteration_rate": 0.5,
                "exits": {"completed": 1, "interrupted": 0, "moved_on": 1, "pathway_closed": 0},
                "time_in_stage_days": stats(2, 84.5, 84.5, 103.3),
                "placements_within_180_days": 0,
                "placement_rate": 0.0,
                "occupability_change": {"improved": 1, "unchanged": 0, "worsened": 0,
                                        "unknown": 1},
            },
            {
                "provider": "enaip",
                "episodes": 1,
                "transitions": counts(1, 0, 0, 0),
                "reiteration_rate": 0.0,
                "exits": {"completed": 0, "interrupted": 0, "moved_on": 1, "pathway_closed": 0},
                "time_in_stage_days": stats(1, 61.0, 61.0, 61.0),
                "placements_within_180_days": 1,
                "placement_rate": 1.0,
                "occupability_change": {"improved": 0, "unchanged": 0, "worsened": 0,
                                        "unknown": 1},
            },
        ],
    })
}

/// The same query known at 2024-11-03: Bruno's regression is not undone yet.
fn before_the_undo() -> Value {
    let mut doc = after_the_undo();
    doc["query"]["known_at"] = json!("2024-11-03T00:00:00Z");
    doc["transitions"]["regression"] = json!(1);
    doc["transition_matrix"]
        .as_array_mut()
        .expect("a list")
        .insert(
            4,
            json!({"from": "job_placement", "to": "socio_occupational", "count": 1}),
        );
    doc["progressivity_index"] = json!(0.25);
    doc["time_in_stage_days"]["socio_occupational"]["open"] = stats(1, 59.0, 59.0, 59.0);
    doc["active_at_end"]["socio_occupational"] = json!(1);
    doc["active_at_end"]["waiting"] = json!(0);
    doc["corrections"] = json!(0);
    doc["transitions_by_occupability"]["unassessed"]["regression"] = json!(1);
    doc
}

pub async fn worked_example_of_the_metrics_doc(h: &Harness) -> anyhow::Result<()> {
    let services = PathwayServices {
        catalogue: Arc::new(StageCatalogue::default_catalogue()),
        territories: Arc::new(TerritoryRegistry::sample()),
        ..services()
    };
    let store = h.another_store_with(services).await?;
    let (anna, bruno) = (Uuid::new_v4(), Uuid::new_v4());
    let mut storied = Replay::default();
    for (who, command, recorded_at) in story(anna, bruno) {
        for event in exec(&store, who, command).await?.events {
            let recorded = RecordedEvent {
                sequence: event.sequence,
                recorded_at,
                event: event.event,
            };
            storied.apply(who.to_string(), &recorded);
        }
    }
    let settings = ProjectionSettings::from_services(store.services(), 2);
    let (catalogue, registry) = (&settings.catalogue, &settings.registry);
    let lom_bg = |known_at| query(Some("LOM-BG"), "2024-01-01", "2024-12-31", known_at, 2);

    let after = storied.metrics(&lom_bg(at("2025-01-01T00:00:00Z")), catalogue, registry);
    assert_json_close(&serde_json::to_value(&after)?, &after_the_undo())?;
    let before = storied.metrics(&lom_bg(at("2024-11-03T00:00:00Z")), catalogue, registry);
    assert_json_close(&serde_json::to_value(&before)?, &before_the_undo())?;
    let card = storied.scorecard(&lom_bg(at("2025-01-01T00:00:00Z")), catalogue, registry);
    assert_json_close(&serde_json::to_value(&card)?, &scorecard())?;

    // Anna reiterated twice since her progression: flagged in Lombardia (she lives in Milano
    // at the end of 2024), not in the province of Bergamo.
    let audit = |territory| AuditQuery {
        territory: Some(code(territory)),
        to: date("2024-12-31"),
        known_at: at("2025-01-01T00:00:00Z"),
        threshold: 2,
    };
    ensure!(
        storied
            .audit(&audit("LOM-BG"), catalogue, registry)
            .beneficiaries
            .is_empty()
    );
    let lom = storied.audit(&audit("LOM"), catalogue, registry);
    let [flagged] = lom.beneficiaries.as_slice() else {
        anyhow::bail!(
            "one flagged beneficiary expected, got {:?}",
            lom.beneficiaries
        );
    };
    ensure!(flagged.beneficiary_id == anna.to_string());
    let mut entry = serde_json::to_value(flagged)?;
    entry["beneficiary_id"] = json!("anna");
    assert_json_close(
        &entry,
        &json!({
            "beneficiary_id": "anna",
            "territory": "LOM-MI-MILANO",
            "stalled_reiterations": 2,
            "total_reiterations": 2,
            "current_stage": "internship",
            "occupability": "medium",
            "transitions": [
                {"stage": "socio_occupational", "on": "2024-02-01", "classification": "entry",
                 "provider": null},
                {"stage": "internship", "on": "2024-04-01", "classification": "progression",
                 "provider": "coop-alfa"},
                {"stage": "internship", "on": "2024-06-15", "classification": "reiteration",
                 "provider": "coop-alfa"},
                {"stage": "internship", "on": "2024-10-01", "classification": "reiteration",
                 "provider": "coop-beta"},
            ],
        }),
    )?;

    // Online, with the story recorded just now: the same document, except that the undo was
    // recorded today, outside 2024, so it is not a correction of that period.
    let projections = Projections::start(store.clone(), settings).await?;
    projections.wait_until_caught_up(PATIENCE).await?;
    let now = Utc::now();
    let online = projections.metrics(lom_bg(now)).await?;
    let mut expected = after_the_undo();
    expected["query"]["known_at"] = serde_json::to_value(now)?;
    expected["corrections"] = json!(0);
    assert_json_close(&serde_json::to_value(&online)?, &expected)?;
    let online_lom = projections
        .audit(AuditQuery {
            known_at: now,
            ..audit("LOM")
        })
        .await?;
    ensure!(online_lom.beneficiaries == lom.beneficiaries);
    let online = projections.scorecard(lom_bg(now)).await?;
    let mut expected = scorecard();
    expected["query"]["known_at"] = serde_json::to_value(now)?;
    assert_json_close(&serde_json::to_value(&online)?, &expected)?;
    projections.shutdown().await;
    Ok(())
}

/// JSON equality with numbers compared within 1e-9 (SPEC 3 asks consumers for 1e-6).
fn assert_json_close(actual: &Value, expected: &Value) -> anyhow::Result<()> {
    fn walk(a: &Value, e: &Value, path: &str) -> anyhow::Result<()> {
        match (a, e) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (
                    x.as_f64().context("a number")?,
                    y.as_f64().context("a number")?,
                );
                ensure!((x - y).abs() < 1e-9, "{path}: {x} != {y}");
            }
            (Value::Object(x), Value::Object(y)) => {
                ensure!(
                    x.keys().collect::<Vec<_>>() == y.keys().collect::<Vec<_>>(),
                    "{path}: keys {:?} != {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                );
                for (k, v) in x {
                    walk(v, &y[k], &format!("{path}.{k}"))?;
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                ensure!(
                    x.len() == y.len(),
                    "{path}: {} items != {}",
                    x.len(),
                    y.len()
                );
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    walk(v, w, &format!("{path}[{i}]"))?;
                }
            }
            _ => ensure!(a == e, "{path}: {a} != {e}"),
        }
        Ok(())
    }
    walk(actual, expected, "$")
}
