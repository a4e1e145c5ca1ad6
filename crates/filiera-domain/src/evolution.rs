//! How stored events evolve (ADR 0007, `docs/event-evolution.md`): the version each event type
//! is written in today, the upcasters that turn every older stored form into today's, and the
//! one decoder that every reader of stored rows goes through.
//!
//! A stored event is a row: its type (`event_type`), the version of its form
//! (`event_version`) and its JSON `payload`. cqrs-es writes the payload with `PathwayEvent`'s
//! `Serialize` and reads it back, after the upcasters, with its `Deserialize`; the store's own
//! readers (the feed, histories) call [`decode`] with the same upcasters.
//!
//! # Versions
//! - `1`: serde's externally tagged form of the Rust enum, `{"StageEntered": {…fields}}`.
//! - `2` (today, every type): an object holding the fields and the type in [`TAG`] as a
//!   snake_case name, `{"type": "stage_entered", …fields}`.

use std::str::FromStr;

use cqrs_es::persist::{
    EventUpcaster, SemanticVersion, SemanticVersionEventUpcaster, SerializedEvent,
};
use serde_json::{Map, Value};

use crate::event::{PathwayEvent, snake_case};

/// The member of a stored payload (version 2 on) that names the event type, in snake_case.
pub const TAG: &str = "type";

/// What this build does with each event type's versions.
struct Versions {
    event_type: &'static str,
    /// The version it writes (`DomainEvent::event_version`).
    writes: &'static str,
    /// The newest version it reads. Above `writes` only in the first release of a two-step
    /// change (see `docs/event-evolution.md`): it reads a form it does not write yet.
    reads: &'static str,
}

/// Per event type. A change of stored form bumps `reads` (first release) then `writes` (next
/// release), with an upcaster in [`upcasters`] and a fixture of the old form in a test.
static VERSIONS: [Versions; 9] = [
    Versions::both("Enrolled", "2"),
    Versions::both("StageEntered", "2"),
    Versions::both("StageExited", "2"),
    Versions::both("TerritoryChanged", "2"),
    Versions::both("PathwayClosed", "2"),
    Versions::both("PathwayReopened", "2"),
    Versions::both("CommandUndone", "2"),
    Versions::both("PersonalDataErased", "2"),
    // A new type starts at the stored form of the day; its version 1 form never existed.
    Versions::both("NeedsAssessed", "2"),
];

impl Versions {
    const fn both(event_type: &'static str, version: &'static str) -> Self {
        Self {
            event_type,
            writes: version,
            reads: version,
        }
    }
}

fn versions(event_type: &str) -> Option<&'static Versions> {
    VERSIONS.iter().find(|v| v.event_type == event_type)
}

/// The version `event_type` is written in; `None` for a type this build does not know.
pub fn current_version(event_type: &str) -> Option<&'static str> {
    versions(event_type).map(|v| v.writes)
}

/// Why a stored event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The type is not one this build knows: written by a newer build, or not ours.
    #[error(
        "event type `{event_type}` is unknown to this build of filiera; \
         if a newer build wrote it, upgrade this one"
    )]
    UnknownType { event_type: String },
    /// The version is newer than this build reads, or not a version at all.
    #[error(
        "`{event_type}` version `{version}` is not one this build of filiera reads \
         (it reads up to {current}); if a newer build wrote it, upgrade this one"
    )]
    UnknownVersion {
        event_type: String,
        version: String,
        current: &'static str,
    },
    /// The payload is an event of another type than its row says.
    #[error("the payload of a `{event_type}` row is a `{found}`")]
    WrongType {
        event_type: String,
        found: &'static str,
    },
    /// A version this build reads, whose payload does not match it.
    #[error("`{event_type}` version `{version}` does not decode: {source}")]
    Malformed {
        event_type: String,
        version: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Whether this build can read an event of this type and version: the type is known and the
/// version is not newer than the newest it reads.
pub fn check_readable(event_type: &str, event_version: &str) -> Result<(), DecodeError> {
    let current = versions(event_type)
        .ok_or_else(|| DecodeError::UnknownType {
            event_type: event_type.to_owned(),
        })?
        .reads;
    let unknown = || DecodeError::UnknownVersion {
        event_type: event_type.to_owned(),
        version: event_version.to_owned(),
        current,
    };
    let version = SemanticVersion::from_str(event_version).map_err(|_| unknown())?;
    let known = SemanticVersion::from_str(current).map_err(|_| unknown())?;
    if version.supersedes(&known) {
        return Err(unknown());
    }
    Ok(())
}

/// The upcasters, in the order they apply (cqrs-es tries each in turn on every event it
/// loads): for each type, one per version step, oldest first; then the [`Unreadable`] guard.
/// Give them to every `PersistedEventStore` (`with_upcasters`) and to [`decode`].
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    let mut upcasters: Vec<Box<dyn EventUpcaster>> = PathwayEvent::TYPES
        .into_iter()
        .map(|event_type| {
            Box::new(SemanticVersionEventUpcaster::new(
                event_type,
                "2",
                Box::new(move |payload| v1_to_v2(event_type, payload)),
            )) as Box<dyn EventUpcaster>
        })
        .collect();
    upcasters.push(Box::new(Unreadable));
    upcasters
}

