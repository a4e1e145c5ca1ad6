//! Hand-written histories with hand-computed expectations. Day counts are spelled out; 2024 is
//! a leap year (February has 29 days, 2024-12-31 is day 366).

use crate::catalogue::StageCatalogue;
use crate::event::{CloseOutcome, ExitOutcome, PathwayEvent, Transition};
use crate::state::PathwayStatus;
use crate::territory::TerritoryRegistry;

use super::super::timeline::{EntryKind, TimelineEntry};
use super::super::{AuditQuery, Timeline, TransitionCounts, reiteration_audit};
use super::*;

use CloseOutcome::{Deceased, DroppedOut, Employed, MovedAway};

const SOCIO: &str = "socio_occupational";
const INTERNSHIP: &str = "internship";
const JOB: &str = "job_placement";
const TRAINING: &str = "training";

/// b1: Bergamo, socio → internship, moves to Lecco, internship again, closes employed.
/// Sequences: 1 Enrolled, 2 StageEntered socio (entry), 3 StageExited socio, 4 StageEntered
/// internship (progression), 5 TerritoryChanged, 6 StageExited internship, 7 StageEntered
/// internship (reiteration, attributed to Lecco), 8 StageExited internship, 9 PathwayClosed.
fn b1() -> Driver {
    Driver::new("b1")
        .enrol("LOM-BG-BERGAMO", "2024-01-10")
        .enter(SOCIO, "2024-01-15")
        .enter(INTERNSHIP, "2024-03-15")
        .moved("LOM-LC-LECCO", "2024-04-01")
        .enter(INTERNSHIP, "2024-05-01")
        .close("2024-06-30", Employed)
}

// Durations of b1:
// socio 01-15 → 03-15: 16 (rest of January) + 29 + 15 = 60
// internship 03-15 → 05-01: 16 + 30 + 1 = 47 (attributed to Bergamo, entered there)
// internship 05-01 → 06-30: 30 + 30 = 60 (attributed to Lecco)
// spell 01-10 → 06-30: 21 + 29 + 31 + 30 + 31 + 30 = 172 (attributed to Bergamo)

