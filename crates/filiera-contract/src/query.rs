//! The report query as given — `GET /v1/metrics` and `GET /v1/audit/reiterations` parameters,
//! `filiera report` options — and its validation into the domain's queries.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use filiera_domain::date::{DateError, parse_date};
use filiera_domain::metrics::MAX_SERIES_POINTS;
use filiera_domain::metrics::series::{MONTH, month_count};
use filiera_domain::{
    AuditQuery, EARLIEST_DATE, MetricsQuery, PathwayError, TerritoryCode, TerritoryRegistry,
};
use serde::Deserialize;

/// Why a query was refused, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The parameter `field` is malformed or contradicts another.
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    /// The domain refuses the parameter (`territory` names no territory of the registry).
    #[error("{}", crate::refusal_detail(.0))]
    Refused(#[from] PathwayError),
}

impl QueryError {
    fn invalid(field: &'static str, detail: String) -> Self {
        Self::Invalid { field, detail }
    }
}

/// The query parameters of `/v1/metrics` (and the options of `filiera report`), as given.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct MetricsParams {
    /// A territory code; its descendants are included. Omitted: everything, for callers
    /// whose token covers every territory; others must name one of theirs.
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::RegisteredTerritory>))]
    pub territory: Option<String>,
    /// First day of the period (default 2000-01-01).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub from: Option<String>,
    /// Last day of the period (default today, UTC).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::KnownAt>))]
    pub known_at: Option<String>,
}

/// The query parameters of `/v1/metrics/series` (and `filiera report --series`): those of
/// `/v1/metrics` and the interval.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SeriesParams {
    /// A territory code; its descendants are included. Omitted: everything, for callers
    /// whose token covers every territory; others must name one of theirs.
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::RegisteredTerritory>))]
    pub territory: Option<String>,
    /// First day of the period (default 2000-01-01); at most 120 months before `to`.
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub from: Option<String>,
    /// Last day of the period (default today, UTC).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::KnownAt>))]
    pub known_at: Option<String>,
    /// The length of each point: only `month` (the default).
    #[cfg_attr(
        feature = "openapi",
        param(value_type = Option<String>, pattern = "^month$", example = "month")
    )]
    pub interval: Option<String>,
}

/// The query parameters of `/v1/metrics/breakdown` (and `filiera report --breakdown`): those
/// of `/v1/metrics`, `territory` being the one whose direct children are listed.
pub type BreakdownParams = MetricsParams;

/// The query parameters of `/v1/audit/reiterations`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AuditParams {
    /// A territory code; its descendants are included. Omitted: everything, for callers
    /// whose token covers every territory; others must name one of theirs.
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::RegisteredTerritory>))]
    pub territory: Option<String>,
    /// The day the flags are evaluated at (default today, UTC).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::KnownAt>))]
    pub known_at: Option<String>,
}

/// The language of a rendered report: Italian (the default) or English.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReportLang {
    #[default]
    It,
    En,
}

impl ReportLang {
    /// The BCP 47 code, as in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Self::It => "it",
            Self::En => "en",
        }
    }
}

impl std::str::FromStr for ReportLang {
    type Err = String;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        match code {
            "it" => Ok(Self::It),
            "en" => Ok(Self::En),
            other => Err(format!("`{other}` is not a report language: `it` or `en`")),
        }
    }
}

/// The query parameters of `/v1/reports/regional` (and `filiera report --format html`): those
/// of `/v1/metrics` and the language.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RegionalReportParams {
    /// A territory code; its descendants are included and its direct children are compared.
    /// Omitted: everything, for callers whose token covers every territory; others must name
    /// one of theirs.
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::RegisteredTerritory>))]
    pub territory: Option<String>,
    /// First day of the period (default 2000-01-01).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub from: Option<String>,
    /// Last day of the period (default today, UTC).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::CalendarDate>))]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::schema::KnownAt>))]
    pub known_at: Option<String>,
    /// The language of the labels: `it` (the default) or `en`.
    #[cfg_attr(feature = "openapi", param(inline))]
    pub lang: Option<ReportLang>,
}

