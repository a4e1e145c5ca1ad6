//! The pathway events (SPEC 2.3): the immutable facts every projection is rebuilt from.

use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::catalogue::StageCode;
use crate::evolution::{self, TAG};
use crate::territory::TerritoryCode;

/// Who referred the beneficiary to the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Referral {
    SocialServices,
    EmploymentCentre,
    HealthService,
    ThirdSector,
    #[serde(rename = "self")]
    SelfReferral,
    Other,
}

/// The support intensity assessed by the équipe multidisciplinare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SupportBand {
    HighSupport,
    Medium,
    Autonomous,
}

/// How an episode in a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExitOutcome {
    Completed,
    Interrupted,
    /// Written by the service when a new stage is entered over an open episode.
    MovedOn,
    /// Written by the service when the pathway is closed over an open episode.
    PathwayClosed,
}

impl ExitOutcome {
    /// Every outcome, in documentation order.
    pub const ALL: [Self; 4] = [
        Self::Completed,
        Self::Interrupted,
        Self::MovedOn,
        Self::PathwayClosed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::MovedOn => "moved_on",
            Self::PathwayClosed => "pathway_closed",
        }
    }

    /// The outcomes the service writes itself, as the first event of a two-event command.
    pub fn is_automatic(self) -> bool {
        matches!(self, Self::MovedOn | Self::PathwayClosed)
    }
}

/// How a spell (pathway) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CloseOutcome {
    Employed,
    DroppedOut,
    MovedAway,
    Deceased,
    Other,
}

impl CloseOutcome {
    /// Every outcome, in documentation order.
    pub const ALL: [Self; 5] = [
        Self::Employed,
        Self::DroppedOut,
        Self::MovedAway,
        Self::Deceased,
        Self::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Employed => "employed",
            Self::DroppedOut => "dropped_out",
            Self::MovedAway => "moved_away",
            Self::Deceased => "deceased",
            Self::Other => "other",
        }
    }
}

/// What a needs assessment was (docs/domain.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AssessmentKind {
    /// The first reading of needs, before a pathway is designed.
    Initial,
    /// The reading of the *équipe multidisciplinare*: at least two services take part.
    Multidisciplinary,
    /// A later reading that revises an earlier one.
    Review,
}

impl AssessmentKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 3] = [Self::Initial, Self::Multidisciplinary, Self::Review];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Multidisciplinary => "multidisciplinary",
            Self::Review => "review",
        }
    }
}

/// The occupability profile a needs assessment concludes with (docs/domain.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Occupability {
    Low,
    Medium,
    High,
}

impl Occupability {
    /// Every profile, in documentation order.
    pub const ALL: [Self; 3] = [Self::Low, Self::Medium, Self::High];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// A service taking part in a needs assessment (docs/domain.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TeamMember {
    SocialServices,
    /// The *centro per l'impiego* (CPI).
    EmploymentCentre,
    HealthService,
    ThirdSector,
}

impl TeamMember {
    /// Every member, in documentation order.
    pub const ALL: [Self; 4] = [
        Self::SocialServices,
        Self::EmploymentCentre,
        Self::HealthService,
        Self::ThirdSector,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SocialServices => "social_services",
            Self::EmploymentCentre => "employment_centre",
            Self::HealthService => "health_service",
            Self::ThirdSector => "third_sector",
        }
    }
}

/// The classification of a stage entry (docs/domain.md), decided when it is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The beneficiary's first stage ever.
    Entry,
    /// A stage of a higher level than the previous one.
    Progression,
    /// A stage of the same level as the previous one.
    Reiteration,
    /// A stage of a lower level than the previous one.
    Regression,
}

impl Transition {
    /// Classifies entering a stage of `level` after a stage of `previous` level (if any).
    pub fn classify(previous: Option<i32>, level: i32) -> Self {
        match previous {
            None => Self::Entry,
            Some(p) if level > p => Self::Progression,
            Some(p) if level == p => Self::Reiteration,
            Some(_) => Self::Regression,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::Progression => "progression",
            Self::Reiteration => "reiteration",
            Self::Regression => "regression",
        }
    }
}

