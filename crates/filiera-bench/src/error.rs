//! Why the benchmark could not finish.

use filiera_projections::ProjectionError;
use filiera_store::StoreError;

/// A failed benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A projection call failed (the runner, the read model, a query).
    #[error("projection failure")]
    Projection(#[from] ProjectionError),
    /// The event store failed (connecting, migrating, writing, reading the feed).
    #[error("event store failure")]
    Store(#[from] StoreError),
    /// The temporary folder of the SQLite files could not be made.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// A scratch PostgreSQL database could not be created through the admin URL.
    #[error("cannot create a scratch PostgreSQL database")]
    ScratchDatabase(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A baseline's statement failed.
    #[error("database error in a baseline")]
    Database(#[from] sqlx::Error),
    /// A request to `filiera serve` failed.
    #[error("HTTP request to filiera serve failed")]
    Http(#[from] reqwest::Error),
    /// A writer task panicked or was cancelled.
    #[error("benchmark task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The benchmark found the store or read model not as it had just left them (a command
    /// refused, a rebuild left over, timelines missing).
    #[error("benchmark check failed: {0}")]
    Check(String),
}
