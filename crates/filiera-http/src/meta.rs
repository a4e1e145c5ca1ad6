//! Territories, stages, liveness and readiness.

use axum::Json;
use axum::extract::State;
use filiera_domain::{Stage, TerritoryNode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::ApiError;
use crate::problem::responses::ServiceUnavailable;

/// The OpenAPI tag of the catalogue and registry routes.
pub const TAG: &str = "registry";
/// The OpenAPI tag of the operational routes.
pub const OPS_TAG: &str = "operations";

/// The registry tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct TerritoriesPage {
    /// The roots (regions), each with its descendants.
    pub territories: Vec<TerritoryNode>,
}

/// Lists the territory registry as a tree.
#[utoipa::path(
    get,
    path = "/v1/territories",
    tag = TAG,
    operation_id = "list_territories",
    responses((status = 200, description = "The registry tree.", body = TerritoriesPage))
)]
pub async fn territories(State(app): State<AppState>) -> Json<TerritoriesPage> {
    Json(TerritoriesPage {
        territories: app.store.services().territories.tree(),
    })
}

/// The stage catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct StagesPage {
    /// In configuration order.
    pub stages: Vec<Stage>,
}

/// Lists the stage catalogue.
#[utoipa::path(
    get,
    path = "/v1/stages",
    tag = TAG,
    operation_id = "list_stages",
    responses((status = 200, description = "The stage catalogue.", body = StagesPage))
)]
pub async fn stages(State(app): State<AppState>) -> Json<StagesPage> {
    Json(StagesPage {
        stages: app.store.services().catalogue.stages().to_vec(),
    })
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = OPS_TAG,
    operation_id = "healthz",
    responses((status = 200, description = "The process is alive.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The event store's backend: `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    pub store: &'static str,
}

/// How long `/readyz` gives the store to answer: the endpoint never hangs much longer.
pub const READINESS_BOUND: std::time::Duration = std::time::Duration::from_millis(800);

/// Readiness: the event store can commit. After a command failed for an outage (a full disk,
/// an unreachable database), a probe write decides; otherwise a query through the connection
/// commands commit through. Answers within about a second either way.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = OPS_TAG,
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve.", body = Readiness),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    match app.store.readiness(READINESS_BOUND).await {
        Ok(()) => Ok(Json(Readiness {
            status: "ready",
            store: app.store.backend_name(),
        })),
        Err(not_ready) => {
            tracing::warn!(
                outage = not_ready.outage.as_str(),
                error = %not_ready.detail,
                "store not ready"
            );
            Err(ApiError::NotReady(not_ready))
        }
    }
}
