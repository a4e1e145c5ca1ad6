//! What `GET /v1/projections` shows, and what a rebuild request answers. With the `openapi`
//! feature they derive their JSON Schemas; their doc comments are the schemas' descriptions.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One projection as seen from the process that answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionStatus {
    /// The projection's name, e.g. `territory_metrics`.
    pub name: String,
    /// The generation queries read (the active one).
    pub generation: i64,
    /// Its checkpoint: the global position of the last event applied.
    pub position: i64,
    /// The head of the feed: the highest global position.
    pub head: i64,
    /// Feed events after `position` (counted, since positions may have gaps).
    pub lag: u64,
    // See [`ProjectionState`] (not a `///` comment: the OpenAPI schema refers to it bare).
    pub state: ProjectionState,
    /// Whether this process runs the projection (exactly one process does).
    pub leader: bool,
    /// The generation being rebuilt alongside, if any.
    pub rebuilding: Option<RebuildStatus>,
    /// The generation and checkpoint this process's query cache holds (`null` before its first
    /// query).
    pub cache: Option<CacheStatus>,
    /// The last failure of this process's runner, cleared by its next successful batch.
    pub error: Option<String>,
}

/// The state of a projection: `live` (up to date), `catching_up` (behind the head),
/// `rebuilding` (a new generation is built alongside; queries answer from the current one),
/// `failing` (this process's runner failed and is retrying, see `error`), `stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProjectionState {
    /// Up to date with the head of the feed.
    Live,
    /// Behind the head (just started, or after a burst of writes).
    CatchingUp,
    /// A new generation is being built alongside; queries answer from the current one.
    Rebuilding,
    /// This process's runner failed on its last attempt and is retrying (see `error`).
    Failing,
    /// This process's projection handle was shut down.
    Stopped,
}

/// A generation being rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RebuildStatus {
    /// The generation being built.
    pub generation: i64,
    /// Its checkpoint.
    pub position: i64,
    /// Feed events it still has to apply.
    pub lag: u64,
    /// When the rebuild was requested.
    pub started_at: DateTime<Utc>,
}

/// What a process's query cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStatus {
    /// The generation loaded.
    pub generation: i64,
    /// That generation's checkpoint when the cache last refreshed.
    pub position: i64,
}

/// The answer to a rebuild request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RebuildStarted {
    /// The projection.
    pub name: String,
    /// The generation that will replace the active one once it has caught up.
    pub generation: i64,
}