/// Version 1 → 2: `{"StageEntered": {…fields}}` becomes `{"type": "stage_entered", …fields}`.
/// Anything else is replaced by why it is not a version 1 `event_type`, as a JSON string, so
/// that decoding refuses it with that reason instead of reading it as another version.
pub fn v1_to_v2(event_type: &str, payload: Value) -> Value {
    if let Value::Object(outer) = &payload
        && outer.len() == 1
        && let Some(Value::Object(fields)) = outer.get(event_type)
        && !fields.contains_key(TAG)
    {
        let mut v2 = Map::with_capacity(fields.len() + 1);
        v2.insert(TAG.to_owned(), Value::String(snake_case(event_type)));
        v2.extend(fields.clone());
        return Value::Object(v2);
    }
    Value::String(format!(
        "a version 1 `{event_type}` payload is an object whose one member, `{event_type}`, \
         holds the fields"
    ))
}

/// The last upcaster: an event of a type or version this build does not read (see
/// [`check_readable`]) gets, instead of its payload, the reason as a JSON string. Decoding
/// then fails with that reason in the message instead of guessing at a form it never saw.
pub struct Unreadable;

impl EventUpcaster for Unreadable {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        check_readable(event_type, event_version).is_err()
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        if let Err(reason) = check_readable(&event.event_type, &event.event_version) {
            event.payload = Value::String(reason.to_string());
        }
        event
    }
}