/// Every event of a beneficiary's pathway stream. Events never carry personal data.
///
/// Its serde form is the stored form of version 2 (see [`crate::evolution`]): the fields and,
/// in `type`, the snake_case event name. Unknown fields are refused: a build never drops what
/// it does not understand (ADR 0007).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PathwayEvent {
    /// A spell (pathway) starts: the beneficiary is taken in charge (*presa in carico*).
    Enrolled {
        territory: TerritoryCode,
        on: NaiveDate,
        referral: Referral,
        support_band: Option<SupportBand>,
    },
    /// An episode in a stage starts; `transition` is its classification when recorded.
    StageEntered {
        stage: StageCode,
        on: NaiveDate,
        from_stage: Option<StageCode>,
        transition: Transition,
        provider: Option<String>,
    },
    /// The open episode ends.
    StageExited {
        stage: StageCode,
        on: NaiveDate,
        outcome: ExitOutcome,
    },
    /// The beneficiary moves to another territory.
    TerritoryChanged {
        from: TerritoryCode,
        to: TerritoryCode,
        on: NaiveDate,
    },
    /// The spell ends.
    PathwayClosed {
        on: NaiveDate,
        outcome: CloseOutcome,
    },
    /// A new spell starts for a closed beneficiary.
    PathwayReopened { on: NaiveDate },
    /// Voids every event written by the latest command not already undone. `on` is the UTC
    /// date the undo was recorded; it is not an effective date and no ordering rule uses it.
    CommandUndone {
        on: NaiveDate,
        undone_sequences: Vec<u64>,
        reason: String,
    },
    /// The beneficiary's personal data was erased from the vault (SPEC 5.2): its data key was
    /// destroyed. Carries no personal data. Not a pathway fact: undo passes over it, the state
    /// and every metric ignore it. `on` is the UTC date of the erasure, like an undo's.
    PersonalDataErased { on: NaiveDate },
    /// A needs assessment (SPEC 2.5): its kind, the occupability profile it concluded with and
    /// the services that took part. Changes no classification.
    NeedsAssessed {
        on: NaiveDate,
        kind: AssessmentKind,
        occupability: Occupability,
        team: Vec<TeamMember>,
    },
}

impl PathwayEvent {
    /// Stable event names, as stored and published.
    pub const TYPES: [&'static str; 9] = [
        "Enrolled",
        "StageEntered",
        "StageExited",
        "TerritoryChanged",
        "PathwayClosed",
        "PathwayReopened",
        "CommandUndone",
        "PersonalDataErased",
        "NeedsAssessed",
    ];

