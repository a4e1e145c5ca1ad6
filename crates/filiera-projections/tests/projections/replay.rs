//! The projection answers exactly like the offline replay, for hand-written histories, as
//! known at every instant before and after each recording (so before and after each undo).

use anyhow::ensure;
use chrono::TimeDelta;
use filiera_domain::AuditQuery;
use filiera_projections::{Projections, replay_audit, replay_report};

use crate::common::*;

pub async fn projection_equals_replay_for_hand_written_histories(
    h: &Harness,
) -> anyhow::Result<()> {
    let store = &h.store;
    // Started before the writes: the projection follows them live, in small batches.
    let projections = Projections::start(store.clone(), settings(store, 4)).await?;
    let times = varied_history(store).await?;
    projections.wait_until_caught_up(PATIENCE).await?;

    let instants: Vec<_> = times
        .iter()
        .flat_map(|&t| [t - TimeDelta::microseconds(1), t])
        .collect();
    assert_same_as_replay(&projections, store, &queries(&instants)).await?;

    // The functions behind `filiera report` give the same documents.
    let far = "2030-12-31T00:00:00Z".parse()?;
    let everything = query(None, "2000-01-01", "2030-12-31", far, 2);
    let online = projections.metrics(everything.clone()).await?;
    ensure!(replay_report(store, &everything).await? == online);
    let audit = AuditQuery::from(&everything);
    ensure!(replay_audit(store, &audit).await? == projections.audit(audit.clone()).await?);

    // A few figures by hand. Five beneficiaries, one voided by undoing its enrolment.
    ensure!(online.enrolments == 4, "enrolments {}", online.enrolments);
    ensure!(online.reopenings == 1);
    // Undos: one in the second history, three in the fifth, and the voided beneficiary's
    // own undo (a correction like any other, SPEC 3).
    ensure!(
        online.corrections == 5,
        "corrections {}",
        online.corrections
    );
    ensure!(online.closures.employed == 1 && online.closures.dropped_out == 1);
    ensure!(online.closures.moved_away == 0, "the closure was undone");
    // Entries: the 1st, 2nd and 3rd histories (the 5th's was undone). Progressions: two in
    // the 1st, and the 2nd's internship after reopening (from training: its socio_occupational
    // was undone). Regression: the 3rd's socio_occupational after an internship. Reiterations:
    // the 1st's internship again after moving, the 2nd's socio_occupational and training
    // (both level 1).
    let t = &online.transitions;
    ensure!(t.entry == 3, "entries {}", t.entry);
    ensure!(t.progression == 3, "progressions {}", t.progression);
    ensure!(t.regression == 1, "regressions {}", t.regression);
    ensure!(t.reiteration == 3, "reiterations {}", t.reiteration);
    projections.shutdown().await;
    Ok(())
}
