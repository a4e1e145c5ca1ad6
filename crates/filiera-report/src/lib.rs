//! The printable regional report (`GET /v1/reports/regional`, `filiera report --format html`):
//! one self-contained HTML document — inline CSS with print rules for A4, inline SVG charts
//! drawn here, no script, no external resource — rendered by [`render_regional`], a pure
//! function of the documents the JSON routes return. The online route and the offline replay
//! both call it, so that for the same data they give the same bytes.
//!
//! Every figure the report prints from a document sits in an element marked
//! `data-metric="PATH"`, PATH naming the figure in the JSON documents (`enrolments`,
//! `transitions.progression`, `breakdown.LOM-BG.enrolments`, `series.2025-01-01.enrolments`,
//! `audit.beneficiaries`…; see [`regional`]), so that a reader or a test can check it.
//!
//! # Layout
//! - [`regional`]: the template of the report.
//! - [`svg`]: the chart helpers (bars, diverging bars, stacked columns, lines, heat cells).
//! - [`i18n`]: the report's words in Italian and English and the numbers' notation.

pub mod i18n;
pub mod regional;
pub mod svg;

use chrono::{DateTime, Utc};
use filiera_contract::ReportLang;
use filiera_domain::{RegionalDocuments, StageCatalogue, TerritoryRegistry};

/// The filiera version printed in the methods box.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The media type of the report.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Which data the documents were folded from: the last event of the feed taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAsOf {
    /// Its global feed position, 0 for an empty feed.
    pub position: i64,
    /// When it was stored.
    pub recorded_at: Option<DateTime<Utc>>,
}

/// Everything the report is rendered from.
#[derive(Clone, Copy, Debug)]
pub struct RegionalReport<'a> {
    pub documents: &'a RegionalDocuments,
    pub data_as_of: DataAsOf,
    /// For the stages' labels and order.
    pub catalogue: &'a StageCatalogue,
    /// For the territories' names.
    pub registry: &'a TerritoryRegistry,
    pub lang: ReportLang,
}

/// Renders the report: a complete HTML document.
pub fn render_regional(report: &RegionalReport<'_>) -> String {
    regional::page(report).into_string()
}