    /// The event name of SPEC 2.3 for `name` given as `StageEntered` or `stage_entered`.
    pub fn type_named(name: &str) -> Option<&'static str> {
        Self::TYPES
            .into_iter()
            .find(|t| *t == name || snake_case(t) == name)
    }

    /// The event name of SPEC 2.3.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Enrolled { .. } => "Enrolled",
            Self::StageEntered { .. } => "StageEntered",
            Self::StageExited { .. } => "StageExited",
            Self::TerritoryChanged { .. } => "TerritoryChanged",
            Self::PathwayClosed { .. } => "PathwayClosed",
            Self::PathwayReopened { .. } => "PathwayReopened",
            Self::CommandUndone { .. } => "CommandUndone",
            Self::PersonalDataErased { .. } => "PersonalDataErased",
            Self::NeedsAssessed { .. } => "NeedsAssessed",
        }
    }

    /// The effective date. For `CommandUndone` this is the recording date, see its docs.
    pub fn on(&self) -> NaiveDate {
        match self {
            Self::Enrolled { on, .. }
            | Self::StageEntered { on, .. }
            | Self::StageExited { on, .. }
            | Self::TerritoryChanged { on, .. }
            | Self::PathwayClosed { on, .. }
            | Self::PathwayReopened { on }
            | Self::CommandUndone { on, .. }
            | Self::PersonalDataErased { on }
            | Self::NeedsAssessed { on, .. } => *on,
        }
    }

    /// The effective date that ordering rules consider; `None` for `CommandUndone` and
    /// `PersonalDataErased`, which record when they happened, not a pathway date.
    pub fn effective_on(&self) -> Option<NaiveDate> {
        match self {
            Self::CommandUndone { .. } | Self::PersonalDataErased { .. } => None,
            other => Some(other.on()),
        }
    }

    /// The fields of the event, without its type (the `data` of feeds and messages).
    pub fn data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            // Filtered rather than removed, so that the fields keep their order either way.
            Ok(serde_json::Value::Object(map)) => {
                map.into_iter().filter(|(k, _)| k != TAG).collect()
            }
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds an event from its name (as in [`PathwayEvent::TYPES`]) and fields, as
    /// [`PathwayEvent::data`] gives them.
    pub fn from_parts(name: &str, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        if !Self::TYPES.contains(&name) {
            return Err(serde_json::Error::unknown_variant(name, &Self::TYPES));
        }
        let serde_json::Value::Object(fields) = data else {
            return Err(serde_json::Error::custom(format!(
                "the fields of `{name}` must be an object"
            )));
        };
        if fields.contains_key(TAG) {
            return Err(serde_json::Error::unknown_field(TAG, &[]));
        }
        let mut map = serde_json::Map::with_capacity(fields.len() + 1);
        map.insert(TAG.to_owned(), serde_json::Value::String(snake_case(name)));
        map.extend(fields);
        serde_json::from_value(serde_json::Value::Object(map))
    }
}

/// Converts a snake_case or CamelCase event name to snake_case (`StageEntered` → `stage_entered`).
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

impl DomainEvent for PathwayEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        evolution::current_version(self.name())
            .unwrap_or_default()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn classification_follows_levels() {
        assert_eq!(Transition::classify(None, 2), Transition::Entry);
        assert_eq!(Transition::classify(Some(1), 2), Transition::Progression);
        assert_eq!(Transition::classify(Some(2), 2), Transition::Reiteration);
        assert_eq!(Transition::classify(Some(3), 1), Transition::Regression);
    }

    #[test]
    fn data_round_trips_without_the_tag() {
        let event = PathwayEvent::StageExited {
            stage: StageCode::parse("internship").unwrap(),
            on: date("2024-03-01"),
            outcome: ExitOutcome::MovedOn,
        };
        let data = event.data();
        assert_eq!(
            data,
            serde_json::json!({"stage": "internship", "on": "2024-03-01", "outcome": "moved_on"})
        );
        assert_eq!(
            PathwayEvent::from_parts("StageExited", data).unwrap(),
            event
        );
    }

    #[test]
    fn event_types_are_named_either_way() {
        assert_eq!(
            PathwayEvent::type_named("StageEntered"),
            Some("StageEntered")
        );
        assert_eq!(
            PathwayEvent::type_named("stage_entered"),
            Some("StageEntered")
        );
        assert_eq!(PathwayEvent::type_named("Stage_Entered"), None);
        assert_eq!(PathwayEvent::type_named("exploded"), None);
    }

    #[test]
    fn wire_names_are_snake_case() {
        assert_eq!(snake_case("StageEntered"), "stage_entered");
        assert_eq!(snake_case("CommandUndone"), "command_undone");
        assert_eq!(
            serde_json::to_value(Referral::SelfReferral).unwrap(),
            serde_json::json!("self")
        );
        for outcome in CloseOutcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::json!(outcome.as_str())
            );
        }
        for outcome in ExitOutcome::ALL {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::json!(outcome.as_str())
            );
        }
        for kind in AssessmentKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        for occupability in Occupability::ALL {
            assert_eq!(
                serde_json::to_value(occupability).unwrap(),
                serde_json::json!(occupability.as_str())
            );
        }
        for member in TeamMember::ALL {
            assert_eq!(
                serde_json::to_value(member).unwrap(),
                serde_json::json!(member.as_str())
            );
        }
    }
}
