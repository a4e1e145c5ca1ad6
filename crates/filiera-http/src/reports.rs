//! The read side over HTTP: `GET /v1/metrics`, `GET /v1/audit/reiterations`,
//! `GET /v1/projections` and `POST /v1/projections/{name}/rebuild`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use filiera_domain::{
    AuditList, AuditQuery, EARLIEST_DATE, MetricsQuery, TerritoryCode, TerritoryMetrics,
    TerritoryRegistry,
};
use filiera_projections::{ProjectionError, ProjectionStatus, RebuildStarted};
use filiera_store::jobs::RelayStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::access;
use crate::extract::{Caller, PathSegment, parse_query};
use crate::problem::ApiError;
use crate::problem::responses::{
    Conflict, InternalError, NotFound, ServiceUnavailable, UnprocessableEntity,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "reports";

/// The query parameters of `/v1/metrics` (and the options of `filiera report`), as given.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// A territory code; its descendants are included. Omitted: everything, for callers
    /// whose token covers every territory; others must name one of theirs.
    pub territory: Option<String>,
    /// First day of the period (default 2000-01-01).
    #[param(value_type = Option<NaiveDate>)]
    pub from: Option<String>,
    /// Last day of the period (default today, UTC).
    #[param(value_type = Option<NaiveDate>)]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[param(example = "2025-03-01T12:00:00Z")]
    pub known_at: Option<String>,
}

/// The query parameters of `/v1/audit/reiterations`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// A territory code; its descendants are included. Omitted: everything, for callers
    /// whose token covers every territory; others must name one of theirs.
    pub territory: Option<String>,
    /// The day the flags are evaluated at (default today, UTC).
    #[param(value_type = Option<NaiveDate>)]
    pub to: Option<String>,
    /// RFC 3339 instant, or a date meaning the end of that UTC day (default now).
    #[param(example = "2025-03-01T12:00:00Z")]
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
        Some(code) => registry
            .get(code)
            .map(Some)
            .ok_or_else(|| ApiError::unknown_territory(code)),
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
    // An unencoded `+02:00` offset arrives as a space: accept it as the `+` it was.
    let value = &value.replace(' ', "+");
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

/// Computes the metrics document (SPEC 3).
///
/// Over the territory's subtree and the period `from`..=`to`, as known at `known_at`; the query
/// is echoed at the top. The same document as the offline `filiera report`.
#[utoipa::path(
    get,
    path = "/v1/metrics",
    tag = TAG,
    operation_id = "territory_metrics",
    params(MetricsParams),
    responses(
        (
            status = 200,
            description = "The metrics document, the query echoed.",
            body = TerritoryMetrics
        ),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn metrics(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<TerritoryMetrics>, ApiError> {
    let params: MetricsParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let mut query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    Ok(Json(app.projections.metrics(query).await?))
}

/// Lists the beneficiaries flagged for reiterating, with the evidence.
///
/// Those whose stalled reiterations at `to` reach the threshold, exactly the ones
/// `reiteration.flagged` counts in the metrics document for the same query.
#[utoipa::path(
    get,
    path = "/v1/audit/reiterations",
    tag = TAG,
    operation_id = "reiteration_audit",
    params(AuditParams),
    responses(
        (status = 200, description = "The audit list, the query echoed.", body = AuditList),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn audit(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<AuditList>, ApiError> {
    let params: AuditParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let mut query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    Ok(Json(app.projections.audit(query).await?))
}

/// Every projection's state, and the NATS relay's (`null` when publication is off).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsPage {
    pub projections: Vec<ProjectionStatus>,
    /// The NATS relay, `null` when `FILIERA_NATS_URL` is not set.
    pub relay: Option<RelayStatus>,
}

/// Shows each projection's position, lag and state, and the NATS relay's.
#[utoipa::path(
    get,
    path = "/v1/projections",
    tag = TAG,
    operation_id = "projection_status",
    responses(
        (status = 200, description = "Each projection and the relay.", body = ProjectionsPage),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn projections(
    State(app): State<AppState>,
    _caller: Caller,
) -> Result<Json<ProjectionsPage>, ApiError> {
    let relay = match &app.relay {
        Some(relay) => Some(
            relay
                .status()
                .await
                .map_err(|e| ApiError::Internal(crate::problem::error_chain(&*e)))?,
        ),
        None => None,
    };
    Ok(Json(ProjectionsPage {
        projections: app.projections.status().await?,
        relay,
    }))
}

/// Starts rebuilding a projection.
///
/// A new generation is built alongside from the feed and swapped in once it has caught up;
/// queries keep answering from the current one meanwhile.
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/rebuild",
    tag = TAG,
    operation_id = "rebuild_projection",
    params((
        "name" = String,
        Path,
        description = "The projection, e.g. `territory_metrics`.",
        example = "territory_metrics"
    )),
    responses(
        (
            status = 202,
            description = "Started: the generation being built.",
            body = RebuildStarted
        ),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all, fields(projection = %name))]
pub async fn rebuild(
    State(app): State<AppState>,
    PathSegment(name): PathSegment,
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
            _ => match err {
                ProjectionError::Store(err) => err.into(),
                ProjectionError::Database(err) => filiera_store::StoreError::Database(err).into(),
                err => ApiError::Internal(crate::problem::error_chain(&err)),
            },
        }
    }
}
