//! The current state of one beneficiary, folded from the non-voided events of its stream.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalogue::StageCode;
use crate::event::{CloseOutcome, Occupability, PathwayEvent, Referral, SupportBand, Transition};
use crate::territory::TerritoryCode;

/// Where a beneficiary stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PathwayStatus {
    /// Nothing recorded yet.
    #[default]
    NotEnrolled,
    /// A spell is open.
    Open,
    /// The latest spell is closed.
    Closed,
    /// The enrolment was undone; the stream stays for audit.
    Voided,
}

/// Counters over the non-voided events of the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathwayCounts {
    /// Spells started (enrolment plus reopenings).
    pub spells: u32,
    /// Stage entries, by classification.
    pub stage_entries: u32,
    pub entries: u32,
    pub progressions: u32,
    pub reiterations: u32,
    pub regressions: u32,
    pub territory_changes: u32,
    /// Undos recorded on this stream.
    pub corrections: u32,
}

/// The fold of a beneficiary's non-voided events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathwayState {
    pub status: PathwayStatus,
    /// The territory in force.
    pub territory: Option<TerritoryCode>,
    pub referral: Option<Referral>,
    pub support_band: Option<SupportBand>,
    pub enrolled_on: Option<NaiveDate>,
    /// Start of the current (or latest) spell.
    pub spell_started_on: Option<NaiveDate>,
    /// Stage of the open episode.
    pub current_stage: Option<StageCode>,
    /// Start of the open episode.
    pub stage_entered_on: Option<NaiveDate>,
    /// Stage of the most recent stage entry in any spell: the reference for classification.
    pub last_stage: Option<StageCode>,
    pub closed_on: Option<NaiveDate>,
    pub close_outcome: Option<CloseOutcome>,
    /// Latest effective date among the non-voided events: nothing earlier may be recorded.
    pub latest_on: Option<NaiveDate>,
    /// The occupability profile of the latest non-voided needs assessment (docs/domain.md).
    pub occupability: Option<Occupability>,
    /// Reiterations since the most recent progression (docs/domain.md).
    pub stalled_reiterations: u32,
    pub counts: PathwayCounts,
}

impl PathwayState {
    /// Applies one non-voided event. `CommandUndone` only counts a correction: voiding is the
    /// aggregate's business, which refolds from scratch.
    pub fn apply(&mut self, event: &PathwayEvent) {
        if let Some(on) = event.effective_on() {
            self.latest_on = Some(self.latest_on.map_or(on, |l| l.max(on)));
        }
        match event {
            PathwayEvent::Enrolled {
                territory,
                on,
                referral,
                support_band,
            } => {
                self.status = PathwayStatus::Open;
                self.territory = Some(territory.clone());
                self.referral = Some(*referral);
                self.support_band = *support_band;
                self.enrolled_on = Some(*on);
                self.spell_started_on = Some(*on);
                self.counts.spells += 1;
            }
            PathwayEvent::StageEntered {
                stage,
                on,
                transition,
                ..
            } => {
                self.current_stage = Some(stage.clone());
                self.stage_entered_on = Some(*on);
                self.last_stage = Some(stage.clone());
                self.counts.stage_entries += 1;
                match transition {
                    Transition::Entry => self.counts.entries += 1,
                    Transition::Progression => {
                        self.counts.progressions += 1;
                        self.stalled_reiterations = 0;
                    }
                    Transition::Reiteration => {
                        self.counts.reiterations += 1;
                        self.stalled_reiterations += 1;
                    }
                    Transition::Regression => self.counts.regressions += 1,
                }
            }
            PathwayEvent::StageExited { .. } => {
                self.current_stage = None;
                self.stage_entered_on = None;
            }
            PathwayEvent::TerritoryChanged { to, .. } => {
                self.territory = Some(to.clone());
                self.counts.territory_changes += 1;
            }
            PathwayEvent::PathwayClosed { on, outcome } => {
                self.status = PathwayStatus::Closed;
                self.closed_on = Some(*on);
                self.close_outcome = Some(*outcome);
            }
            PathwayEvent::PathwayReopened { on } => {
                self.status = PathwayStatus::Open;
                self.spell_started_on = Some(*on);
                self.closed_on = None;
                self.close_outcome = None;
                self.counts.spells += 1;
            }
            PathwayEvent::NeedsAssessed { occupability, .. } => {
                self.occupability = Some(*occupability);
            }
            PathwayEvent::CommandUndone { .. } => self.counts.corrections += 1,
            // Never reaches here from the aggregate, which keeps erasures out of the state.
            PathwayEvent::PersonalDataErased { .. } => {}
        }
    }
}
