//! The documents of filiera's public contract that more than one adapter speaks, so that the
//! HTTP API and the command line read and write the very same shapes:
//! - [`commands`]: the body of each write command — `POST /v1/beneficiaries…` and each line
//!   of a `filiera import` file — and the [`PathwayCommand`](filiera_domain::PathwayCommand)
//!   it asks for;
//! - [`feed`]: [`FeedItem`], one stored event as `GET /v1/events`, histories, SSE and
//!   `filiera export` show it;
//! - [`query`]: [`MetricsParams`], [`SeriesParams`], [`BreakdownParams`] and [`AuditParams`],
//!   the report query as `GET /v1/metrics…` and `filiera report` take it, validated into the domain's queries with a
//!   [`QueryError`] naming the parameter;
//! - [`refusal`]: [`refusal_detail`], the explanation of a refused command;
//! - `schema` (feature `openapi`): the JSON Schemas of the shared values (codes, texts,
//!   dates), each with every constraint the service checks.
//!
//! No I/O, no HTTP: adapters map [`QueryError`] to their own errors (a problem document, a
//! command-line message).

pub mod commands;
pub mod feed;
pub mod query;
pub mod refusal;
#[cfg(feature = "openapi")]
pub mod schema;

pub use commands::{
    AssessmentBody, CloseBody, EnrolBody, ExitBody, ReopenBody, StageBody, TerritoryBody, UndoBody,
};
pub use feed::FeedItem;
pub use query::{
    AuditParams, BreakdownParams, MetricsParams, QueryError, RegionalReportParams, ReportLang,
    SeriesParams,
};
pub use refusal::refusal_detail;
