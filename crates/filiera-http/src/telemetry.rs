//! `GET /metrics`: Prometheus text. Only aggregate, non-personal figures: request counts and
//! latencies, the feed head, the projections' checkpoints, lag and leadership, and whatever the
//! relay registers.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::AppState;

/// The HTTP layer's own instruments.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    /// Seconds from a request's arrival to its response head, by method and route template.
    durations: HistogramVec,
    feed_head: IntGauge,
    /// Per projection, set from its status at each scrape.
    projection_position: IntGaugeVec,
    projection_lag: IntGaugeVec,
    projection_leader: IntGaugeVec,
}

/// The latency buckets, in seconds: from a cached query (a millisecond) to the longest a
/// request may wait for the database (`database.query_timeout`, 10 s by default).
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl HttpMetrics {
    /// Creates the instruments and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "filiera_http_requests_total",
                "HTTP requests answered, by method, route template and status",
            ),
            &["method", "route", "status"],
        )?;
        let feed_head = IntGauge::new(
            "filiera_feed_head_position",
            "Global position of the latest stored event",
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "filiera_http_request_duration_seconds",
                "Time from a request's arrival to its response head, by method and route template",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let projection_position = IntGaugeVec::new(
            Opts::new(
                "filiera_projection_position",
                "Global position of the last event a projection applied (its checkpoint)",
            ),
            &["projection"],
        )?;
        let projection_lag = IntGaugeVec::new(
            Opts::new(
                "filiera_projection_lag_events",
                "Feed events a projection has not applied yet (after its checkpoint)",
            ),
            &["projection"],
        )?;
        let projection_leader = IntGaugeVec::new(
            Opts::new(
                "filiera_projection_leader",
                "1 while this process runs the projection, else 0",
            ),
            &["projection"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(feed_head.clone()))?;
        registry.register(Box::new(projection_position.clone()))?;
        registry.register(Box::new(projection_lag.clone()))?;
        registry.register(Box::new(projection_leader.clone()))?;
        Ok(Self {
            requests,
            durations,
            feed_head,
            projection_position,
            projection_lag,
            projection_leader,
        })
    }
}

/// Counts every request by its route template (never the concrete path, which holds ids).
pub async fn count_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    // Only standard methods become labels: anything else would let a client add series.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    app.http_metrics
        .durations
        .with_label_values(&[&method, &route])
        .observe(started.elapsed().as_secs_f64());
    app.http_metrics
        .requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .inc();
    response
}

/// Prometheus metrics.
///
/// Only aggregate, non-personal figures: HTTP requests and their latency by route template, the
/// feed head, the projections' checkpoint, lag and leadership, the relay's instruments.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = crate::meta::OPS_TAG,
    operation_id = "prometheus_metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            content_type = "text/plain", body = String),
        (status = 500, description = "The metrics could not be encoded (no body)."),
    )
)]
pub async fn render(State(app): State<AppState>) -> Response {
    if let Ok(head) = app.store.head().await {
        app.http_metrics.feed_head.set(head);
    }
    // Left at their last values if the store does not answer (the feed head's too).
    if let Ok(projections) = app.projections.status().await {
        let metrics = &app.http_metrics;
        for projection in projections {
            let name = [projection.name.as_str()];
            metrics
                .projection_position
                .with_label_values(&name)
                .set(projection.position);
            metrics
                .projection_lag
                .with_label_values(&name)
                .set(i64::try_from(projection.lag).unwrap_or(i64::MAX));
            metrics
                .projection_leader
                .with_label_values(&name)
                .set(i64::from(projection.leader));
        }
    }
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(err) = encoder.encode(&app.registry.gather(), &mut buffer) {
        tracing::error!(error = %err, "cannot encode metrics");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        buffer,
    )
        .into_response()
}
