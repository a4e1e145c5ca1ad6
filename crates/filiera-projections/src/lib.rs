//! The read side of filiera: the `territory_metrics` projection that answers `GET /v1/metrics`
//! and `GET /v1/audit/reiterations` (SPEC 3), its runner, rebuilds, and the offline replay of
//! `filiera report`.
//!
//! The read model is one row per beneficiary holding its [`filiera_domain::Timeline`] (the
//! domain's digest of a stream, which the metric fold reads "as known at" any instant), kept
//! in the store's database. A catch-up runner applies the global feed (SPEC 4.2) to it in
//! batches, writing the rows and the checkpoint in one transaction guarded by a
//! compare-and-set, so that no event is applied twice nor skipped. One process runs it at a
//! time (store leadership); every process answers queries from an in-memory copy of the rows,
//! refreshed incrementally before each query. A rebuild fills a new *generation* alongside and
//! swaps it in when it has caught up. `docs/adr/0003-projection-read-model.md` explains why.
//!
//! # Layout
//! - [`projections`]: [`Projections`], the per-process handle (start, query, status, rebuild,
//!   shutdown).
//! - [`runner`]: [`Runner`], one batch per generation per step.
//! - [`rebuild`]: [`rebuild_until_swapped`], `filiera rebuild` from a separate process.
//! - [`replay`]: [`Replay`], [`replay_report`], [`replay_series`], [`replay_breakdown`],
//!   [`replay_scorecard`], [`replay_audit`], the offline report.
//! - [`regional`]: [`RegionalSnapshot`] and [`replay_regional`], the printable regional
//!   report's documents and the feed position they reflect.
//! - [`status`]: [`ProjectionStatus`] and the other documents the API serves.
//! - [`settings`]: the tuning and configuration, [`ProjectionSettings`].
//! - [`tables`]: [`ProjectionTables`], a projection's tables driven directly, for tools
//!   outside this crate (the benchmark in `filiera-bench`).
//! - [`error`]: what can fail, [`ProjectionError`].
//! - `cache`: the in-memory copy of the active generation.
//! - `read_model`: the tables (this crate's migrations) and every statement on them; the SQL
//!   is in `statements/`.

mod cache;
pub mod error;
pub mod projections;
mod read_model;
pub mod rebuild;
pub mod regional;
pub mod replay;
pub mod runner;
pub mod settings;
pub mod status;
pub mod tables;

pub use error::ProjectionError;
pub use projections::Projections;
pub use rebuild::{RebuildOutcome, RebuildProgress, rebuild_until_swapped};
pub use regional::{RegionalSnapshot, replay_regional};
pub use replay::{
    Replay, replay_audit, replay_breakdown, replay_report, replay_scorecard, replay_series,
};
pub use runner::{BatchOutcome, Runner, StepReport};
pub use settings::ProjectionSettings;
pub use status::{CacheStatus, ProjectionState, ProjectionStatus, RebuildStarted, RebuildStatus};
pub use tables::{GenerationFill, ProjectionTables, QueryCache};

/// The projection of SPEC 3: territory metrics and the reiteration audit.
pub const TERRITORY_METRICS: &str = "territory_metrics";

/// Every projection, by name.
pub const PROJECTIONS: &[&str] = &[TERRITORY_METRICS];

/// The known projection called `name`, or [`ProjectionError::UnknownProjection`].
pub(crate) fn projection_name(name: &str) -> Result<&'static str, ProjectionError> {
    PROJECTIONS
        .iter()
        .copied()
        .find(|known| *known == name)
        .ok_or_else(|| ProjectionError::UnknownProjection {
            name: name.to_owned(),
            known: PROJECTIONS.join(", "),
        })
}

/// The store leadership job of a projection's runner.
pub fn leadership_job(projection: &str) -> String {
    format!("projection:{projection}")
}

/// Applies the read model's migrations: its own tables, recorded in the ledger the store's
/// migrations share (see [`filiera_store::Migrations`]). Run once before [`Projections::start`];
/// safe to run repeatedly and from several processes.
pub async fn migrate(database: &filiera_store::Database) -> Result<(), ProjectionError> {
    database
        .migrate(&read_model::MIGRATIONS)
        .await
        .map_err(filiera_store::StoreError::from)?;
    Ok(())
}
