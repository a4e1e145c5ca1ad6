//! Why a projection call failed. "The request was refused" (unknown projection, a rebuild
//! already running) is kept apart from "the store failed" (the database, an unreadable row).

use std::time::Duration;

use filiera_store::StoreError;

/// A failed projection call.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// No projection has this name (HTTP: 404).
    #[error("unknown projection `{name}`; known projections: {known}")]
    UnknownProjection {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated, for the error message.
        known: String,
    },
    /// A rebuild of this projection is already under way (HTTP: 409).
    #[error("projection `{name}` is already rebuilding (generation {generation})")]
    AlreadyRebuilding {
        /// The projection.
        name: String,
        /// The generation being built.
        generation: i64,
    },
    /// The active generation was built by an older version's timeline format and is being
    /// rebuilt; queries would miss facts it lacks (HTTP: 503, retry later).
    #[error(
        "projection `{name}` is being rebuilt after an upgrade: its read model (generation \
         {generation}) was built for timeline format {format}, this version reads format \
         {current}; queries answer again once the rebuild is swapped in (progress: \
         GET /v1/projections)"
    )]
    Outdated {
        /// The projection.
        name: String,
        /// The active generation.
        generation: i64,
        /// Its timeline format.
        format: i64,
        /// This build's timeline format.
        current: i64,
    },
    /// [`crate::Projections::wait_until_caught_up`] gave up.
    #[error("projection `{name}` did not catch up with position {target} within {timeout:?}")]
    Timeout {
        /// The projection.
        name: String,
        /// The feed head it had to reach.
        target: i64,
        /// How long it was given.
        timeout: Duration,
    },
    /// The event store failed (reading the feed, leadership).
    #[error("event store failure")]
    Store(#[from] StoreError),
    /// The read model's database failed or refused a query.
    #[error("projection read model database error")]
    Database(#[from] sqlx::Error),
    /// A read-model row cannot be decoded.
    #[error("unreadable projection data: {0}")]
    Corrupt(String),
    /// A background task of the projection panicked or was cancelled.
    #[error("projection task failed: {0}")]
    Task(String),
}

impl ProjectionError {
    /// Whether the call was refused (a client error) rather than failed (a server error).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnknownProjection { .. } | Self::AlreadyRebuilding { .. }
        )
    }
}

impl From<tokio::task::JoinError> for ProjectionError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Task(error.to_string())
    }
}
