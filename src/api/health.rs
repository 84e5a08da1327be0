//! `/health/live`, `/health/ready` and `/health`: unauthenticated, for
//! probes and load balancers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::health::{assess, Assessment};

/// `GET /health/live`: 200 while the process serves.
pub async fn live() -> Response {
    Json(json!({ "status": "live" })).into_response()
}

/// `GET /health/ready`: 200 only when this node is a member, knows a
/// leader, and has applied to within the configured lag of the commit index.
pub async fn ready(State(core): State<AppState>) -> Response {
    if core.ops.is_draining() {
        // Shutting down: tell balancers to stop sending here while the
        // requests already on their way are still served.
        let body = json!({ "ready": false, "failing": ["shutting_down"] });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let a = assess(&core).await;
    let status = if a.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let failing: Vec<&str> = a
        .checks
        .iter()
        .filter(|c| c.gates_ready && !c.ok)
        .map(|c| c.name)
        .collect();
    (
        status,
        Json(json!({ "ready": a.ready, "failing": failing })),
    )
        .into_response()
}

#[derive(Serialize)]
struct HealthBody<'a> {
    #[serde(flatten)]
    assessment: &'a Assessment,
}

/// `GET /health`: score, status and every named check.
pub async fn health(State(core): State<AppState>) -> Response {
    let a = assess(&core).await;
    Json(HealthBody { assessment: &a }).into_response()
}
