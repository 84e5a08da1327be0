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
    node_id: u64,
    version: &'static str,
    disk: Disk,
    #[serde(flatten)]
    assessment: &'a Assessment,
}

#[derive(Serialize)]
struct Disk {
    data_bytes: u64,
    free_bytes: Option<u64>,
    total_bytes: Option<u64>,
}

/// `GET /health`: score, status and every named check, plus the node's
/// id, version and disk use (what `cairn diagnose` prints).
pub async fn health(State(core): State<AppState>) -> Response {
    let a = assess(&core).await;
    let dir = core.config.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || Disk {
        data_bytes: crate::telemetry::dir_size(&dir),
        free_bytes: fs2::available_space(&dir).ok(),
        total_bytes: fs2::total_space(&dir).ok(),
    })
    .await
    .unwrap_or(Disk {
        data_bytes: 0,
        free_bytes: None,
        total_bytes: None,
    });
    Json(HealthBody {
        node_id: core.config.id,
        version: env!("CARGO_PKG_VERSION"),
        disk,
        assessment: &a,
    })
    .into_response()
}