#[test]
fn transfer_attributes_each_fact_where_it_started() {
    let timelines = [b1().timeline()];
    let q = query(Some("LOM-BG"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 1, 0, 0)
        .matrix(&[(None, SOCIO, 1), (Some(SOCIO), INTERNSHIP, 1)])
        // (1 − 0) / (1 + 0 + 0)
        .set("progressivity_index", 1.0)
        .one("time_in_stage_days/socio_occupational/closed", 60.0)
        .one("time_in_stage_days/internship/closed", 47.0)
        // Closed in Lecco, but the spell started in Bergamo.
        .set("closures/employed", 1)
        .one("time_in_pathway_days/closed", 172.0)
        // Territory at `to` is Lecco: no distribution, no active beneficiary in Bergamo.
        .check(&metrics(&timelines, &q));

    let q = query(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .transitions(0, 0, 1, 0)
        .matrix(&[(Some(INTERNSHIP), INTERNSHIP, 1)])
        // (0 − 0) / (0 + 1 + 0)
        .set("progressivity_index", 0.0)
        .one("time_in_stage_days/internship/closed", 60.0)
        // Territory at `to` is Lecco; one reiteration in total, one stalled (< 2).
        .set("reiteration/distribution/1", 1)
        .check(&metrics(&timelines, &q));
}

#[test]
fn scope_rolls_up_the_tree() {
    let timelines = [b1().timeline()];
    let region = |territory| {
        let q = query(territory, "2024-01-01", "2024-12-31");
        Expect::zero(&q, &StageCatalogue::default())
            .set("enrolments", 1)
            .transitions(1, 1, 1, 0)
            // Sorted by (from, to) as codes, entries first.
            .matrix(&[
                (None, SOCIO, 1),
                (Some(INTERNSHIP), INTERNSHIP, 1),
                (Some(SOCIO), INTERNSHIP, 1),
            ])
            // (1 − 0) / (1 + 1 + 0)
            .set("progressivity_index", 0.5)
            .one("time_in_stage_days/socio_occupational/closed", 60.0)
            // [47, 60]: mean 53.5, median 53.5, p90 at rank 0.9 → 47 + 0.9·13 = 58.7
            .stats(
                "time_in_stage_days/internship/closed",
                2,
                (53.5, 53.5, 58.7),
            )
            .set("closures/employed", 1)
            .one("time_in_pathway_days/closed", 172.0)
            .set("reiteration/distribution/1", 1)
            .check(&metrics(&timelines, &q));
    };
    region(Some("LOM"));
    region(None);
    for elsewhere in ["PIE", "LOM-MI", "LOM-BG-VALLE-BREMBANA"] {
        let q = query(Some(elsewhere), "2024-01-01", "2024-12-31");
        Expect::zero(&q, &StageCatalogue::default()).check(&metrics(&timelines, &q));
    }
}

#[test]
fn open_spells_and_episodes_at_to() {
    let timelines = [b1().timeline()];
    // At 04-15 b1 is in Lecco, in the internship entered in Bergamo on 03-15.
    let q = query(Some("LOM-BG"), "2024-01-01", "2024-04-15");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 1, 0, 0)
        .matrix(&[(None, SOCIO, 1), (Some(SOCIO), INTERNSHIP, 1)])
        .set("progressivity_index", 1.0)
        .one("time_in_stage_days/socio_occupational/closed", 60.0)
        // 03-15 → 04-15: 16 + 15 = 31, attributed at entry (Bergamo)
        .one("time_in_stage_days/internship/open", 31.0)
        // 01-10 → 04-15: 21 + 29 + 31 + 15 = 96, attributed at enrolment (Bergamo)
        .one("time_in_pathway_days/open", 96.0)
        .check(&metrics(&timelines, &q));

    // Lecco has the beneficiary at `to`, but none of the facts.
    let q = query(Some("LOM-LC"), "2024-01-01", "2024-04-15");
    Expect::zero(&q, &StageCatalogue::default())
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .check(&metrics(&timelines, &q));
}

#[test]
fn period_edges_are_inclusive() {
    let timelines = [b1().timeline()];
    // Exactly the day of the progression: it counts, and so does the socio exit.
    let q = query(Some("LOM"), "2024-03-15", "2024-03-15");
    Expect::zero(&q, &StageCatalogue::default())
        .transitions(0, 1, 0, 0)
        .matrix(&[(Some(SOCIO), INTERNSHIP, 1)])
        .set("progressivity_index", 1.0)
        .one("time_in_stage_days/socio_occupational/closed", 60.0)
        // Entered on `to`: open for 0 days.
        .one("time_in_stage_days/internship/open", 0.0)
        // 01-10 → 03-15: 21 + 29 + 15 = 65
        .one("time_in_pathway_days/open", 65.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .check(&metrics(&timelines, &q));

    // The day after: the progression is before `from`.
    let q = query(Some("LOM"), "2024-03-16", "2024-03-31");
    Expect::zero(&q, &StageCatalogue::default())
        .one("time_in_stage_days/internship/open", 16.0)
        // 21 + 29 + 31 = 81
        .one("time_in_pathway_days/open", 81.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .check(&metrics(&timelines, &q));

    // The day before: the progression is after `to`, socio is still open.
    let q = query(Some("LOM"), "2024-03-14", "2024-03-14");
    Expect::zero(&q, &StageCatalogue::default())
        // 01-15 → 03-14: 16 + 29 + 14 = 59
        .one("time_in_stage_days/socio_occupational/open", 59.0)
        // 01-10 → 03-14: 21 + 29 + 14 = 64
        .one("time_in_pathway_days/open", 64.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/socio_occupational", 1)
        .check(&metrics(&timelines, &q));
}

/// b6: enrolled in Bergamo on 2024-03-01, nothing else.
#[test]
fn enrolment_on_the_period_edges() {
    let timelines = [Driver::new("b6")
        .enrol("LOM-BG-BERGAMO", "2024-03-01")
        .timeline()];
    let q = query(Some("LOM-BG"), "2024-03-01", "2024-03-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .one("time_in_pathway_days/open", 30.0)
        .set("active_at_end/waiting", 1)
        .check(&metrics(&timelines, &q));

    let q = query(Some("LOM-BG"), "2024-03-02", "2024-03-31");
    Expect::zero(&q, &StageCatalogue::default())
        .one("time_in_pathway_days/open", 30.0)
        .set("active_at_end/waiting", 1)
        .check(&metrics(&timelines, &q));

    let q = query(Some("LOM-BG"), "2024-02-01", "2024-03-01");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .one("time_in_pathway_days/open", 0.0)
        .set("active_at_end/waiting", 1)
        .check(&metrics(&timelines, &q));

    // Not yet enrolled at `to`: nothing at all.
    let q = query(Some("LOM-BG"), "2024-02-01", "2024-02-29");
    Expect::zero(&q, &StageCatalogue::default()).check(&metrics(&timelines, &q));
}

/// b2: Milano; the progression to job placement is undone the next morning, then the
/// beneficiary regresses to socio-occupational. Sequences: 1 Enrolled, 2 internship (entry),
/// 3 exit + 4 job placement (voided by 5), 5 CommandUndone, 6 exit + 7 socio (regression).
fn b2() -> Driver {
    Driver::new("b2")
        .enrol("LOM-MI-MILANO", "2024-02-01")
        .enter(INTERNSHIP, "2024-02-05")
        .enter(JOB, "2024-03-01")
        .at("2024-03-02T09:00:00Z")
        .undo()
        .enter(SOCIO, "2024-03-10")
}

#[test]
fn undo_depends_on_known_at() {
    let driver = b2();
    let timelines = [driver.timeline()];
    let at = |known_at: &str| MetricsQuery {
        known_at: ts(known_at),
        ..query(Some("LOM"), "2024-01-01", "2024-12-31")
    };
    // Spell 02-01 → 12-31: 366 − 32 = 334 days in every view.

    // Before the undo: the progression stands.
    let q = at("2024-03-01T13:00:00Z");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 1, 0, 0)
        .matrix(&[(None, INTERNSHIP, 1), (Some(INTERNSHIP), JOB, 1)])
        .set("progressivity_index", 1.0)
        // 02-05 → 03-01: 24 (to 02-29) + 1 = 25
        .one("time_in_stage_days/internship/closed", 25.0)
        // 03-01 is day 61: 366 − 61 = 305
        .one("time_in_stage_days/job_placement/open", 305.0)
        .one("time_in_pathway_days/open", 334.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/job_placement", 1)
        .check(&metrics(&timelines, &q));

    // Known exactly when the undo was recorded, and later: the progression is gone.
    for known_at in ["2024-03-02T09:00:00Z", "2024-03-02T10:00:00Z"] {
        let q = at(known_at);
        Expect::zero(&q, &StageCatalogue::default())
            .set("enrolments", 1)
            .transitions(1, 0, 0, 0)
            .matrix(&[(None, INTERNSHIP, 1)])
            // 02-05 is day 36: 366 − 36 = 330
            .one("time_in_stage_days/internship/open", 330.0)
            .one("time_in_pathway_days/open", 334.0)
            .set("reiteration/distribution/0", 1)
            .set("active_at_end/internship", 1)
            .set("corrections", 1)
            .check(&metrics(&timelines, &q));
    }

    // Everything known: the regression was classified against internship, not job placement.
    let q = query(Some("LOM"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 0, 0, 1)
        .matrix(&[(None, INTERNSHIP, 1), (Some(INTERNSHIP), SOCIO, 1)])
        // (0 − 1) / (0 + 0 + 1)
        .set("progressivity_index", -1.0)
        // 02-05 → 03-10: 24 + 10 = 34
        .one("time_in_stage_days/internship/closed", 34.0)
        // 03-10 is day 70: 366 − 70 = 296
        .one("time_in_stage_days/socio_occupational/open", 296.0)
        .one("time_in_pathway_days/open", 334.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/socio_occupational", 1)
        .set("corrections", 1)
        .check(&metrics(&timelines, &q));
}

#[test]
fn undo_voids_whatever_to_is_and_corrections_follow_the_recording_date() {
    let timelines = [b2().timeline()];
    // `to` = 03-05: the voided job placement (on 03-01) would be in range, but is voided.
    let q = query(Some("LOM-MI-MILANO"), "2024-01-01", "2024-03-05");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 0, 0, 0)
        .matrix(&[(None, INTERNSHIP, 1)])
        // 02-05 → 03-05: 24 + 5 = 29
        .one("time_in_stage_days/internship/open", 29.0)
        // 02-01 → 03-05: 28 + 5 = 33
        .one("time_in_pathway_days/open", 33.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .set("corrections", 1)
        .check(&metrics(&timelines, &q));

    // Only the recording day of the undo.
    let q = query(Some("LOM-MI-MILANO"), "2024-03-02", "2024-03-02");
    Expect::zero(&q, &StageCatalogue::default())
        // 02-05 → 03-02: 24 + 2 = 26
        .one("time_in_stage_days/internship/open", 26.0)
        // 02-01 → 03-02: 28 + 2 = 30
        .one("time_in_pathway_days/open", 30.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .set("corrections", 1)
        .check(&metrics(&timelines, &q));

    // From the day after the undo: no correction in the period.
    let m = metrics(
        &timelines,
        &query(Some("LOM-MI-MILANO"), "2024-03-03", "2024-12-31"),
    );
    assert_eq!(m.corrections, 0);
    assert_eq!(m.transitions.regression, 1);
}

/// b3: Bergamo; the stage entry and then the enrolment itself are undone.
fn b3() -> Driver {
    Driver::new("b3")
        .enrol("LOM-BG-BERGAMO", "2024-05-01")
        .enter(SOCIO, "2024-05-02")
        .at("2024-05-03T12:00:00Z")
        .undo()
        .at("2024-05-03T13:00:00Z")
        .undo()
}

#[test]
fn voided_enrolment_contributes_only_its_corrections() {
    let driver = b3();
    assert_eq!(driver.pathway().state().status, PathwayStatus::Voided);
    let timelines = [driver.timeline()];
    let at = |known_at: &str| MetricsQuery {
        known_at: ts(known_at),
        ..query(Some("LOM-BG"), "2024-01-01", "2024-12-31")
    };
    // Everything known: the beneficiary is voided; only its two undos (recorded 2024-05-03,
    // both in Bergamo, the territory in force before each) count, as corrections.
    let q = at("2030-01-01T00:00:00Z");
    Expect::zero(&q, &StageCatalogue::default())
        .set("corrections", 2)
        .check(&metrics(&timelines, &q));
    // Outside the scope or the period of the undos, nothing at all.
    let q = MetricsQuery {
        known_at: ts("2030-01-01T00:00:00Z"),
        ..query(Some("LOM-BG"), "2024-05-04", "2024-12-31")
    };
    Expect::zero(&q, &StageCatalogue::default()).check(&metrics(&timelines, &q));

    // Between the two undos: enrolled, waiting, one correction. 05-01 is day 122: 366 − 122 = 244
    let q = at("2024-05-03T12:30:00Z");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .one("time_in_pathway_days/open", 244.0)
        .set("active_at_end/waiting", 1)
        .set("corrections", 1)
        .check(&metrics(&timelines, &q));

    // Before any undo: in socio-occupational since 05-02 (366 − 123 = 243 days).
    let q = at("2024-05-02T18:00:00Z");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 0, 0, 0)
        .matrix(&[(None, SOCIO, 1)])
        .one("time_in_stage_days/socio_occupational/open", 243.0)
        .one("time_in_pathway_days/open", 244.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/socio_occupational", 1)
        .check(&metrics(&timelines, &q));

    // Next to b1, it adds its two corrections and nothing else.
    let q = query(Some("LOM"), "2024-01-01", "2024-12-31");
    let mut alone = metrics(&[b1().timeline()], &q);
    alone.corrections += 2;
    assert_eq!(metrics(&[b1().timeline(), b3().timeline()], &q), alone);
}

/// b5: Bergamo → Lecco, socio in Lecco; both are undone, then an internship in Bergamo.
/// Sequences: 1 Enrolled, 2 TerritoryChanged, 3 socio, 4 undo (voids 3), 5 undo (voids 2),
/// 6 internship.
fn b5() -> Driver {
    Driver::new("b5")
        .enrol("LOM-BG-BERGAMO", "2024-01-01")
        .moved("LOM-LC-LECCO", "2024-02-01")
        .enter(SOCIO, "2024-02-10")
        .at("2024-02-11T09:00:00Z")
        .undo()
        .at("2024-02-12T09:00:00Z")
        .undo()
        .enter(INTERNSHIP, "2024-02-15")
}

#[test]
fn undone_transfer_and_corrections_attribution() {
    let timelines = [b5().timeline()];
    // Both undos were recorded while the beneficiary was in Lecco.
    let q = query(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("corrections", 2)
        .check(&metrics(&timelines, &q));

    // The internship is an entry (the socio entry was voided), in Bergamo (the move was voided).
    let q = query(Some("LOM-BG"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 0, 0, 0)
        .matrix(&[(None, INTERNSHIP, 1)])
        // 02-15 is day 46: 366 − 46 = 320
        .one("time_in_stage_days/internship/open", 320.0)
        // 01-01 → 12-31: 365
        .one("time_in_pathway_days/open", 365.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .check(&metrics(&timelines, &q));

    // Between the undos: the move stands, so the beneficiary waits in Lecco.
    let between = |territory| MetricsQuery {
        known_at: ts("2024-02-11T18:00:00Z"),
        ..query(territory, "2024-01-01", "2024-12-31")
    };
    let q = between(Some("LOM-LC"));
    Expect::zero(&q, &StageCatalogue::default())
        .set("corrections", 1)
        .set("active_at_end/waiting", 1)
        .check(&metrics(&timelines, &q));
    let q = between(Some("LOM-BG"));
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .one("time_in_pathway_days/open", 365.0)
        .check(&metrics(&timelines, &q));
    let q = between(Some("LOM"));
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .one("time_in_pathway_days/open", 365.0)
        .set("active_at_end/waiting", 1)
        .set("corrections", 1)
        .check(&metrics(&timelines, &q));
}

/// b4 (catalogue with `training` at level 1): Lecco; closes, reopens, and reiterates across
/// spells. Classifications: socio entry, training reiteration (across spells), socio
/// reiteration, internship progression, training regression, socio reiteration.
fn b4() -> Driver {
    Driver::with_catalogue("b4", training_catalogue())
        .enrol("LOM-LC-LECCO", "2023-01-10")
        .enter(SOCIO, "2023-01-20")
        .close("2023-06-30", DroppedOut)
        .reopen("2023-09-01")
        .enter(TRAINING, "2023-09-15")
        .exit("2023-12-15", ExitOutcome::Completed)
        .enter(SOCIO, "2024-01-08")
        .enter(INTERNSHIP, "2024-03-01")
        .enter(TRAINING, "2024-06-01")
        .enter(SOCIO, "2024-07-01")
}

#[test]
fn shared_levels_are_reiterations_across_spells() {
    let driver = b4();
    let classified: Vec<_> = driver
        .events
        .iter()
        .filter_map(|r| match &r.event {
            PathwayEvent::StageEntered { transition, .. } => Some(*transition),
            _ => None,
        })
        .collect();
    use Transition::*;
    assert_eq!(
        classified,
        [
            Entry,
            Reiteration,
            Reiteration,
            Progression,
            Regression,
            Reiteration
        ]
    );

    let catalogue = training_catalogue();
    let timelines = [driver.timeline()];
    let q = query(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    let year_2024 = Expect::zero(&q, &catalogue)
        .transitions(0, 1, 2, 1)
        .matrix(&[
            (Some(INTERNSHIP), TRAINING, 1),
            (Some(SOCIO), INTERNSHIP, 1),
            (Some(TRAINING), SOCIO, 2),
        ])
        // (1 − 1) / (1 + 2 + 1)
        .set("progressivity_index", 0.0)
        // 01-08 → 03-01: 23 + 29 + 1 = 53
        .one("time_in_stage_days/socio_occupational/closed", 53.0)
        // 07-01 is day 183: 366 − 183 = 183
        .one("time_in_stage_days/socio_occupational/open", 183.0)
        // 06-01 → 07-01: 30
        .one("time_in_stage_days/training/closed", 30.0)
        // 03-01 → 06-01: 31 + 30 + 31 = 92
        .one("time_in_stage_days/internship/closed", 92.0)
        // 2023-09-01 → 2024-01-01: 30 + 31 + 30 + 31 = 122, plus 365 to 12-31 = 487
        .one("time_in_pathway_days/open", 487.0)
        // Reiterations up to `to`: 2023-09-15, 2024-01-08, 2024-07-01 = 3; stalled since the
        // 03-01 progression: 1 (the regression does not reset it).
        .set("reiteration/distribution/3+", 1)
        .set("active_at_end/socio_occupational", 1);
    year_2024.check(&metrics_with(&timelines, &q, &catalogue));

    let q1 = MetricsQuery { threshold: 1, ..q };
    year_2024
        .set("reiteration/threshold", 1)
        .set("reiteration/flagged", 1)
        .check(&metrics_with(&timelines, &q1, &catalogue));

    let q = query(Some("LOM"), "2023-01-01", "2023-12-31");
    Expect::zero(&q, &catalogue)
        .set("enrolments", 1)
        .set("reopenings", 1)
        .transitions(1, 0, 1, 0)
        .matrix(&[(None, SOCIO, 1), (Some(SOCIO), TRAINING, 1)])
        .set("progressivity_index", 0.0)
        // 01-20 → 06-30: 11 + 28 + 31 + 30 + 31 + 30 = 161
        .one("time_in_stage_days/socio_occupational/closed", 161.0)
        // 09-15 → 12-15: 15 + 31 + 30 + 15 = 91
        .one("time_in_stage_days/training/closed", 91.0)
        // 01-10 → 06-30: 21 + 28 + 31 + 30 + 31 + 30 = 171
        .one("time_in_pathway_days/closed", 171.0)
        .set("closures/dropped_out", 1)
        // 09-01 → 12-31: 29 + 31 + 30 + 31 = 121
        .one("time_in_pathway_days/open", 121.0)
        .set("reiteration/distribution/1", 1)
        .set("active_at_end/waiting", 1)
        .check(&metrics_with(&timelines, &q, &catalogue));

    // Before the progression: two stalled reiterations, flagged at threshold 2.
    let q = query(Some("LOM"), "2024-01-01", "2024-02-15");
    Expect::zero(&q, &catalogue)
        .transitions(0, 0, 1, 0)
        .matrix(&[(Some(TRAINING), SOCIO, 1)])
        .set("progressivity_index", 0.0)
        // 01-08 → 02-15: 23 + 15 = 38
        .one("time_in_stage_days/socio_occupational/open", 38.0)
        // 2023-09-01 → 2024-02-15: 122 + 31 + 14 = 167
        .one("time_in_pathway_days/open", 167.0)
        .set("reiteration/distribution/2", 1)
        .set("reiteration/flagged", 1)
        .set("active_at_end/socio_occupational", 1)
        .check(&metrics_with(&timelines, &q, &catalogue));
}

#[test]
fn stages_outside_the_catalogue_only_count_as_transitions() {
    // b4's history read with the default catalogue, which has no `training`.
    let timelines = [b4().timeline()];
    let q = query(Some("LOM-LC"), "2024-01-01", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        .transitions(0, 1, 2, 1)
        .matrix(&[
            (Some(INTERNSHIP), TRAINING, 1),
            (Some(SOCIO), INTERNSHIP, 1),
            (Some(TRAINING), SOCIO, 2),
        ])
        .set("progressivity_index", 0.0)
        .one("time_in_stage_days/socio_occupational/closed", 53.0)
        .one("time_in_stage_days/socio_occupational/open", 183.0)
        .one("time_in_stage_days/internship/closed", 92.0)
        .one("time_in_pathway_days/open", 487.0)
        .set("reiteration/distribution/3+", 1)
        .set("active_at_end/socio_occupational", 1)
        .check(&metrics(&timelines, &q));
}

#[test]
fn pathway_percentiles_and_closures_by_outcome() {
    // Four spells in Milano of 10, 20, 30 and 40 days, each closed with another outcome.
    let timelines: Vec<Timeline> = [
        ("p1", "2024-01-11", Employed),
        ("p2", "2024-01-21", DroppedOut),
        ("p3", "2024-01-31", MovedAway),
        ("p4", "2024-02-10", Deceased),
    ]
    .into_iter()
    .map(|(id, closed, outcome)| {
        Driver::new(id)
            .enrol("LOM-MI-MILANO", "2024-01-01")
            .close(closed, outcome)
            .timeline()
    })
    .collect();
    let q = query(Some("LOM-MI"), "2024-01-01", "2024-12-31");
    let m = metrics(&timelines, &q);
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 4)
        // [10, 20, 30, 40]: mean 25, median at rank 1.5 → 25, p90 at rank 2.7 → 37
        .stats("time_in_pathway_days/closed", 4, (25.0, 25.0, 37.0))
        .set("closures/employed", 1)
        .set("closures/dropped_out", 1)
        .set("closures/moved_away", 1)
        .set("closures/deceased", 1)
        .check(&m);
    assert_eq!(m.closures.total(), m.time_in_pathway_days.closed.count);

    // Closures before `from` are out of the period, their enrolment too.
    let q = query(Some("LOM-MI"), "2024-01-22", "2024-12-31");
    Expect::zero(&q, &StageCatalogue::default())
        // [30, 40]: mean 35, median 35, p90 at rank 0.9 → 30 + 0.9·10 = 39
        .stats("time_in_pathway_days/closed", 2, (35.0, 35.0, 39.0))
        .set("closures/moved_away", 1)
        .set("closures/deceased", 1)
        .check(&metrics(&timelines, &q));
}

#[test]
fn late_recordings_are_unknown_before_they_are_recorded() {
    // The internship of 01-20 is recorded on 02-05.
    let timelines = [Driver::new("b7")
        .enrol("LOM-BG-BERGAMO", "2024-01-10")
        .at("2024-02-05T08:00:00Z")
        .enter(INTERNSHIP, "2024-01-20")
        .timeline()];
    let q = MetricsQuery {
        known_at: ts("2024-02-01T00:00:00Z"),
        ..query(Some("LOM"), "2024-01-01", "2024-01-31")
    };
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        // 01-10 → 01-31: 21
        .one("time_in_pathway_days/open", 21.0)
        .set("active_at_end/waiting", 1)
        .check(&metrics(&timelines, &q));

    let q = query(Some("LOM"), "2024-01-01", "2024-01-31");
    Expect::zero(&q, &StageCatalogue::default())
        .set("enrolments", 1)
        .transitions(1, 0, 0, 0)
        .matrix(&[(None, INTERNSHIP, 1)])
        // 01-20 → 01-31: 11
        .one("time_in_stage_days/internship/open", 11.0)
        .one("time_in_pathway_days/open", 21.0)
        .set("reiteration/distribution/0", 1)
        .set("active_at_end/internship", 1)
        .check(&metrics(&timelines, &q));

    // Nothing is known before the enrolment was recorded.
    let q = MetricsQuery {
        known_at: ts("2024-01-10T11:59:59Z"),
        ..query(None, "2024-01-01", "2024-12-31")
    };
    Expect::zero(&q, &StageCatalogue::default()).check(&metrics(&timelines, &q));
}

/// b8: enrolled in Bergamo on 03-01, internship from 03-11: a small document to check the text.
fn b8() -> Timeline {
    Driver::new("b8")
        .enrol("LOM-BG-BERGAMO", "2024-03-01")
        .enter(INTERNSHIP, "2024-03-11")
        .timeline()
}

const EMPTY: &str = r#"{"count":0,"mean":null,"median":null,"p90":null}"#;

#[test]
fn document_fields_are_in_order() {
    let q = query(Some("LOM"), "2024-03-01", "2024-03-31");
    let text = serde_json::to_string(&metrics(&[b8()], &q)).unwrap();
    let expected = format!(
        concat!(
            r#"{{"query":{{"territory":"LOM","from":"2024-03-01","to":"2024-03-31","known_at":"2030-01-01T00:00:00Z"}},"#,
            r#""enrolments":1,"reopenings":0,"#,
            r#""transitions":{{"entry":1,"progression":0,"reiteration":0,"regression":0}},"#,
            r#""transition_matrix":[{{"from":null,"to":"internship","count":1}}],"#,
            r#""progressivity_index":null,"#,
            r#""reiteration":{{"distribution":{{"0":1,"1":0,"2":0,"3+":0}},"flagged":0,"threshold":2}},"#,
            r#""time_in_pathway_days":{{"closed":{e},"open":{{"count":1,"mean":30.0,"median":30.0,"p90":30.0}}}},"#,
            r#""time_in_stage_days":{{"socio_occupational":{{"closed":{e},"open":{e}}},"#,
            r#""internship":{{"closed":{e},"open":{{"count":1,"mean":20.0,"median":20.0,"p90":20.0}}}},"#,
            r#""job_placement":{{"closed":{e},"open":{e}}}}},"#,
            r#""active_at_end":{{"socio_occupational":0,"internship":1,"job_placement":0,"waiting":0}},"#,
            r#""closures":{{"employed":0,"dropped_out":0,"moved_away":0,"deceased":0,"other":0}},"#,
            r#""corrections":0,"#,
            r#""assessments":{{"initial":0,"multidisciplinary":0,"review":0}},"#,
            r#""time_to_assessment_days":{e},"spells_without_assessment":1,"#,
            r#""transitions_by_occupability":{{"low":{t0},"medium":{t0},"high":{t0},"#,
            r#""unassessed":{{"entry":1,"progression":0,"reiteration":0,"regression":0}}}}}}"#
        ),
        e = EMPTY,
        t0 = r#"{"entry":0,"progression":0,"reiteration":0,"regression":0}"#,
    );
    assert_eq!(text, expected);
    // And back.
    let back: TerritoryMetrics = serde_json::from_str(&text).unwrap();
    assert_eq!(back, metrics(&[b8()], &q));

    let everything = query(None, "2024-03-01", "2024-03-31");
    let text = serde_json::to_string(&metrics(&[b8()], &everything)).unwrap();
    assert!(text.starts_with(r#"{"query":{"territory":null,"#), "{text}");
}

#[test]
fn csv_is_one_row_per_metric() {
    let mut timelines = vec![b8()];
    timelines.push(b1().timeline());
    let q = query(Some("LOM"), "2024-03-01", "2024-03-31");
    let csv = metrics(&timelines, &q).to_csv();
    // b8: enrolled 03-01, internship entry 03-11 (open 20 days), spell open 30 days.
    // b1: progression socio → internship on 03-15 (socio closed after 60 days), internship
    //     open 16 days, spell open since 01-10: 21 + 29 + 31 = 81 days.
    // Open internships [16, 20]: mean 18, median 18, p90 16 + 0.9·4 = 19.6.
    // Open spells [30, 81]: mean 55.5, median 55.5, p90 30 + 0.9·51 = 75.9.
    let expected = "\
metric,value
query.territory,LOM
query.from,2024-03-01
query.to,2024-03-31
query.known_at,2030-01-01T00:00:00Z
enrolments,1
reopenings,0
transitions.entry,1
transitions.progression,1
transitions.reiteration,0
transitions.regression,0
transition_matrix.entry>internship,1
transition_matrix.socio_occupational>internship,1
progressivity_index,1
reiteration.distribution.0,2
reiteration.distribution.1,0
reiteration.distribution.2,0
reiteration.distribution.3+,0
reiteration.flagged,0
reiteration.threshold,2
time_in_pathway_days.closed.count,0
time_in_pathway_days.closed.mean,
time_in_pathway_days.closed.median,
time_in_pathway_days.closed.p90,
time_in_pathway_days.open.count,2
time_in_pathway_days.open.mean,55.5
time_in_pathway_days.open.median,55.5
time_in_pathway_days.open.p90,75.9
time_in_stage_days.socio_occupational.closed.count,1
time_in_stage_days.socio_occupational.closed.mean,60
time_in_stage_days.socio_occupational.closed.median,60
time_in_stage_days.socio_occupational.closed.p90,60
time_in_stage_days.socio_occupational.open.count,0
time_in_stage_days.socio_occupational.open.mean,
time_in_stage_days.socio_occupational.open.median,
time_in_stage_days.socio_occupational.open.p90,
time_in_stage_days.internship.closed.count,0
time_in_stage_days.internship.closed.mean,
time_in_stage_days.internship.closed.median,
time_in_stage_days.internship.closed.p90,
time_in_stage_days.internship.open.count,2
time_in_stage_days.internship.open.mean,18
time_in_stage_days.internship.open.median,18
time_in_stage_days.internship.open.p90,19.6
time_in_stage_days.job_placement.closed.count,0
time_in_stage_days.job_placement.closed.mean,
time_in_stage_days.job_placement.closed.median,
time_in_stage_days.job_placement.closed.p90,
time_in_stage_days.job_placement.open.count,0
time_in_stage_days.job_placement.open.mean,
time_in_stage_days.job_placement.open.median,
time_in_stage_days.job_placement.open.p90,
active_at_end.socio_occupational,0
active_at_end.internship,2
active_at_end.job_placement,0
active_at_end.waiting,0
closures.employed,0
closures.dropped_out,0
closures.moved_away,0
closures.deceased,0
closures.other,0
corrections,0
assessments.initial,0
assessments.multidisciplinary,0
assessments.review,0
time_to_assessment_days.count,0
time_to_assessment_days.mean,
time_to_assessment_days.median,
time_to_assessment_days.p90,
spells_without_assessment,1
transitions_by_occupability.low.entry,0
transitions_by_occupability.low.progression,0
transitions_by_occupability.low.reiteration,0
transitions_by_occupability.low.regression,0
transitions_by_occupability.medium.entry,0
transitions_by_occupability.medium.progression,0
transitions_by_occupability.medium.reiteration,0
transitions_by_occupability.medium.regression,0
transitions_by_occupability.high.entry,0
transitions_by_occupability.high.progression,0
transitions_by_occupability.high.reiteration,0
transitions_by_occupability.high.regression,0
transitions_by_occupability.unassessed.entry,1
transitions_by_occupability.unassessed.progression,1
transitions_by_occupability.unassessed.reiteration,0
transitions_by_occupability.unassessed.regression,0
";
    assert_eq!(csv, expected);
}

#[test]
fn audit_lists_flagged_beneficiaries_with_their_history() {
    let catalogue = training_catalogue();
    let registry = TerritoryRegistry::sample();
    // b9: Bergamo, socio then training then socio: two reiterations, never progressed.
    let b9 = Driver::with_catalogue("b9", training_catalogue())
        .enrol("LOM-BG-BERGAMO", "2024-01-02")
        .enter(SOCIO, "2024-01-05")
        .enter(TRAINING, "2024-01-20")
        .enter(SOCIO, "2024-02-01")
        .exit("2024-02-10", ExitOutcome::Interrupted);
    let timelines = [b4().timeline(), b9.timeline(), b1().timeline()];
    let audit = |territory: Option<&str>, to: &str, threshold| {
        let q = AuditQuery {
            territory: territory.map(code),
            to: d(to),
            known_at: ts("2030-01-01T00:00:00Z"),
            threshold,
        };
        reiteration_audit(&timelines, &q, &catalogue, &registry)
    };

    // At 2024-02-15 b4 (2 stalled) and b9 (2 stalled, no open episode) are flagged; b1 has none.
    let list = audit(Some("LOM"), "2024-02-15", 2);
    let expected = serde_json::json!({
        "query": {"territory": "LOM", "to": "2024-02-15", "known_at": "2030-01-01T00:00:00Z"},
        "threshold": 2,
        "beneficiaries": [
            {
                "beneficiary_id": "b4",
                "territory": "LOM-LC-LECCO",
                "stalled_reiterations": 2,
                "total_reiterations": 2,
                "current_stage": "socio_occupational",
                "occupability": null,
                "transitions": [
                    {"stage": "socio_occupational", "on": "2023-01-20", "classification": "entry", "provider": null},
                    {"stage": "training", "on": "2023-09-15", "classification": "reiteration", "provider": null},
                    {"stage": "socio_occupational", "on": "2024-01-08", "classification": "reiteration", "provider": null},
                ],
            },
            {
                "beneficiary_id": "b9",
                "territory": "LOM-BG-BERGAMO",
                "stalled_reiterations": 2,
                "total_reiterations": 2,
                "current_stage": null,
                "occupability": null,
                "transitions": [
                    {"stage": "socio_occupational", "on": "2024-01-05", "classification": "entry", "provider": null},
                    {"stage": "training", "on": "2024-01-20", "classification": "reiteration", "provider": null},
                    {"stage": "socio_occupational", "on": "2024-02-01", "classification": "reiteration", "provider": null},
                ],
            },
        ],
    });
    assert_eq!(serde_json::to_value(&list).unwrap(), expected);

    // The same count as the metrics' `flagged`.
    let q = query(Some("LOM"), "2024-01-01", "2024-02-15");
    let m = metrics_with(&timelines, &q, &catalogue);
    assert_eq!(m.reiteration.flagged, 2);

    // Scope is the territory at `to`.
    let only_lecco = audit(Some("LOM-LC"), "2024-02-15", 2);
    let ids: Vec<_> = only_lecco
        .beneficiaries
        .iter()
        .map(|b| b.beneficiary_id.as_str())
        .collect();
    assert_eq!(ids, ["b4"]);

    // At the end of 2024 b4 has one stalled reiteration (three in total): only threshold 1
    // flags it, b1 too (one reiteration after its progression, now in Lecco).
    assert!(
        audit(Some("LOM-LC"), "2024-12-31", 2)
            .beneficiaries
            .is_empty()
    );
    let list = audit(None, "2024-12-31", 1);
    let summary: Vec<_> = list
        .beneficiaries
        .iter()
        .map(|b| {
            (
                b.beneficiary_id.as_str(),
                b.territory.as_str(),
                b.stalled_reiterations,
                b.total_reiterations,
                b.current_stage.as_ref().map(|s| s.as_str()),
                b.transitions.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("b1", "LOM-LC-LECCO", 1, 1, None, 3),
            ("b4", "LOM-LC-LECCO", 1, 3, Some(SOCIO), 6),
            ("b9", "LOM-BG-BERGAMO", 2, 2, None, 3),
        ]
    );
}

#[test]
fn timeline_attributes_and_voids_at_apply_time() {
    let t = b5().timeline();
    let territory = |e: &TimelineEntry| t.territory(e.territory).unwrap().as_str().to_owned();
    let entries = t.entries();
    assert_eq!(entries.len(), 6);
    // 1 Enrolled: its own territory; 2 TerritoryChanged: the territory it leaves.
    assert_eq!(territory(&entries[0]), "LOM-BG-BERGAMO");
    assert_eq!(territory(&entries[1]), "LOM-BG-BERGAMO");
    // 3 socio entered in Lecco; voided by 4 at its recorded_at.
    assert_eq!(territory(&entries[2]), "LOM-LC-LECCO");
    assert_eq!(entries[2].voided_at, Some(ts("2024-02-11T09:00:00Z")));
    // 4 and 5 are undos recorded while in Lecco; 5 voided the move.
    assert_eq!(entries[3].kind, EntryKind::CommandUndone);
    assert_eq!(territory(&entries[3]), "LOM-LC-LECCO");
    assert_eq!(territory(&entries[4]), "LOM-LC-LECCO");
    assert_eq!(entries[1].voided_at, Some(ts("2024-02-12T09:00:00Z")));
    assert_eq!(entries[3].voided_at, None);
    // 6: back in Bergamo.
    assert_eq!(territory(&entries[5]), "LOM-BG-BERGAMO");
    assert_eq!(t.current_territory().unwrap().as_str(), "LOM-BG-BERGAMO");
    assert_eq!(t.last_sequence(), 6);
    assert_eq!(t.beneficiary_id(), "b5");
    // Codes are stored once per timeline.
    assert_eq!(t.territories().len(), 2);
    assert_eq!(t.stages().len(), 2);
}

#[test]
fn timeline_ignores_redelivered_events_and_round_trips() {
    let driver = b1();
    let mut t = Timeline::new("b1");
    for event in &driver.events {
        assert!(t.apply(event));
        assert!(!t.apply(event), "a redelivery is ignored");
    }
    assert!(!t.apply(&driver.events[0]));
    assert_eq!(t, driver.timeline());
    let text = serde_json::to_string(&t).unwrap();
    assert!(
        !text.contains("voided_at"),
        "absent voids are not written: {text}"
    );
    let back: Timeline = serde_json::from_str(&text).unwrap();
    assert_eq!(back, t);
}

#[test]
fn timeline_entries_stay_small() {
    // A million of them are held in memory for region-wide queries.
    assert!(
        std::mem::size_of::<TimelineEntry>() <= 48,
        "{} bytes",
        std::mem::size_of::<TimelineEntry>()
    );
}

#[test]
fn regressions_do_not_reset_stalled_reiterations() {
    // entry, progression, regression, reiteration, regression, reiteration: two reiterations
    // since the progression, so flagged at threshold 2.
    let timelines = [Driver::new("b10")
        .enrol("LOM-MI-MILANO", "2024-01-02")
        .enter(INTERNSHIP, "2024-01-05")
        .enter(JOB, "2024-02-01")
        .enter(INTERNSHIP, "2024-03-01")
        .enter(INTERNSHIP, "2024-04-01")
        .enter(SOCIO, "2024-05-01")
        .enter(SOCIO, "2024-06-01")
        .timeline()];
    let m = metrics(
        &timelines,
        &query(Some("LOM-MI"), "2024-01-01", "2024-12-31"),
    );
    assert_eq!(
        m.transitions,
        TransitionCounts {
            entry: 1,
            progression: 1,
            reiteration: 2,
            regression: 2
        }
    );
    // (1 − 2) / (1 + 2 + 2)
    assert!((m.progressivity_index.unwrap() + 0.2).abs() < 1e-9);
    assert_eq!(m.reiteration.distribution.twice, 1);
    assert_eq!(m.reiteration.flagged, 1);
    // Before the second reiteration: one stalled, not flagged.
    let m = metrics(
        &timelines,
        &query(Some("LOM-MI"), "2024-01-01", "2024-05-31"),
    );
    assert_eq!(m.reiteration.distribution.once, 1);
    assert_eq!(m.reiteration.flagged, 0);
}

#[test]
fn known_at_is_echoed_alike_in_json_and_csv() {
    let q = MetricsQuery {
        known_at: ts("2024-03-01T10:15:30.250Z"),
        ..query(None, "2024-03-01", "2024-03-31")
    };
    let m = metrics(&[b8()], &q);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["query"]["known_at"], "2024-03-01T10:15:30.250Z");
    assert!(
        m.to_csv()
            .contains("\nquery.known_at,2024-03-01T10:15:30.250Z\n")
    );
    assert!(m.to_csv().contains("\nquery.territory,\n"));
}
