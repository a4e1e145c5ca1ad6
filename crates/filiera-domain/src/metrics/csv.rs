//! The flat CSV rendering of [`TerritoryMetrics`] for `filiera report --format csv`.
//!
//! One row per metric, columns `metric,value`, dotted names following the JSON document
//! (`transitions.progression`, `time_in_stage_days.internship.closed.median`), the query first
//! (`query.territory`, `query.from`, `query.to`, `query.known_at`). A `null` is an empty value.
//! Matrix cells are `transition_matrix.<from>><to>`; a first entry (`from: null` in the JSON,
//! classified `entry`) reads `entry` in place of `<from>` (`transition_matrix.entry>internship`,
//! as `transitions.entry` counts it); only non-zero cells appear, as in the JSON.

use std::fmt::Write as _;

use chrono::SecondsFormat;

use super::fold::{Durations, TerritoryMetrics, TransitionCounts};
use super::stats::Stats;

/// The `<from>` of a first entry's matrix row: its classification, as in `transitions.entry`.
const ENTRY: &str = "entry";

/// Renders `metrics` as CSV text (header included, `\n` line ends).
pub fn metrics_to_csv(metrics: &TerritoryMetrics) -> String {
    let mut out = Rows(String::from("metric,value\n"));
    let query = &metrics.query;
    let territory = query.territory.as_ref().map(|t| t.as_str());
    out.text("query.territory", territory);
    out.row("query.from", query.from);
    out.row("query.to", query.to);
    let known_at = query.known_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    out.text("query.known_at", Some(&known_at));
    out.row("enrolments", metrics.enrolments);
    out.row("reopenings", metrics.reopenings);
    out.transitions("transitions", &metrics.transitions);
    for cell in &metrics.transition_matrix {
        let from = cell.from.as_ref().map_or(ENTRY, |s| s.as_str());
        out.row(
            format_args!("transition_matrix.{from}>{}", cell.to),
            cell.count,
        );
    }
    out.float("progressivity_index", metrics.progressivity_index);
    for (key, n) in metrics.reiteration.distribution.buckets() {
        out.row(format_args!("reiteration.distribution.{key}"), n);
    }
    out.row("reiteration.flagged", metrics.reiteration.flagged);
    out.row("reiteration.threshold", metrics.reiteration.threshold);
    out.durations("time_in_pathway_days", &metrics.time_in_pathway_days);
    for (stage, durations) in metrics.time_in_stage_days.iter() {
        out.durations(&format!("time_in_stage_days.{stage}"), durations);
    }
    for (key, n) in metrics.active_at_end.iter() {
        out.row(format_args!("active_at_end.{key}"), n);
    }
    let c = &metrics.closures;
    out.row("closures.employed", c.employed);
    out.row("closures.dropped_out", c.dropped_out);
    out.row("closures.moved_away", c.moved_away);
    out.row("closures.deceased", c.deceased);
    out.row("closures.other", c.other);
    out.row("corrections", metrics.corrections);
    let a = &metrics.assessments;
    out.row("assessments.initial", a.initial);
    out.row("assessments.multidisciplinary", a.multidisciplinary);
    out.row("assessments.review", a.review);
    out.stats("time_to_assessment_days", &metrics.time_to_assessment_days);
    out.row(
        "spells_without_assessment",
        metrics.spells_without_assessment,
    );
    for (key, t) in metrics.transitions_by_occupability.rows() {
        out.transitions(&format!("transitions_by_occupability.{key}"), t);
    }
    out.0
}

impl TerritoryMetrics {
    /// The flat CSV rendering, see [`metrics_to_csv`].
    pub fn to_csv(&self) -> String {
        metrics_to_csv(self)
    }
}

/// The CSV being written. Names and values are codes, dates and numbers, so nothing needs
/// quoting; [`Rows::text`] quotes anyway if a value ever carries a comma or a quote.
struct Rows(String);

impl Rows {
    fn row(&mut self, metric: impl std::fmt::Display, value: impl std::fmt::Display) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "{metric},{value}");
    }

    fn text(&mut self, metric: &str, value: Option<&str>) {
        match value {
            Some(v) if v.contains([',', '"', '\n', '\r']) => {
                self.row(metric, format_args!("\"{}\"", v.replace('"', "\"\"")));
            }
            Some(v) => self.row(metric, v),
            None => self.row(metric, ""),
        }
    }

    fn float(&mut self, metric: &str, value: Option<f64>) {
        match value {
            Some(v) => self.row(metric, v),
            None => self.row(metric, ""),
        }
    }

    fn stats(&mut self, prefix: &str, stats: &Stats) {
        self.row(format_args!("{prefix}.count"), stats.count);
        self.float(&format!("{prefix}.mean"), stats.mean);
        self.float(&format!("{prefix}.median"), stats.median);
        self.float(&format!("{prefix}.p90"), stats.p90);
    }

    fn transitions(&mut self, prefix: &str, t: &TransitionCounts) {
        self.row(format_args!("{prefix}.entry"), t.entry);
        self.row(format_args!("{prefix}.progression"), t.progression);
        self.row(format_args!("{prefix}.reiteration"), t.reiteration);
        self.row(format_args!("{prefix}.regression"), t.regression);
    }

    fn durations(&mut self, prefix: &str, durations: &Durations) {
        self.stats(&format!("{prefix}.closed"), &durations.closed);
        self.stats(&format!("{prefix}.open"), &durations.open);
    }
}
