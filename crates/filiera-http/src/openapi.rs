//! `GET /openapi.json`: the OpenAPI 3.1 description of the API, generated with utoipa from the
//! handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives, so that it
//! follows the code. [`crate::api`] registers every route together with its description, which
//! is why a route cannot be added without appearing here.
//!
//! This module holds what is not derived next to a handler: the document's info and tags, the
//! handler serving it, and hand-written schemas for the status types of `filiera-projections`
//! and `filiera-relay` (crates without utoipa), which tests compare with the real types.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use utoipa::{OpenApi, ToSchema};

use crate::problem::Problem;
use crate::problem::responses::{
    BadRequest, Conflict, Gone, InsufficientStorage, InternalError, NotFound, PayloadTooLarge,
    ServiceUnavailable, UnprocessableEntity, UnsupportedMediaType,
};
use crate::{beneficiaries, feed, meta, reports};

/// The document's info, tags and shared components; [`crate::api`] adds the paths and the
/// schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "filiera",
        version = env!("CARGO_PKG_VERSION"),
        description = "Event-sourced record of the pathways of people in social and occupational \
            inclusion programmes (stages, territories, transitions), with the metrics and audits \
            folded from them and the global event feed. JSON in snake_case, dates `YYYY-MM-DD`, \
            errors as RFC 9457 problem documents (`application/problem+json`) with a stable \
            `code` and, for invalid input, the `field` at fault. Write endpoints accept an \
            `Idempotency-Key` header. Any request may also be refused before it reaches a \
            route, with a problem document too: 400 `malformed_request` (a malformed head), \
            408 `request_timeout` (the body did not arrive in time), 414 `uri_too_long` \
            (targets over 8 KiB), 431 `header_too_large`.",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2"),
    ),
    tags(
        (
            name = beneficiaries::TAG,
            description = "Enrolment, pathway commands, state and history of one beneficiary."
        ),
        (
            name = feed::TAG,
            description = "The global event feed (SPEC 4.2), a page at a time or live."
        ),
        (
            name = reports::TAG,
            description = "Metrics, the reiteration audit, projection status and rebuilds."
        ),
        (
            name = meta::TAG,
            description = "The stage catalogue and the territory registry."
        ),
        (
            name = meta::OPS_TAG,
            description = "Liveness, readiness, Prometheus metrics and this document."
        ),
    ),
    components(
        schemas(Problem),
        responses(
            BadRequest,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            UnprocessableEntity,
            InternalError,
            ServiceUnavailable,
            InsufficientStorage,
            Gone,
        ),
    )
)]
pub struct ApiDoc;

/// The document served at `/openapi.json`, serialised once when the router is built.
#[derive(Clone)]
pub struct OpenApiJson(Arc<str>);

impl OpenApiJson {
    /// Serialises `doc`.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        let json = doc
            .to_json()
            .expect("an OpenAPI document built by utoipa serialises to JSON");
        Self(json.into())
    }
}

/// This OpenAPI 3.1 document.
///
/// Open to everyone, like the health checks (SPEC 5.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = meta::OPS_TAG,
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 description of the API.",
            content_type = "application/json", body = Object),
    )
)]
pub async fn document(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
}

// The schemas below mirror types of crates without utoipa (`filiera_projections::{
// ProjectionStatus, ProjectionState, RebuildStatus, CacheStatus, RebuildStarted}`,
// `filiera_relay::RelayStatus`); `tests::mirrors_match_the_real_types` keeps them in step.

/// One projection as seen from the process that answers.
#[derive(ToSchema)]
#[schema(as = ProjectionStatus)]
#[allow(dead_code)]
pub struct ProjectionStatusSchema {
    /// The projection's name, e.g. `territory_metrics`.
    name: String,
    /// The generation queries read (the active one).
    generation: i64,
    /// Its checkpoint: the global position of the last event applied.
    position: i64,
    /// The head of the feed: the highest global position.
    head: i64,
    /// Feed events after `position` (counted, since positions may have gaps).
    lag: u64,
    state: ProjectionStateSchema,
    /// Whether this process runs the projection (exactly one process does).
    leader: bool,
    /// The generation being rebuilt alongside, if any.
    rebuilding: Option<RebuildStatusSchema>,
    /// The generation and checkpoint this process's query cache holds (`null` before its first
    /// query).
    cache: Option<CacheStatusSchema>,
    /// The last failure of this process's runner, cleared by its next successful batch.
    error: Option<String>,
}

/// The state of a projection: `live` (up to date), `catching_up` (behind the head),
/// `rebuilding` (a new generation is built alongside; queries answer from the current one),
/// `failing` (this process's runner failed and is retrying, see `error`), `stopped`.
#[derive(ToSchema)]
#[schema(as = ProjectionState, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ProjectionStateSchema {
    Live,
    CatchingUp,
    Rebuilding,
    Failing,
    Stopped,
}

/// A generation being rebuilt.
#[derive(ToSchema)]
#[schema(as = RebuildStatus)]
#[allow(dead_code)]
pub struct RebuildStatusSchema {
    /// The generation being built.
    generation: i64,
    /// Its checkpoint.
    position: i64,
    /// Feed events it still has to apply.
    lag: u64,
    /// When the rebuild was requested.
    started_at: DateTime<Utc>,
}

/// What a process's query cache holds.
#[derive(ToSchema)]
#[schema(as = CacheStatus)]
#[allow(dead_code)]
pub struct CacheStatusSchema {
    /// The generation loaded.
    generation: i64,
    /// That generation's checkpoint when the cache last refreshed.
    position: i64,
}

/// The answer to a rebuild request.
#[derive(ToSchema)]
#[schema(as = RebuildStarted)]
#[allow(dead_code)]
pub struct RebuildStartedSchema {
    /// The projection.
    name: String,
    /// The generation that will replace the active one once it has caught up.
    generation: i64,
}

/// The NATS relay's state.
#[derive(ToSchema)]
#[schema(as = RelayStatus)]
#[allow(dead_code)]
pub struct RelayStatusSchema {
    /// This process runs the relay (holds the `relay:nats` leadership).
    leading: bool,
    /// This process, as the leader, has a live connection to NATS; `false` when not leading.
    connected: bool,
    /// The checkpoint: global position of the last event published and acknowledged.
    position: i64,
    /// The feed head: the highest global position stored.
    head: i64,
    /// `head − position`: an upper bound on the events not yet published.
    lag: i64,
    /// Messages this process published and saw acknowledged since it started.
    published_total: u64,
    /// Failed publish attempts (and failed connections) in this process since it started.
    publish_errors_total: u64,
    /// The latest failure, cleared by the next successful batch.
    last_error: Option<String>,
}

#[cfg(test)]
mod tests;
