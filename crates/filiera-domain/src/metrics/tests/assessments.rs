//! Hand-computed histories for the assessment fields of the metrics document, the audit's
//! additions and the provider scorecard (SPEC 2.5, 3, 3.1).

use serde_json::json;

use crate::catalogue::StageCatalogue;
use crate::event::AssessmentKind::{Initial, Multidisciplinary, Review};
use crate::event::ExitOutcome::{Completed, Interrupted};
use crate::event::{CloseOutcome, Occupability};
use crate::territory::TerritoryRegistry;

use super::super::{AuditQuery, ProviderScorecard, provider_scorecard, reiteration_audit};
use super::*;

const BERGAMO: &str = "LOM-BG-BERGAMO";
const LECCO: &str = "LOM-LC-LECCO";

/// a1: two multidisciplinary assessments in one spell (only the first times the wait), then
/// an internship entered with the latest profile `high`.
fn a1() -> Driver {
    Driver::new("a1")
        .enrol(BERGAMO, "2024-01-10")
        .assess_as("2024-01-15", Initial, Occupability::Low)
        .assess_as("2024-02-09", Multidisciplinary, Occupability::Medium)
        .assess_as("2024-03-01", Multidisciplinary, Occupability::High)
        .enter("internship", "2024-03-05")
}

/// a2: a multidisciplinary assessment on 02-11 (recorded 12:00) undone at 12:01, then a stage
/// entered with no assessment standing.
fn a2() -> Driver {
    Driver::new("a2")
        .enrol(BERGAMO, "2024-02-01")
        .assess_as("2024-02-11", Multidisciplinary, Occupability::Low)
        .undo()
        .enter("socio_occupational", "2024-02-20")
}

/// a3: assessed in Bergamo, moved to Lecco, reviewed and entered there.
fn a3() -> Driver {
    Driver::new("a3")
        .enrol(BERGAMO, "2024-01-05")
        .assess_as("2024-01-20", Multidisciplinary, Occupability::Medium)
        .moved(LECCO, "2024-02-01")
        .assess_as("2024-02-10", Review, Occupability::High)
        .enter("internship", "2024-02-15")
}

fn timelines(drivers: &[Driver]) -> Vec<Timeline> {
    drivers.iter().map(Driver::timeline).collect()
}

const NO_TRANSITIONS: [u64; 4] = [0; 4];

fn counts([entry, progression, reiteration, regression]: [u64; 4]) -> serde_json::Value {
    json!({"entry": entry, "progression": progression,
           "reiteration": reiteration, "regression": regression})
}

