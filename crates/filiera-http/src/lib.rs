//! The HTTP API of filiera (SPEC 4.1), built on axum. Handlers translate requests into
//! [`filiera_domain::PathwayCommand`]s for the [`filiera_store::Store`] and answer JSON; every
//! error leaves through [`problem::ApiError`] as an RFC 9457 problem document.
//!
//! # Layout
//! - [`access`]: authorisation in one place: the access table of every route, the middleware
//!   applying it, and the territory scope checks handlers call.
//! - [`problem`]: `ApiError`, the only place errors are mapped to status codes.
//! - [`extract`]: strict JSON/query/header extractors and the caller (the authenticated
//!   principal).
//! - [`beneficiaries`]: enrolment, pathway commands, state and history.
//! - [`feed`]: the global feed, a page at a time.
//! - [`meta`]: territories, stages, providers, health and readiness.
//! - [`reports`]: metrics, the reiteration audit, projection status and rebuilds.
//! - [`telemetry`]: Prometheus metrics at `/metrics`.
//! - `trace`: the request span, joined to the caller's W3C `traceparent`, and its trace id
//!   (in log lines and problem documents).
//! - [`openapi`](mod@openapi): the OpenAPI 3.1 document at `/openapi.json`, generated from [`api`].
//! - [`dashboard`]: the web dashboard at `/`, its assets embedded in the binary (open routes,
//!   not in the OpenAPI document).
//! - [`server`]: the accept loop and connection limits behind [`serve`] and [`serve_with`].

pub mod access;
pub mod beneficiaries;
pub mod dashboard;
pub mod extract;
pub mod feed;
pub mod meta;
pub mod openapi;
pub mod people;
pub mod problem;
pub mod reports;
pub mod server;
pub mod telemetry;
mod trace;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::{Extension, Router};
use filiera_auth::TokenKeys;
use filiera_domain::TerritoryRegistry;
use filiera_projections::Projections;
use filiera_store::Store;
use filiera_store::jobs::{RelayStatus, StatusSource};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ApiError;
pub use crate::server::{ServeSettings, serve_with};

/// Largest accepted request body (SPEC 5.3).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Longest accepted request target (path and query), answered 414 `uri_too_long` beyond. No
/// route needs more; hyper itself refuses targets over 64 KiB before the app sees them.
pub const URI_LIMIT: usize = 8 * 1024;

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
    /// Verifies the bearer tokens of requests.
    pub keys: TokenKeys,
    /// The territory registry (the store's): expands token scopes to descendants.
    pub territories: Arc<TerritoryRegistry>,
    /// The NATS relay's status, when `FILIERA_NATS_URL` is set (the binary wires the relay in).
    pub relay: Option<Arc<dyn StatusSource<RelayStatus>>>,
    /// The personal-data vault; without it the personal-data routes answer 500 and
    /// enrolments carrying `person` are refused.
    pub vault: Option<filiera_vault::Vault>,
    /// Flips to `true` when the server starts shutting down, so that endless responses (the
    /// SSE stream) end and the graceful shutdown can complete.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set when a shutdown was asked for: during the drain delay ([`ServeSettings::drain_delay`])
    /// `/readyz` answers 503 `shutting_down` so that a proxy stops routing here, while requests
    /// are still served (each answered with `connection: close`).
    draining: Arc<AtomicBool>,
}

impl AppState {
    /// The state over a store and its projections, with a fresh metrics registry; tokens are
    /// verified with `keys`.
    pub fn new(store: Arc<Store>, projections: Projections, keys: TokenKeys) -> Self {
        let registry = prometheus::Registry::new();
        let http_metrics = telemetry::HttpMetrics::register(&registry)
            .expect("the HTTP instruments are registered once in a fresh registry");
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let territories = store.services().territories.clone();
        Self {
            store,
            projections,
            keys,
            territories,
            registry,
            http_metrics,
            relay: None,
            vault: None,
            stopping,
            stop: Arc::new(stop),
            draining: Arc::default(),
        }
    }

    /// Tells endless responses (SSE streams) to end: call it when shutdown begins.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Marks the process as going away: `/readyz` answers 503 from now on. Requests are still
    /// served; [`serve_with`] calls it when its shutdown future resolves, before the drain delay.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether a shutdown was asked for (see [`AppState::begin_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The same state, with the NATS relay whose status `/v1/projections` shows.
    pub fn with_relay(self, relay: impl StatusSource<RelayStatus>) -> Self {
        Self {
            relay: Some(Arc::new(relay)),
            ..self
        }
    }

