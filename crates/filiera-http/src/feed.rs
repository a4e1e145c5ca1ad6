//! `GET /v1/events`: the global feed (SPEC 4.2) a page at a time.

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use filiera_store::StoredEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::extract::{Caller, parse_query};
use crate::problem::ApiError;

/// Default and maximum page sizes of the feed.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// One event as the feed and histories show it.
#[derive(Debug, Clone, Serialize)]
pub struct FeedItem {
    /// Global position: the feed's total order.
    pub position: i64,
    pub beneficiary_id: Uuid,
    /// Position in the beneficiary's own stream, from 1.
    pub sequence: u64,
    /// The event name of SPEC 2.3, e.g. `StageEntered`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// The territory in force after the event.
    pub territory: Option<String>,
    /// The event's fields.
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

/// A page of the feed.
#[derive(Debug, Serialize)]
pub struct FeedPage {
    pub events: Vec<FeedItem>,
    /// Pass this as `after` to get the next page (equal to `after` when the page is empty).
    pub next_after: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/events?after=P&limit=N`
#[tracing::instrument(skip_all)]
pub async fn page(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    _caller: Caller,
) -> Result<Json<FeedPage>, ApiError> {
    let query: FeedQuery = parse_query(query.as_deref())?;
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after", "`after` must be 0 or more"));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("`limit` must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let events = app.store.read_feed(after, limit).await?;
    let next_after = events.last().map_or(after, |e| e.position);
    Ok(Json(FeedPage {
        events: events.iter().map(FeedItem::from_stored).collect(),
        next_after,
    }))
}
