//! The message contract of SPEC 4.3: the subject an event is published on and the CloudEvents
//! 1.0 structured document it is published as. Pure functions, shared by the relay, the tail
//! and anyone who wants the exact same shape (e.g. server-sent events).

use chrono::SecondsFormat;
use filiera_domain::{PathwayEvent, snake_case};
use filiera_store::StoredEvent;
use serde_json::{Map, Value, json};

/// The JetStream stream every pathway event is published to.
pub const STREAM_NAME: &str = "FILIERA_EVENTS";

/// The first tokens of every subject of the stream.
pub const SUBJECT_PREFIX: &str = "filiera.events";

/// The subjects the stream captures.
pub const STREAM_SUBJECTS: &str = "filiera.events.>";

/// The CloudEvents `source` used when none is configured.
pub const DEFAULT_SOURCE: &str = "/filiera";

/// The prefix of every CloudEvents `type`: `it.filiera.pathway.<event_type>.v1`.
pub const TYPE_PREFIX: &str = "it.filiera.pathway";

/// The subject token standing for a missing territory. Events written by filiera always carry
/// one; `~` cannot occur in a territory code, so this never collides with a real territory.
pub const NO_TERRITORY: &str = "~unknown";

/// The `Content-Type` header of every message (CloudEvents structured mode).
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The event type token of an event: its SPEC 2.3 name in snake_case (`stage_entered`).
pub fn event_type_token(event: &PathwayEvent) -> String {
    snake_case(event.name())
}

/// The subject of a stored event: `filiera.events.<territory>.<event_type>`, with the
/// territory in force after the event (e.g. `filiera.events.LOM-BG.stage_entered`).
pub fn subject_for(event: &StoredEvent) -> String {
    let territory = event
        .territory
        .as_deref()
        .map_or_else(|| NO_TERRITORY.to_owned(), subject_token);
    format!(
        "{SUBJECT_PREFIX}.{territory}.{}",
        event_type_token(&event.event)
    )
}

/// The CloudEvents `id` of a stored event, also its `Nats-Msg-Id`: `<beneficiary_id>:<sequence>`.
/// Unique per event and stable across republications, so it deduplicates.
pub fn message_id(event: &StoredEvent) -> String {
    format!("{}:{}", event.beneficiary_id, event.sequence)
}

/// The CloudEvents `type` of an event: `it.filiera.pathway.<event_type>.v1`.
pub fn cloud_event_type(event: &PathwayEvent) -> String {
    format!("{TYPE_PREFIX}.{}.v1", event_type_token(event))
}

