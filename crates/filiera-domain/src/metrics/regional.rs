//! The documents of the printable regional report (`GET /v1/reports/regional`,
//! `filiera report --format html`): the metrics document of a query, the monthly series of
//! its last months, the breakdown into its territory's children and the reiteration audit,
//! all folded from the same timelines so that they agree with each other. The online route
//! and the offline replay both call [`regional_documents`], so they cannot drift.

use chrono::{Datelike, Months};

use crate::catalogue::StageCatalogue;
use crate::territory::TerritoryRegistry;

use super::audit::{AuditList, AuditQuery, reiteration_audit};
use super::fold::{MetricsQuery, TerritoryMetrics, territory_metrics_many};
use super::series::{MetricsBreakdown, MetricsSeries, breakdown_queries, series_queries};
use super::timeline::TimelineView;

/// How many calendar months the report's series shows at most: the last ones of the period
/// (two years fit an A4 chart; the default period starts in 2000).
pub const REGIONAL_SERIES_MONTHS: u32 = 24;

/// The documents the regional report is rendered from, each the JSON document of its route
/// for the same query.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionalDocuments {
    /// `GET /v1/metrics` for the query.
    pub metrics: TerritoryMetrics,
    /// `GET /v1/metrics/series` for [`regional_series_query`] of the query.
    pub series: MetricsSeries,
    /// `GET /v1/metrics/breakdown` for the query.
    pub breakdown: MetricsBreakdown,
    /// `GET /v1/audit/reiterations` for the query's territory, `to` and `known_at`.
    pub audit: AuditList,
}

/// The query of the report's series: `query` from the first day of the month
/// [`REGIONAL_SERIES_MONTHS`]` - 1` months before `to`'s, or from `query.from` if later.
pub fn regional_series_query(query: &MetricsQuery) -> MetricsQuery {
    let first_of_month = query.to.with_day(1).expect("day 1 exists");
    let earliest = first_of_month
        .checked_sub_months(Months::new(REGIONAL_SERIES_MONTHS - 1))
        .unwrap_or(first_of_month);
    MetricsQuery {
        from: query.from.max(earliest),
        ..query.clone()
    }
}

/// Folds the report's documents for `query` in one pass over `timelines` (and one more for
/// the audit).
pub fn regional_documents<'a, I, T>(
    timelines: I,
    query: &MetricsQuery,
    catalogue: &StageCatalogue,
    registry: &TerritoryRegistry,
) -> RegionalDocuments
where
    I: IntoIterator<Item = T> + Clone,
    T: Into<TimelineView<'a>>,
{
    let months = series_queries(&regional_series_query(query));
    let children = breakdown_queries(query, registry);
    let mut queries = Vec::with_capacity(1 + months.len() + children.len());
    queries.push(query.clone());
    queries.extend(months.iter().cloned());
    queries.extend(children.iter().cloned());
    let mut documents =
        territory_metrics_many(timelines.clone(), &queries, catalogue, registry).into_iter();
    let metrics = documents.next().expect("one document per query");
    let series = MetricsSeries::assemble(documents.by_ref().take(months.len()).collect());
    let breakdown = MetricsBreakdown::assemble(query.territory.clone(), documents.collect());
    let audit = reiteration_audit(timelines, &AuditQuery::from(query), catalogue, registry);
    RegionalDocuments {
        metrics,
        series,
        breakdown,
        audit,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    fn query(from: &str, to: &str) -> MetricsQuery {
        MetricsQuery {
            territory: None,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            known_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            threshold: 2,
        }
    }

    #[test]
    fn the_series_covers_the_last_24_months_of_a_long_period() {
        let long = regional_series_query(&query("2000-01-01", "2025-03-10"));
        assert_eq!(long.from, NaiveDate::from_ymd_opt(2023, 4, 1).unwrap());
        assert_eq!(long.to, NaiveDate::from_ymd_opt(2025, 3, 10).unwrap());
        assert_eq!(series_queries(&long).len(), 24);
        let short = regional_series_query(&query("2024-11-15", "2025-03-10"));
        assert_eq!(short.from, NaiveDate::from_ymd_opt(2024, 11, 15).unwrap());
    }
}
