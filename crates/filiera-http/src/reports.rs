//! The read side over HTTP: `GET /v1/metrics`, `GET /v1/audit/reiterations`,
//! `GET /v1/projections` and `POST /v1/projections/{name}/rebuild`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use filiera_domain::{
    AuditList, AuditQuery, EARLIEST_DATE, MetricsQuery, TerritoryCode, TerritoryMetrics,
    TerritoryRegistry,
};
use filiera_projections::{ProjectionError, ProjectionStatus};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::extract::{Caller, parse_query};
use crate::problem::ApiError;

/// The query parameters of `/v1/metrics` (and the options of `filiera report`), as given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    /// A territory code; its descendants are included. Omitted: everything.
    pub territory: Option<String>,
    /// First day of the period (default 2000-01-01).
    pub from: Option<String>,
    /// Last day of the period (default today, UTC).
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    pub known_at: Option<String>,
}

/// The query parameters of `/v1/audit/reiterations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub territory: Option<String>,
    pub to: Option<String>,
    pub known_at: Option<String>,
}

impl MetricsParams {
    /// Validates the parameters into a query; every problem names its parameter.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<MetricsQuery, ApiError> {
        let territory = territory(registry, self.territory.as_deref())?;
        let from = date("from", self.from.as_deref())?.unwrap_or(EARLIEST_DATE);
        let to = date("to", self.to.as_deref())?.unwrap_or_else(|| now.date_naive());
        if from > to {
            return Err(ApiError::invalid(
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

impl AuditParams {
    /// Validates the parameters into a query.
    pub fn into_query(
        self,
        registry: &TerritoryRegistry,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<AuditQuery, ApiError> {
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
) -> Result<Option<TerritoryCode>, ApiError> {
    match code {
        None => Ok(None),
        Some(code) => registry.get(code).map(Some).ok_or_else(|| {
            ApiError::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_territory",
                "Invalid field",
                format!("unknown territory `{code}`; list valid codes with GET /v1/territories"),
                Some("territory".into()),
            )
        }),
    }
}

fn date(field: &'static str, value: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    value
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
                ApiError::invalid(field, format!("`{field}` must be a YYYY-MM-DD date"))
            })
        })
        .transpose()
}

fn instant(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Ok(instant) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(instant.with_timezone(&Utc)));
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let end = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("a valid time");
        return Ok(Some(day.and_time(end).and_utc()));
    }
    Err(ApiError::invalid(
        field,
        format!(
            "`{field}` must be an RFC 3339 instant (2025-03-01T12:00:00Z) or a date (the end of that UTC day)"
        ),
    ))
}

/// `GET /v1/metrics?territory=&from=&to=&known_at=`
#[tracing::instrument(skip_all)]
pub async fn metrics(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    _caller: Caller,
) -> Result<Json<TerritoryMetrics>, ApiError> {
    let params: MetricsParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    Ok(Json(app.projections.metrics(query).await?))
}

/// `GET /v1/audit/reiterations?territory=&to=&known_at=`
#[tracing::instrument(skip_all)]
pub async fn audit(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    _caller: Caller,
) -> Result<Json<AuditList>, ApiError> {
    let params: AuditParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    Ok(Json(app.projections.audit(query).await?))
}

/// Every projection's state, and the NATS relay's (`null` when publication is off).
#[derive(Debug, Serialize)]
pub struct ProjectionsPage {
    pub projections: Vec<ProjectionStatus>,
    pub relay: Option<filiera_relay::RelayStatus>,
}

/// `GET /v1/projections`
pub async fn projections(
    State(app): State<AppState>,
    _caller: Caller,
) -> Result<Json<ProjectionsPage>, ApiError> {
    let relay = match &app.relay {
        Some(relay) => Some(
            relay
                .status()
                .await
                .map_err(|e| ApiError::Internal(crate::problem::error_chain(&e)))?,
        ),
        None => None,
    };
    Ok(Json(ProjectionsPage {
        projections: app.projections.status().await?,
        relay,
    }))
}

/// `POST /v1/projections/{name}/rebuild`: 202, the generation being built.
#[tracing::instrument(skip_all, fields(projection = %name))]
pub async fn rebuild(
    State(app): State<AppState>,
    Path(name): Path<String>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let started = app.projections.rebuild(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

impl From<ProjectionError> for ApiError {
    fn from(err: ProjectionError) -> Self {
        match &err {
            ProjectionError::UnknownProjection { .. } => ApiError::problem(
                StatusCode::NOT_FOUND,
                "unknown_projection",
                "Unknown projection",
                err.to_string(),
                None,
            ),
            ProjectionError::AlreadyRebuilding { .. } => ApiError::problem(
                StatusCode::CONFLICT,
                "already_rebuilding",
                "Already rebuilding",
                err.to_string(),
                None,
            ),
            _ => ApiError::Internal(crate::problem::error_chain(&err)),
        }
    }
}