impl RegionalReportParams {
    /// Validates the parameters into the query of the report and its language; every problem
    /// names its parameter.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<(MetricsQuery, ReportLang), QueryError> {
        let query = MetricsParams {
            territory: self.territory,
            from: self.from,
            to: self.to,
            known_at: self.known_at,
        }
        .into_query(registry, threshold, now)?;
        Ok((query, self.lang.unwrap_or_default()))
    }
}

impl MetricsParams {
    /// Validates the parameters into a query; every problem names its parameter.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<MetricsQuery, QueryError> {
        let territory = territory(registry, self.territory.as_deref())?;
        let from = date("from", self.from.as_deref())?.unwrap_or(EARLIEST_DATE);
        let to = date("to", self.to.as_deref())?.unwrap_or_else(|| now.date_naive());
        if from > to {
            return Err(QueryError::invalid(
                "from",
                format!("`from` ({from}) is after `to` ({to})"),
            ));
        }
        let known_at = instant("known_at", self.known_at.as_deref())?.unwrap_or(now);
        Ok(MetricsQuery {
            territory,
            from,
            to,
            known_at,
            threshold,
        })
    }
}

impl SeriesParams {
    /// Validates the parameters into the query of the whole period; a series longer than
    /// [`MAX_SERIES_POINTS`] months is refused naming `from`, an interval other than `month`
    /// naming `interval`.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<MetricsQuery, QueryError> {
        match self.interval.as_deref() {
            None | Some(MONTH) => {}
            Some(_) => {
                return Err(QueryError::invalid(
                    "interval",
                    format!("`interval` must be `{MONTH}`"),
                ));
            }
        }
        let query = MetricsParams {
            territory: self.territory,
            from: self.from,
            to: self.to,
            known_at: self.known_at,
        }
        .into_query(registry, threshold, now)?;
        let points = month_count(query.from, query.to);
        if points > MAX_SERIES_POINTS {
            return Err(QueryError::invalid(
                "from",
                format!(
                    "the series from {} to {} has {points} months, more than {MAX_SERIES_POINTS}",
                    query.from, query.to
                ),
            ));
        }
        Ok(query)
    }
}

impl AuditParams {
    /// Validates the parameters into a query.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<AuditQuery, QueryError> {
        Ok(AuditQuery {
            territory: territory(registry, self.territory.as_deref())?,
            to: date("to", self.to.as_deref())?.unwrap_or_else(|| now.date_naive()),
            known_at: instant("known_at", self.known_at.as_deref())?.unwrap_or(now),
            threshold,
        })
    }
}

fn territory(
    registry: &TerritoryRegistry,
    code: Option<&str>,
) -> Result<Option<TerritoryCode>, QueryError> {
    match code {
        None => Ok(None),
        Some(code) => registry.get(code).map(Some).ok_or_else(|| {
            PathwayError::UnknownTerritory {
                territory: code.to_owned(),
            }
            .into()
        }),
    }
}

fn date(field: &'static str, value: Option<&str>) -> Result<Option<NaiveDate>, QueryError> {
    value
        .map(|v| {
            parse_date(v).map_err(|err| QueryError::invalid(field, format!("`{field}`: {err}")))
        })
        .transpose()
}

fn instant(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, QueryError> {
    let Some(value) = value else {
        return Ok(None);
    };
    // An unencoded `+02:00` offset arrives as a space: accept it as the `+` it was.
    let value = &value.replace(' ', "+");
    if let Ok(instant) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(instant.with_timezone(&Utc)));
    }
    match parse_date(value) {
        Ok(day) => {
            let end = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("a valid time");
            Ok(Some(day.and_time(end).and_utc()))
        }
        Err(DateError::NotInCalendar(_)) => Err(QueryError::invalid(
            field,
            format!(
                "`{field}`: `{value}` is not a calendar date (expected YYYY-MM-DD or an RFC 3339 instant)"
            ),
        )),
        Err(DateError::Format(_)) => Err(QueryError::invalid(
            field,
            format!(
                "`{field}` must be an RFC 3339 instant (2025-03-01T12:00:00Z) or a date YYYY-MM-DD (the end of that UTC day)"
            ),
        )),
    }
}
