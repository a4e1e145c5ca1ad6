//! The commands an operator can give about one beneficiary (SPEC 4.1 write endpoints).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::event::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Referral, SupportBand, TeamMember,
};

/// A request to change one beneficiary's pathway. Codes are still unchecked strings here:
/// the aggregate validates them against the configured catalogue and registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum PathwayCommand {
    /// Take a new beneficiary in charge.
    Enrol {
        territory: String,
        on: NaiveDate,
        referral: Referral,
        support_band: Option<SupportBand>,
    },
    /// Start an episode in a stage (closing the open one as `moved_on`).
    EnterStage {
        stage: String,
        on: NaiveDate,
        provider: Option<String>,
    },
    /// End the open episode.
    ExitStage { on: NaiveDate, outcome: ExitOutcome },
    /// Move the beneficiary to another territory.
    ChangeTerritory { territory: String, on: NaiveDate },
    /// End the spell (closing the open episode as `pathway_closed`).
    ClosePathway {
        on: NaiveDate,
        outcome: CloseOutcome,
    },
    /// Start a new spell for a closed beneficiary.
    ReopenPathway { on: NaiveDate },
    /// Record a needs assessment (SPEC 2.5): its own undoable command.
    AssessNeeds {
        on: NaiveDate,
        kind: AssessmentKind,
        occupability: Occupability,
        team: Vec<TeamMember>,
    },
    /// Void the events of the latest command not already undone.
    Undo { reason: String },
    /// Record that the beneficiary's personal data was erased from the vault. Not a pathway
    /// command: it cannot be undone and changes no state or metric. Issued by the service after
    /// the vault destroyed the data key, never by clients directly.
    RecordErasure,
}

impl PathwayCommand {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Enrol { .. } => "enrol",
            Self::EnterStage { .. } => "stage",
            Self::ExitStage { .. } => "exit",
            Self::ChangeTerritory { .. } => "territory",
            Self::ClosePathway { .. } => "close",
            Self::ReopenPathway { .. } => "reopen",
            Self::AssessNeeds { .. } => "assess",
            Self::Undo { .. } => "undo",
            Self::RecordErasure => "erase_personal_data",
        }
    }
}
