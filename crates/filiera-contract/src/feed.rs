//! [`FeedItem`]: one stored event as the feed (`GET /v1/events`, SSE), histories and
//! `filiera export` show it.

use chrono::{DateTime, Utc};
use filiera_store::StoredEvent;
use serde::Serialize;
use uuid::Uuid;

/// One event as the feed and histories show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedItem {
    /// Global position: the feed's total order.
    pub position: i64,
    pub beneficiary_id: Uuid,
    /// Position in the beneficiary's own stream, from 1.
    pub sequence: u64,
    /// The event name (docs/domain.md), e.g. `StageEntered`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = EventType))]
    pub event_type: &'static str,
    /// The territory in force after the event.
    pub territory: Option<String>,
    /// The event's fields, as `docs/events.md` lists them for each `type` (e.g. for
    /// `StageEntered`: `stage`, `on`, `from_stage`, `transition`, `provider`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// Only in histories: whether an undo voided the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided: Option<bool>,
}

impl FeedItem {
    /// The feed shape of a stored event.
    pub fn from_stored(event: &StoredEvent) -> Self {
        Self {
            position: event.position,
            beneficiary_id: event.beneficiary_id,
            sequence: event.sequence,
            event_type: event.event.name(),
            territory: event.territory.clone(),
            data: event.event.data(),
            recorded_at: event.recorded_at,
            voided: None,
        }
    }

    /// The history shape: the feed shape plus `voided`.
    pub fn with_voided(event: &StoredEvent) -> Self {
        Self {
            voided: Some(event.voided),
            ..Self::from_stored(event)
        }
    }
}

/// The schema of an event name (SPEC 2.3), built from [`filiera_domain::PathwayEvent::TYPES`]
/// so that it lists exactly the events the service records.
#[cfg(feature = "openapi")]
pub struct EventType;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for EventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("The name of a pathway event (docs/domain.md)."))
            .enum_values(Some(filiera_domain::PathwayEvent::TYPES))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for EventType {}