    /// The same state, with the personal-data vault.
    pub fn with_vault(self, vault: filiera_vault::Vault) -> Self {
        Self {
            vault: Some(vault),
            ..self
        }
    }
}

/// Every route of the API, each registered with its OpenAPI description (`routes!` reads the
/// method and path from the handler's `#[utoipa::path]`): the only list of routes, so the
/// document cannot miss one. Add routes here with `.routes(routes!(handler))`, never with a
/// bare `.route(...)`.
pub fn api() -> OpenApiRouter<AppState> {
    use beneficiaries as b;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(b::enrol, people::find_beneficiary))
        .routes(routes!(people::read_person, people::erase_person))
        .routes(routes!(people::access_log))
        .routes(routes!(b::get_state))
        .routes(routes!(b::history))
        .routes(routes!(b::enter_stage))
        .routes(routes!(b::exit_stage))
        .routes(routes!(b::change_territory))
        .routes(routes!(b::close))
        .routes(routes!(b::reopen))
        .routes(routes!(b::undo))
        .routes(routes!(b::assess_needs))
        .routes(routes!(meta::territories))
        .routes(routes!(meta::stages))
        .routes(routes!(meta::providers))
        .routes(routes!(reports::metrics))
        .routes(routes!(reports::series))
        .routes(routes!(reports::breakdown))
        .routes(routes!(reports::scorecard))
        .routes(routes!(reports::audit))
        .routes(routes!(reports::regional))
        .routes(routes!(reports::projections))
        .routes(routes!(reports::rebuild))
        .routes(routes!(feed::page))
        .routes(routes!(feed::stream))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(telemetry::render))
        .routes(routes!(openapi::document))
}

/// The OpenAPI 3.1 document of [`router`] with the access rules of [`access::RULES`], as served
/// at `/openapi.json` except for the registries' codes, which [`router`] adds from its
/// configuration ([`openapi::describe_registries`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    access::describe(&mut doc);
    openapi::refine(&mut doc);
    doc
}

/// The full API.
pub fn router(state: AppState) -> Router {
    let (routes, mut doc) = api().split_for_parts();
    access::describe(&mut doc);
    openapi::refine(&mut doc);
    openapi::describe_registries(&mut doc, state.store.services());
    routes
        .merge(dashboard::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorise,
        ))
        .layer(Extension(openapi::OpenApiJson::new(&doc)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .layer(axum::middleware::from_fn(read_bodies_nobody_reads))
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
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| trace::request_span(request)),
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

/// 414 for a request target over [`URI_LIMIT`], before any extractor reads it.
async fn refuse_long_uris(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = request.uri();
    let len = uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if len > URI_LIMIT {
        return axum::response::IntoResponse::into_response(ApiError::problem(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "URI too long",
            format!("request targets are limited to {URI_LIMIT} bytes; this one has {len}"),
            Some("uri".into()),
        ));
    }
    next.run(request).await
}

/// Reads and drops the body of a request whose method takes none (`GET`, `HEAD`, `DELETE`),
/// up to [`BODY_LIMIT`], before it is answered. A connection closed with request bytes still
/// unread is reset by the kernel, and the reset can destroy the answer in flight to the client
/// (a large report, say). A body over the limit is left unread: its connection is closed after
/// the answer (`connection: close`, see [`server`]).
async fn read_bodies_nobody_reads(
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    let bodiless = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::DELETE
    );
    if !bodiless || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let mut body = http_body_util::Limited::new(body, BODY_LIMIT);
    // Stops at the end, past the limit, or when the client stops sending (the body timeout).
    while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
    next.run(Request::from_parts(parts, axum::body::Body::empty()))
        .await
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

/// Serves the API over `state` on `listener` with the default [`ServeSettings`] until
/// `shutdown` resolves, then drains in-flight requests.
///
/// Once `shutdown` resolves, `/readyz` answers 503 and requests are still served for
/// [`ServeSettings::drain_delay`], each answered with `connection: close`; then
/// `state.begin_shutdown()` ends the live streams, no connection is accepted any more and
/// requests get [`SHUTDOWN_GRACE`] to finish; after that the server stops regardless.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServeSettings::default(), shutdown).await
}

/// How long in-flight requests get to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
