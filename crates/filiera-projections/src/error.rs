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