/// The CloudEvents `time` of a stored event: its `recorded_at`, RFC 3339 UTC.
pub fn event_time(event: &StoredEvent) -> String {
    event
        .recorded_at
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The CloudEvents 1.0 structured JSON document of a stored event (SPEC 4.3). `data` holds the
/// event's fields plus `territory` (after the event), `sequence` and `position`.
pub fn cloud_event(event: &StoredEvent, source: &str) -> Value {
    let mut data = match event.event.data() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    data.insert(
        "territory".to_owned(),
        event.territory.clone().map_or(Value::Null, Value::String),
    );
    data.insert("sequence".to_owned(), json!(event.sequence));
    data.insert("position".to_owned(), json!(event.position));
    json!({
        "specversion": "1.0",
        "id": message_id(event),
        "source": source,
        "type": cloud_event_type(&event.event),
        "subject": event.beneficiary_id.to_string(),
        "time": event_time(event),
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// A filter subject for consumers: `filiera.events.<territory|*>.<event_type|*>`. The event
/// type may be given as `StageEntered` or `stage_entered`; `None` is a wildcard.
pub fn filter_subject(territory: Option<&str>, event_type: Option<&str>) -> String {
    let territory = territory.map_or_else(|| "*".to_owned(), subject_token);
    let event_type = event_type.map_or_else(|| "*".to_owned(), snake_case);
    format!("{SUBJECT_PREFIX}.{territory}.{event_type}")
}

/// The event type token for a name given as `StageEntered` or `stage_entered`, if it is one
/// of SPEC 2.3.
pub fn known_event_type(name: &str) -> Option<String> {
    PathwayEvent::type_named(name).map(snake_case)
}

/// What the relay reads back from a message of the stream: which feed event it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The CloudEvents `id` (`<beneficiary_id>:<sequence>`).
    pub id: String,
    /// `data.position`: the event's global position.
    pub position: i64,
    /// The CloudEvents `time` (the event's `recorded_at`), to tell this event from another
    /// one that a store restored from an older backup recorded under the same id since.
    pub time: Option<String>,
}

/// Reads the id and position back from a message body; `None` if it is not a filiera
/// CloudEvent.
pub fn parse_published(body: &[u8]) -> Option<PublishedEvent> {
    let document: Value = serde_json::from_slice(body).ok()?;
    if !document["type"]
        .as_str()
        .is_some_and(|t| t.starts_with(TYPE_PREFIX))
    {
        return None;
    }
    Some(PublishedEvent {
        id: document["id"].as_str()?.to_owned(),
        position: document["data"]["position"].as_i64()?,
        time: document["time"].as_str().map(str::to_owned),
    })
}

/// A territory code as one subject token: characters NATS gives a meaning to (`.`, `*`, `>`,
/// whitespace) are replaced by `_`. Codes of the registry (`[A-Za-z0-9_-]`) pass unchanged.
fn subject_token(code: &str) -> String {
    if code.is_empty() {
        return NO_TERRITORY.to_owned();
    }
    code.chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use filiera_domain::{StageCode, Transition};
    use uuid::Uuid;

    use super::*;

    fn stored(event: PathwayEvent, territory: Option<&str>) -> StoredEvent {
        StoredEvent {
            position: 42,
            beneficiary_id: Uuid::parse_str("6a1e3b5c-3a7e-4d8b-9a55-0f6f3c7d2e11").unwrap(),
            sequence: 3,
            event,
            recorded_at: Utc.with_ymd_and_hms(2025, 3, 1, 9, 30, 12).unwrap()
                + chrono::Duration::milliseconds(345),
            territory: territory.map(str::to_owned),
            principal: Some("operator".to_owned()),
            voided: false,
        }
    }

    fn stage_entered() -> PathwayEvent {
        PathwayEvent::StageEntered {
            stage: StageCode::parse("internship").unwrap(),
            on: NaiveDate::from_ymd_opt(2025, 2, 28).unwrap(),
            from_stage: StageCode::parse("socio_occupational"),
            transition: Transition::Progression,
            provider: None,
        }
    }

    #[test]
    fn subject_names_territory_after_the_event_and_snake_case_type() {
        let event = stored(stage_entered(), Some("LOM-BG"));
        assert_eq!(subject_for(&event), "filiera.events.LOM-BG.stage_entered");
        let odd = stored(stage_entered(), Some("a.b *>"));
        assert_eq!(subject_for(&odd), "filiera.events.a_b___.stage_entered");
        let none = stored(stage_entered(), None);
        assert_eq!(subject_for(&none), "filiera.events.~unknown.stage_entered");
    }

    #[test]
    fn cloud_event_has_the_documented_shape() {
        let event = stored(stage_entered(), Some("LOM-BG"));
        let document = cloud_event(&event, "/filiera/test");
        assert_eq!(
            document,
            json!({
                "specversion": "1.0",
                "id": "6a1e3b5c-3a7e-4d8b-9a55-0f6f3c7d2e11:3",
                "source": "/filiera/test",
                "type": "it.filiera.pathway.stage_entered.v1",
                "subject": "6a1e3b5c-3a7e-4d8b-9a55-0f6f3c7d2e11",
                "time": "2025-03-01T09:30:12.345Z",
                "datacontenttype": "application/json",
                "data": {
                    "stage": "internship",
                    "on": "2025-02-28",
                    "from_stage": "socio_occupational",
                    "transition": "progression",
                    "provider": null,
                    "territory": "LOM-BG",
                    "sequence": 3,
                    "position": 42
                }
            })
        );
        let body = serde_json::to_vec(&document).unwrap();
        assert_eq!(
            parse_published(&body),
            Some(PublishedEvent {
                id: message_id(&event),
                position: 42,
                time: Some("2025-03-01T09:30:12.345Z".to_owned()),
            })
        );
        assert_eq!(parse_published(b"{\"type\":\"other\"}"), None);
        assert_eq!(parse_published(b"not json"), None);
    }

    /// A type added after the relay was written needs no code here: its subject token, its
    /// CloudEvents type and its data all follow from the domain's event.
    #[test]
    fn a_needs_assessment_is_published_like_any_event() {
        use filiera_domain::{AssessmentKind, Occupability, TeamMember};
        let event = stored(
            PathwayEvent::NeedsAssessed {
                on: NaiveDate::from_ymd_opt(2025, 2, 28).unwrap(),
                kind: AssessmentKind::Multidisciplinary,
                occupability: Occupability::Medium,
                team: vec![TeamMember::SocialServices, TeamMember::EmploymentCentre],
            },
            Some("LOM-BG"),
        );
        assert_eq!(subject_for(&event), "filiera.events.LOM-BG.needs_assessed");
        let document = cloud_event(&event, "/filiera/test");
        assert_eq!(document["type"], "it.filiera.pathway.needs_assessed.v1");
        assert_eq!(
            document["data"],
            json!({
                "on": "2025-02-28",
                "kind": "multidisciplinary",
                "occupability": "medium",
                "team": ["social_services", "employment_centre"],
                "territory": "LOM-BG",
                "sequence": 3,
                "position": 42
            })
        );
        assert_eq!(
            filter_subject(Some("LOM-BG"), Some("NeedsAssessed")),
            "filiera.events.LOM-BG.needs_assessed"
        );
        assert_eq!(
            known_event_type("needs_assessed").as_deref(),
            Some("needs_assessed")
        );
    }

    #[test]
    fn filters_accept_both_spellings() {
        assert_eq!(filter_subject(None, None), "filiera.events.*.*");
        assert_eq!(
            filter_subject(Some("LOM-BG"), Some("StageEntered")),
            "filiera.events.LOM-BG.stage_entered"
        );
        assert_eq!(
            known_event_type("CommandUndone").as_deref(),
            Some("command_undone")
        );
        assert_eq!(
            known_event_type("pathway_closed").as_deref(),
            Some("pathway_closed")
        );
        assert_eq!(known_event_type("nope"), None);
    }
}
