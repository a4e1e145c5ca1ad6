//! `GET /openapi.json`: the OpenAPI 3.1 description of the API, generated with utoipa from the
//! handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives, so that it
//! follows the code. [`crate::api`] registers every route together with its description, which
//! is why a route cannot be added without appearing here.
//!
//! This module holds what is not derived next to a handler: the document's info and tags, and
//! the handler serving it. The status types of `filiera-projections` and `filiera-store`
//! derive their schemas where they are defined (their `openapi` feature).

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::problem::Problem;
use crate::problem::responses::{
    BadRequest, Conflict, Gone, InsufficientStorage, InternalError, NotFound, PayloadTooLarge,
    ServiceUnavailable, UnprocessableEntity, UnsupportedMediaType,
};
use filiera_contract::schema::{
    CalendarDate, CataloguedStage, KnownAt, ManualExitOutcome, ProviderName, RegisteredTerritory,
    Team, Text,
};
use filiera_domain::PathwayServices;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi as Document, RefOr};

use crate::feed::{EventTypeFilter, FeedEvent};
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
            description = "The global event feed (docs/events.md), a page at a time or live."
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
        schemas(
            Problem,
            RegisteredTerritory,
            CataloguedStage,
            ProviderName,
            Text,
            CalendarDate,
            KnownAt,
            ManualExitOutcome,
            Team,
            EventTypeFilter,
            FeedEvent
        ),
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

/// What JSON Schema says and utoipa's derives cannot: a `multidisciplinary` assessment names at
/// least two services (`if`/`then` on `AssessmentBody`, written as members of the schema
/// object, which are plain JSON Schema keywords in OpenAPI 3.1).
pub fn refine(doc: &mut Document) {
    use utoipa::openapi::extensions::Extensions;

    let Some(components) = doc.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("AssessmentBody") {
        let conditions = Extensions::from_iter([
            (
                "if",
                serde_json::json!({
                    "properties": { "kind": { "const": "multidisciplinary" } },
                    "required": ["kind"],
                }),
            ),
            (
                "then",
                serde_json::json!({ "properties": { "team": { "minItems": 2 } } }),
            ),
        ]);
        body.extensions
            .get_or_insert_with(Default::default)
            .merge(conditions);
    }
}

/// The codes of this service's registries as `enum`s of the document's code schemas
/// (`RegisteredTerritory`, `CataloguedStage` and, when providers are configured, `ProviderName`): only
/// they are accepted, and they are configuration, so the served document says which they are.
pub fn describe_registries(doc: &mut Document, services: &PathwayServices) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let mut territories = Vec::new();
    let mut pending = services.territories.tree();
    while let Some(node) = pending.pop() {
        territories.push(node.code.as_str().to_owned());
        pending.extend(node.children);
    }
    territories.sort();
    let stages: Vec<String> = services
        .catalogue
        .stages()
        .iter()
        .map(|s| s.code.as_str().to_owned())
        .collect();
    let providers: Vec<String> = services
        .providers
        .providers()
        .map(|p| p.code.as_str().to_owned())
        .collect();
    let mut enumerate = |name: &str, codes: Vec<String>| {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
            object.enum_values = Some(codes.into_iter().map(Into::into).collect());
        }
    };
    enumerate("RegisteredTerritory", territories);
    enumerate("CataloguedStage", stages);
    if !providers.is_empty() {
        enumerate("ProviderName", providers);
    }
}

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
/// Open to everyone, like the health checks (docs/security.md).
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

#[cfg(test)]
mod tests;
