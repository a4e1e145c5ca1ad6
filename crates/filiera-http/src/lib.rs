//! The HTTP API of filiera (SPEC 4.1), built on axum. Handlers translate requests into
//! [`filiera_domain::PathwayCommand`]s for the [`filiera_store::Store`] and answer JSON; every
//! error leaves through [`problem::ApiError`] as an RFC 9457 problem document.
//!
//! # Layout
//! - [`problem`]: `ApiError`, the only place errors are mapped to status codes.
//! - [`extract`]: strict JSON/query/header extractors and the caller.
//! - [`beneficiaries`]: enrolment, pathway commands, state and history.
//! - [`feed`]: the global feed, a page at a time.
//! - [`meta`]: territories, stages, health and readiness.
//! - [`reports`]: metrics, the reiteration audit, projection status and rebuilds.
//! - [`telemetry`]: Prometheus metrics at `/metrics`.

pub mod beneficiaries;
pub mod extract;
pub mod feed;
pub mod meta;
pub mod problem;
pub mod reports;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use filiera_projections::Projections;
use filiera_store::Store;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::problem::ApiError;

/// Largest accepted request body (SPEC 5.3).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The event store, with the configured catalogue and registry.
    pub store: Arc<Store>,
    /// The read side: metrics, audit, projection status and rebuilds.
    pub projections: Projections,
    /// Prometheus registry served at `/metrics`; other components register into it.
    pub registry: prometheus::Registry,
    /// The HTTP layer's own instruments.
    pub http_metrics: telemetry::HttpMetrics,
    /// The NATS relay, when `FILIERA_NATS_URL` is set.
    pub relay: Option<filiera_relay::NatsRelay>,
}

impl AppState {
    /// The state over a store and its projections, with a fresh metrics registry.
    pub fn new(store: Arc<Store>, projections: Projections) -> Self {
        let registry = prometheus::Registry::new();
        let http_metrics = telemetry::HttpMetrics::register(&registry)
            .expect("the HTTP instruments are registered once in a fresh registry");
        Self {
            store,
            projections,
            registry,
            http_metrics,
            relay: None,
        }
    }

    /// The same state, with the NATS relay whose status `/v1/projections` shows.
    pub fn with_relay(self, relay: filiera_relay::NatsRelay) -> Self {
        Self {
            relay: Some(relay),
            ..self
        }
    }
}

/// The full API.
pub fn router(state: AppState) -> Router {
    use beneficiaries as b;
    Router::new()
        .route("/v1/beneficiaries", post(b::enrol))
        .route("/v1/beneficiaries/{id}", get(b::get_state))
        .route("/v1/beneficiaries/{id}/history", get(b::history))
        .route("/v1/beneficiaries/{id}/stage", post(b::enter_stage))
        .route("/v1/beneficiaries/{id}/stage/exit", post(b::exit_stage))
        .route(
            "/v1/beneficiaries/{id}/territory",
            post(b::change_territory),
        )
        .route("/v1/beneficiaries/{id}/close", post(b::close))
        .route("/v1/beneficiaries/{id}/reopen", post(b::reopen))
        .route("/v1/beneficiaries/{id}/undo", post(b::undo))
        .route("/v1/territories", get(meta::territories))
        .route("/v1/stages", get(meta::stages))
        .route("/v1/metrics", get(reports::metrics))
        .route("/v1/audit/reiterations", get(reports::audit))
        .route("/v1/projections", get(reports::projections))
        .route("/v1/projections/{name}/rebuild", post(reports::rebuild))
        .route("/v1/events", get(feed::page))
        .route("/v1/events/stream", get(feed::stream))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(telemetry::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::count_requests,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "handler panicked".into(),
            ))
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            }),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "no such resource",
        None,
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "this resource does not accept this method",
        None,
    )
}

/// Serves the API on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long in-flight requests get to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
