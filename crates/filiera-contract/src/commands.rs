//! The body of each write command: what `POST /v1/beneficiaries` and the routes under
//! `/v1/beneficiaries/{id}` take, and what each line of a `filiera import` file holds. Each
//! body is the [`PathwayCommand`] it asks for.

use chrono::NaiveDate;
use filiera_domain::{
    AssessmentKind, CloseOutcome, ExitOutcome, Occupability, PathwayCommand, Referral, SupportBand,
    TeamMember,
};
use serde::Deserialize;

/// `POST /v1/beneficiaries`: take a new beneficiary in charge.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// A territory code of the registry (`GET /v1/territories`).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::RegisteredTerritory))]
    territory: String,
    /// The effective date of the enrolment; not in the future.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
    referral: Referral,
    #[serde(default)]
    support_band: Option<SupportBand>,
    /// The beneficiary's identity, kept encrypted in the personal-data vault, never in events.
    #[serde(default)]
    person: Option<filiera_vault::Person>,
}

impl EnrolBody {
    /// The territory code asked for, as given.
    pub fn territory(&self) -> &str {
        &self.territory
    }

    /// Takes the identity out of the body: it goes to the vault, the rest to the event store.
    pub fn take_person(&mut self) -> Option<filiera_vault::Person> {
        self.person.take()
    }
}

/// `POST /v1/beneficiaries/{id}/stage`: start an episode in a stage.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StageBody {
    /// A stage code of the catalogue (`GET /v1/stages`).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::CataloguedStage))]
    stage: String,
    /// The effective date; not before the latest recorded date, not in the future.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
    /// Who runs the stage: a code of `GET /v1/providers` when the configuration lists
    /// providers, otherwise any non-empty text.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<crate::schema::ProviderName>)
    )]
    provider: Option<String>,
}

/// `POST /v1/beneficiaries/{id}/stage/exit`: end the open episode.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExitBody {
    /// The effective date.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
    /// `completed` or `interrupted`; `moved_on` and `pathway_closed` are written by the service
    /// itself and refused here (422 `automatic_outcome`).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::ManualExitOutcome))]
    outcome: ExitOutcome,
}

/// `POST /v1/beneficiaries/{id}/territory`: move the beneficiary to another territory.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TerritoryBody {
    /// The new territory code; not the one the beneficiary is in (422 `same_territory`).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::RegisteredTerritory))]
    territory: String,
    /// The effective date.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
}

/// `POST /v1/beneficiaries/{id}/close`: end the spell.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// The effective date.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
    outcome: CloseOutcome,
}

/// `POST /v1/beneficiaries/{id}/reopen`: start a new spell for a closed beneficiary.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReopenBody {
    /// The effective date of the new spell.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
}

/// `POST /v1/beneficiaries/{id}/assessment`: record a needs assessment.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssessmentBody {
    /// The effective date; not before the latest recorded date, not in the future.
    #[serde(deserialize_with = "filiera_domain::date::deserialize")]
    on: NaiveDate,
    /// `multidisciplinary` needs at least two services in `team`.
    kind: AssessmentKind,
    /// The occupability profile the assessment concluded with.
    occupability: Occupability,
    /// The services that took part: at least one, none twice.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Team))]
    team: Vec<TeamMember>,
}

/// `POST /v1/beneficiaries/{id}/undo`: void the events of the latest command not already
/// undone.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UndoBody {
    /// Why, for the audit trail.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Text))]
    reason: String,
}

impl From<EnrolBody> for PathwayCommand {
    fn from(b: EnrolBody) -> Self {
        Self::Enrol {
            territory: b.territory,
            on: b.on,
            referral: b.referral,
            support_band: b.support_band,
        }
    }
}

impl From<StageBody> for PathwayCommand {
    fn from(b: StageBody) -> Self {
        Self::EnterStage {
            stage: b.stage,
            on: b.on,
            provider: b.provider,
        }
    }
}

impl From<ExitBody> for PathwayCommand {
    fn from(b: ExitBody) -> Self {
        Self::ExitStage {
            on: b.on,
            outcome: b.outcome,
        }
    }
}

impl From<TerritoryBody> for PathwayCommand {
    fn from(b: TerritoryBody) -> Self {
        Self::ChangeTerritory {
            territory: b.territory,
            on: b.on,
        }
    }
}

impl From<CloseBody> for PathwayCommand {
    fn from(b: CloseBody) -> Self {
        Self::ClosePathway {
            on: b.on,
            outcome: b.outcome,
        }
    }
}

impl From<ReopenBody> for PathwayCommand {
    fn from(b: ReopenBody) -> Self {
        Self::ReopenPathway { on: b.on }
    }
}

impl From<AssessmentBody> for PathwayCommand {
    fn from(b: AssessmentBody) -> Self {
        Self::AssessNeeds {
            on: b.on,
            kind: b.kind,
            occupability: b.occupability,
            team: b.team,
        }
    }
}

impl From<UndoBody> for PathwayCommand {
    fn from(b: UndoBody) -> Self {
        Self::Undo { reason: b.reason }
    }
}