/// [`decode`] from the payload's JSON text. A payload no upcaster changes (the form this build
/// writes) is deserialized straight from the text, without building a `Value` first: the feed
/// readers (replay, projection catch-up, export) decode every event this way.
pub fn decode_text(
    upcasters: &[Box<dyn EventUpcaster>],
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<PathwayEvent, DecodeError> {
    let malformed = |source| DecodeError::Malformed {
        event_type: event_type.to_owned(),
        version: event_version.to_owned(),
        source,
    };
    if upcasters
        .iter()
        .any(|u| u.can_upcast(event_type, event_version))
    {
        let value = serde_json::from_str(payload).map_err(malformed)?;
        return decode(upcasters, event_type, event_version, value);
    }
    check_readable(event_type, event_version)?;
    let event: PathwayEvent = serde_json::from_str(payload).map_err(malformed)?;
    if event.name() != event_type {
        return Err(DecodeError::WrongType {
            event_type: event_type.to_owned(),
            found: event.name(),
        });
    }
    Ok(event)
}

/// Decodes a stored event as cqrs-es does when it loads a stream: refuses what this build does
/// not read, applies `upcasters` (those of [`upcasters`]) in order, then deserializes.
pub fn decode(
    upcasters: &[Box<dyn EventUpcaster>],
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<PathwayEvent, DecodeError> {
    check_readable(event_type, event_version)?;
    let stored = SerializedEvent::new(
        String::new(),
        0,
        String::new(),
        event_type.to_owned(),
        event_version.to_owned(),
        payload,
        Value::Null,
    );
    let current = upcasters.iter().fold(stored, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    });
    let event: PathwayEvent =
        serde_json::from_value(current.payload).map_err(|source| DecodeError::Malformed {
            event_type: event_type.to_owned(),
            version: event_version.to_owned(),
            source,
        })?;
    if event.name() != event_type {
        return Err(DecodeError::WrongType {
            event_type: event_type.to_owned(),
            found: event.name(),
        });
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use cqrs_es::DomainEvent as _;
    use serde_json::json;

    use super::*;
    use crate::catalogue::StageCode;
    use crate::event::{
        AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Referral, SupportBand, TeamMember,
        Transition,
    };
    use crate::territory::TerritoryCode;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// One event of each type, with its version 1 and version 2 stored forms written out.
    fn samples() -> Vec<(PathwayEvent, Value, Value)> {
        let stage = |s| StageCode::parse(s).unwrap();
        let territory = |t| TerritoryCode::parse(t).unwrap();
        vec![
            (
                PathwayEvent::Enrolled {
                    territory: territory("LOM-BG"),
                    on: d("2024-01-10"),
                    referral: Referral::SelfReferral,
                    support_band: Some(SupportBand::HighSupport),
                },
                json!({"Enrolled": {"territory": "LOM-BG", "on": "2024-01-10",
                                    "referral": "self", "support_band": "high_support"}}),
                json!({"type": "enrolled", "territory": "LOM-BG", "on": "2024-01-10",
                       "referral": "self", "support_band": "high_support"}),
            ),
            (
                PathwayEvent::StageEntered {
                    stage: stage("internship"),
                    on: d("2024-02-01"),
                    from_stage: None,
                    transition: Transition::Entry,
                    provider: Some("Alfa".into()),
                },
                json!({"StageEntered": {"stage": "internship", "on": "2024-02-01",
                       "from_stage": null, "transition": "entry", "provider": "Alfa"}}),
                json!({"type": "stage_entered", "stage": "internship", "on": "2024-02-01",
                       "from_stage": null, "transition": "entry", "provider": "Alfa"}),
            ),
            (
                PathwayEvent::StageExited {
                    stage: stage("internship"),
                    on: d("2024-03-01"),
                    outcome: ExitOutcome::MovedOn,
                },
                json!({"StageExited": {"stage": "internship", "on": "2024-03-01",
                                       "outcome": "moved_on"}}),
                json!({"type": "stage_exited", "stage": "internship", "on": "2024-03-01",
                       "outcome": "moved_on"}),
            ),
            (
                PathwayEvent::TerritoryChanged {
                    from: territory("LOM-BG"),
                    to: territory("LOM-LC"),
                    on: d("2024-03-05"),
                },
                json!({"TerritoryChanged": {"from": "LOM-BG", "to": "LOM-LC",
                                            "on": "2024-03-05"}}),
                json!({"type": "territory_changed", "from": "LOM-BG", "to": "LOM-LC",
                       "on": "2024-03-05"}),
            ),
            (
                PathwayEvent::PathwayClosed {
                    on: d("2024-04-01"),
                    outcome: CloseOutcome::DroppedOut,
                },
                json!({"PathwayClosed": {"on": "2024-04-01", "outcome": "dropped_out"}}),
                json!({"type": "pathway_closed", "on": "2024-04-01", "outcome": "dropped_out"}),
            ),
            (
                PathwayEvent::PathwayReopened {
                    on: d("2024-05-02"),
                },
                json!({"PathwayReopened": {"on": "2024-05-02"}}),
                json!({"type": "pathway_reopened", "on": "2024-05-02"}),
            ),
            (
                PathwayEvent::CommandUndone {
                    on: d("2024-05-03"),
                    undone_sequences: vec![4, 5],
                    reason: "typo".into(),
                },
                json!({"CommandUndone": {"on": "2024-05-03", "undone_sequences": [4, 5],
                                         "reason": "typo"}}),
                json!({"type": "command_undone", "on": "2024-05-03",
                       "undone_sequences": [4, 5], "reason": "typo"}),
            ),
            (
                PathwayEvent::PersonalDataErased {
                    on: d("2024-06-01"),
                },
                json!({"PersonalDataErased": {"on": "2024-06-01"}}),
                json!({"type": "personal_data_erased", "on": "2024-06-01"}),
            ),
            // Never written at version 1: its form there is what version 1 builds would have
            // written, which the generic upcaster reads like every other type's.
            (
                PathwayEvent::NeedsAssessed {
                    on: d("2024-06-02"),
                    kind: AssessmentKind::Multidisciplinary,
                    occupability: Occupability::Medium,
                    team: vec![TeamMember::SocialServices, TeamMember::EmploymentCentre],
                },
                json!({"NeedsAssessed": {"on": "2024-06-02", "kind": "multidisciplinary",
                                         "occupability": "medium",
                                         "team": ["social_services", "employment_centre"]}}),
                json!({"type": "needs_assessed", "on": "2024-06-02", "kind": "multidisciplinary",
                       "occupability": "medium",
                       "team": ["social_services", "employment_centre"]}),
            ),
        ]
    }

    #[test]
    fn samples_cover_every_type() {
        let names: Vec<_> = samples().iter().map(|(e, _, _)| e.name()).collect();
        assert_eq!(names, PathwayEvent::TYPES);
    }

    #[test]
    fn every_type_is_written_and_read_at_version_2() {
        for (event, _, _) in samples() {
            assert_eq!(event.event_version(), "2", "{}", event.name());
            assert!(check_readable(event.name(), "2").is_ok());
            assert!(check_readable(event.name(), "1").is_ok());
        }
    }

    #[test]
    fn today_the_stored_form_is_version_2() {
        for (event, _, v2) in samples() {
            assert_eq!(
                serde_json::to_value(&event).unwrap(),
                v2,
                "{}",
                event.name()
            );
            assert_eq!(v2[TAG], json!(snake_case(event.name())));
        }
    }

    #[test]
    fn each_upcaster_turns_a_v1_payload_into_v2() {
        for (event, v1, v2) in samples() {
            assert_eq!(v1_to_v2(event.name(), v1.clone()), v2, "{}", event.name());
            let upcast = upcasters().iter().fold(
                SerializedEvent::new(
                    "id".into(),
                    1,
                    "pathway".into(),
                    event.name().into(),
                    "1".into(),
                    v1,
                    Value::Null,
                ),
                |e, u| {
                    if u.can_upcast(&e.event_type, &e.event_version) {
                        u.upcast(e)
                    } else {
                        e
                    }
                },
            );
            assert_eq!(
                (upcast.event_version.as_str(), &upcast.payload),
                ("2.0.0", &v2)
            );
        }
    }

    /// What clients see (`data`, `from_parts`) is the v1 payload's inner object, as before.
    #[test]
    fn data_is_what_it_was_in_version_1() {
        for (event, v1, _) in samples() {
            let inner = &v1[event.name()];
            assert_eq!(
                serde_json::to_string(&event.data()).unwrap(),
                serde_json::to_string(inner).unwrap()
            );
            assert_eq!(
                PathwayEvent::from_parts(event.name(), inner.clone()).unwrap(),
                event
            );
        }
        let (event, v1, _) = samples().swap_remove(1);
        let inner = v1[event.name()].clone();
        assert!(PathwayEvent::from_parts("stage_entered", inner.clone()).is_err());
        assert!(PathwayEvent::from_parts("Exploded", inner.clone()).is_err());
        let mut tagged = inner;
        tagged[TAG] = json!("stage_entered");
        assert!(PathwayEvent::from_parts("StageEntered", tagged).is_err());
    }

    #[test]
    fn v1_and_v2_rows_decode_to_the_same_event() {
        let upcasters = upcasters();
        for (event, v1, v2) in samples() {
            let name = event.name();
            assert_eq!(decode(&upcasters, name, "1", v1).unwrap(), event);
            assert_eq!(decode(&upcasters, name, "2", v2).unwrap(), event);
        }
    }

    #[test]
    fn a_newer_version_is_refused_with_a_clear_error() {
        let upcasters = upcasters();
        let (_, _, v2) = samples().swap_remove(1);
        let error = decode(&upcasters, "StageEntered", "3", v2.clone()).unwrap_err();
        assert!(
            matches!(error, DecodeError::UnknownVersion { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "`StageEntered` version `3` is not one this build of filiera reads (it reads up \
             to 2); if a newer build wrote it, upgrade this one"
        );
        for version in ["2.1", "", "x", "2."] {
            assert!(
                matches!(
                    decode(&upcasters, "StageEntered", version, v2.clone()),
                    Err(DecodeError::UnknownVersion { .. })
                ),
                "{version:?}"
            );
        }
        let error = decode(
            &upcasters,
            "SkillsCertified",
            "2",
            json!({"type": "skills_certified"}),
        )
        .unwrap_err();
        assert!(
            matches!(error, DecodeError::UnknownType { .. }),
            "{error:?}"
        );
    }

    /// cqrs-es has no way to fail an upcaster: the guard hands the reason to the decoder.
    #[test]
    fn the_guard_makes_cqrs_es_refuse_with_the_same_reason() {
        let stored = SerializedEvent::new(
            "id".into(),
            1,
            "pathway".into(),
            "StageEntered".into(),
            "3".into(),
            json!({"type": "stage_entered", "stage": "internship", "on": "2024-02-01",
                   "from_stage": null, "transition": "entry", "provider": null}),
            Value::Null,
        );
        assert!(Unreadable.can_upcast("StageEntered", "3"));
        assert!(!Unreadable.can_upcast("StageEntered", "2"));
        let guarded = Unreadable.upcast(stored);
        let error = serde_json::from_value::<PathwayEvent>(guarded.payload).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`StageEntered` version `3` is not one this build of filiera reads"),
            "{error}"
        );
    }

    #[test]
    fn malformed_payloads_are_refused_not_guessed() {
        let upcasters = upcasters();
        let (_, v1, mut v2) = samples().swap_remove(2);
        // A v2 payload labelled v1, a v1 payload labelled v2, an unknown field, another type.
        assert!(matches!(
            decode(&upcasters, "StageExited", "1", v2.clone()),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&upcasters, "StageExited", "2", v1),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            decode(&upcasters, "Enrolled", "2", v2.clone()),
            Err(DecodeError::WrongType {
                found: "StageExited",
                ..
            })
        ));
        v2["extra"] = json!(1);
        let error = decode(&upcasters, "StageExited", "2", v2).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `extra`"),
            "{error}"
        );
        assert!(matches!(
            decode(&upcasters, "StageExited", "1", json!("StageExited")),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