#[test]
fn assessment_fields_over_a_year() {
    let timelines = timelines(&[a1(), a2(), a3()]);
    let catalogue = StageCatalogue::default_catalogue();

    // Bergamo: three spells; a1 waited 30 days for its multidisciplinary assessment, a3 15;
    // a2's was undone. a1's entry follows `high`, a2's none; a3 entered in Lecco.
    let q = query(Some("LOM-BG"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &catalogue)
        .set("enrolments", 3)
        .transitions(2, 0, 0, 0)
        .matrix(&[(None, "internship", 1), (None, "socio_occupational", 1)])
        .set("reiteration/distribution/0", 2)
        // a2 334 days, a1 356, a3 361 (its spell stays Bergamo's): p90 = 356 + 0.8 · 5.
        .stats("time_in_pathway_days/open", 3, (1051.0 / 3.0, 356.0, 360.0))
        .one("time_in_stage_days/internship/open", 301.0)
        .one("time_in_stage_days/socio_occupational/open", 315.0)
        .set("active_at_end/internship", 1)
        .set("active_at_end/socio_occupational", 1)
        .set("corrections", 1)
        .set(
            "assessments",
            json!({"initial": 1, "multidisciplinary": 3, "review": 0}),
        )
        .stats("time_to_assessment_days", 2, (22.5, 22.5, 28.5))
        .set("spells_without_assessment", 1)
        .set(
            "transitions_by_occupability",
            json!({
                "low": counts(NO_TRANSITIONS),
                "medium": counts(NO_TRANSITIONS),
                "high": counts([1, 0, 0, 0]),
                "unassessed": counts([1, 0, 0, 0]),
            }),
        )
        .check(&metrics(&timelines, &q));

    // Lecco: no spell started there; the review and the entry happened there.
    let q = query(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    let m = metrics(&timelines, &q);
    assert_eq!(
        serde_json::to_value(&m.assessments).unwrap(),
        json!({"initial": 0, "multidisciplinary": 0, "review": 1})
    );
    assert_eq!(m.time_to_assessment_days.count, 0);
    assert_eq!(m.spells_without_assessment, 0);
    assert_eq!(m.transitions_by_occupability.high.entry, 1);
    assert_eq!(m.transitions_by_occupability.unassessed.entry, 0);
}

#[test]
fn an_undone_assessment_counts_until_the_undo_is_known() {
    let timelines = timelines(&[a1(), a2(), a3()]);
    let q = query(Some("LOM-BG"), "2024-01-01", "2024-02-11");
    let m = metrics(&timelines, &q);
    assert_eq!(m.assessments.multidisciplinary, 2);
    assert_eq!(
        (m.time_to_assessment_days.count, m.spells_without_assessment),
        (2, 1)
    );
    assert_eq!(m.corrections, 1);

    // Known just before the undo (a2's assessment was recorded at 12:00, the undo at 12:01):
    // a2 waited 10 days. Sorted waits [10, 15, 30]: p90 at rank 1.8 = 15 + 0.8 · 15.
    let before_undo = MetricsQuery {
        known_at: ts("2024-02-11T12:00:30Z"),
        ..q
    };
    let m = metrics(&timelines, &before_undo);
    assert_eq!(m.assessments.multidisciplinary, 3);
    assert_eq!(m.spells_without_assessment, 0);
    let wait = &m.time_to_assessment_days;
    assert_eq!(wait.count, 3);
    assert!((wait.mean.unwrap() - 55.0 / 3.0).abs() < 1e-9);
    assert_eq!((wait.median, wait.p90), (Some(15.0), Some(27.0)));
    assert_eq!(m.corrections, 0);
}

#[test]
fn the_wait_is_for_the_spell_it_belongs_to() {
    // Closed before any multidisciplinary assessment, reopened and assessed in the new spell:
    // the first spell has none, the second waited 5 days.
    let timelines = [Driver::new("r")
        .enrol(BERGAMO, "2024-01-10")
        .close("2024-02-01", CloseOutcome::DroppedOut)
        .reopen("2024-03-01")
        .assess_as("2024-03-06", Multidisciplinary, Occupability::Low)
        .timeline()];
    let m = metrics(&timelines, &query(None, "2024-01-01", "2024-12-31"));
    assert_eq!((m.enrolments, m.reopenings), (1, 1));
    assert_eq!(m.time_to_assessment_days.count, 1);
    assert_eq!(m.time_to_assessment_days.median, Some(5.0));
    assert_eq!(m.spells_without_assessment, 1);
    // Only spells started in the period are counted.
    let m = metrics(&timelines, &query(None, "2024-02-15", "2024-12-31"));
    assert_eq!(
        (m.time_to_assessment_days.count, m.spells_without_assessment),
        (1, 0)
    );
}

/// p1..p4 for the scorecard (see each).
fn providers() -> Vec<Timeline> {
    vec![
        // p1: coop-alfa's internship 01-10 → 03-01 (51 days), assessed low before and medium
        // after (improved); a job placement on day 180 after the exit.
        Driver::new("p1")
            .enrol(BERGAMO, "2024-01-02")
            .assess("2024-01-03", Occupability::Low)
            .enter_with("internship", "2024-01-10", Some("coop-alfa"))
            .exit("2024-03-01", Completed)
            .assess_as("2024-04-01", Review, Occupability::Medium)
            .enter("job_placement", "2024-08-28")
            .timeline(),
        // p2: the same without assessments, interrupted, and a job on day 181.
        Driver::new("p2")
            .enrol(BERGAMO, "2024-01-02")
            .enter_with("internship", "2024-01-10", Some("coop-alfa"))
            .exit("2024-03-01", Interrupted)
            .enter("job_placement", "2024-08-29")
            .timeline(),
        // p3: coop-beta's episode entered in Bergamo, exited in Lecco after 41 days with no
        // later assessment, then closed `employed`.
        Driver::new("p3")
            .enrol(BERGAMO, "2024-01-02")
            .assess_as("2024-01-05", Multidisciplinary, Occupability::High)
            .enter_with("socio_occupational", "2024-01-10", Some("coop-beta"))
            .moved(LECCO, "2024-02-01")
            .exit("2024-02-20", Completed)
            .close("2024-03-01", CloseOutcome::Employed)
            .timeline(),
        // p4: coop-beta in Lecco twice in a row (the first moved on after 29 days), then a
        // review `low`.
        Driver::new("p4")
            .enrol(LECCO, "2024-01-20")
            .enter_with("socio_occupational", "2024-02-01", Some("coop-beta"))
            .enter_with("socio_occupational", "2024-03-01", Some("coop-beta"))
            .assess_as("2024-03-10", Review, Occupability::Low)
            .timeline(),
    ]
}

fn scorecard(territory: Option<&str>, from: &str, to: &str) -> ProviderScorecard {
    let q = query(territory, from, to);
    provider_scorecard(
        &providers(),
        &q,
        &StageCatalogue::default_catalogue(),
        &TerritoryRegistry::sample(),
    )
}

fn stats(count: u64, mean: f64, median: f64, p90: f64) -> serde_json::Value {
    json!({"count": count, "mean": mean, "median": median, "p90": p90})
}

#[test]
fn scorecard_over_a_year() {
    let card = scorecard(Some("LOM"), "2024-01-01", "2024-12-31");
    let expected = json!({
        "query": {"territory": "LOM", "from": "2024-01-01", "to": "2024-12-31",
                  "known_at": "2030-01-01T00:00:00Z"},
        "providers": [
            {
                "provider": "coop-alfa",
                "episodes": 2,
                "transitions": counts([2, 0, 0, 0]),
                "reiteration_rate": 0.0,
                "exits": {"completed": 1, "interrupted": 1, "moved_on": 0, "pathway_closed": 0},
                "time_in_stage_days": stats(2, 51.0, 51.0, 51.0),
                // p1's job on day 180 counts, p2's on day 181 does not.
                "placements_within_180_days": 1,
                "placement_rate": 0.5,
                "occupability_change": {"improved": 1, "unchanged": 0, "worsened": 0, "unknown": 1},
            },
            {
                "provider": "coop-beta",
                "episodes": 3,
                "transitions": counts([2, 0, 1, 0]),
                "reiteration_rate": 1.0 / 3.0,
                "exits": {"completed": 1, "interrupted": 0, "moved_on": 1, "pathway_closed": 0},
                // [29, 41]: p90 at rank 0.9 = 29 + 0.9 · 12.
                "time_in_stage_days": stats(2, 35.0, 35.0, 39.8),
                // p3 closed `employed` 10 days after its exit.
                "placements_within_180_days": 1,
                "placement_rate": 0.5,
                // p3 has no assessment after its exit, p4's first episode none before it.
                "occupability_change": {"improved": 0, "unchanged": 0, "worsened": 0, "unknown": 2},
            },
        ],
    });
    let actual = serde_json::to_value(&card).unwrap();
    if let Err(at) = same(&expected, &actual, String::new()) {
        panic!("{at}\nexpected {expected:#}\nactual {actual:#}");
    }
}

#[test]
fn scorecard_attributes_episodes_where_they_were_entered() {
    // p3's episode stays Bergamo's although it ended in Lecco.
    let bergamo = scorecard(Some("LOM-BG"), "2024-01-01", "2024-12-31");
    let beta = &bergamo.providers[1];
    assert_eq!(beta.provider, "coop-beta");
    assert_eq!((beta.episodes, beta.exits.completed), (1, 1));
    assert_eq!(beta.placements_within_180_days, 1);
    let lecco = scorecard(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    let codes: Vec<_> = lecco
        .providers
        .iter()
        .map(|p| p.provider.as_str())
        .collect();
    assert_eq!(codes, ["coop-beta"]);
    let beta = &lecco.providers[0];
    assert_eq!(
        (beta.episodes, beta.exits.moved_on, beta.exits.total()),
        (2, 1, 1)
    );
}

#[test]
fn a_placement_counts_only_once_it_happened_by_to() {
    // p1's job on 08-28 is after `to`: no placement yet.
    let card = scorecard(Some("LOM-BG"), "2024-01-01", "2024-08-27");
    let alfa = &card.providers[0];
    assert_eq!(alfa.placements_within_180_days, 0);
    assert_eq!(alfa.placement_rate, Some(0.0));
    // A period with no exit: rates are null, but the provider is listed (its episodes are in
    // scope by `to`).
    let card = scorecard(Some("LOM-BG"), "2024-06-01", "2024-06-30");
    let alfa = &card.providers[0];
    assert_eq!((alfa.episodes, alfa.exits.total()), (0, 0));
    assert_eq!((alfa.reiteration_rate, alfa.placement_rate), (None, None));
    // Before any episode, nobody is listed.
    assert!(
        scorecard(None, "2024-01-01", "2024-01-09")
            .providers
            .is_empty()
    );
}

#[test]
fn scorecard_csv_is_one_row_per_provider_and_metric() {
    let csv = scorecard(Some("LOM-LC"), "2024-01-01", "2024-12-31").to_csv();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("provider,metric,value"));
    let rows: Vec<_> = lines.collect();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.starts_with("coop-beta,")));
    assert!(rows.contains(&"coop-beta,episodes,2"));
    assert!(rows.contains(&"coop-beta,reiteration_rate,0.5"));
    assert!(rows.contains(&"coop-beta,placement_rate,0"));
    assert!(rows.contains(&"coop-beta,time_in_stage_days.median,29"));
}

#[test]
fn audit_shows_occupability_at_to_and_each_provider() {
    let audit = |to: &str| {
        let q = AuditQuery {
            territory: Some(code("LOM-LC")),
            to: d(to),
            known_at: ts("2030-01-01T00:00:00Z"),
            threshold: 1,
        };
        reiteration_audit(
            &providers(),
            &q,
            &StageCatalogue::default_catalogue(),
            &TerritoryRegistry::sample(),
        )
    };
    let list = audit("2024-12-31");
    assert_eq!(list.beneficiaries.len(), 1);
    let p4 = &list.beneficiaries[0];
    assert_eq!(p4.beneficiary_id, "p4");
    assert_eq!(p4.occupability, Some(Occupability::Low));
    let providers: Vec<_> = p4
        .transitions
        .iter()
        .map(|t| t.provider.as_deref())
        .collect();
    assert_eq!(providers, [Some("coop-beta"), Some("coop-beta")]);
    // Before the review, no profile yet.
    assert_eq!(audit("2024-03-09").beneficiaries[0].occupability, None);
}
