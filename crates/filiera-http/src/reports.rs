//! The read side over HTTP: `GET /v1/metrics`, `GET /v1/metrics/series`,
//! `GET /v1/metrics/breakdown`, `GET /v1/providers/scorecard`, `GET /v1/audit/reiterations`,
//! `GET /v1/reports/regional` (the printable HTML report), `GET /v1/projections` and
//! `POST /v1/projections/{name}/rebuild`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use filiera_domain::{
    AuditList, MetricsBreakdown, MetricsSeries, ProviderScorecard, TerritoryMetrics,
};
use filiera_projections::{ProjectionStatus, RebuildStarted};
use filiera_store::jobs::RelayStatus;
use serde::Serialize;
use utoipa::ToSchema;

pub use filiera_contract::query::{
    AuditParams, BreakdownParams, MetricsParams, RegionalReportParams, SeriesParams,
};

use crate::AppState;
use crate::access;
use crate::extract::{Caller, PathSegment, parse_query};
use crate::problem::ApiError;
use crate::problem::responses::{
    Conflict, InternalError, NotFound, ServiceUnavailable, UnprocessableEntity,
};

/// The OpenAPI tag of these routes.
pub const TAG: &str = "reports";

/// Computes the metrics document (docs/metrics.md).
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

/// Computes the metrics document per calendar month of the period (docs/metrics.md).
///
/// One point per month meeting `from`..=`to`, clipped to it, each the document of
/// `GET /v1/metrics` for that part (same territory and `known_at`). More than 120 months: 422
/// naming `from`; an `interval` other than `month` (the default): 422 naming `interval`.
#[utoipa::path(
    get,
    path = "/v1/metrics/series",
    tag = TAG,
    operation_id = "metrics_series",
    params(SeriesParams),
    responses(
        (status = 200, description = "One metrics document per month.", body = MetricsSeries),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn series(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<MetricsSeries>, ApiError> {
    let params: SeriesParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let mut query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    Ok(Json(app.projections.series(&query).await?))
}

/// Computes the metrics document of each direct child of a territory (docs/metrics.md).
///
/// The children of `territory` in the registry (of the roots when omitted, for callers whose
/// token covers every territory), each with the document of `GET /v1/metrics` for it.
#[utoipa::path(
    get,
    path = "/v1/metrics/breakdown",
    tag = TAG,
    operation_id = "metrics_breakdown",
    params(BreakdownParams),
    responses(
        (
            status = 200,
            description = "One metrics document per direct child.",
            body = MetricsBreakdown
        ),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn breakdown(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<MetricsBreakdown>, ApiError> {
    let params: BreakdownParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let mut query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    Ok(Json(app.projections.breakdown(&query).await?))
}

/// Computes the provider scorecard (docs/metrics.md).
///
/// One item per provider code with an episode in scope by `to`, sorted by code: its episodes,
/// their classification, exits, time in stage, placements within 180 days of an exit and how
/// occupability changed across the episode. Same query as `GET /v1/metrics`; the same document
/// as the offline `filiera report --providers`.
#[utoipa::path(
    get,
    path = "/v1/providers/scorecard",
    tag = TAG,
    operation_id = "provider_scorecard",
    params(MetricsParams),
    responses(
        (
            status = 200,
            description = "The scorecard, the query echoed.",
            body = ProviderScorecard
        ),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn scorecard(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Json<ProviderScorecard>, ApiError> {
    let params: MetricsParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let mut query = params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    Ok(Json(app.projections.scorecard(query).await?))
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

/// Renders the printable regional report (HTML).
///
/// One self-contained HTML document (inline CSS and SVG charts, no script, print rules for
/// A4) for the same query as `GET /v1/metrics`: the territory's headline figures, transition
/// matrix, reiteration distribution and durations; its direct children side by side; the
/// monthly series of the last 24 months of the period at most; the reiteration audit summary
/// (pseudonymous ids only); and a methods box with the definitions, `known_at` and the feed
/// position the data is as of. All from one snapshot of the read model. `lang`: `it` (the
/// default) or `en`. The same bytes as the offline `filiera report --format html` for the
/// same data. Print it to PDF with a headless browser (`docs/metrics.md`).
#[utoipa::path(
    get,
    path = "/v1/reports/regional",
    tag = TAG,
    operation_id = "regional_report",
    params(RegionalReportParams),
    responses(
        (
            status = 200,
            description = "The report, a complete HTML document.",
            content_type = "text/html",
            body = String
        ),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn regional(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Caller,
) -> Result<Response, ApiError> {
    let params: RegionalReportParams = parse_query(query.as_deref())?;
    let settings = app.projections.settings();
    let (mut query, lang) =
        params.into_query(&settings.registry, settings.threshold, Utc::now())?;
    query.territory = access::query_territory(&caller, &app.territories, query.territory)?;
    let snapshot = app.projections.regional(query).await?;
    let html = filiera_report::render_regional(&filiera_report::RegionalReport {
        documents: &snapshot.documents,
        data_as_of: filiera_report::DataAsOf {
            position: snapshot.position,
            recorded_at: snapshot.recorded_at,
        },
        catalogue: &settings.catalogue,
        registry: &settings.registry,
        lang,
    });
    Ok((
        [
            (header::CONTENT_TYPE, filiera_report::CONTENT_TYPE),
            // A page of data on the API's origin runs nothing and loads nothing: its CSS is
            // inline and its charts are inline SVG.
            (header::CONTENT_SECURITY_POLICY, REPORT_CSP),
        ],
        html,
    )
        .into_response())
}

/// The regional report's Content-Security-Policy: no script, no fetch, no external resource.
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

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
