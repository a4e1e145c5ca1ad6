//! Territories, stages, liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use filiera_domain::{Stage, TerritoryNode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::ApiError;

/// The registry tree.
#[derive(Debug, Serialize)]
pub struct TerritoriesPage {
    pub territories: Vec<TerritoryNode>,
}

/// `GET /v1/territories`
pub async fn territories(State(app): State<AppState>) -> Json<TerritoriesPage> {
    Json(TerritoriesPage {
        territories: app.store.services().territories.tree(),
    })
}

/// The stage catalogue.
#[derive(Debug, Serialize)]
pub struct StagesPage {
    pub stages: Vec<Stage>,
}

/// `GET /v1/stages`
pub async fn stages(State(app): State<AppState>) -> Json<StagesPage> {
    Json(StagesPage {
        stages: app.store.services().catalogue.stages().to_vec(),
    })
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(
            json!({"status": "ready", "store": app.store.backend_name()}),
        )),
        Err(err) => {
            tracing::warn!(error = %crate::problem::error_chain(&err), "store not ready");
            Err(ApiError::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "Not ready",
                "the event store does not answer",
                None,
            ))
        }
    }
}
