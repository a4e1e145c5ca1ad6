//! Territories, stages, providers, liveness and readiness.

use axum::Json;
use axum::extract::{RawQuery, State};
use filiera_domain::{Provider, Stage, TerritoryNode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::parse_query;
use crate::problem::ApiError;
use crate::problem::responses::{ServiceUnavailable, UnprocessableEntity};

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

/// The provider registry, or the part of it covering a territory.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersPage {
    /// Sorted by code; empty when no providers are configured.
    pub providers: Vec<Provider>,
}

/// The query parameters of `/v1/providers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProvidersParams {
    /// A territory code: keeps the providers that list it or one of its ancestors, and those
    /// that list no territory. Omitted: every provider.
    #[param(value_type = Option<filiera_contract::schema::RegisteredTerritory>)]
    pub territory: Option<String>,
}

/// Lists the provider registry.
///
/// The providers stage entries may name (when none are configured, entries may name any
/// provider and the list is empty), sorted by code. With `territory`, only those usually
/// working there: the providers whose `territories` include it or one of its ancestors (a
/// provider of `LOM-BG` covers `LOM-BG-BERGAMO`, not `LOM`), and those listing none.
#[utoipa::path(
    get,
    path = "/v1/providers",
    tag = TAG,
    operation_id = "list_providers",
    params(ProvidersParams),
    responses(
        (status = 200, description = "The providers, sorted by code.", body = ProvidersPage),
        (status = 422, response = UnprocessableEntity),
    )
)]
pub async fn providers(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ProvidersPage>, ApiError> {
    let params: ProvidersParams = parse_query(query.as_deref())?;
    let services = app.store.services();
    let providers = match params.territory {
        None => services.providers.providers().cloned().collect(),
        Some(code) => {
            let territory = services
                .territories
                .get(&code)
                .ok_or_else(|| ApiError::unknown_territory(&code))?;
            services
                .providers
                .covering(&territory, &services.territories)
                .cloned()
                .collect()
        }
    };
    Ok(Json(ProvidersPage { providers }))
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

/// Readiness: the process is not shutting down and the event store can commit. Once a
/// shutdown was asked for (SIGTERM), 503 `shutting_down` for the drain delay, while requests
/// are still served. After a command failed for an outage (a full disk, an unreachable
/// database), a probe write decides; otherwise a query through the connection commands commit
/// through. Answers within about a second either way.
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
    if app.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
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
