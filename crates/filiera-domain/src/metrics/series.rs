//! Series and breakdown (SPEC 3.2): the metrics document per calendar month of a period, or per
//! direct child of a territory.
//!
//! The online route (over the projection's read model) and the offline `filiera report` (over a
//! replay) both split the query here ([`series_queries`], [`breakdown_queries`]), fold the
//! parts in one pass ([`super::territory_metrics_many`]) and assemble the same documents, so
//! they cannot drift.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::territory::{TerritoryCode, TerritoryRegistry};

use super::fold::{MetricsQuery, TerritoryMetrics};

/// At most this many points in a series (SPEC 3.2).
pub const MAX_SERIES_POINTS: usize = 120;

/// The only series interval so far.
pub const MONTH: &str = "month";

/// The `GET /v1/metrics/series` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSeries {
    /// Always `month`.
    pub interval: String,
    /// One point per calendar month meeting the period, in date order.
    pub points: Vec<SeriesPoint>,
}

/// One month's part of the period and its metrics document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesPoint {
    /// The month's first day, or the period's `from` when later.
    pub from: NaiveDate,
    /// The month's last day, or the period's `to` when earlier.
    pub to: NaiveDate,
    pub metrics: TerritoryMetrics,
}

/// The `GET /v1/metrics/breakdown` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsBreakdown {
    /// The territory broken down; `null` for the registry's roots.
    pub territory: Option<TerritoryCode>,
    /// One item per direct child, in configuration order.
    pub children: Vec<BreakdownChild>,
}

/// One child territory and its metrics document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakdownChild {
    pub territory: TerritoryCode,
    pub metrics: TerritoryMetrics,
}

/// The calendar months meeting `from..=to`, each clipped to it, in order.
pub fn month_periods(from: NaiveDate, to: NaiveDate) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let first = start.with_day(1).expect("day 1 exists");
        let next = first + Months::new(1);
        let last = next.pred_opt().expect("a day before the next month");
        out.push((start, last.min(to)));
        start = next;
    }
    out
}

/// How many points a monthly series over `from..=to` has, without listing them.
pub fn month_count(from: NaiveDate, to: NaiveDate) -> usize {
    if from > to {
        return 0;
    }
    let months = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
    usize::try_from(months(to) - months(from) + 1).unwrap_or(0)
}

/// The query of each point of the monthly series over `query`'s period.
pub fn series_queries(query: &MetricsQuery) -> Vec<MetricsQuery> {
    month_periods(query.from, query.to)
        .into_iter()
        .map(|(from, to)| MetricsQuery {
            from,
            to,
            ..query.clone()
        })
        .collect()
}

/// The query of each child in the breakdown of `query`'s territory (the roots when `None`).
pub fn breakdown_queries(query: &MetricsQuery, registry: &TerritoryRegistry) -> Vec<MetricsQuery> {
    registry
        .children(query.territory.as_ref())
        .into_iter()
        .map(|child| MetricsQuery {
            territory: Some(child),
            ..query.clone()
        })
        .collect()
}

impl MetricsSeries {
    /// Assembles the series from the documents of [`series_queries`], in that order.
    pub fn assemble(documents: Vec<TerritoryMetrics>) -> Self {
        Self {
            interval: MONTH.into(),
            points: documents
                .into_iter()
                .map(|metrics| SeriesPoint {
                    from: metrics.query.from,
                    to: metrics.query.to,
                    metrics,
                })
                .collect(),
        }
    }
}

impl MetricsBreakdown {
    /// Assembles the breakdown of `territory` from the documents of [`breakdown_queries`].
    pub fn assemble(territory: Option<TerritoryCode>, documents: Vec<TerritoryMetrics>) -> Self {
        Self {
            territory,
            children: documents
                .into_iter()
                .map(|metrics| BreakdownChild {
                    territory: metrics
                        .query
                        .territory
                        .clone()
                        .expect("a breakdown query names its child"),
                    metrics,
                })
                .collect(),
        }
    }
}

/// The series as CSV: columns `from,to,metric,value`, each point's
/// [`metrics_to_csv`](super::metrics_to_csv) rows prefixed with its period.
pub fn series_to_csv(series: &MetricsSeries) -> String {
    let mut out = String::from("from,to,metric,value\n");
    for point in &series.points {
        prefixed(
            &mut out,
            &format!("{},{}", point.from, point.to),
            &point.metrics,
        );
    }
    out
}

/// The breakdown as CSV: columns `territory,metric,value`, each child's
/// [`metrics_to_csv`](super::metrics_to_csv) rows prefixed with its code.
pub fn breakdown_to_csv(breakdown: &MetricsBreakdown) -> String {
    let mut out = String::from("territory,metric,value\n");
    for child in &breakdown.children {
        prefixed(&mut out, child.territory.as_str(), &child.metrics);
    }
    out
}

fn prefixed(out: &mut String, prefix: &str, metrics: &TerritoryMetrics) {
    for line in super::metrics_to_csv(metrics).lines().skip(1) {
        out.push_str(prefix);
        out.push(',');
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn months_are_clipped_to_the_period() {
        assert_eq!(
            month_periods(d("2024-01-15"), d("2024-03-10")),
            vec![
                (d("2024-01-15"), d("2024-01-31")),
                (d("2024-02-01"), d("2024-02-29")),
                (d("2024-03-01"), d("2024-03-10")),
            ]
        );
        assert_eq!(
            month_periods(d("2024-12-05"), d("2024-12-05")),
            vec![(d("2024-12-05"), d("2024-12-05"))]
        );
        assert_eq!(month_periods(d("2023-11-30"), d("2024-01-01")).len(), 3);
    }

    #[test]
    fn the_count_matches_the_listing() {
        for (from, to) in [
            ("2024-01-15", "2024-03-10"),
            ("2015-01-01", "2024-12-31"),
            ("2015-01-31", "2025-01-01"),
            ("2024-02-29", "2024-02-29"),
        ] {
            assert_eq!(
                month_count(d(from), d(to)),
                month_periods(d(from), d(to)).len()
            );
        }
        assert_eq!(month_count(d("2015-01-01"), d("2024-12-31")), 120);
    }

    #[test]
    fn breakdown_lists_direct_children_or_the_roots() {
        let registry = TerritoryRegistry::sample();
        let lom = registry.get("LOM").unwrap();
        let children = registry.children(Some(&lom));
        assert!(!children.is_empty());
        assert!(children.iter().all(|c| registry.parent(c) == Some(&lom)));
        let roots = registry.children(None);
        assert!(roots.contains(&lom));
        assert!(roots.iter().all(|c| registry.parent(c).is_none()));
    }
}
