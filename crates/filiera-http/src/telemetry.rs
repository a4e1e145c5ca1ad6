//! `GET /metrics`: Prometheus text. Only aggregate, non-personal figures: request counts,
//! the feed head, and whatever the projections and the relay register.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::AppState;

/// The HTTP layer's own instruments.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    feed_head: IntGauge,
}

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
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(feed_head.clone()))?;
        Ok(Self {
            requests,
            feed_head,
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
    let response = next.run(request).await;
    app.http_metrics
        .requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .inc();
    response
}

/// Prometheus metrics.
///
/// Only aggregate, non-personal figures: HTTP requests by route template, the feed head, the
/// projections' and the relay's instruments.
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
