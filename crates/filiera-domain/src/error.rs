//! Why a command was refused, and why a configuration was refused.

use chrono::NaiveDate;

use crate::aggregate::EARLIEST_DATE;
use crate::catalogue::MAX_STAGE_CODE_LEN;
use crate::provider::MAX_PROVIDER_CODE_LEN;
use crate::territory::MAX_TERRITORY_CODE_LEN;

/// What kind of refusal an error is; adapters map it to a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The command names something invalid (HTTP 422).
    Invalid,
    /// The command does not fit the beneficiary's current state (HTTP 409).
    Conflict,
    /// There is no such beneficiary (HTTP 404).
    NotFound,
    /// What was asked for existed and was erased for good (HTTP 410).
    Gone,
}

/// A command refused by the pathway rules. Nothing is written when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathwayError {
    #[error("unknown stage `{stage}`; valid stages are: {valid}")]
    UnknownStage { stage: String, valid: String },
    /// Adapters may add where the valid codes are listed (the HTTP API names its route).
    #[error("unknown territory `{territory}`")]
    UnknownTerritory { territory: String },
    /// Only when providers are configured. Adapters may add where they are listed.
    #[error("unknown provider `{provider}`: not in the configured provider registry")]
    UnknownProvider { provider: String },
    #[error(
        "`on` {on} is earlier than {latest}, the latest effective date of this pathway; undo the later command first"
    )]
    OutOfOrder { on: NaiveDate, latest: NaiveDate },
    #[error("`on` {on} is more than one day after today ({today}, UTC)")]
    DateInFuture { on: NaiveDate, today: NaiveDate },
    #[error("`on` {on} is before {earliest}", earliest = EARLIEST_DATE)]
    DateTooEarly { on: NaiveDate },
    #[error("the beneficiary is already enrolled")]
    AlreadyEnrolled,
    #[error("no such beneficiary")]
    NotEnrolled,
    #[error("the beneficiary's enrolment was undone; the stream is kept for audit only")]
    Voided,
    #[error("the pathway is closed; reopen it first")]
    PathwayClosed,
    #[error("the pathway is open; only a closed pathway can be reopened")]
    PathwayOpen,
    #[error("no stage episode is open")]
    NoOpenEpisode,
    #[error("the beneficiary is already in territory `{territory}`")]
    SameTerritory { territory: String },
    #[error(
        "outcome `{outcome}` is recorded automatically (moved_on when entering a stage, pathway_closed when closing); use completed or interrupted"
    )]
    AutomaticOutcome { outcome: String },
    #[error("there is no command left to undo")]
    NothingToUndo,
    #[error("`{field}` {problem}")]
    InvalidText {
        field: &'static str,
        problem: &'static str,
    },
    #[error(
        "the previous stage `{stage}` is no longer in the stage catalogue, so the entry cannot be classified; restore it in the configuration"
    )]
    PreviousStageUnknown { stage: String },
    #[error("the beneficiary's personal data was already erased")]
    AlreadyErased,
    #[error("`team` must name at least one service that took part in the assessment")]
    EmptyTeam,
    #[error("`team` names `{member}` more than once")]
    DuplicateTeamMember { member: &'static str },
    #[error(
        "a multidisciplinary assessment needs at least two distinct services in `team`; record it as initial or review otherwise"
    )]
    TeamTooSmall,
}

impl PathwayError {
    /// A stable, machine-readable code for problem documents.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownStage { .. } => "unknown_stage",
            Self::UnknownTerritory { .. } => "unknown_territory",
            Self::UnknownProvider { .. } => "unknown_provider",
            Self::OutOfOrder { .. } => "out_of_order",
            Self::DateInFuture { .. } => "date_in_future",
            Self::DateTooEarly { .. } => "date_too_early",
            Self::AlreadyEnrolled => "already_enrolled",
            Self::NotEnrolled => "beneficiary_not_found",
            Self::Voided => "beneficiary_voided",
            Self::PathwayClosed => "pathway_closed",
            Self::PathwayOpen => "pathway_open",
            Self::NoOpenEpisode => "no_open_stage",
            Self::SameTerritory { .. } => "same_territory",
            Self::AutomaticOutcome { .. } => "automatic_outcome",
            Self::NothingToUndo => "nothing_to_undo",
            Self::InvalidText { .. } => "invalid_field",
            Self::PreviousStageUnknown { .. } => "catalogue_mismatch",
            Self::AlreadyErased => "personal_data_erased",
            Self::EmptyTeam => "empty_team",
            Self::DuplicateTeamMember { .. } => "duplicate_team_member",
            Self::TeamTooSmall => "team_too_small",
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::UnknownStage { .. } => Some("stage"),
            Self::UnknownTerritory { .. } | Self::SameTerritory { .. } => Some("territory"),
            Self::UnknownProvider { .. } => Some("provider"),
            Self::OutOfOrder { .. } | Self::DateInFuture { .. } | Self::DateTooEarly { .. } => {
                Some("on")
            }
            Self::AutomaticOutcome { .. } => Some("outcome"),
            Self::InvalidText { field, .. } => Some(field),
            Self::EmptyTeam | Self::DuplicateTeamMember { .. } | Self::TeamTooSmall => Some("team"),
            _ => None,
        }
    }

    /// The kind of refusal.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::UnknownStage { .. }
            | Self::UnknownTerritory { .. }
            | Self::UnknownProvider { .. }
            | Self::OutOfOrder { .. }
            | Self::DateInFuture { .. }
            | Self::DateTooEarly { .. }
            | Self::SameTerritory { .. }
            | Self::AutomaticOutcome { .. }
            | Self::InvalidText { .. }
            | Self::EmptyTeam
            | Self::DuplicateTeamMember { .. }
            | Self::TeamTooSmall => Refusal::Invalid,
            Self::NotEnrolled => Refusal::NotFound,
            Self::AlreadyErased => Refusal::Gone,
            Self::AlreadyEnrolled
            | Self::Voided
            | Self::PathwayClosed
            | Self::PathwayOpen
            | Self::NoOpenEpisode
            | Self::NothingToUndo
            | Self::PreviousStageUnknown { .. } => Refusal::Conflict,
        }
    }
}

/// A configuration that cannot be used (stage catalogue, territory or provider registry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the stage catalogue is empty")]
    EmptyCatalogue,
    #[error("stage `{0}` is configured twice")]
    DuplicateStage(String),
    #[error(
        "stage code `{0}` must match [a-z0-9_]+ (at most {max} characters)",
        max = MAX_STAGE_CODE_LEN
    )]
    InvalidStageCode(String),
    #[error("the territory registry is empty")]
    EmptyRegistry,
    #[error("territory `{0}` is configured twice")]
    DuplicateTerritory(String),
    #[error(
        "territory code `{0}` must match [A-Za-z0-9_-]{{1,{max}}}",
        max = MAX_TERRITORY_CODE_LEN
    )]
    InvalidTerritoryCode(String),
    #[error("territory `{territory}` names unknown parent `{parent}`")]
    UnknownParent { territory: String, parent: String },
    #[error("territory `{0}` is its own ancestor")]
    TerritoryCycle(String),
    #[error("provider `{0}` is configured twice")]
    DuplicateProvider(String),
    #[error(
        "provider code `{0}` must match [A-Za-z0-9_.-]{{1,{max}}}",
        max = MAX_PROVIDER_CODE_LEN
    )]
    InvalidProviderCode(String),
    #[error(
        "provider `{provider}` names territory `{territory}`, which the territory registry does not have"
    )]
    UnknownProviderTerritory { provider: String, territory: String },
}
